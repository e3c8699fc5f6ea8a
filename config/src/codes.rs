//! Administrative codes that can only exist in a valid form.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The six-digit ISTAT code of a comune (province code + progressive), e.g. `073015` for Massafra.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IstatCode(String);

impl IstatCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("an ISTAT code has 6 digits, got '{raw}'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The cadastral (Belfiore) code of a comune: one letter and three digits, e.g. `F027`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CadastralCode(String);

impl CadastralCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bytes = raw.as_bytes();
        if bytes.len() == 4
            && bytes[0].is_ascii_uppercase()
            && bytes[1..].iter().all(u8::is_ascii_digit)
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "a cadastral code is an upper-case letter and 3 digits, got '{raw}'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! parsed_string {
    ($type:ty) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;
            fn from_str(raw: &str) -> Result<Self, String> {
                Self::parse(raw)
            }
        }
    };
}

parsed_string!(IstatCode);
parsed_string!(CadastralCode);
