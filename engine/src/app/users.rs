//! Staff accounts for the pages: a username and a password, kept in the log like the tokens
//! (`user-<uuid>`, the id derived from the username so that signing in is one stream read and a
//! username can be taken only once). Only an argon2id hash of the password is stored.
//!
//! Signing in through the comune's identity provider (OIDC) would add another way to reach the
//! same [`StaffMember`]; the sessions of the pages do not care which way was taken.

use super::staff::{Role, StaffMember};
use crate::store::{EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use uuid::Uuid;

const CATEGORY: &str = "user";

/// Shorter passwords are refused: the policy of AgID's guidelines for credentials (12 or more).
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    UserCreated {
        username: String,
        /// Recorded as the actor of what they do.
        name: String,
        role: Role,
        comune: String,
        /// argon2id, in the PHC string format.
        password_hash: String,
        at: DateTime<Utc>,
    },
    PasswordChanged {
        password_hash: String,
        at: DateTime<Utc>,
    },
    UserDisabled {
        at: DateTime<Utc>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("the username must be 3 to 64 lowercase letters, digits, dots, dashes or underscores")]
    BadUsername,
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("the user '{0}' already exists")]
    Exists(String),
    #[error("no active user '{0}'")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] crate::store::InvalidInput),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The stream of a username, whatever case it was typed in.
pub fn user_id(username: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("sportello:user:{}", username.trim().to_lowercase()).as_bytes(),
    )
}

fn valid_username(username: &str) -> bool {
    (3..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A password to hand over once: 20 characters from 120 random bits.
pub fn generated_password() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 15];
    argon2::password_hash::rand_core::RngCore::fill_bytes(
        &mut argon2::password_hash::rand_core::OsRng,
        &mut bytes,
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn hash(password: String) -> Result<String, UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::WeakPassword);
    }
    // Tens of milliseconds of CPU by design: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| UserError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| UserError::Hash(e.to_string()))?
}

fn system(comune: &str) -> Metadata {
    Metadata {
        actor: Some("system:cli".into()),
        comune: Some(comune.to_owned()),
        ..Metadata::default()
    }
}

/// Creates an account; the username is stored lowercase.
pub async fn create(
    log: &EventLog,
    username: &str,
    name: &str,
    role: Role,
    comune: &str,
    password: String,
) -> Result<Uuid, UserError> {
    let username = username.trim().to_lowercase();
    if !valid_username(&username) {
        return Err(UserError::BadUsername);
    }
    let password_hash = hash(password).await?;
    let id = user_id(&username);
    let event = NewEvent::new(
        "UserCreated",
        &UserEvent::UserCreated {
            username: username.clone(),
            name: name.trim().to_owned(),
            role,
            comune: comune.to_owned(),
            password_hash,
            at: Utc::now(),
        },
    )?
    .with_metadata(system(comune));
    match log
        .append(
            StreamId::new(CATEGORY, id)?,
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await
    {
        Ok(_) => Ok(id),
        Err(StoreError::Conflict { .. }) => Err(UserError::Exists(username)),
        Err(e) => Err(e.into()),
    }
}

/// An account as its events leave it.
struct Account {
    member: StaffMember,
    password_hash: String,
    disabled: bool,
    version: u64,
}

async fn account(log: &EventLog, username: &str) -> Result<Option<Account>, StoreError> {
    let id = user_id(username);
    let mut events = log.read_stream(StreamId::new(CATEGORY, id)?, 1);
    let mut account: Option<Account> = None;
    while let Some(recorded) = events.try_next().await? {
        let Ok(event) = recorded.decode::<UserEvent>() else {
            continue;
        };
        match (event, account.as_mut()) {
            (
                UserEvent::UserCreated {
                    name,
                    role,
                    comune,
                    password_hash,
                    ..
                },
                _,
            ) => {
                account = Some(Account {
                    member: StaffMember {
                        token_id: id,
                        name,
                        role,
                        comune,
                    },
                    password_hash,
                    disabled: false,
                    version: recorded.version,
                });
            }
            (UserEvent::PasswordChanged { password_hash, .. }, Some(a)) => {
                a.password_hash = password_hash;
                a.version = recorded.version;
            }
            (UserEvent::UserDisabled { .. }, Some(a)) => {
                a.disabled = true;
                a.version = recorded.version;
            }
            (_, None) => {}
        }
    }
    Ok(account.filter(|a| !a.disabled))
}

/// What a failed comparison costs when the username is unknown, so that the time taken does not
/// say which usernames exist.
static DECOY: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(b"decoy password", &salt)
        .expect("hashing a constant")
        .to_string()
});

/// The staff member whose username and password these are, or `None` (unknown, disabled or the
/// wrong password: the caller cannot tell which).
pub async fn sign_in(
    log: &EventLog,
    username: &str,
    password: &str,
) -> Result<Option<StaffMember>, StoreError> {
    let account = account(log, username).await?;
    let stored = account
        .as_ref()
        .map_or_else(|| DECOY.clone(), |a| a.password_hash.clone());
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    Ok(account.filter(|_| matches).map(|a| a.member))
}

/// Sets a new password.
pub async fn set_password(
    log: &EventLog,
    username: &str,
    password: String,
) -> Result<(), UserError> {
    let account = account(log, username)
        .await?
        .ok_or_else(|| UserError::Unknown(username.to_owned()))?;
    let event = NewEvent::new(
        "PasswordChanged",
        &UserEvent::PasswordChanged {
            password_hash: hash(password).await?,
            at: Utc::now(),
        },
    )?
    .with_metadata(system(&account.member.comune));
    log.append(
        StreamId::new(CATEGORY, user_id(username))?,
        ExpectedVersion::Exact(account.version),
        vec![event],
    )
    .await?;
    Ok(())
}

/// Disables an account for good; returns its id (whose sessions the caller ends).
pub async fn disable(log: &EventLog, username: &str) -> Result<Uuid, UserError> {
    let account = account(log, username)
        .await?
        .ok_or_else(|| UserError::Unknown(username.to_owned()))?;
    let event = NewEvent::new("UserDisabled", &UserEvent::UserDisabled { at: Utc::now() })?
        .with_metadata(system(&account.member.comune));
    let id = user_id(username);
    log.append(
        StreamId::new(CATEGORY, id)?,
        ExpectedVersion::Exact(account.version),
        vec![event],
    )
    .await?;
    Ok(id)
}

/// An account as the administration lists it.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub username: String,
    pub name: String,
    pub role: Role,
    pub comune: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// Every account, by username.
pub async fn list(log: &EventLog) -> Result<Vec<UserSummary>, StoreError> {
    let mut events = log.read_all(crate::ReadAll {
        categories: vec![CATEGORY.into()],
        ..crate::ReadAll::from(1)
    });
    let mut users: std::collections::BTreeMap<String, UserSummary> = Default::default();
    while let Some(recorded) = events.try_next().await? {
        let stream = recorded.stream.id().to_owned();
        match recorded.decode::<UserEvent>() {
            Ok(UserEvent::UserCreated {
                username,
                name,
                role,
                comune,
                at,
                ..
            }) => {
                users.insert(
                    stream,
                    UserSummary {
                        username,
                        name,
                        role,
                        comune,
                        active: true,
                        created_at: at,
                    },
                );
            }
            Ok(UserEvent::UserDisabled { .. }) => {
                if let Some(u) = users.get_mut(&stream) {
                    u.active = false;
                }
            }
            _ => {}
        }
    }
    let mut users: Vec<UserSummary> = users.into_values().collect();
    users.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(users)
}
