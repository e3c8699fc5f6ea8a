//! Where wrapped data keys live: a table beside the log, in the same database, never in the log.

use super::{StoredKey, VaultError};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn get(&self, subject: Uuid) -> Result<Option<StoredKey>, VaultError>;
    /// Stores `wrapped` unless the subject already has a row; returns the stored wrapped key.
    async fn create(&self, subject: Uuid, wrapped: Vec<u8>) -> Result<Vec<u8>, VaultError>;
    /// Destroys the key so that no byte of it remains in the database files.
    async fn destroy(&self, subject: Uuid) -> Result<bool, VaultError>;
}

fn failed(e: impl std::fmt::Display) -> VaultError {
    VaultError::KeyStore(e.to_string())
}

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS subject_keys (
    subject    BLOB PRIMARY KEY,
    wrapped    BLOB,            -- NULL once the subject is erased
    erased_at  INTEGER
) WITHOUT ROWID;";

/// Keys in the SQLite file of the event store.
pub struct SqliteKeyStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteKeyStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VaultError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(failed)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(failed)?;
        // Deleted or overwritten content is zeroed in the file, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(failed)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(failed)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        conn.execute_batch(SQLITE_SCHEMA).map_err(failed)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, VaultError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().expect("key store poisoned")))
            .await
            .map_err(failed)?
            .map_err(failed)
    }
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn get(&self, subject: Uuid) -> Result<Option<StoredKey>, VaultError> {
        self.with(move |c| {
            c.query_row(
                "SELECT wrapped FROM subject_keys WHERE subject = ?1",
                [subject.as_bytes().as_slice()],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map(|row| row.map(|w| w.map_or(StoredKey::Destroyed, StoredKey::Wrapped)))
        })
        .await
    }

    async fn create(&self, subject: Uuid, wrapped: Vec<u8>) -> Result<Vec<u8>, VaultError> {
        let stored = self
            .with(move |c| {
                c.execute(
                    "INSERT INTO subject_keys (subject, wrapped) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    params![subject.as_bytes().as_slice(), wrapped],
                )?;
                c.query_row(
                    "SELECT wrapped FROM subject_keys WHERE subject = ?1",
                    [subject.as_bytes().as_slice()],
                    |r| r.get::<_, Option<Vec<u8>>>(0),
                )
            })
            .await?;
        stored.ok_or(VaultError::SubjectErased(subject))
    }

    async fn destroy(&self, subject: Uuid) -> Result<bool, VaultError> {
        self.with(move |c| {
            let changed = c.execute(
                "INSERT INTO subject_keys (subject, wrapped, erased_at) VALUES (?1, NULL, unixepoch()) \
                 ON CONFLICT (subject) DO UPDATE SET wrapped = NULL, erased_at = unixepoch() \
                 WHERE subject_keys.wrapped IS NOT NULL",
                [subject.as_bytes().as_slice()],
            )?;
            // The old page with the wrapped key may still sit in the WAL: copy the WAL back (the
            // page is zeroed there by secure_delete) and truncate it.
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(changed > 0)
        })
        .await
    }
}

/// Keys in the PostgreSQL database of the event store.
pub struct PostgresKeyStore {
    pool: PgPool,
}

impl PostgresKeyStore {
    pub async fn connect(pool: PgPool) -> Result<Self, VaultError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS subject_keys (
                subject UUID PRIMARY KEY,
                wrapped BYTEA,
                erased_at TIMESTAMPTZ
            )",
        )
        .execute(&pool)
        .await
        .map_err(failed)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl KeyStore for PostgresKeyStore {
    async fn get(&self, subject: Uuid) -> Result<Option<StoredKey>, VaultError> {
        let row: Option<(Option<Vec<u8>>,)> =
            sqlx::query_as("SELECT wrapped FROM subject_keys WHERE subject = $1")
                .bind(subject)
                .fetch_optional(&self.pool)
                .await
                .map_err(failed)?;
        Ok(row.map(|(w,)| w.map_or(StoredKey::Destroyed, StoredKey::Wrapped)))
    }

    async fn create(&self, subject: Uuid, wrapped: Vec<u8>) -> Result<Vec<u8>, VaultError> {
        sqlx::query(
            "INSERT INTO subject_keys (subject, wrapped) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(subject)
        .bind(wrapped)
        .execute(&self.pool)
        .await
        .map_err(failed)?;
        match self.get(subject).await? {
            Some(StoredKey::Wrapped(w)) => Ok(w),
            _ => Err(VaultError::SubjectErased(subject)),
        }
    }

    async fn destroy(&self, subject: Uuid) -> Result<bool, VaultError> {
        let changed = sqlx::query(
            "INSERT INTO subject_keys (subject, wrapped, erased_at) VALUES ($1, NULL, now()) \
             ON CONFLICT (subject) DO UPDATE SET wrapped = NULL, erased_at = now() \
             WHERE subject_keys.wrapped IS NOT NULL",
        )
        .bind(subject)
        .execute(&self.pool)
        .await
        .map_err(failed)?
        .rows_affected();
        // Remove the dead row version that still holds the wrapped key.
        sqlx::query("VACUUM subject_keys")
            .execute(&self.pool)
            .await
            .map_err(failed)?;
        Ok(changed > 0)
    }
}
