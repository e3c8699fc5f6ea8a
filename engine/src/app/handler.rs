//! Command handling: load a stream, decide, append with the expected version; on a conflict
//! reload and decide again (a bounded number of times).
//!
//! A command carries a client-supplied id. The ids of the events it produces are derived from it
//! (UUIDv5), so a retried command whose events are already stored is recognised and answered with
//! the original outcome instead of being decided again.

use crate::domain::Aggregate;
use crate::store::{
    AppendOutcome, EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId,
};
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
    Undecodable {
        stream: StreamId,
        version: u64,
        detail: String,
    },
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
                    detail: format!(
                        "schema version {} is newer than this program",
                        recorded.schema_version
                    ),
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

    /// Handles `command` on the stream `A::CATEGORY-id`; its events occur now.
    pub async fn handle<A: Aggregate>(
        &self,
        id: impl std::fmt::Display,
        command_id: Uuid,
        metadata: Metadata,
        command: &A::Command,
    ) -> Result<Handled<A>, CommandError<A::Error>> {
        self.handle_at(id, command_id, metadata, None, command)
            .await
    }

    /// As [`CommandHandler::handle`], for facts recorded after they happened (`occurred_at`).
    pub async fn handle_at<A: Aggregate>(
        &self,
        id: impl std::fmt::Display,
        command_id: Uuid,
        metadata: Metadata,
        occurred_at: Option<chrono::DateTime<chrono::Utc>>,
        command: &A::Command,
    ) -> Result<Handled<A>, CommandError<A::Error>> {
        self.handle_with(id, command_id, metadata, occurred_at, command, Vec::new())
            .await
    }

    /// As [`CommandHandler::handle_at`], storing `also` in the same commit as the command's
    /// events (a register's number with what it numbers). A conflict on one of `also`'s streams
    /// is returned as it is, for the caller to look again; one on the command's own stream is
    /// decided again, as always.
    #[tracing::instrument(name = "command", skip_all,
        fields(category = A::CATEGORY, id = %id, command_id = %command_id))]
    pub async fn handle_with<A: Aggregate>(
        &self,
        id: impl std::fmt::Display,
        command_id: Uuid,
        metadata: Metadata,
        occurred_at: Option<chrono::DateTime<chrono::Utc>>,
        command: &A::Command,
        also: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Handled<A>, CommandError<A::Error>> {
        let stream = StreamId::new(A::CATEGORY, id).map_err(StoreError::from)?;
        for _ in 0..MAX_ATTEMPTS {
            let loaded = self.load::<A>(&stream).await?;
            let (append, decided) =
                match decide(&stream, loaded, command_id, &metadata, occurred_at, command)? {
                    Decision::Done(handled) => return Ok(handled),
                    Decision::Append { append, decided } => (append, decided),
                };
            let mut appends = vec![append];
            appends.extend(also.iter().cloned());
            match self.log.append_all(appends).await {
                Ok(mut outcomes) => return Ok(decided.appended(outcomes.remove(0))),
                Err(StoreError::Conflict { stream: s, .. }) if s == stream => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::TooMuchContention(stream))
    }
}

/// What a command decided on the state loaded from its stream, before anything is stored.
pub enum Decision<A: Aggregate> {
    /// Nothing to store: the command was handled before (a retry), or changes nothing.
    Done(Handled<A>),
    /// Events to append at the version the state was loaded at; `decided` answers once they are.
    Append {
        append: (StreamId, ExpectedVersion, Vec<NewEvent>),
        decided: Decided<A>,
    },
}

/// What a decision becomes once its events are stored.
pub struct Decided<A: Aggregate> {
    state: A,
    events: Vec<A::Event>,
}

impl<A: Aggregate> Decided<A> {
    /// The command's outcome, its events stored at `outcome`.
    pub fn appended(self, outcome: AppendOutcome) -> Handled<A> {
        let state = self.events.iter().fold(self.state, |s, e| s.evolve(e));
        Handled {
            state,
            events: self.events,
            outcome: Some(outcome),
            repeated: false,
        }
    }
}

/// Decides `command` on `loaded` (what [`CommandHandler::load`] read of `stream`): pure, so that
/// a caller may decide while holding a register's turn and append after letting it go.
pub fn decide<A: Aggregate>(
    stream: &StreamId,
    (state, version, ids): (A, u64, Vec<Uuid>),
    command_id: Uuid,
    metadata: &Metadata,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    command: &A::Command,
) -> Result<Decision<A>, CommandError<A::Error>> {
    if ids.contains(&event_id(command_id, 0)) {
        return Ok(Decision::Done(Handled {
            state,
            events: Vec::new(),
            outcome: None,
            repeated: true,
        }));
    }
    let events = state.decide(command).map_err(CommandError::Refused)?;
    if events.is_empty() {
        return Ok(Decision::Done(Handled {
            state,
            events,
            outcome: None,
            repeated: false,
        }));
    }
    let metadata = Metadata {
        causation_id: Some(command_id),
        ..metadata.clone()
    };
    let new_events = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            NewEvent::new(A::event_type(e), e).map(|n| {
                let n = n
                    .with_id(event_id(command_id, i))
                    .with_metadata(metadata.clone());
                match occurred_at {
                    Some(at) => n.occurred_at(at),
                    None => n,
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::from)?;
    Ok(Decision::Append {
        append: (stream.clone(), ExpectedVersion::Exact(version), new_events),
        decided: Decided { state, events },
    })
}

/// The id of the `index`-th event produced by a command.
pub fn event_id(command_id: Uuid, index: usize) -> Uuid {
    Uuid::new_v5(&command_id, &(index as u64).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::case::{
        Case, CaseCommand, CaseError, CaseEvent, CaseKind, CaseStatus, Channel, OpenCase,
    };
    use crate::vault::Sealed;
    use chrono::{NaiveDate, TimeZone, Utc};
    use std::sync::Arc;

    async fn handler(dir: &std::path::Path) -> CommandHandler {
        CommandHandler::new(EventLog::new(Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.join("h.db"))
                .await
                .unwrap(),
        )))
    }

    fn open() -> CaseCommand {
        CaseCommand::Open(OpenCase {
            code: "STA-2026-000001".into(),
            comune: "073029".into(),
            kind: CaseKind::Reclamo,
            channel: Channel::Sportello,
            service: None,
            subject: Sealed {
                subject: Uuid::nil(),
                nonce: String::new(),
                ciphertext: String::new(),
            },
            description: None,
            citizen: None,
            received_at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
            term_days: 30,
            due_on: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            access_key_hash: None,
        })
    }

    fn take() -> CaseCommand {
        CaseCommand::TakeInCharge {
            office: "URP".into(),
            at: Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap(),
            expected_by: NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_command_appends_its_events_with_the_actor_and_its_id_as_causation() {
        let dir = tempfile::tempdir().unwrap();
        let h = handler(dir.path()).await;
        let case_id = Uuid::now_v7();
        let command_id = Uuid::now_v7();
        let meta = Metadata {
            actor: Some("staff:lippolis".into()),
            comune: Some("073029".into()),
            ..Metadata::default()
        };
        let done = h
            .handle::<Case>(case_id, command_id, meta, &open())
            .await
            .unwrap();
        assert_eq!(done.state.status, CaseStatus::Received);
        assert_eq!(done.outcome.unwrap().last_version, 1);
        let stored: Vec<_> = h
            .log()
            .read_stream(StreamId::new("case", case_id).unwrap(), 1)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(stored[0].event_type, "CaseOpened");
        assert_eq!(stored[0].id, event_id(command_id, 0));
        assert_eq!(stored[0].metadata.causation_id, Some(command_id));
        assert_eq!(stored[0].metadata.actor.as_deref(), Some("staff:lippolis"));
        assert!(matches!(
            stored[0].decode::<CaseEvent>().unwrap(),
            CaseEvent::CaseOpened { .. }
        ));
    }

    #[tokio::test]
    async fn a_retried_command_is_recognised_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let h = handler(dir.path()).await;
        let (case_id, command_id) = (Uuid::now_v7(), Uuid::now_v7());
        h.handle::<Case>(case_id, command_id, Metadata::default(), &open())
            .await
            .unwrap();
        let again = h
            .handle::<Case>(case_id, command_id, Metadata::default(), &open())
            .await
            .unwrap();
        assert!(again.repeated);
        assert_eq!(h.log().head().await.unwrap(), 1);
        // A new command id for the same opening is a real second attempt, and is refused.
        let err = h
            .handle::<Case>(case_id, Uuid::now_v7(), Metadata::default(), &open())
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            CommandError::Refused(CaseError::AlreadyOpened)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commands_on_one_case_are_decided_again_after_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let h = handler(dir.path()).await;
        let case_id = Uuid::now_v7();
        h.handle::<Case>(case_id, Uuid::now_v7(), Metadata::default(), &open())
            .await
            .unwrap();
        h.handle::<Case>(case_id, Uuid::now_v7(), Metadata::default(), &take())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|n| {
                let h = h.clone();
                tokio::spawn(async move {
                    let assign = CaseCommand::Assign {
                        operator: format!("operatore{n}"),
                    };
                    h.handle::<Case>(case_id, Uuid::now_v7(), Metadata::default(), &assign)
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let (state, version, _) = h
            .load::<Case>(&StreamId::new("case", case_id).unwrap())
            .await
            .unwrap();
        assert_eq!((state.status, version), (CaseStatus::Assigned, 6));
    }
}
