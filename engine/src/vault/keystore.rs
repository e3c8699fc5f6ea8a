//! Where wrapped data keys live: a table beside the log, in the same database, never in the log.

use super::{StoredKey, VaultError};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sqlx::{AssertSqlSafe, PgPool};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn get(&self, subject: Uuid) -> Result<Option<StoredKey>, VaultError>;
    /// Stores `wrapped` unless the subject already has a row; returns the stored wrapped key.
    async fn create(&self, subject: Uuid, wrapped: Vec<u8>) -> Result<Vec<u8>, VaultError>;
    /// Destroys the key, and the subject's documents, so that no byte of either remains in the
    /// database files.
    async fn destroy(&self, subject: Uuid) -> Result<bool, VaultError>;
    /// Keeps a document's content, sealed already under `subject`'s key.
    async fn put_document(
        &self,
        id: Uuid,
        subject: Uuid,
        sealed: Vec<u8>,
    ) -> Result<(), VaultError>;
    /// A kept document's subject and sealed content.
    async fn get_document(&self, id: Uuid) -> Result<Option<(Uuid, Vec<u8>)>, VaultError>;
}

fn failed(e: impl std::fmt::Display) -> VaultError {
    VaultError::KeyStore(e.to_string())
}

/// A database error of the key store: worth a retry later when the database is busy, full or
/// out of reach.
fn db_failed(e: impl crate::store::Transient) -> VaultError {
    if e.is_transient() {
        VaultError::KeyStoreUnavailable(e.to_string())
    } else {
        VaultError::KeyStore(e.to_string())
    }
}

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS subject_keys (
    subject    BLOB PRIMARY KEY,
    wrapped    BLOB,            -- NULL once the subject is erased
    erased_at  INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subject_documents (
    id       BLOB PRIMARY KEY,
    subject  BLOB NOT NULL,
    sealed   BLOB NOT NULL      -- nonce, then the content sealed under the subject's key
);
CREATE INDEX IF NOT EXISTS subject_documents_by_subject ON subject_documents (subject);";

/// Keys in the SQLite file of the event store.
///
/// New keys are written by a thread of their own that takes every key asked for meanwhile into
/// one transaction: with many citizens writing at once, one lock of the file per batch instead of
/// one per key (the log's writer needs that lock too).
pub struct SqliteKeyStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    creator: std::sync::mpsc::Sender<NewKey>,
}

struct NewKey {
    subject: Uuid,
    wrapped: Vec<u8>,
    stored: tokio::sync::oneshot::Sender<Result<Option<Vec<u8>>, VaultError>>,
}

/// Keys created per transaction, at most.
const KEY_BATCH: usize = 256;

fn open_key_connection(path: &Path) -> Result<Connection, VaultError> {
    let conn = Connection::open(path).map_err(db_failed)?;
    crate::store::sqlite::wait_patiently_when_busy(&conn).map_err(db_failed)?;
    // Deleted or overwritten content is zeroed in the file, not left in free pages.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(db_failed)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_failed)?;
    // No fsync of its own: a new key is only used by an event appended after it to the same
    // file's WAL, and that append's fsync (synchronous=FULL on the log's writer) makes every
    // earlier frame durable with it. A key whose event never committed is harmless. This holds
    // because the keys live in the event store's own file; an fsync per key would cap new
    // contacts at the disk's sync rate.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_failed)?;
    Ok(conn)
}

fn create_keys(conn: &mut Connection, batch: &[NewKey]) -> rusqlite::Result<Vec<Option<Vec<u8>>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut stored = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO subject_keys (subject, wrapped) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?;
        let mut select =
            tx.prepare_cached("SELECT wrapped FROM subject_keys WHERE subject = ?1")?;
        for key in batch {
            insert.execute(params![key.subject.as_bytes().as_slice(), key.wrapped])?;
            stored.push(select.query_row([key.subject.as_bytes().as_slice()], |r| {
                r.get::<_, Option<Vec<u8>>>(0)
            })?);
        }
    }
    tx.commit()?;
    Ok(stored)
}

fn run_key_creator(mut conn: Connection, requests: std::sync::mpsc::Receiver<NewKey>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < KEY_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match create_keys(&mut conn, &batch) {
            Ok(stored) => {
                for (key, stored) in batch.into_iter().zip(stored) {
                    let _ = key.stored.send(Ok(stored));
                }
            }
            Err(e) => {
                let failure = db_failed(&e);
                for key in batch {
                    let _ = key.stored.send(Err(failure.clone()));
                }
            }
        }
    }
}

impl SqliteKeyStore {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VaultError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_key_connection(&path)?;
        conn.execute_batch(SQLITE_SCHEMA).map_err(db_failed)?;
        let writer = open_key_connection(&path)?;
        let (creator, requests) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("sportello-keys".into())
            .spawn(move || run_key_creator(writer, requests))
            .map_err(failed)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
            creator,
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
            .map_err(db_failed)
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
        let (stored, reply) = tokio::sync::oneshot::channel();
        self.creator
            .send(NewKey {
                subject,
                wrapped,
                stored,
            })
            .map_err(|_| failed("the key writer has stopped"))?;
        let stored = reply
            .await
            .map_err(|_| failed("the key writer has stopped"))??;
        stored.ok_or(VaultError::SubjectErased(subject))
    }

    async fn destroy(&self, subject: Uuid) -> Result<bool, VaultError> {
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "INSERT INTO subject_keys (subject, wrapped, erased_at) VALUES (?1, NULL, unixepoch()) \
                 ON CONFLICT (subject) DO UPDATE SET wrapped = NULL, erased_at = unixepoch() \
                 WHERE subject_keys.wrapped IS NOT NULL",
                [subject.as_bytes().as_slice()],
            )?;
            tx.execute(
                "DELETE FROM subject_documents WHERE subject = ?1",
                [subject.as_bytes().as_slice()],
            )?;
            tx.commit()?;
            // The old page with the wrapped key may still sit in the WAL: copy the WAL back (the
            // page is zeroed there by secure_delete) and truncate it.
            if !crate::store::sqlite::truncate_wal(c)? {
                tracing::warn!(%subject, "the WAL could not be truncated after an erasure; the next checkpoint will");
            }
            Ok(changed > 0)
        })
        .await
    }

    async fn put_document(
        &self,
        id: Uuid,
        subject: Uuid,
        sealed: Vec<u8>,
    ) -> Result<(), VaultError> {
        // No fsync of its own, as for keys: the event that names the document is appended to
        // the same file afterwards, and its commit makes this one durable.
        self.with(move |c| {
            c.execute(
                "INSERT INTO subject_documents (id, subject, sealed) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
                params![
                    id.as_bytes().as_slice(),
                    subject.as_bytes().as_slice(),
                    sealed
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn get_document(&self, id: Uuid) -> Result<Option<(Uuid, Vec<u8>)>, VaultError> {
        let row = self
            .with(move |c| {
                c.query_row(
                    "SELECT subject, sealed FROM subject_documents WHERE id = ?1",
                    [id.as_bytes().as_slice()],
                    |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)),
                )
                .optional()
            })
            .await?;
        row.map(|(subject, sealed)| {
            Uuid::from_slice(&subject)
                .map(|s| (s, sealed))
                .map_err(failed)
        })
        .transpose()
    }
}

/// Keys in the PostgreSQL database of the event store.
pub struct PostgresKeyStore {
    pool: PgPool,
}

impl PostgresKeyStore {
    pub async fn connect(pool: PgPool) -> Result<Self, VaultError> {
        let mut tx = pool.begin().await.map_err(db_failed)?;
        sqlx::query(crate::store::postgres::SCHEMA_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_failed)?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS subject_keys (
                subject UUID PRIMARY KEY,
                wrapped BYTEA,
                erased_at TIMESTAMPTZ
            );
            CREATE TABLE IF NOT EXISTS subject_documents (
                id UUID PRIMARY KEY,
                subject UUID NOT NULL,
                sealed BYTEA NOT NULL
            );
            CREATE INDEX IF NOT EXISTS subject_documents_by_subject ON subject_documents (subject);",
        )
        .execute(&mut *tx)
        .await
        .map_err(db_failed)?;
        tx.commit().await.map_err(db_failed)?;
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
                .map_err(db_failed)?;
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
        .map_err(db_failed)?;
        match self.get(subject).await? {
            Some(StoredKey::Wrapped(w)) => Ok(w),
            _ => Err(VaultError::SubjectErased(subject)),
        }
    }

    async fn destroy(&self, subject: Uuid) -> Result<bool, VaultError> {
        let mut tx = self.pool.begin().await.map_err(db_failed)?;
        let changed = sqlx::query(
            "INSERT INTO subject_keys (subject, wrapped, erased_at) VALUES ($1, NULL, now()) \
             ON CONFLICT (subject) DO UPDATE SET wrapped = NULL, erased_at = now() \
             WHERE subject_keys.wrapped IS NOT NULL",
        )
        .bind(subject)
        .execute(&mut *tx)
        .await
        .map_err(db_failed)?
        .rows_affected();
        sqlx::query("DELETE FROM subject_documents WHERE subject = $1")
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(db_failed)?;
        tx.commit().await.map_err(db_failed)?;
        // Remove the dead row versions that still hold the wrapped key and the documents.
        // One statement each: a VACUUM cannot run inside a (multi-statement) transaction.
        for table in ["subject_keys", "subject_documents"] {
            sqlx::raw_sql(AssertSqlSafe(format!("VACUUM {table}")))
                .execute(&self.pool)
                .await
                .map_err(db_failed)?;
        }
        Ok(changed > 0)
    }

    async fn put_document(
        &self,
        id: Uuid,
        subject: Uuid,
        sealed: Vec<u8>,
    ) -> Result<(), VaultError> {
        sqlx::query(
            "INSERT INTO subject_documents (id, subject, sealed) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(subject)
        .bind(sealed)
        .execute(&self.pool)
        .await
        .map_err(db_failed)?;
        Ok(())
    }

    async fn get_document(&self, id: Uuid) -> Result<Option<(Uuid, Vec<u8>)>, VaultError> {
        sqlx::query_as("SELECT subject, sealed FROM subject_documents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_failed)
    }
}
