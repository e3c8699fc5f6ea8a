//! Sealed personal data (crypto-shredding).
//!
//! Names, contact details, fiscal codes and every free text a citizen writes never enter an event
//! payload in clear: they are sealed with AES-256-GCM under a data key that belongs to their data
//! subject, and the payload holds only a [`Sealed`] value (subject id, nonce, ciphertext). Data
//! keys are stored wrapped (encrypted) by the master key, in a table beside the log, never in it.
//! Erasing a subject destroys its key: every sealed value of that subject, in the log, in every
//! projection and in every backup of the log, becomes unreadable at once, and reads yield
//! [`Unsealed::Erased`] rather than an error.
//!
//! Limits, said plainly: a backup of the *key table* taken before an erasure still holds the
//! wrapped key, so key-table backups must follow the retention policy; and PostgreSQL keeps an
//! erased row's old version until VACUUM (run after each erasure here) and in its WAL until
//! recycled.

mod keystore;

pub use keystore::{KeyStore, PostgresKeyStore, SqliteKeyStore};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// The key that wraps every data key. Never printed.
#[derive(Clone)]
pub struct MasterKey(Key<Aes256Gcm>);

impl MasterKey {
    /// From 32 bytes written in base64 (as in `SPORTELLO__VAULT__MASTER_KEY`).
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| VaultError::BadMasterKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| VaultError::BadMasterKey)?;
        Ok(Self(Key::<Aes256Gcm>::from(bytes)))
    }

    pub fn generate() -> Self {
        Self(Aes256Gcm::generate_key(OsRng))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(&self.0[..])
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// A personal value as it is stored in an event payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The data subject whose key seals it.
    pub subject: Uuid,
    /// 96-bit nonce, base64.
    pub nonce: String,
    /// Ciphertext and tag, base64.
    pub ciphertext: String,
}

/// A sealed value as a reader gets it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsealed {
    Clear(String),
    /// The subject was erased (GDPR art. 17): the value is gone for good.
    Erased,
}

impl Unsealed {
    pub fn clear(&self) -> Option<&str> {
        match self {
            Unsealed::Clear(text) => Some(text),
            Unsealed::Erased => None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error("the master key must be 32 bytes written in base64")]
    BadMasterKey,
    /// The ciphertext or the wrapped key does not authenticate: altered bytes or another master key.
    #[error("sealed data for subject {0} does not authenticate (altered, or another master key)")]
    Tampered(Uuid),
    /// The subject was erased: nothing may be sealed for them again.
    #[error("data subject {0} was erased")]
    SubjectErased(Uuid),
    #[error("the key store failed: {0}")]
    KeyStore(String),
    /// Busy, full or out of reach: the same request may succeed later.
    #[error("the key store is unavailable: {0}")]
    KeyStoreUnavailable(String),
}

/// What a document's content is bound to: its subject and its id (a sealed content moved to
/// another document's row does not open).
fn document_aad(subject: Uuid, id: Uuid) -> [u8; 32] {
    let mut aad = [0; 32];
    aad[..16].copy_from_slice(subject.as_bytes());
    aad[16..].copy_from_slice(id.as_bytes());
    aad
}

/// Seals and unseals personal data; cheap to clone.
#[derive(Clone)]
pub struct Vault {
    master: Arc<Aes256Gcm>,
    keys: Arc<dyn KeyStore>,
    /// Derived from the master key: makes the citizens' access keys (see [`Vault::access_key`]).
    access_secret: Arc<[u8; 32]>,
}

/// What a subject's row in the key store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    Wrapped(Vec<u8>),
    Destroyed,
}

impl Vault {
    pub fn new(master: &MasterKey, keys: Arc<dyn KeyStore>) -> Self {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&master.0[..])
            .expect("HMAC takes any key length");
        mac.update(b"sportello/access-keys/v1");
        Self {
            master: Arc::new(Aes256Gcm::new(&master.0)),
            keys,
            access_secret: Arc::new(mac.finalize().into_bytes().into()),
        }
    }

    /// The access key a citizen uses to follow a case: a keyed hash of the case id, so that a
    /// retried request gets the same key back while only its hash is stored in the log. 24
    /// characters of base64url (144 bits).
    pub fn access_key(&self, case_id: Uuid) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.access_secret[..])
            .expect("HMAC takes any key length");
        mac.update(case_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
    }

    /// Seals `clear` under `subject`'s data key, creating the key on first use. Sealing for an
    /// erased subject is refused: their data must not come back.
    pub async fn seal(&self, subject: Uuid, clear: &str) -> Result<Sealed, VaultError> {
        let key = self.key_for(subject, false).await?;
        Ok(Self::seal_with(&key, subject, clear))
    }

    /// Seals several texts of one subject with one look-up of their key; blank texts give `None`.
    /// `new_subject` says the id was just made (a v7 uuid nobody has used), so there is no key
    /// to look for: it is created at once.
    pub async fn seal_all(
        &self,
        subject: Uuid,
        new_subject: bool,
        texts: &[Option<&str>],
    ) -> Result<Vec<Option<Sealed>>, VaultError> {
        let texts: Vec<Option<&str>> = texts
            .iter()
            .map(|t| t.map(str::trim).filter(|t| !t.is_empty()))
            .collect();
        if texts.iter().all(Option::is_none) {
            return Ok(vec![None; texts.len()]);
        }
        let key = self.key_for(subject, new_subject).await?;
        Ok(texts
            .into_iter()
            .map(|t| t.map(|clear| Self::seal_with(&key, subject, clear)))
            .collect())
    }

    async fn key_for(
        &self,
        subject: Uuid,
        new_subject: bool,
    ) -> Result<Key<Aes256Gcm>, VaultError> {
        let stored = if new_subject {
            None
        } else {
            self.keys.get(subject).await?
        };
        match stored {
            Some(StoredKey::Wrapped(wrapped)) => self.unwrap_key(subject, &wrapped),
            Some(StoredKey::Destroyed) => Err(VaultError::SubjectErased(subject)),
            None => {
                let fresh = Aes256Gcm::generate_key(OsRng);
                let wrapped = self.wrap_key(subject, &fresh);
                // Another writer may have created it first: use whichever is stored (or learn
                // that the subject was erased).
                let stored = self.keys.create(subject, wrapped).await?;
                self.unwrap_key(subject, &stored)
            }
        }
    }

    fn seal_with(key: &Key<Aes256Gcm>, subject: Uuid, clear: &str) -> Sealed {
        let cipher = Aes256Gcm::new(key);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: clear.as_bytes(),
                    aad: subject.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a bounded text cannot fail");
        Sealed {
            subject,
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
        }
    }

    pub async fn unseal(&self, sealed: &Sealed) -> Result<Unsealed, VaultError> {
        let key = match self.keys.get(sealed.subject).await? {
            Some(StoredKey::Wrapped(wrapped)) => self.unwrap_key(sealed.subject, &wrapped)?,
            Some(StoredKey::Destroyed) | None => return Ok(Unsealed::Erased),
        };
        let tampered = || VaultError::Tampered(sealed.subject);
        let nonce = B64.decode(&sealed.nonce).map_err(|_| tampered())?;
        let ciphertext = B64.decode(&sealed.ciphertext).map_err(|_| tampered())?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| tampered())?;
        let clear = Aes256Gcm::new(&key)
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: sealed.subject.as_bytes(),
                },
            )
            .map_err(|_| tampered())?;
        String::from_utf8(clear)
            .map(Unsealed::Clear)
            .map_err(|_| tampered())
    }

    /// Seals a document's content under `subject`'s key and keeps it beside the keys, never in
    /// the log; returns its id. The subject's erasure deletes it.
    pub async fn keep_document(&self, subject: Uuid, content: &[u8]) -> Result<Uuid, VaultError> {
        let key = self.key_for(subject, false).await?;
        let id = Uuid::now_v7();
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut sealed = nonce.to_vec();
        sealed.extend(
            Aes256Gcm::new(&key)
                .encrypt(
                    &nonce,
                    Payload {
                        msg: content,
                        aad: &document_aad(subject, id),
                    },
                )
                .map_err(|_| VaultError::KeyStore("a document too large to seal".into()))?,
        );
        self.keys.put_document(id, subject, sealed).await?;
        Ok(id)
    }

    /// A kept document's content; `None` when there is none: never kept, or its subject erased.
    pub async fn document(&self, id: Uuid) -> Result<Option<Vec<u8>>, VaultError> {
        let Some((subject, sealed)) = self.keys.get_document(id).await? else {
            return Ok(None);
        };
        let key = match self.keys.get(subject).await? {
            Some(StoredKey::Wrapped(wrapped)) => self.unwrap_key(subject, &wrapped)?,
            Some(StoredKey::Destroyed) | None => return Ok(None),
        };
        if sealed.len() < 12 {
            return Err(VaultError::Tampered(subject));
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
        Aes256Gcm::new(&key)
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &document_aad(subject, id),
                },
            )
            .map(Some)
            .map_err(|_| VaultError::Tampered(subject))
    }

    /// Destroys `subject`'s data key. Returns false when there was nothing left to destroy.
    pub async fn erase(&self, subject: Uuid) -> Result<bool, VaultError> {
        self.keys.destroy(subject).await
    }

    fn wrap_key(&self, subject: Uuid, key: &Key<Aes256Gcm>) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut wrapped = nonce.to_vec();
        wrapped.extend(
            self.master
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &key[..],
                        aad: subject.as_bytes(),
                    },
                )
                .expect("AES-GCM encryption of 32 bytes cannot fail"),
        );
        wrapped
    }

    fn unwrap_key(&self, subject: Uuid, wrapped: &[u8]) -> Result<Key<Aes256Gcm>, VaultError> {
        if wrapped.len() != 12 + 32 + 16 {
            return Err(VaultError::Tampered(subject));
        }
        let (nonce, ciphertext) = wrapped.split_at(12);
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| VaultError::Tampered(subject))?;
        let key = self
            .master
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: subject.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Tampered(subject))?;
        let key: [u8; 32] = key.try_into().map_err(|_| VaultError::Tampered(subject))?;
        Ok(Key::<Aes256Gcm>::from(key))
    }
}

#[cfg(test)]
mod tests;
