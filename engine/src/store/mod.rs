//! The event store: one trait, its backends, and the log handle built on it.
//!
//! Backends implement the small page-oriented [`EventStore`] trait; [`EventLog`] turns it into
//! what callers want: async streams that read the log in bounded pages, subscriptions that catch up
//! and then follow live appends, and the hash-chain check.
//!
//! Naming: events are facts in the past tense (`CaseOpened`), commands imperatives (`OpenCase`).

mod append;
pub mod chain;
mod error;
#[cfg(feature = "kurrentdb")]
pub mod kurrentdb;
mod log;
pub mod postgres;
pub mod sqlite;
mod types;

pub use error::{InvalidInput, StoreError, Transient};
pub use log::{ChainBreak, EventLog, VerifyReport};
pub use types::{
    AppendOutcome, ExpectedVersion, MAX_EVENTS_PER_APPEND, MAX_PAYLOAD_BYTES, Metadata, NewEvent,
    ReadAll, RecordedEvent, StreamHead, StreamId, rfc3339,
};

use async_trait::async_trait;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

/// The outcome of a queued append, to be awaited (see [`EventStore::queue_all`]).
pub type QueuedAppend = BoxFuture<'static, Result<Vec<AppendOutcome>, StoreError>>;

/// What every backend provides. Positions start at 1 and increase in commit order on every
/// backend, so a reader that has seen position `p` will never later find a new event below `p`.
/// SQLite and PostgreSQL number them densely (1, 2, 3…); KurrentDB's are derived from its log
/// offsets and leave gaps ([`EventStore::dense_positions`]).
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// `sqlite`, `postgres` or `kurrentdb`, as printed by the benchmarks.
    fn backend_name(&self) -> &'static str;

    /// Appends to several streams in one commit: every part is stored, each at its expected
    /// version, or none is (the first refusal is returned). Appending again events whose ids are
    /// stored, with the same content, returns the original outcomes. A register's number and
    /// what it numbers are stored this way, so that no number is ever handed out unused.
    async fn append_all(
        &self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.queue_all(appends)?.await
    }

    /// [`EventStore::append_all`], queued now and answered later: the appends one process
    /// queues are planned in the order it queued them, so an append may expect the version that
    /// one queued before it is to make (a register hands out its next number without waiting for
    /// the commit of the last). Refused input is refused at once.
    fn queue_all(
        &self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<QueuedAppend, StoreError>;

    /// Appends `events` to `stream` atomically if the stream is at `expected`. Appending again
    /// events whose ids are stored, with the same content, returns the original outcome.
    async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let mut outcomes = self.append_all(vec![(stream, expected, events)]).await?;
        Ok(outcomes.remove(0))
    }

    /// Up to `max` events of `stream`, from version `from_version` on, in version order.
    async fn read_stream_page(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Whether positions are dense (1, 2, 3…). Readers of a sparse log page through it by count
    /// ([`EventStore::read_page`]) rather than by ranges of positions, and nothing counts events
    /// by subtracting positions.
    fn dense_positions(&self) -> bool {
        true
    }

    /// The events matching `query`'s filters whose positions are in `from..until` (`query.from`
    /// and `query.limit` are the caller's business). Positions being committed in order, a range
    /// that ends at or below the head is complete and final once read.
    async fn read_range(
        &self,
        query: &ReadAll,
        from: u64,
        until: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `max` events of [`EventStore::read_range`]`(query, from, until)`, and where the next
    /// page starts (`until` when the range is done). The default reads `max` positions, which
    /// hold at most `max` events; a sparse backend reads by count.
    async fn read_page(
        &self,
        query: &ReadAll,
        from: u64,
        until: u64,
        max: usize,
    ) -> Result<(Vec<RecordedEvent>, u64), StoreError> {
        let end = until.min(from.saturating_add(max as u64));
        Ok((self.read_range(query, from, end).await?, end))
    }

    /// The position of the last committed event, 0 when the log is empty.
    async fn head(&self) -> Result<u64, StoreError>;

    /// Heads of up to `max` streams whose names sort after `after`, in name order.
    async fn streams_page(
        &self,
        after: Option<&StreamId>,
        max: usize,
    ) -> Result<Vec<StreamHead>, StoreError>;

    /// Returns once the head may have moved beyond `position`, or after `timeout`. Spurious
    /// returns are allowed: callers re-read.
    async fn wait_for_append(&self, position: u64, timeout: Duration);
}

/// Opens the store named by a URL: `sqlite://PATH`, `postgres://…`, or with the `kurrentdb`
/// feature `kurrentdb://HOST:2113?…` (and the client's other schemes).
pub async fn open(url: &str) -> Result<EventLog, StoreError> {
    let store: Arc<dyn EventStore> = if let Some(path) = url.strip_prefix("sqlite://") {
        Arc::new(sqlite::SqliteStore::open(path).await?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(postgres::PostgresStore::connect(url).await?)
    } else if sportello_config::is_kurrentdb_url(url) {
        #[cfg(feature = "kurrentdb")]
        {
            Arc::new(kurrentdb::KurrentStore::connect(url).await?)
        }
        #[cfg(not(feature = "kurrentdb"))]
        return Err(InvalidInput::BackendNotBuilt("kurrentdb").into());
    } else {
        let scheme = url.split("://").next().unwrap_or(url);
        return Err(InvalidInput::UnsupportedStoreUrl(format!("{scheme}://…")).into());
    };
    Ok(EventLog::new(store))
}
