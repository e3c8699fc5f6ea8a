//! Progressive numbers without gaps or duplicates, per comune and year: case codes and the
//! registration numbers of submissions.
//!
//! A register is a stream (`registry-<kind>.<comune>.<year>`); a number is the version of its
//! `NumberAssigned` event. The number and what it numbers (the case's opening, the submission's
//! acceptance) are stored **in one commit** (`EventLog::append_all`), the register at the version
//! the number was read from: so a number is never handed out without its holder — not after a
//! crash, a full disk or a lost connection — and two holders never get the same one (the second
//! commit meets a conflict and takes the next number). Within a process, holders take turns to
//! number and queue their commits (in order, each expecting the version the one before it is to
//! make) and wait for the commit after their turn, so one commit carries many numbers; across
//! processes the conflict does the same, at the cost of a retry.

use crate::store::{EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;
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

    /// The register's stream for `comune` (ISTAT) and `year`.
    pub fn stream(self, comune: &str, year: i32) -> Result<StreamId, StoreError> {
        Ok(StreamId::new(
            "registry",
            format!("{}.{comune}.{year}", self.name()),
        )?)
    }
}

#[derive(Serialize, Deserialize)]
struct NumberAssigned {
    holder: Uuid,
}

/// The registers this process numbers from, each with the version it last saw.
#[derive(Clone, Default)]
pub struct Registers {
    seen: Arc<Mutex<HashMap<StreamId, Arc<Slot>>>>,
}

/// One register as this process sees it.
#[derive(Default)]
struct Slot {
    /// The version the next number follows, counting the appends queued and not yet answered;
    /// `None` until read from the store, and again after a queued append failed.
    version: Arc<tokio::sync::Mutex<Option<u64>>>,
    /// The highest version known stored: where reading the register again starts.
    stored: AtomicU64,
}

/// A register held by this process until dropped or queued, at the version its next number
/// follows, unless another process appended since (then the commit conflicts: number again).
pub struct Turn {
    stream: StreamId,
    slot: Arc<Slot>,
    version: OwnedMutexGuard<Option<u64>>,
}

/// A number whose commit was queued and the turn let go (see [`Turn::queued`]).
pub struct Queued {
    slot: Arc<Slot>,
    version: u64,
}

impl Registers {
    /// Waits for this process's turn on `register` and returns it at its current version.
    pub async fn turn(&self, log: &EventLog, stream: StreamId) -> Result<Turn, StoreError> {
        let slot = self
            .seen
            .lock()
            .expect("registers poisoned")
            .entry(stream.clone())
            .or_default()
            .clone();
        let mut turn = Turn {
            stream,
            version: slot.version.clone().lock_owned().await,
            slot,
        };
        if turn.version.is_none() {
            turn.catch_up(log).await?;
        }
        Ok(turn)
    }
}

impl Turn {
    /// The number the next holder gets.
    pub fn next(&self) -> u64 {
        self.version.unwrap_or(0) + 1
    }

    /// The register's part of the commit that stores `holder` with [`Turn::next`]. Its id and
    /// time derive from the holder, so a retried commit is recognised as the original.
    pub fn entry(
        &self,
        comune: &str,
        holder: Uuid,
    ) -> Result<(StreamId, ExpectedVersion, Vec<NewEvent>), StoreError> {
        let occurred_at = holder
            .get_timestamp()
            .and_then(|t| {
                let (secs, nanos) = t.to_unix();
                chrono::DateTime::from_timestamp(secs as i64, nanos)
            })
            .unwrap_or(chrono::DateTime::UNIX_EPOCH);
        let event = NewEvent::new("NumberAssigned", &NumberAssigned { holder })?
            .with_id(Uuid::new_v5(&holder, self.stream.as_str().as_bytes()))
            .occurred_at(occurred_at)
            // Only what is the same on every retry (a request's correlation id is not).
            .with_metadata(Metadata {
                comune: Some(comune.to_owned()),
                ..Metadata::default()
            });
        let expected = match *self.version {
            Some(0) | None => ExpectedVersion::NoStream,
            Some(v) => ExpectedVersion::Exact(v),
        };
        Ok((self.stream.clone(), expected, vec![event]))
    }

    /// The commit storing [`Turn::next`] with its holder is queued in the store (behind every
    /// commit queued before it, see `EventStore::queue_all`): the turn passes to the next
    /// holder, who numbers on from it without waiting for the commit. Say how it went with
    /// [`Queued::settled`].
    pub fn queued(mut self) -> Queued {
        let version = self.next();
        *self.version = Some(version);
        Queued {
            slot: self.slot.clone(),
            version,
        }
    }

    /// Reads what was appended since the version this process last saw (since the last it
    /// knew stored, after a queued append failed): another process's numbers.
    async fn catch_up(&mut self, log: &EventLog) -> Result<(), StoreError> {
        let from = self
            .version
            .unwrap_or_else(|| self.slot.stored.load(Ordering::Relaxed))
            + 1;
        let newer: Vec<_> = log
            .read_stream(self.stream.clone(), from)
            .try_collect()
            .await?;
        *self.version = Some(newer.last().map_or(from - 1, |e| e.version));
        Ok(())
    }
}

impl Queued {
    /// The queued commit's outcome. After a failure the appends queued behind it, which
    /// expected the version it was to make, conflict; the next turn reads the register again.
    pub async fn settled(self, stored: bool) {
        if stored {
            self.slot.stored.fetch_max(self.version, Ordering::Relaxed);
        } else {
            let mut version = self.slot.version.lock().await;
            *version = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    async fn log(dir: &std::path::Path) -> EventLog {
        EventLog::new(Arc::new(
            crate::store::sqlite::SqliteStore::open(dir.join("r.db"))
                .await
                .unwrap(),
        ))
    }

    /// Takes the next number for a holder of its own stream, as the application service does:
    /// numbers and queues under the turn, waits for the commit after letting it go.
    async fn try_number(
        registers: &Registers,
        log: &EventLog,
        stream: &StreamId,
        holder: Uuid,
    ) -> Result<u64, StoreError> {
        loop {
            let turn = registers.turn(log, stream.clone()).await.unwrap();
            let number = turn.next();
            let held = (
                StreamId::new("holder", holder).unwrap(),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("Numbered", &serde_json::json!({ "number": number })).unwrap()],
            );
            let queued = log
                .queue_all(vec![turn.entry("073015", holder).unwrap(), held])
                .unwrap();
            let pending = turn.queued();
            let outcome = queued.await;
            pending.settled(outcome.is_ok()).await;
            match outcome {
                Ok(_) => return Ok(number),
                Err(StoreError::Conflict { stream: s, .. }) if s == *stream => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn number(registers: &Registers, log: &EventLog, stream: &StreamId, holder: Uuid) -> u64 {
        try_number(registers, log, stream, holder).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_numbering_one_register_get_gap_free_distinct_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let stream = Register::Submissions.stream("073015", 2026).unwrap();
        // Two `Registers` stand for two processes: they meet only in the store.
        let (a, b) = (Registers::default(), Registers::default());
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let (log, stream) = (log.clone(), stream.clone());
                let registers = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { number(&registers, &log, &stream, Uuid::now_v7()).await })
            })
            .collect();
        let mut numbers = BTreeSet::new();
        for t in tasks {
            assert!(numbers.insert(t.await.unwrap()), "no duplicate");
        }
        assert_eq!(numbers, (1..=100).collect());
    }

    /// A queued commit that fails (here its holder's own stream refuses it) takes down those
    /// queued behind it, which expected the version it was to make: they number again, and the
    /// register stays gap-free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_in_the_queue_leaves_no_gap_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let stream = Register::Cases.stream("073029", 2026).unwrap();
        let refused: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        for holder in &refused {
            let existing = StreamId::new("holder", holder).unwrap();
            let event = NewEvent::new("Numbered", &serde_json::json!({ "number": 0 })).unwrap();
            log.append(existing, ExpectedVersion::NoStream, vec![event])
                .await
                .unwrap();
        }
        let registers = Registers::default();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (log, stream, registers) = (log.clone(), stream.clone(), registers.clone());
                let holder = if i % 40 == 7 {
                    refused[i / 40]
                } else {
                    Uuid::now_v7()
                };
                tokio::spawn(async move { try_number(&registers, &log, &stream, holder).await })
            })
            .collect();
        let (mut numbers, mut failed) = (BTreeSet::new(), 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(n) => assert!(numbers.insert(n), "no duplicate"),
                Err(StoreError::Conflict { stream: s, .. }) if s.category() == "holder" => {
                    failed += 1
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(failed, 5);
        assert_eq!(numbers, (1..=195).collect());
        let stored: Vec<_> = log.read_stream(stream, 1).try_collect().await.unwrap();
        assert_eq!(stored.len(), 195, "one event per number, none left over");
    }

    #[tokio::test]
    async fn registers_are_per_kind_comune_and_year() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path()).await;
        let registers = Registers::default();
        for (register, comune, year) in [
            (Register::Cases, "073015", 2026),
            (Register::Cases, "073029", 2026),
            (Register::Cases, "073015", 2027),
            (Register::Submissions, "073015", 2026),
        ] {
            let stream = register.stream(comune, year).unwrap();
            assert_eq!(number(&registers, &log, &stream, Uuid::now_v7()).await, 1);
        }
        let stream = Register::Cases.stream("073015", 2026).unwrap();
        assert_eq!(number(&registers, &log, &stream, Uuid::now_v7()).await, 2);
    }
}
