//! URLs that may carry credentials.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A connection URL whose password is replaced by `***` whenever it is printed or logged.
/// Only [`SecretUrl::expose`] gives the real value, to hand it to a driver.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        // scheme://user:password@host → scheme://user:***@host
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let (authority, tail) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                let has_password = userinfo.contains(':');
                let masked = if has_password {
                    format!("{user}:***")
                } else {
                    user.to_owned()
                };
                let query_masked = mask_query_password(tail);
                format!("{scheme}://{masked}@{host}{query_masked}")
            }
            None => format!("{scheme}://{authority}{}", mask_query_password(tail)),
        }
    }
}

fn mask_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self(String::deserialize(deserializer)?))
    }
}

/// A secret value (a key, a token) that is never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_hides_the_password_in_user_info_and_query() {
        let url = SecretUrl::new("postgres://app:s3cret@db.local:5432/urp?password=other&x=1");
        let shown = format!("{url} {url:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("other"),
            "{shown}"
        );
        assert!(shown.contains("postgres://app:***@db.local:5432/urp?password=***&x=1"));
        assert_eq!(
            url.expose(),
            "postgres://app:s3cret@db.local:5432/urp?password=other&x=1"
        );
    }

    #[test]
    fn a_secret_string_never_prints() {
        let key = SecretString::new("c2VjcmV0LWtleQ==");
        assert_eq!(format!("{key} {key:?}"), "*** SecretString(***)");
        assert_eq!(key.expose(), "c2VjcmV0LWtleQ==");
    }

    #[test]
    fn it_leaves_urls_without_credentials_alone() {
        assert_eq!(
            SecretUrl::new("sqlite://data/sportello.db").to_string(),
            "sqlite://data/sportello.db"
        );
        assert_eq!(
            SecretUrl::new("postgres://postgres@127.0.0.1/x").to_string(),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}
