//! How the engine's vocabulary maps onto KurrentDB's, apart from the network so that every rule
//! is tested without a server (none can run where this is built; see ADR 0010).
//!
//! - **Streams**: the engine's `category-id` names, behind an optional prefix that lets several
//!   installations (or test runs) share one server.
//! - **Versions**: KurrentDB counts revisions from 0, the engine versions from 1.
//! - **Positions**: a KurrentDB `$all` position is a byte offset in its log; the engine's position
//!   of an event is `2 × offset + 2`. Positions are thus increasing but sparse (never adjacent),
//!   and both `p` (an event's own position) and `p + 1` (what a reader asks for after it) map back
//!   to the event's offset, a record boundary: KurrentDB refuses a read that starts anywhere else.
//! - **The envelope**: what the engine records beside the payload (schema version, times, hash,
//!   actor and the rest of [`Metadata`]) is a JSON object in the event's custom metadata, every
//!   value a string so that it survives protocol v2's `google.protobuf.Value` properties as is.

use super::super::error::{InvalidInput, StoreError};
use super::super::types::{Metadata, ReadAll, RecordedEvent, StreamId, rfc3339};
use chrono::{DateTime, Utc};
use kurrentdb::{Position, StreamPosition, StreamState, SubscriptionFilter};
use serde::{Deserialize, Serialize};

pub(super) const BACKEND: &str = "kurrentdb";
/// The envelope's format, so that a later one can be told apart.
const ENVELOPE_FORMAT: &str = "1";

/// Stream names as KurrentDB sees them: the engine's, behind `prefix`.
#[derive(Debug, Clone, Default)]
pub(super) struct Names {
    prefix: String,
}

impl Names {
    /// `prefix` must be lower-case letters, digits and `_`: it becomes part of every stream name
    /// and of the server-side filters.
    pub fn new(prefix: &str) -> Result<Self, InvalidInput> {
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(InvalidInput::MalformedFilter(format!(
                "the KurrentDB stream prefix '{prefix}' may hold only a-z, 0-9 and _"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub fn outside(&self, stream: &StreamId) -> String {
        format!("{}{}", self.prefix, stream.as_str())
    }

    /// The engine's stream, or `None` for a stream sportello did not write (another
    /// application's, a system stream, another prefix's).
    pub fn inside(&self, name: &str) -> Option<StreamId> {
        let name = name.strip_prefix(self.prefix.as_str())?;
        StreamId::parse(name).ok()
    }

    /// The server-side filter for `query`; what it cannot express (event types beside categories,
    /// times, positions) is checked again on each event with [`ReadAll::matches`].
    pub fn filter(&self, query: &ReadAll) -> SubscriptionFilter {
        if !query.categories.is_empty() {
            let mut filter = SubscriptionFilter::on_stream_name();
            for category in &query.categories {
                filter = filter.add_prefix(format!("{}{category}-", self.prefix));
            }
            filter
        } else if !query.event_types.is_empty() && self.prefix.is_empty() {
            SubscriptionFilter::on_event_type().regex(event_types_regex(&query.event_types))
        } else {
            self.everything()
        }
    }

    /// Every event of this installation: its prefix, or without one everything but the server's
    /// own (`$`-prefixed) events.
    pub fn everything(&self) -> SubscriptionFilter {
        if self.prefix.is_empty() {
            SubscriptionFilter::on_event_type().exclude_system_events()
        } else {
            SubscriptionFilter::on_stream_name().add_prefix(&self.prefix)
        }
    }
}

/// `^(?:A|B)$` with the dots of the names escaped (event types hold letters, digits, `_`, `.`).
fn event_types_regex(types: &[String]) -> String {
    let alternatives: Vec<String> = types.iter().map(|t| t.replace('.', "\\.")).collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// The engine's position of an event at `position` in KurrentDB's log.
pub(super) fn engine_position(position: Position) -> Result<u64, StoreError> {
    // The server keeps offsets as signed 64-bit numbers; u64::MAX stands for "none" (a stream
    // read from a server too old to report positions).
    if position.commit > i64::MAX as u64 / 2 {
        return Err(StoreError::backend(
            BACKEND,
            format!(
                "the server reported no $all position for an event (offset {}): KurrentDB 22.10 or later is needed",
                position.commit
            ),
        ));
    }
    Ok(position.commit * 2 + 2)
}

/// Where a forward read of `$all` starts for the events at engine positions `from` and after:
/// the offset of the event whose position is `from` or `from - 1`, or the log's start.
pub(super) fn read_start(from: u64) -> StreamPosition<Position> {
    if from <= 2 {
        return StreamPosition::Start;
    }
    let offset = (from - 2) / 2;
    StreamPosition::Position(Position {
        commit: offset,
        prepare: offset,
    })
}

/// The expectation an append sends: the exact state the writer read (the hash chain is computed
/// from it), so that a concurrent writer in between makes the server refuse the append.
pub(super) fn stream_state(version: Option<u64>) -> StreamState {
    match version {
        None | Some(0) => StreamState::NoStream,
        Some(v) => StreamState::StreamRevision(v - 1),
    }
}

/// The same expectation in protocol v2's numbers: a revision, or -1 for "no stream".
pub(super) fn expected_revision(version: Option<u64>) -> i64 {
    match version {
        None | Some(0) => -1,
        Some(v) => (v - 1) as i64,
    }
}

pub(super) fn engine_version(revision: u64) -> u64 {
    revision + 1
}

/// Where a forward read of a stream starts for engine version `from_version` (≥ 1).
pub(super) fn stream_start(from_version: u64) -> StreamPosition<u64> {
    StreamPosition::Position(from_version.max(1) - 1)
}

/// What the engine records beside the payload. Strings only: see the module's documentation.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Envelope {
    pub sportello: String,
    pub schema: String,
    pub occurred_at: String,
    pub recorded_at: String,
    pub hash: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comune: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub causation_id: Option<String>,
}

impl Envelope {
    pub fn of(event: &RecordedEvent) -> Self {
        let m = &event.metadata;
        Self {
            sportello: ENVELOPE_FORMAT.into(),
            schema: event.schema_version.to_string(),
            occurred_at: rfc3339(event.occurred_at),
            recorded_at: rfc3339(event.recorded_at),
            hash: hex::encode(event.hash),
            actor: m.actor.clone(),
            comune: m.comune.clone(),
            channel: m.channel.clone(),
            correlation_id: m.correlation_id.map(|u| u.to_string()),
            causation_id: m.causation_id.map(|u| u.to_string()),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an envelope of strings serialises")
    }
}

/// What a stored event is made of, as the client hands it over.
pub(super) struct Stored<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub id: uuid::Uuid,
    pub event_type: &'a str,
    pub data: &'a [u8],
    pub custom_metadata: &'a [u8],
    pub position: Position,
}

impl<'a> From<&'a kurrentdb::RecordedEvent> for Stored<'a> {
    fn from(e: &'a kurrentdb::RecordedEvent) -> Self {
        Self {
            stream: e.stream_id(),
            revision: e.revision,
            id: e.id,
            event_type: &e.event_type,
            data: &e.data,
            custom_metadata: &e.custom_metadata,
            position: e.position,
        }
    }
}

/// The engine's event, `Ok(None)` for an event sportello did not write, or `Corrupt` for one in
/// sportello's streams that cannot be read back.
pub(super) fn decode(
    names: &Names,
    stored: Stored<'_>,
) -> Result<Option<RecordedEvent>, StoreError> {
    let Some(stream) = names.inside(stored.stream) else {
        return Ok(None);
    };
    let version = engine_version(stored.revision);
    let corrupt = |detail: String| StoreError::Corrupt {
        stream: stream.to_string(),
        version,
        detail,
    };
    let envelope: Envelope = serde_json::from_slice(stored.custom_metadata)
        .map_err(|e| corrupt(format!("the metadata is not sportello's envelope: {e}")))?;
    if envelope.sportello != ENVELOPE_FORMAT {
        return Err(corrupt(format!(
            "envelope format '{}' is not one this version reads",
            envelope.sportello
        )));
    }
    let time = |field: &str, text: &str| -> Result<DateTime<Utc>, StoreError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt(format!("{field} '{text}': {e}")))
    };
    let uuid = |field: &str, text: &Option<String>| -> Result<Option<uuid::Uuid>, StoreError> {
        text.as_deref()
            .map(|t| {
                t.parse()
                    .map_err(|e| corrupt(format!("{field} '{t}': {e}")))
            })
            .transpose()
    };
    let hash: [u8; 32] = hex::decode(&envelope.hash)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| corrupt(format!("hash '{}' is not 32 bytes of hex", envelope.hash)))?;
    let data = String::from_utf8(stored.data.to_vec())
        .map_err(|_| corrupt("the payload is not UTF-8".into()))?;
    Ok(Some(RecordedEvent {
        position: engine_position(stored.position)?,
        version,
        id: stored.id,
        event_type: stored.event_type.to_owned(),
        schema_version: envelope
            .schema
            .parse()
            .map_err(|_| corrupt(format!("schema version '{}'", envelope.schema)))?,
        occurred_at: time("occurred_at", &envelope.occurred_at)?,
        recorded_at: time("recorded_at", &envelope.recorded_at)?,
        metadata: Metadata {
            correlation_id: uuid("correlation_id", &envelope.correlation_id)?,
            causation_id: uuid("causation_id", &envelope.causation_id)?,
            actor: envelope.actor,
            comune: envelope.comune,
            channel: envelope.channel,
        },
        data,
        hash,
        stream,
    }))
}

/// A client error as the engine reports it: what may pass if tried again, and what will not.
pub(super) fn store_error(error: kurrentdb::Error) -> StoreError {
    use kurrentdb::Error as E;
    let detail = error.to_string();
    let unavailable = |detail: String| StoreError::Unavailable {
        backend: BACKEND,
        detail,
    };
    match error {
        E::ConnectionClosed | E::GrpcConnectionError(_) | E::DeadlineExceeded => {
            unavailable(detail)
        }
        E::NotLeaderException(leader) => unavailable(format!(
            "this node is not the cluster's leader (the leader is {}:{}): writes go to the leader",
            leader.host, leader.port
        )),
        E::Grpc { code, .. } if grpc_transient(code) => unavailable(detail),
        E::AccessDenied => StoreError::backend(
            BACKEND,
            "access denied: the user in the store URL may not read $all or write these streams",
        ),
        E::ResourceDeleted => StoreError::backend(
            BACKEND,
            "a stream was deleted on the server outside sportello: the log must not lose events",
        ),
        _ => StoreError::backend(BACKEND, detail),
    }
}

/// Statuses worth trying again. Not `Aborted`: protocol v2 uses it for a transaction too large,
/// which stays too large.
pub(super) fn grpc_transient(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chain::{GENESIS, event_hash};
    use chrono::TimeZone;

    fn names(prefix: &str) -> Names {
        Names::new(prefix).unwrap()
    }

    fn event() -> RecordedEvent {
        let mut e = RecordedEvent {
            position: 2 * 4_096 + 2,
            stream: StreamId::parse("case-0190a1b2-c3d4").unwrap(),
            version: 3,
            id: uuid::Uuid::now_v7(),
            event_type: "CaseOpened".into(),
            schema_version: 2,
            occurred_at: Utc.timestamp_micros(1_765_000_000_123_456).unwrap(),
            recorded_at: Utc.timestamp_micros(1_765_000_001_000_001).unwrap(),
            data: r#"{"oggetto":"Buca in via Roma — è urgente","n":1}"#.into(),
            metadata: Metadata {
                actor: Some("staff:rossi".into()),
                comune: Some("073019".into()),
                channel: None,
                correlation_id: Some(uuid::Uuid::now_v7()),
                causation_id: None,
            },
            hash: [0; 32],
        };
        e.hash = event_hash(&GENESIS, &e);
        e
    }

    fn stored<'a>(e: &'a RecordedEvent, name: &'a str, metadata: &'a [u8]) -> Stored<'a> {
        Stored {
            stream: name,
            revision: e.version - 1,
            id: e.id,
            event_type: &e.event_type,
            data: e.data.as_bytes(),
            custom_metadata: metadata,
            position: Position {
                commit: 4_096,
                prepare: 4_096,
            },
        }
    }

    #[test]
    fn an_event_goes_out_and_comes_back_the_same_hash_included() {
        let e = event();
        let n = names("t42_");
        let name = n.outside(&e.stream);
        assert_eq!(name, "t42_case-0190a1b2-c3d4");
        let metadata = serde_json::to_vec(&Envelope::of(&e)).unwrap();
        let back = decode(&n, stored(&e, &name, &metadata)).unwrap().unwrap();
        assert_eq!(back, e);
        assert_eq!(
            event_hash(&GENESIS, &back),
            e.hash,
            "the chain still verifies"
        );
    }

    #[test]
    fn the_envelope_holds_only_strings_and_leaves_out_what_is_absent() {
        let json = Envelope::of(&event()).to_json();
        let object = json.as_object().unwrap();
        assert!(object.values().all(|v| v.is_string()), "{json}");
        assert_eq!(object["schema"], "2");
        assert_eq!(object["occurred_at"], "2025-12-06T05:46:40.123456Z");
        assert!(!object.contains_key("channel") && !object.contains_key("causation_id"));
    }

    #[test]
    fn other_applications_events_are_skipped_and_a_damaged_envelope_is_corrupt() {
        let e = event();
        let n = names("t42_");
        let metadata = serde_json::to_vec(&Envelope::of(&e)).unwrap();
        for foreign in [
            "case-0190a1b2-c3d4",
            "$stats-127.0.0.1:2113",
            "t42_nodash",
            "t7_case-1",
        ] {
            assert!(
                decode(&n, stored(&e, foreign, &metadata))
                    .unwrap()
                    .is_none(),
                "{foreign}"
            );
        }
        let name = n.outside(&e.stream);
        let mut envelope = Envelope::of(&e);
        envelope.hash = "abcd".into();
        let damaged = [
            b"not json".to_vec(),
            b"{}".to_vec(),
            serde_json::to_vec(&envelope).unwrap(),
            serde_json::to_vec(&Envelope {
                sportello: "9".into(),
                ..Envelope::of(&e)
            })
            .unwrap(),
        ];
        for metadata in damaged {
            let err = decode(&n, stored(&e, &name, &metadata)).unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt { stream, version: 3, .. } if stream == "case-0190a1b2-c3d4"),
                "{err:?}"
            );
        }
        let err = decode(
            &n,
            Stored {
                data: &[0xff, 0xfe],
                ..stored(&e, &name, &serde_json::to_vec(&Envelope::of(&e)).unwrap())
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), "stored_event_corrupt");
    }

    #[test]
    fn positions_are_sparse_increasing_and_read_back_from_a_record_boundary() {
        let at = |commit| Position {
            commit,
            prepare: commit,
        };
        let offsets = [0u64, 1, 118, 119, 1_000_000_007];
        let positions: Vec<u64> = offsets
            .iter()
            .map(|&o| engine_position(at(o)).unwrap())
            .collect();
        assert_eq!(
            positions[0], 2,
            "the first possible event is past 0, which means 'none'"
        );
        assert!(
            positions.windows(2).all(|w| w[1] > w[0] + 1),
            "never adjacent: {positions:?}"
        );
        for (&offset, &position) in offsets.iter().zip(&positions) {
            // A reader asks for the event itself, or for what comes after it: both start at it.
            for from in [position, position + 1] {
                match read_start(from) {
                    StreamPosition::Start => assert_eq!(offset, 0),
                    StreamPosition::Position(p) => {
                        assert_eq!((p.commit, p.prepare), (offset, offset))
                    }
                    StreamPosition::End => panic!("a forward read never starts at the end"),
                }
            }
        }
        assert!(matches!(read_start(0), StreamPosition::Start));
        assert!(matches!(read_start(1), StreamPosition::Start));
        let none = engine_position(at(u64::MAX)).unwrap_err();
        assert!(none.to_string().contains("22.10"), "{none}");
    }

    #[test]
    fn versions_and_expectations_count_from_one_on_our_side_and_zero_on_theirs() {
        assert_eq!(stream_state(None), StreamState::NoStream);
        assert_eq!(stream_state(Some(0)), StreamState::NoStream);
        assert_eq!(stream_state(Some(1)), StreamState::StreamRevision(0));
        assert_eq!(stream_state(Some(42)), StreamState::StreamRevision(41));
        assert_eq!(expected_revision(None), -1);
        assert_eq!(expected_revision(Some(42)), 41);
        assert_eq!(engine_version(0), 1);
        assert!(matches!(stream_start(1), StreamPosition::Position(0)));
        assert!(matches!(stream_start(0), StreamPosition::Position(0)));
        assert!(matches!(stream_start(10), StreamPosition::Position(9)));
    }

    #[test]
    fn filters_go_to_the_server_where_it_can_apply_them() {
        let query = |categories: &[&str], types: &[&str]| ReadAll {
            categories: categories.iter().map(|c| c.to_string()).collect(),
            event_types: types.iter().map(|c| c.to_string()).collect(),
            ..ReadAll::default()
        };
        let debug = |f: SubscriptionFilter| format!("{f:?}");
        let plain = names("");
        let cases = debug(plain.filter(&query(&["case", "feedback"], &["CaseOpened"])));
        assert!(
            cases.contains("\"case-\"") && cases.contains("\"feedback-\""),
            "{cases}"
        );
        let types = debug(plain.filter(&query(&[], &["CaseOpened", "x.Y"])));
        assert!(types.contains(r"^(?:CaseOpened|x\\.Y)$"), "{types}");
        let all = debug(plain.filter(&query(&[], &[])));
        assert!(
            all.contains(r"^[^\\$]"),
            "system events are left out: {all}"
        );
        let prefixed = names("t42_");
        let cases = debug(prefixed.filter(&query(&["case"], &[])));
        assert!(cases.contains("\"t42_case-\""), "{cases}");
        // With a prefix the stream filter is the one the server gets; types are checked here.
        let types = debug(prefixed.filter(&query(&[], &["CaseOpened"])));
        assert!(
            types.contains("\"t42_\"") && !types.contains("CaseOpened"),
            "{types}"
        );
        assert!(Names::new("T-1").is_err() && Names::new("").is_ok());
    }

    #[test]
    fn failures_that_may_pass_are_unavailable_and_the_rest_are_backend_failures() {
        use kurrentdb::Error as E;
        for e in [
            E::ConnectionClosed,
            E::DeadlineExceeded,
            E::Grpc {
                code: tonic::Code::Unavailable,
                message: "restarting".into(),
            },
        ] {
            assert!(store_error(e).is_transient());
        }
        let denied = store_error(E::AccessDenied);
        assert!(!denied.is_transient() && denied.to_string().contains("access denied"));
        let deleted = store_error(E::ResourceDeleted);
        assert_eq!(deleted.code(), "backend_failure");
        for code in [tonic::Code::InvalidArgument, tonic::Code::Aborted] {
            let message = "refused".into();
            assert!(
                !store_error(E::Grpc { code, message }).is_transient(),
                "{code:?}"
            );
        }
    }
}
