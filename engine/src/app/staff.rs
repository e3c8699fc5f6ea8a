//! Staff access tokens, kept in the log like everything else (`token-<uuid>`): issued with a role
//! and a comune, revoked by an administrator. Only a SHA-256 of the secret is stored; the token
//! itself is shown once, when it is created.
//!
//! A token reads `spt_<token id>_<secret>`: the id finds the stream in one read, the secret (256
//! random bits) proves possession. A secret that long needs no slow hash: nobody can guess it.

use crate::store::{EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use aes_gcm::aead::{OsRng, rand_core::RngCore};
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Works the cases of their comune.
    Operator,
    /// As an operator; oversees the office.
    Supervisor,
    /// Statistics only, never personal data.
    Analyst,
    /// As a supervisor, and erases data subjects (GDPR art. 17).
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "operator" => Some(Role::Operator),
            "supervisor" => Some(Role::Supervisor),
            "analyst" => Some(Role::Analyst),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// May read and act on cases, with the citizens' personal data.
    pub fn works_cases(self) -> bool {
        !matches!(self, Role::Analyst)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TokenEvent {
    TokenIssued {
        name: String,
        role: Role,
        comune: String,
        /// SHA-256 (hex) of the secret part.
        secret_hash: String,
        issued_at: DateTime<Utc>,
    },
    TokenRevoked {
        at: DateTime<Utc>,
    },
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub token_id: Uuid,
    pub name: String,
    pub role: Role,
    pub comune: String,
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token_id: Uuid,
    /// Shown once; only its hash is kept.
    pub token: String,
}

const CATEGORY: &str = "token";

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Issues a new token.
pub async fn issue(
    log: &EventLog,
    name: &str,
    role: Role,
    comune: &str,
) -> Result<IssuedToken, StoreError> {
    let token_id = Uuid::now_v7();
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let event = NewEvent::new(
        "TokenIssued",
        &TokenEvent::TokenIssued {
            name: name.to_owned(),
            role,
            comune: comune.to_owned(),
            secret_hash: secret_hash(&secret),
            issued_at: Utc::now(),
        },
    )?
    .with_metadata(Metadata {
        actor: Some("system:cli".into()),
        comune: Some(comune.to_owned()),
        ..Metadata::default()
    });
    log.append(
        StreamId::new(CATEGORY, token_id)?,
        ExpectedVersion::NoStream,
        vec![event],
    )
    .await?;
    Ok(IssuedToken {
        token_id,
        token: format!("spt_{}_{secret}", token_id.simple()),
    })
}

/// Revokes a token; true when it existed and was live.
pub async fn revoke(log: &EventLog, token_id: Uuid) -> Result<bool, StoreError> {
    let stream = StreamId::new(CATEGORY, token_id)?;
    let events: Vec<_> = log.read_stream(stream.clone(), 1).try_collect().await?;
    let live = !events.is_empty() && events.iter().all(|e| e.event_type != "TokenRevoked");
    if live {
        let event = NewEvent::new("TokenRevoked", &TokenEvent::TokenRevoked { at: Utc::now() })?;
        log.append(
            stream,
            ExpectedVersion::Exact(events.len() as u64),
            vec![event],
        )
        .await?;
    }
    Ok(live)
}

/// The staff member a token speaks for, or `None` when it is malformed, unknown, wrong or revoked.
pub async fn verify(log: &EventLog, token: &str) -> Result<Option<StaffMember>, StoreError> {
    let Some((id, secret)) = token
        .trim()
        .strip_prefix("spt_")
        .and_then(|rest| rest.split_once('_'))
    else {
        return Ok(None);
    };
    let Ok(token_id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let stream = StreamId::new(CATEGORY, token_id)?;
    let mut events = log.read_stream(stream, 1);
    let mut member = None;
    while let Some(event) = events.try_next().await? {
        match event.decode::<TokenEvent>() {
            Ok(TokenEvent::TokenIssued {
                name,
                role,
                comune,
                secret_hash: stored,
                ..
            }) => {
                let given = secret_hash(secret);
                // Compare digests in constant time.
                let same: bool = stored.as_bytes().ct_eq(given.as_bytes()).into();
                member = same.then_some(StaffMember {
                    token_id,
                    name,
                    role,
                    comune,
                });
            }
            Ok(TokenEvent::TokenRevoked { .. }) => return Ok(None),
            Err(_) => return Ok(None),
        }
    }
    Ok(member)
}

/// A token as the administration lists it (never its secret, which is not kept).
#[derive(Debug, Clone)]
pub struct TokenSummary {
    pub token_id: Uuid,
    pub name: String,
    pub role: Role,
    pub comune: String,
    pub issued_at: DateTime<Utc>,
    pub revoked: bool,
}

/// Every token, oldest first.
pub async fn list(log: &EventLog) -> Result<Vec<TokenSummary>, StoreError> {
    let mut events = log.read_all(crate::ReadAll {
        categories: vec![CATEGORY.into()],
        ..crate::ReadAll::from(1)
    });
    let mut tokens: Vec<TokenSummary> = Vec::new();
    while let Some(recorded) = events.try_next().await? {
        let Ok(token_id) = recorded.stream.id().parse::<Uuid>() else {
            continue;
        };
        match recorded.decode::<TokenEvent>() {
            Ok(TokenEvent::TokenIssued {
                name,
                role,
                comune,
                issued_at,
                ..
            }) => tokens.push(TokenSummary {
                token_id,
                name,
                role,
                comune,
                issued_at,
                revoked: false,
            }),
            Ok(TokenEvent::TokenRevoked { .. }) => {
                if let Some(t) = tokens.iter_mut().find(|t| t.token_id == token_id) {
                    t.revoked = true;
                }
            }
            Err(_) => {}
        }
    }
    Ok(tokens)
}
