//! Command handling: load a stream, decide, append with the expected version; on a conflict
//! reload and decide again (a bounded number of times).
//!
//! A command carries a client-supplied id. The ids of the events it produces are derived from it
//! (UUIDv5), so a retried command whose events are already stored is recognised and answered with
//! the original outcome instead of being decided again.

use super::Aggregate;
use crate::store::{AppendOutcome, EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use futures::TryStreamExt;
use uuid::Uuid;

const MAX_ATTEMPTS: usize = 5;
/// Payload schema version written by this code for every event type.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The domain refused the command.
    #[error(transparent)]
    Refused(E),
    /// Every attempt met a concurrent change; the caller may try again later.
    #[error("the stream {0} kept changing under the command; try again")]
    TooMuchContention(StreamId),
    /// The store failed, or a stored event could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored event {stream}@{version} cannot be decoded: {detail}")]
    Undecodable { stream: StreamId, version: u64, detail: String },
}

/// What a handled command left behind.
#[derive(Debug, Clone)]
pub struct Handled<A: Aggregate> {
    pub state: A,
    pub events: Vec<A::Event>,
    /// Where the events landed; `None` when the command produced no event.
    pub outcome: Option<AppendOutcome>,
    /// True when the command had already been handled (a retry): nothing new was stored.
    pub repeated: bool,
}

#[derive(Clone)]
pub struct CommandHandler {
    log: EventLog,
}

impl CommandHandler {
    pub fn new(log: EventLog) -> Self {
        Self { log }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The current state of a stream and its version.
    pub async fn load<A: Aggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<(A, u64, Vec<Uuid>), CommandError<A::Error>> {
        let mut state = A::default();
        let mut version = 0;
        let mut ids = Vec::new();
        let mut events = self.log.read_stream(stream.clone(), 1);
        while let Some(recorded) = events.try_next().await? {
            if recorded.schema_version > SCHEMA_VERSION {
                return Err(CommandError::Undecodable {
                    stream: stream.clone(),
                    version: recorded.version,
                    detail: format!("schema version {} is newer than this program", recorded.schema_version),
                });
            }
            let event: A::Event = recorded.decode().map_err(|e| CommandError::Undecodable {
                stream: stream.clone(),
                version: recorded.version,
                detail: e.to_string(),
            })?;
            state = state.evolve(&event);
            version = recorded.version;
            ids.push(recorded.id);
        }
        Ok((state, version, ids))
    }

    /// Handles `command` on the stream `A::CATEGORY-id`.
    pub async fn handle<A: Aggregate>(
        &self,
        id: impl std::fmt::Display,
        command_id: Uuid,
        metadata: Metadata,
        command: &A::Command,
    ) -> Result<Handled<A>, CommandError<A::Error>> {
        let stream = StreamId::new(A::CATEGORY, id).map_err(StoreError::from)?;
        for _ in 0..MAX_ATTEMPTS {
            let (state, version, ids) = self.load::<A>(&stream).await?;
            if ids.contains(&event_id(command_id, 0)) {
                return Ok(Handled { state, events: Vec::new(), outcome: None, repeated: true });
            }
            let events = state.decide(command).map_err(CommandError::Refused)?;
            if events.is_empty() {
                return Ok(Handled { state, events, outcome: None, repeated: false });
            }
            let metadata = Metadata { causation_id: Some(command_id), ..metadata.clone() };
            let new_events = events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    NewEvent::new(A::event_type(e), e)
                        .map(|n| n.with_id(event_id(command_id, i)).with_metadata(metadata.clone()))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)?;
            match self.log.append(stream.clone(), ExpectedVersion::Exact(version), new_events).await {
                Ok(outcome) => {
                    let state = events.iter().fold(state, |s, e| s.evolve(e));
                    return Ok(Handled { state, events, outcome: Some(outcome), repeated: false });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::TooMuchContention(stream))
    }
}

/// The id of the `index`-th event produced by a command.
pub fn event_id(command_id: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(&command_id, &(index as u64).to_be_bytes())
}
