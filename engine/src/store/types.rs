//! The vocabulary of the log: stream ids, expectations, the envelope of an event.

use super::error::InvalidInput;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Largest JSON payload one event may carry. Attachments never go in the log, so a payload past
/// this is a bug or an abuse, not a legitimate case.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most events one append may carry (a batch beyond this is split by the caller).
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;
const MAX_STREAM_ID_LEN: usize = 200;
const MAX_CATEGORY_LEN: usize = 50;
const MAX_EVENT_TYPE_LEN: usize = 100;
const MAX_METADATA_FIELD_LEN: usize = 200;

/// A stream's name, `category-id`: `case-0190…`, `service-anagrafe.residenza`.
///
/// The category (lower-case letters, digits and `_`, starting with a letter) is everything before
/// the first `-`; the id after it may itself contain `-` (UUIDs do) and `. _ :`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(String);

impl StreamId {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let malformed = |reason: &str| InvalidInput::MalformedStreamId {
            raw: raw.chars().take(MAX_STREAM_ID_LEN).collect(),
            reason: reason.to_owned(),
        };
        if raw.is_empty() {
            return Err(InvalidInput::EmptyStreamId);
        }
        if raw.len() > MAX_STREAM_ID_LEN {
            return Err(malformed("longer than 200 bytes"));
        }
        let Some((category, id)) = raw.split_once('-') else {
            return Err(malformed("expected `category-id`, found no `-`"));
        };
        Self::check_category(category).map_err(|r| malformed(&r))?;
        if id.is_empty() {
            return Err(malformed("the id after `-` is empty"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return Err(malformed(
                "the id may hold only ASCII letters, digits and - _ . :",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// `category-id` from its parts, validated like [`StreamId::parse`].
    pub fn new(category: &str, id: impl fmt::Display) -> Result<Self, InvalidInput> {
        Self::parse(&format!("{category}-{id}"))
    }

    /// Checks a category name as used in filters.
    pub fn check_category(category: &str) -> Result<(), String> {
        let mut bytes = category.bytes();
        match bytes.next() {
            None => return Err("the category before `-` is empty".into()),
            Some(b) if !b.is_ascii_lowercase() => {
                return Err("the category must start with a lower-case letter".into());
            }
            _ => {}
        }
        if category.len() > MAX_CATEGORY_LEN {
            return Err("the category is longer than 50 bytes".into());
        }
        if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err("the category may hold only a-z, 0-9 and _".into());
        }
        Ok(())
    }

    /// For names read back from a store, which were validated when they were written.
    pub(crate) fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or(&self.0, |(c, _)| c)
    }

    pub fn id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

impl std::str::FromStr for StreamId {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Self::parse(s)
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// What the writer believes about the stream, checked atomically with the append.
/// Versions count from 1; a stream with no events is at version 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check (for streams with a single writer by construction, e.g. feedback).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version (`Exact(0)` is the same as `NoStream`).
    Exact(u64),
}

impl ExpectedVersion {
    pub(crate) fn admits(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::Exact(n) => actual.unwrap_or(0) == n,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(n) => write!(f, "version {n}"),
        }
    }
}

/// Who and what caused an event; every field is optional because a system event has no actor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The acting user or process, e.g. `staff:rossi` or `citizen` or `system:demo`.
    pub actor: Option<String>,
    /// ISTAT code of the comune the event belongs to.
    pub comune: Option<String>,
    /// Contact channel (sportello, telefono, web…).
    pub channel: Option<String>,
    /// The request or process the event is part of.
    pub correlation_id: Option<Uuid>,
    /// The command or event that directly caused this one.
    pub causation_id: Option<Uuid>,
}

/// An event as the caller hands it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Chosen by the caller (UUIDv7) so that retrying an append is idempotent.
    pub id: Uuid,
    /// Past tense, e.g. `CaseOpened`.
    pub event_type: String,
    /// Version of the payload's shape; old versions are upcast on read, never rewritten.
    pub schema_version: u16,
    /// When it happened in the world (the counter meeting), which may precede recording.
    pub occurred_at: DateTime<Utc>,
    /// The payload: the text of a JSON object.
    pub data: String,
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event with a fresh UUIDv7, schema version 1, occurring now.
    pub fn new(event_type: impl Into<String>, data: &impl Serialize) -> Result<Self, InvalidInput> {
        let data = serde_json::to_string(data).map_err(|e| InvalidInput::PayloadNotJson {
            index: 0,
            detail: e.to_string(),
        })?;
        Ok(Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            occurred_at: Utc::now(),
            data,
            metadata: Metadata::default(),
        })
    }

    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    pub fn with_schema_version(mut self, version: u16) -> Self {
        self.schema_version = version;
        self
    }

    pub fn occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = at;
        self
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Checks what the store requires and truncates `occurred_at` to the microseconds it keeps.
    pub(crate) fn validate(&mut self, index: usize) -> Result<(), InvalidInput> {
        if self.event_type.is_empty() {
            return Err(InvalidInput::EmptyEventType { index });
        }
        if self.event_type.len() > MAX_EVENT_TYPE_LEN
            || !self
                .event_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
        {
            return Err(InvalidInput::MalformedEventType {
                index,
                event_type: self.event_type.chars().take(MAX_EVENT_TYPE_LEN).collect(),
            });
        }
        if self.schema_version == 0 {
            return Err(InvalidInput::SchemaVersionZero { index });
        }
        if self.data.len() > MAX_PAYLOAD_BYTES {
            return Err(InvalidInput::PayloadTooLarge {
                index,
                size: self.data.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        check_json_object(&self.data, index)?;
        for (field, value) in [
            ("actor", &self.metadata.actor),
            ("comune", &self.metadata.comune),
            ("channel", &self.metadata.channel),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.len() > MAX_METADATA_FIELD_LEN)
            {
                return Err(InvalidInput::MetadataTooLong { index, field });
            }
        }
        self.occurred_at = truncate_to_micros(self.occurred_at);
        Ok(())
    }
}

fn check_json_object(text: &str, index: usize) -> Result<(), InvalidInput> {
    // Parse without building a tree: validity is all the store needs.
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| {
        InvalidInput::PayloadNotJson {
            index,
            detail: e.to_string(),
        }
    })?;
    if text.trim_start().starts_with('{') {
        Ok(())
    } else {
        Err(InvalidInput::PayloadNotObject { index })
    }
}

/// An event as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Place in the whole log: dense, from 1, and in commit order on every backend.
    pub position: u64,
    pub stream: StreamId,
    /// Place in its stream, from 1.
    pub version: u64,
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    /// When the store took it; the same for every event of one commit.
    pub recorded_at: DateTime<Utc>,
    pub data: String,
    pub metadata: Metadata,
    /// SHA-256 over this event's content and the previous event's hash in the stream.
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// Decodes the payload into the reader's own type, borrowing strings where it can.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> serde_json::Result<T> {
        serde_json::from_str(&self.data)
    }

    /// The JSON Lines form of `sportello replay` (one object, keys in a fixed order).
    pub fn to_json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            position: u64,
            stream: &'a str,
            version: u64,
            id: Uuid,
            #[serde(rename = "type")]
            event_type: &'a str,
            schema: u16,
            occurred_at: String,
            recorded_at: String,
            data: &'a serde_json::value::RawValue,
            metadata: &'a Metadata,
        }
        let fallback;
        let data: &serde_json::value::RawValue = match serde_json::from_str(&self.data) {
            Ok(raw) => raw,
            Err(_) => {
                // Never produced by the store (payloads are checked on append); keep the line valid.
                fallback = serde_json::value::RawValue::from_string(
                    serde_json::to_string(&self.data).unwrap_or_else(|_| "null".into()),
                )
                .expect("a JSON string literal is valid JSON");
                &fallback
            }
        };
        serde_json::to_string(&Line {
            position: self.position,
            stream: self.stream.as_str(),
            version: self.version,
            id: self.id,
            event_type: &self.event_type,
            schema: self.schema_version,
            occurred_at: rfc3339(self.occurred_at),
            recorded_at: rfc3339(self.recorded_at),
            data,
            metadata: &self.metadata,
        })
        .expect("serialising strings and numbers cannot fail")
    }

    pub(crate) fn same_content_as(&self, new: &NewEvent) -> bool {
        self.event_type == new.event_type
            && self.schema_version == new.schema_version
            && self.occurred_at == new.occurred_at
            && self.data == new.data
            && self.metadata == new.metadata
    }
}

/// What an append did, or for a repeated append, what the original did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stream: StreamId,
    pub first_version: u64,
    /// The stream's version after the append: the next `ExpectedVersion::Exact`.
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
}

/// Which events of the whole log to read, in global order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadAll {
    /// First global position to include (positions start at 1).
    pub from: u64,
    /// Stream categories to include; empty means all.
    pub categories: Vec<String>,
    /// Event types to include; empty means all.
    pub event_types: Vec<String>,
    /// Only events that occurred at or after this instant.
    pub occurred_since: Option<DateTime<Utc>>,
    /// Only events that occurred before this instant.
    pub occurred_until: Option<DateTime<Utc>>,
    /// Stop after this many events.
    pub limit: Option<u64>,
}

impl ReadAll {
    pub fn from(position: u64) -> Self {
        Self {
            from: position,
            ..Self::default()
        }
    }

    /// Whether it selects every event from `from` on (a limit aside).
    pub fn selects_all(&self) -> bool {
        self.categories.is_empty()
            && self.event_types.is_empty()
            && self.occurred_since.is_none()
            && self.occurred_until.is_none()
    }

    pub fn matches(&self, event: &RecordedEvent) -> bool {
        event.position >= self.from
            && (self.categories.is_empty()
                || self.categories.iter().any(|c| c == event.stream.category()))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && self.occurred_since.is_none_or(|t| event.occurred_at >= t)
            && self.occurred_until.is_none_or(|t| event.occurred_at < t)
    }
}

/// The last event of a stream, as the append path and `verify` need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub stream: StreamId,
    pub version: u64,
    pub hash: [u8; 32],
}

pub(crate) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    from_micros(at.timestamp_micros())
}

pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
