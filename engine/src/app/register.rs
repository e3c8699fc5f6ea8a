//! Progressive numbers without gaps or duplicates, per comune and year: case codes and the
//! registration numbers of submissions.
//!
//! A register is a stream (`registry-<kind>.<comune>.<year>`); taking a number appends one
//! `NumberAssigned` event with `ExpectedVersion::Any`, and the number is the version the store
//! gives it. Stream versions are dense and the store serialises appends to a stream, so numbers
//! are gap-free and unique across threads and processes. The event's id is derived from the holder
//! (the case or submission id): taking a number again for the same holder, after a crash or a
//! retry, returns the number it already has.

use crate::store::{EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    /// Case codes, `MAS-2026-000123`.
    Cases,
    /// Registration numbers of accepted submissions.
    Submissions,
}

impl Register {
    fn name(self) -> &'static str {
        match self {
            Register::Cases => "cases",
            Register::Submissions => "submissions",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct NumberAssigned {
    holder: Uuid,
}

/// The number of `holder` in `register` for `comune` (ISTAT) and `year`, taking the next one if
/// it has none.
pub async fn number_for(
    log: &EventLog,
    register: Register,
    comune: &str,
    year: i32,
    holder: Uuid,
) -> Result<u64, StoreError> {
    let stream = StreamId::new("registry", format!("{}.{comune}.{year}", register.name()))?;
    // Same holder, same event, to the byte: the id and the time derive from the holder, so a
    // retry is recognised as the original append and returns its number.
    let occurred_at = holder
        .get_timestamp()
        .and_then(|t| {
            let (secs, nanos) = t.to_unix();
            chrono::DateTime::from_timestamp(secs as i64, nanos)
        })
        .unwrap_or(chrono::DateTime::UNIX_EPOCH);
    let event = NewEvent::new("NumberAssigned", &NumberAssigned { holder })?
        .with_id(Uuid::new_v5(&holder, stream.as_str().as_bytes()))
        .occurred_at(occurred_at)
        // Only what is the same on every retry (a request's correlation id is not).
        .with_metadata(Metadata {
            comune: Some(comune.to_owned()),
            ..Metadata::default()
        });
    let outcome = log
        .append(stream, ExpectedVersion::Any, vec![event])
        .await?;
    Ok(outcome.first_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    async fn log(dir: &std::path::Path) -> EventLog {
        EventLog::new(Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.join("r.db"))
                .await
                .unwrap(),
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_holders_get_gap_free_distinct_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let log = log.clone();
                tokio::spawn(async move {
                    number_for(&log, Register::Submissions, "073015", 2026, Uuid::now_v7())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut numbers = BTreeSet::new();
        for t in tasks {
            assert!(numbers.insert(t.await.unwrap()), "no duplicate");
        }
        assert_eq!(numbers, (1..=200).collect());
    }

    #[tokio::test]
    async fn a_holder_keeps_its_number_and_registers_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(
            number_for(&log, Register::Cases, "073015", 2026, a)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            number_for(&log, Register::Cases, "073015", 2026, b)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            number_for(&log, Register::Cases, "073015", 2026, a)
                .await
                .unwrap(),
            1,
            "a retry"
        );
        assert_eq!(
            number_for(&log, Register::Cases, "073029", 2026, b)
                .await
                .unwrap(),
            1,
            "per comune"
        );
        assert_eq!(
            number_for(&log, Register::Cases, "073015", 2027, b)
                .await
                .unwrap(),
            1,
            "per year"
        );
        assert_eq!(
            number_for(&log, Register::Submissions, "073015", 2026, a)
                .await
                .unwrap(),
            1
        );
    }
}
