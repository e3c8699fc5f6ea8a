//! Store errors: what the caller got wrong, a refused expectation, or a failing backend.

use super::types::{ExpectedVersion, StreamId};
use uuid::Uuid;

/// Input the store refuses before anything is written. Each variant has a stable [`code`].
///
/// [`code`]: InvalidInput::code
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("the stream id is empty")]
    EmptyStreamId,
    #[error("malformed stream id '{raw}': {reason}")]
    MalformedStreamId { raw: String, reason: String },
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("an append may carry at most {max} events, this one has {count}")]
    TooManyEvents { count: usize, max: usize },
    #[error("event {index}: the event type is empty")]
    EmptyEventType { index: usize },
    #[error(
        "event {index}: event type '{event_type}' may hold only ASCII letters, digits, _ and . (at most 100)"
    )]
    MalformedEventType { index: usize, event_type: String },
    #[error("event {index}: the schema version starts at 1")]
    SchemaVersionZero { index: usize },
    #[error("event {index}: the payload is not valid JSON: {detail}")]
    PayloadNotJson { index: usize, detail: String },
    #[error("event {index}: the payload must be a JSON object")]
    PayloadNotObject { index: usize },
    #[error("event {index}: the payload has {size} bytes, more than the {max} allowed")]
    PayloadTooLarge {
        index: usize,
        size: usize,
        max: usize,
    },
    #[error("event {index}: metadata field `{field}` is longer than 200 bytes")]
    MetadataTooLong { index: usize, field: &'static str },
    #[error("event id {id} appears twice in one append")]
    RepeatedEventId { id: Uuid },
    #[error("malformed filter: {0}")]
    MalformedFilter(String),
    #[error(
        "unsupported store URL '{0}': use sqlite://PATH, postgres://USER@HOST/DATABASE or kurrentdb://HOST:2113"
    )]
    UnsupportedStoreUrl(String),
    #[error("malformed store URL: {0}")]
    MalformedStoreUrl(String),
    #[error(
        "this build has no {0} backend: build sportello with `cargo build --release --features {0}`"
    )]
    BackendNotBuilt(&'static str),
}

impl InvalidInput {
    /// Stable, machine-readable code for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidInput::EmptyStreamId => "stream_id_empty",
            InvalidInput::MalformedStreamId { .. } => "stream_id_malformed",
            InvalidInput::EmptyAppend => "append_empty",
            InvalidInput::TooManyEvents { .. } => "append_too_many_events",
            InvalidInput::EmptyEventType { .. } => "event_type_empty",
            InvalidInput::MalformedEventType { .. } => "event_type_malformed",
            InvalidInput::SchemaVersionZero { .. } => "schema_version_zero",
            InvalidInput::PayloadNotJson { .. } => "payload_not_json",
            InvalidInput::PayloadNotObject { .. } => "payload_not_object",
            InvalidInput::PayloadTooLarge { .. } => "payload_too_large",
            InvalidInput::MetadataTooLong { .. } => "metadata_too_long",
            InvalidInput::RepeatedEventId { .. } => "event_id_repeated",
            InvalidInput::MalformedFilter(_) => "filter_malformed",
            InvalidInput::UnsupportedStoreUrl(_) => "store_url_unsupported",
            InvalidInput::MalformedStoreUrl(_) => "store_url_malformed",
            InvalidInput::BackendNotBuilt(_) => "store_backend_not_built",
        }
    }
}

/// Why an operation on the store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The optimistic-concurrency check refused the append; reload the stream and decide again.
    #[error("conflict on stream {stream}: expected {expected}, the stream is at {}", describe_actual(*.actual))]
    Conflict {
        stream: StreamId,
        expected: ExpectedVersion,
        /// The stream's version when the append was tried; `None` when it does not exist.
        actual: Option<u64>,
    },
    /// An event id is already stored with other content, in another stream, or the retry only
    /// partly matches what was stored: ids must never be reused.
    #[error("event id {event_id} is already stored with different content ({detail})")]
    DuplicateEventId { event_id: Uuid, detail: String },
    /// The input was refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A stored event cannot be read back (the bytes were altered outside the store).
    #[error("stored event {stream}@{version} cannot be decoded: {detail}")]
    Corrupt {
        stream: String,
        version: u64,
        detail: String,
    },
    /// The database is unreachable, restarting, busy or out of space: the operation may or may
    /// not have been applied, and trying it again later (an append with the same event ids) is
    /// safe and may succeed.
    #[error("{backend} event store unavailable: {detail}")]
    Unavailable {
        backend: &'static str,
        detail: String,
    },
    /// The database failed in a way that trying again will not mend.
    #[error("{backend} event store failed: {detail}")]
    Backend {
        backend: &'static str,
        detail: String,
    },
}

fn describe_actual(actual: Option<u64>) -> String {
    match actual {
        None => "no stream".into(),
        Some(v) => format!("version {v}"),
    }
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Conflict { .. } => "conflict",
            StoreError::DuplicateEventId { .. } => "event_id_reused",
            StoreError::Invalid(e) => e.code(),
            StoreError::Corrupt { .. } => "stored_event_corrupt",
            StoreError::Unavailable { .. } => "backend_unavailable",
            StoreError::Backend { .. } => "backend_failure",
        }
    }

    /// True for failures of the infrastructure, as opposed to refusals of the input.
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. }
                | StoreError::Backend { .. }
                | StoreError::Corrupt { .. }
        )
    }

    /// True when the same request, tried again later, may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    pub(crate) fn backend(backend: &'static str, error: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            backend,
            detail: error.to_string(),
        }
    }

    pub(crate) fn classified(backend: &'static str, error: impl Transient) -> Self {
        let detail = error.to_string();
        if error.is_transient() {
            StoreError::Unavailable { backend, detail }
        } else {
            StoreError::Backend { backend, detail }
        }
    }
}

/// Database errors that say whether trying again later may help: a lost connection, a server
/// restarting, a busy file, a full disk. Everything else (a malformed statement, a constraint the
/// code did not expect) is a bug, and retrying will not mend it.
pub trait Transient: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

impl Transient for rusqlite::Error {
    fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::*;
        matches!(
            self.sqlite_error_code(),
            Some(
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | SystemIoFailure
                    | CannotOpen
                    | OutOfMemory
                    | FileLockingProtocolFailed
            )
        )
    }
}

impl<T: Transient> Transient for &T {
    fn is_transient(&self) -> bool {
        (*self).is_transient()
    }
}

impl Transient for sqlx::Error {
    fn is_transient(&self) -> bool {
        match self {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            // SQLSTATE classes: 08 connection, 53 insufficient resources (disk full, out of
            // memory, too many connections), 57 operator intervention (shutdown, restart), 58
            // system errors; 40001/40P01: serialisation failure and deadlock, retried as a whole.
            sqlx::Error::Database(e) => e.code().is_some_and(|code| {
                ["08", "53", "57", "58"].iter().any(|c| code.starts_with(c))
                    || code == "40001"
                    || code == "40P01"
            }),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_full_disk_a_busy_file_or_a_lost_connection_is_worth_a_retry() {
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_IOERR,
        ] {
            assert!(sqlite(code).is_transient(), "{code}");
        }
        assert!(sqlx::Error::PoolTimedOut.is_transient());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(sqlx::Error::Io(refused).is_transient());
        let failure = StoreError::classified("sqlite", sqlite(rusqlite::ffi::SQLITE_FULL));
        assert!(failure.is_transient() && failure.code() == "backend_unavailable");
    }

    #[test]
    fn a_broken_statement_or_an_unexpected_constraint_is_a_bug_not_a_retry() {
        assert!(!sqlite(rusqlite::ffi::SQLITE_CONSTRAINT).is_transient());
        assert!(!sqlite(rusqlite::ffi::SQLITE_ERROR).is_transient());
        assert!(!sqlx::Error::RowNotFound.is_transient());
        assert!(
            !StoreError::classified("sqlite", sqlite(rusqlite::ffi::SQLITE_ERROR)).is_transient()
        );
    }
}
