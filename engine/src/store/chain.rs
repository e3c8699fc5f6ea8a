//! The per-stream hash chain: each event's hash covers its own content and the hash of the event
//! before it in the stream, so changing, removing or reordering a stored event is detectable.
//!
//! The global position is left out on purpose: it is an index of the store, not part of the fact,
//! and leaving it out lets a log move between backends without rehashing.

use super::types::RecordedEvent;
use sha2::{Digest, Sha256};

/// The "previous hash" of a stream's first event.
pub const GENESIS: [u8; 32] = [0; 32];

pub fn event_hash(previous: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sportello-event-v1");
    h.update(previous);
    field(&mut h, event.stream.as_str().as_bytes());
    h.update(event.version.to_be_bytes());
    h.update(event.id.as_bytes());
    field(&mut h, event.event_type.as_bytes());
    h.update(event.schema_version.to_be_bytes());
    h.update(event.occurred_at.timestamp_micros().to_be_bytes());
    h.update(event.recorded_at.timestamp_micros().to_be_bytes());
    field(&mut h, event.data.as_bytes());
    let m = &event.metadata;
    for text in [&m.actor, &m.comune, &m.channel] {
        optional(&mut h, text.as_ref().map(|t| t.as_bytes()));
    }
    for id in [&m.correlation_id, &m.causation_id] {
        optional(&mut h, id.as_ref().map(|u| u.as_bytes().as_slice()));
    }
    h.finalize().into()
}

/// Length-prefixed, so that no two different field sequences hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn optional(h: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        None => h.update([0u8]),
        Some(b) => {
            h.update([1u8]);
            field(h, b);
        }
    }
}
