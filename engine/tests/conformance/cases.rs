//! The conformance cases, written once for every backend.

use crate::backends::Fixture;
use chrono::{Duration as Days, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sportello_engine::store::{InvalidInput, MAX_PAYLOAD_BYTES};
use sportello_engine::{
    EventLog, ExpectedVersion, Metadata, NewEvent, ReadAll, RecordedEvent, StoreError, StreamId,
};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

fn stream(raw: &str) -> StreamId {
    StreamId::parse(raw).unwrap()
}

fn event(event_type: &str, data: serde_json::Value) -> NewEvent {
    NewEvent::new(event_type, &data).unwrap()
}

fn numbered(event_type: &str, n: usize) -> NewEvent {
    event(event_type, json!({ "n": n }))
}

async fn all(log: &EventLog, query: ReadAll) -> Vec<RecordedEvent> {
    log.read_all(query).try_collect().await.unwrap()
}

/// Every stream's versions among `events` are 1, 2, 3… in log order: none skipped or repeated.
fn assert_versions_run_from_one(events: &[RecordedEvent]) {
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        versions
            .entry(e.stream.to_string())
            .or_default()
            .push(e.version);
    }
    for (s, v) in versions {
        assert_eq!(
            v,
            (1..=v.len() as u64).collect::<Vec<_>>(),
            "versions of {s}"
        );
    }
}

/// How many events the log holds: what "nothing else was stored" means on every backend (where
/// positions are dense, the head says the same).
async fn event_count(log: &EventLog) -> u64 {
    all(log, ReadAll::default()).await.len() as u64
}

/// Every position of the log, in order.
async fn every_position(log: &EventLog) -> Vec<u64> {
    positions(&all(log, ReadAll::default()).await)
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// The ranks, from 1, of `positions` among `every` position of the log: what the cases compare,
/// so that they hold where positions leave gaps (KurrentDB); where they are dense (SQLite,
/// PostgreSQL) a rank is the position itself, which [`assert_positions`] checks.
fn ranks(every: &[u64], positions: impl IntoIterator<Item = u64>) -> Vec<u64> {
    positions
        .into_iter()
        .map(|p| match every.iter().position(|&q| q == p) {
            Some(i) => i as u64 + 1,
            None => panic!("position {p} is not in the log"),
        })
        .collect()
}

/// The whole log's positions increase; on a dense backend they are exactly 1, 2, 3….
fn assert_positions(every: &[u64], dense: bool) {
    assert!(
        every.windows(2).all(|w| w[1] > w[0]),
        "positions increase: {every:?}"
    );
    if dense {
        assert!(
            every.iter().enumerate().all(|(i, &p)| p == i as u64 + 1),
            "positions are dense from 1: {every:?}"
        );
    }
}

async fn of_stream(log: &EventLog, s: &str, from: u64) -> Vec<RecordedEvent> {
    log.read_stream(stream(s), from)
        .try_collect()
        .await
        .unwrap()
}

pub async fn a_new_stream_numbers_versions_and_positions_from_one(f: Fixture) {
    let log = f.log;
    assert_eq!(log.head().await.unwrap(), 0, "an empty log's head");
    let first = log
        .append(
            stream("case-1"),
            ExpectedVersion::NoStream,
            vec![numbered("CaseOpened", 1), numbered("CaseTakenInCharge", 2)],
        )
        .await
        .unwrap();
    assert_eq!((first.first_version, first.last_version), (1, 2));
    let out = log
        .append(
            stream("case-2"),
            ExpectedVersion::NoStream,
            vec![numbered("CaseOpened", 3)],
        )
        .await
        .unwrap();
    assert_eq!(out.first_version, 1);
    assert_eq!(log.head().await.unwrap(), out.last_position);
    let every = every_position(&log).await;
    assert_positions(&every, f.dense);
    let outcomes = [
        first.first_position,
        first.last_position,
        out.first_position,
    ];
    assert_eq!(ranks(&every, outcomes), [1, 2, 3]);

    let events = of_stream(&log, "case-1", 1).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_type, "CaseTakenInCharge");
    assert_eq!(events[1].version, 2);
    assert_eq!(events[1].position, first.last_position);
    assert_eq!(events[0].stream.category(), "case");
    assert!(events[0].recorded_at >= events[0].occurred_at - Days::seconds(5));
}

pub async fn a_stale_expected_version_is_a_conflict_carrying_the_actual_version(f: Fixture) {
    let log = f.log;
    let s = stream("case-7");
    log.append(
        s.clone(),
        ExpectedVersion::NoStream,
        vec![numbered("A", 1), numbered("B", 2)],
    )
    .await
    .unwrap();
    let err = log
        .append(s.clone(), ExpectedVersion::Exact(1), vec![numbered("C", 3)])
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream, s);
            assert_eq!(expected, ExpectedVersion::Exact(1));
            assert_eq!(actual, Some(2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let err = log
        .append(
            stream("case-none"),
            ExpectedVersion::Exact(3),
            vec![numbered("C", 3)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: None, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "conflict");
    // Nothing was written by the refused appends.
    assert_eq!(event_count(&log).await, 2);
    let out = log
        .append(s.clone(), ExpectedVersion::Exact(2), vec![numbered("C", 3)])
        .await
        .unwrap();
    assert_eq!(out.last_version, 3);
}

pub async fn no_stream_and_any_expectations_behave_as_named(f: Fixture) {
    let log = f.log;
    let s = stream("feedback-1");
    log.append(
        s.clone(),
        ExpectedVersion::Exact(0),
        vec![numbered("FeedbackGiven", 1)],
    )
    .await
    .unwrap();
    let err = log
        .append(
            s.clone(),
            ExpectedVersion::NoStream,
            vec![numbered("FeedbackGiven", 2)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    let out = log
        .append(
            s.clone(),
            ExpectedVersion::Any,
            vec![numbered("FeedbackGiven", 3)],
        )
        .await
        .unwrap();
    assert_eq!(out.last_version, 2);
    let out = log
        .append(
            stream("feedback-2"),
            ExpectedVersion::Any,
            vec![numbered("FeedbackGiven", 4)],
        )
        .await
        .unwrap();
    assert_eq!(out.first_version, 1);
}

pub async fn a_repeated_append_returns_the_original_outcome_and_stores_nothing(f: Fixture) {
    let log = f.log;
    let s = stream("submission-9");
    log.append(
        stream("case-0"),
        ExpectedVersion::Any,
        vec![numbered("X", 0)],
    )
    .await
    .unwrap();
    let batch = vec![
        numbered("SubmissionReceived", 1),
        numbered("SubmissionAccepted", 2),
    ];
    let first = log
        .append(s.clone(), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    log.append(
        s.clone(),
        ExpectedVersion::Exact(2),
        vec![numbered("CaseLinked", 3)],
    )
    .await
    .unwrap();
    // A client retrying after a lost acknowledgement: the expectation no longer holds, but the
    // events are the same, so the original outcome comes back and nothing is added.
    let again = log
        .append(s.clone(), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(event_count(&log).await, 4);
    assert_eq!(of_stream(&log, "submission-9", 1).await.len(), 3);

    // Concurrent identical retries also store the events once.
    let retry = vec![numbered("FeedbackGiven", 5)];
    let attempts = futures::future::join_all((0..5).map(|_| {
        log.append(
            stream("feedback-r"),
            ExpectedVersion::NoStream,
            retry.clone(),
        )
    }))
    .await;
    let outcomes: Vec<_> = attempts.into_iter().map(Result::unwrap).collect();
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
    assert_eq!(of_stream(&log, "feedback-r", 1).await.len(), 1);
    assert_eq!(event_count(&log).await, 5);
}

pub async fn reusing_an_event_id_for_other_content_is_refused(f: Fixture) {
    let log = f.log;
    let original = numbered("CaseOpened", 1);
    log.append(
        stream("case-a"),
        ExpectedVersion::Any,
        vec![original.clone()],
    )
    .await
    .unwrap();
    let other_content = event("CaseOpened", json!({"n": 2})).with_id(original.id);
    let err = log
        .append(stream("case-a"), ExpectedVersion::Any, vec![other_content])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateEventId { event_id, .. } if event_id == original.id)
    );
    let other_stream = log
        .append(
            stream("case-b"),
            ExpectedVersion::Any,
            vec![original.clone()],
        )
        .await;
    if f.ids_unique_across_streams {
        assert!(
            matches!(other_stream, Err(StoreError::DuplicateEventId { .. })),
            "{other_stream:?}"
        );
    } else {
        // KurrentDB has no index by event id (see its module): the reuse is stored, as documented.
        other_stream.expect("an id reused in another stream is stored on KurrentDB");
        assert_eq!(of_stream(&log, "case-b", 1).await.len(), 1);
    }
    let partly_new = log
        .append(
            stream("case-a"),
            ExpectedVersion::Any,
            vec![original.clone(), numbered("X", 9)],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(partly_new, StoreError::DuplicateEventId { .. }),
        "{partly_new:?}"
    );
    assert_eq!(partly_new.code(), "event_id_reused");
    let reused_elsewhere = u64::from(!f.ids_unique_across_streams);
    assert_eq!(event_count(&log).await, 1 + reused_elsewhere);
}

pub async fn a_multi_event_append_is_all_or_nothing(f: Fixture) {
    let log = f.log;
    let s = stream("case-atomic");
    let mut bad = numbered("Broken", 3);
    bad.data = "[1, 2, 3]".into();
    let err = log
        .append(
            s.clone(),
            ExpectedVersion::NoStream,
            vec![numbered("A", 1), numbered("B", 2), bad],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid(InvalidInput::PayloadNotObject { index: 2 })
        ),
        "{err:?}"
    );
    assert_eq!(event_count(&log).await, 0);
    assert!(of_stream(&log, "case-atomic", 1).await.is_empty());

    // A conflicting append in the same commit group as a good one leaves the good one alone.
    log.append(s.clone(), ExpectedVersion::NoStream, vec![numbered("A", 1)])
        .await
        .unwrap();
    let (good, conflicting) = tokio::join!(
        log.append(
            stream("case-other"),
            ExpectedVersion::NoStream,
            vec![numbered("A", 1), numbered("B", 2)]
        ),
        log.append(
            s.clone(),
            ExpectedVersion::NoStream,
            vec![numbered("C", 3), numbered("D", 4)]
        ),
    );
    assert_eq!(good.unwrap().last_version, 2);
    assert!(matches!(conflicting, Err(StoreError::Conflict { .. })));
    assert_eq!(of_stream(&log, "case-atomic", 1).await.len(), 1);
    assert_eq!(event_count(&log).await, 3);
}

pub async fn a_stream_reads_forwards_from_a_version(f: Fixture) {
    let log = f.log;
    let events: Vec<_> = (1..=10).map(|n| numbered("Step", n)).collect();
    log.append(stream("case-r"), ExpectedVersion::NoStream, events)
        .await
        .unwrap();
    log.append(
        stream("case-s"),
        ExpectedVersion::NoStream,
        vec![numbered("Other", 0)],
    )
    .await
    .unwrap();
    let tail = of_stream(&log, "case-r", 7).await;
    let versions: Vec<u64> = tail.iter().map(|e| e.version).collect();
    assert_eq!(versions, [7, 8, 9, 10]);
    let n: Vec<u64> = tail
        .iter()
        .map(|e| {
            e.decode::<serde_json::Value>().unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(n, [7, 8, 9, 10]);
    assert!(of_stream(&log, "case-r", 11).await.is_empty());
    assert!(of_stream(&log, "case-missing", 1).await.is_empty());
}

pub async fn the_log_reads_in_global_order_with_filters_and_a_limit(f: Fixture) {
    let log = f.log;
    let day = |d: i64| Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap() + Days::days(d);
    for d in 0..10 {
        let category = if d % 2 == 0 { "case" } else { "feedback" };
        let event_type = if d % 3 == 0 { "Opened" } else { "Noted" };
        log.append(
            StreamId::new(category, d).unwrap(),
            ExpectedVersion::NoStream,
            vec![numbered(event_type, d as usize).occurred_at(day(d))],
        )
        .await
        .unwrap();
    }
    let every = every_position(&log).await;
    assert_eq!(every.len(), 10);
    assert_positions(&every, f.dense);
    let at = |rank: usize| every[rank - 1];
    let ranks = |events: &[RecordedEvent]| ranks(&every, positions(events));
    // From an event's own position, and from just past the one before it.
    assert_eq!(ranks(&all(&log, ReadAll::from(at(8))).await), [8, 9, 10]);
    assert_eq!(
        ranks(&all(&log, ReadAll::from(at(7) + 1)).await),
        [8, 9, 10]
    );
    assert!(all(&log, ReadAll::from(at(10) + 1)).await.is_empty());
    let cases = all(
        &log,
        ReadAll {
            categories: vec!["case".into()],
            ..ReadAll::default()
        },
    )
    .await;
    assert_eq!(ranks(&cases), [1, 3, 5, 7, 9]);
    let opened = all(
        &log,
        ReadAll {
            event_types: vec!["Opened".into()],
            categories: vec!["case".into(), "feedback".into()],
            ..ReadAll::default()
        },
    )
    .await;
    assert_eq!(ranks(&opened), [1, 4, 7, 10]);
    let window = all(
        &log,
        ReadAll {
            occurred_since: Some(day(2)),
            occurred_until: Some(day(5)),
            ..ReadAll::default()
        },
    )
    .await;
    assert_eq!(ranks(&window), [3, 4, 5]);
    let limited = all(
        &log,
        ReadAll {
            from: at(2),
            limit: Some(3),
            ..ReadAll::default()
        },
    )
    .await;
    assert_eq!(ranks(&limited), [2, 3, 4]);
    // A limit with a filter: the matches lie beyond the first `limit` positions.
    let sparse = all(
        &log,
        ReadAll {
            from: at(1) + 1,
            categories: vec!["case".into()],
            limit: Some(2),
            ..ReadAll::default()
        },
    )
    .await;
    assert_eq!(ranks(&sparse), [3, 5]);
    let none = all(
        &log,
        ReadAll {
            categories: vec!["subject".into()],
            ..ReadAll::default()
        },
    )
    .await;
    assert!(none.is_empty());
}

pub async fn a_subscription_catches_up_then_follows_without_gap_or_duplicate(f: Fixture) {
    let log = f.log;
    for n in 0..50 {
        log.append(
            StreamId::new("case", n % 7).unwrap(),
            ExpectedVersion::Any,
            vec![numbered("Old", n)],
        )
        .await
        .unwrap();
    }
    let subscription = log.subscribe(ReadAll {
        from: 1,
        limit: Some(120),
        ..ReadAll::default()
    });
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for n in 50..120 {
                log.append(
                    StreamId::new("case", n % 7).unwrap(),
                    ExpectedVersion::Any,
                    vec![numbered("New", n)],
                )
                .await
                .unwrap();
                if n % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let seen: Vec<RecordedEvent> =
        tokio::time::timeout(Duration::from_secs(60), subscription.try_collect())
            .await
            .expect("the subscription delivered every event in time")
            .unwrap();
    writer.await.unwrap();
    let every = every_position(&log).await;
    assert_positions(&every, f.dense);
    assert_eq!(positions(&seen), every, "every event once, in order");
    assert_eq!(seen.len(), 120);

    // A filtered follower only wakes for what it asked for, and still sees it live.
    let mut feedback = log.subscribe(ReadAll {
        categories: vec!["feedback".into()],
        ..ReadAll::default()
    });
    log.append(
        stream("feedback-live"),
        ExpectedVersion::Any,
        vec![numbered("FeedbackGiven", 1)],
    )
    .await
    .unwrap();
    let live = tokio::time::timeout(Duration::from_secs(10), feedback.next())
        .await
        .expect("a live event reached the filtered follower")
        .unwrap()
        .unwrap();
    assert_eq!(
        (live.position, live.stream.as_str()),
        (log.head().await.unwrap(), "feedback-live")
    );
    assert!(live.position > *every.last().unwrap());
}

pub async fn concurrent_writers_are_seen_once_each_in_increasing_position(f: Fixture) {
    const WRITERS: usize = 8;
    const EVENTS_EACH: usize = 1000;
    const STREAMS: usize = 12;
    let log = f.log;
    let total = (WRITERS * EVENTS_EACH) as u64;
    let follower = tokio::spawn(
        log.subscribe(ReadAll {
            limit: Some(total),
            ..ReadAll::default()
        })
        .try_collect::<Vec<RecordedEvent>>(),
    );
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(EVENTS_EACH);
                for i in 0..EVENTS_EACH {
                    // Overlapping streams: every writer touches all of them.
                    let s = StreamId::new("case", (w + i) % STREAMS).unwrap();
                    let e = event("Noted", json!({ "writer": w, "i": i }));
                    ids.push(e.id);
                    if w % 2 == 0 {
                        log.append(s, ExpectedVersion::Any, vec![e]).await.unwrap();
                    } else {
                        // Optimistic writers: read the version, append, retry on conflict.
                        loop {
                            let version = log
                                .read_stream(s.clone(), 1)
                                .try_fold(0, |_, e| async move { Ok(e.version) })
                                .await
                                .unwrap();
                            match log
                                .append(s.clone(), ExpectedVersion::Exact(version), vec![e.clone()])
                                .await
                            {
                                Ok(_) => break,
                                Err(StoreError::Conflict { .. }) => continue,
                                Err(other) => panic!("{other}"),
                            }
                        }
                    }
                }
                ids
            })
        })
        .collect();
    let mut written = HashSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    let seen = tokio::time::timeout(Duration::from_secs(120), follower)
        .await
        .expect("the follower saw every event in time")
        .unwrap()
        .unwrap();
    assert_eq!(seen.len() as u64, total);
    assert_positions(&positions(&seen), f.dense);
    let seen_ids: HashSet<Uuid> = seen.iter().map(|e| e.id).collect();
    assert_eq!(seen_ids, written, "every committed event exactly once");
    assert_versions_run_from_one(&seen);
    let report = log.verify().await.unwrap();
    assert_eq!(report.first_break, None);
}

/// Paging through the log with a limit while a writer appends sees every event once, in order: a
/// page is a prefix of what follows its start, never a page with a hole where an event committed
/// while it was read.
pub async fn pages_read_while_a_writer_appends_leave_no_hole(f: Fixture) {
    const EVENTS: usize = 3000;
    const PAGE: u64 = 700;
    let log = f.log;
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for i in 0..EVENTS {
                let s = stream(&format!("case-paged{}", i % 40));
                log.append(s, ExpectedVersion::Any, vec![numbered("Noted", i)])
                    .await
                    .unwrap();
            }
        })
    };
    let mut paged = Vec::new();
    let mut from = 1;
    while paged.len() < EVENTS {
        let page = all(
            &log,
            ReadAll {
                from,
                limit: Some(PAGE),
                ..ReadAll::default()
            },
        )
        .await;
        if let Some(last) = page.last() {
            from = last.position + 1;
        } else {
            tokio::task::yield_now().await;
        }
        paged.extend(page.into_iter().map(|e| e.id));
    }
    writer.await.unwrap();
    let everything: Vec<Uuid> = all(&log, ReadAll::default())
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(paged.len(), EVENTS);
    assert!(
        paged == everything,
        "paged reads skipped or repeated events"
    );
}

pub async fn concurrent_appends_at_the_same_version_let_exactly_one_win(f: Fixture) {
    let log = f.log;
    let s = stream("case-race");
    log.append(
        s.clone(),
        ExpectedVersion::NoStream,
        vec![numbered("Opened", 0)],
    )
    .await
    .unwrap();
    let attempts = futures::future::join_all((0..10).map(|n| {
        log.append(
            s.clone(),
            ExpectedVersion::Exact(1),
            vec![numbered("Answered", n)],
        )
    }))
    .await;
    let wins = attempts.iter().filter(|r| r.is_ok()).count();
    let conflicts = attempts
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(StoreError::Conflict {
                    actual: Some(2),
                    ..
                })
            )
        })
        .count();
    assert_eq!((wins, conflicts), (1, 9));
    assert_eq!(of_stream(&log, "case-race", 1).await.len(), 2);
}

pub async fn long_streams_read_back_across_pages(f: Fixture) {
    let log = f.log;
    let s = stream("service-anagrafe.residenza");
    for chunk in 0..10 {
        let events = (0..500)
            .map(|i| numbered("Revised", chunk * 500 + i))
            .collect();
        log.append(
            s.clone(),
            ExpectedVersion::Exact(chunk as u64 * 500),
            events,
        )
        .await
        .unwrap();
    }
    let whole = of_stream(&log, s.as_str(), 1).await;
    assert_eq!(whole.len(), 5000);
    assert!(
        whole
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == i as u64 + 1)
    );
    let tail = of_stream(&log, s.as_str(), 4001).await;
    assert_eq!(tail.len(), 1000);
    assert_eq!(tail[0].decode::<serde_json::Value>().unwrap()["n"], 4000);
    let everything = all(&log, ReadAll::default()).await;
    assert_eq!(everything.len(), 5000);
}

pub async fn unicode_payloads_and_metadata_round_trip_exactly(f: Fixture) {
    let log = f.log;
    let text = "Perché è già così? «Città» — Ünïcödé ✓ 北京 🚀 \u{200d} \\ \" \n fine";
    let data = format!(
        r#"{{"oggetto":{},  "spazi" : [1, 2.50, -0.0e0]}}"#,
        serde_json::to_string(text).unwrap()
    );
    let metadata = Metadata {
        actor: Some("staff:dell'acqua".into()),
        comune: Some("073015".into()),
        channel: Some("sportello".into()),
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
    };
    let at = Utc.with_ymd_and_hms(2026, 11, 2, 10, 30, 0).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let mut new = numbered("ReclamoRicevuto", 0)
        .with_metadata(metadata.clone())
        .occurred_at(at)
        .with_schema_version(3);
    new.data = data.clone();
    assert!(
        StreamId::parse("case-ü").is_err(),
        "stream names stay ASCII"
    );
    log.append(stream("case-u"), ExpectedVersion::Any, vec![new.clone()])
        .await
        .unwrap();
    let stored = &of_stream(&log, "case-u", 1).await[0];
    assert_eq!(stored.data, data, "the payload's bytes are kept as written");
    assert_eq!(
        stored.decode::<serde_json::Value>().unwrap()["oggetto"],
        text
    );
    assert_eq!(stored.metadata, metadata);
    assert_eq!(stored.schema_version, 3);
    assert_eq!(
        stored.occurred_at.timestamp_micros(),
        at.timestamp_micros(),
        "kept to the microsecond"
    );
    // Repeating it (with the nanoseconds the store does not keep) is still the same event.
    log.append(stream("case-u"), ExpectedVersion::Any, vec![new])
        .await
        .unwrap();
    assert_eq!(event_count(&log).await, 1);
}

pub async fn bad_input_is_refused_clearly_and_changes_nothing(f: Fixture) {
    let log = f.log;
    log.append(
        stream("case-ok"),
        ExpectedVersion::Any,
        vec![numbered("Opened", 0)],
    )
    .await
    .unwrap();

    for (raw, code) in [
        ("", "stream_id_empty"),
        ("case", "stream_id_malformed"),
        ("-123", "stream_id_malformed"),
        ("case-", "stream_id_malformed"),
        ("Case-1", "stream_id_malformed"),
        ("case-1 2", "stream_id_malformed"),
        ("case-1;DROP TABLE events", "stream_id_malformed"),
    ] {
        let err = StreamId::parse(raw).unwrap_err();
        assert_eq!(err.code(), code, "{raw:?}: {err}");
        assert!(!err.to_string().is_empty());
    }
    let long = format!("case-{}", "x".repeat(300));
    assert_eq!(
        StreamId::parse(&long).unwrap_err().code(),
        "stream_id_malformed"
    );

    let s = stream("case-bad");
    let with_data = |data: String| {
        let mut e = numbered("Opened", 1);
        e.data = data;
        e
    };
    let oversized = format!(r#"{{"text":"{}"}}"#, "a".repeat(MAX_PAYLOAD_BYTES));
    let cases: Vec<(Vec<NewEvent>, &str)> = vec![
        (vec![], "append_empty"),
        (vec![with_data(oversized)], "payload_too_large"),
        (vec![with_data("[1,2]".into())], "payload_not_object"),
        (vec![with_data("\"text\"".into())], "payload_not_object"),
        (vec![with_data("{\"a\": ".into())], "payload_not_json"),
        (vec![with_data("{} {}".into())], "payload_not_json"),
        (vec![numbered("", 1)], "event_type_empty"),
        (vec![numbered("Case Opened", 1)], "event_type_malformed"),
        (
            vec![numbered("Opened", 1).with_schema_version(0)],
            "schema_version_zero",
        ),
        (
            {
                let e = numbered("Opened", 1);
                vec![e.clone(), e]
            },
            "event_id_repeated",
        ),
        (
            vec![numbered("Opened", 1).with_metadata(Metadata {
                actor: Some("x".repeat(500)),
                ..Metadata::default()
            })],
            "metadata_too_long",
        ),
    ];
    for (events, code) in cases {
        let err = log
            .append(s.clone(), ExpectedVersion::Any, events)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.is_infrastructure());
    }
    assert_eq!(event_count(&log).await, 1);
    assert!(of_stream(&log, "case-bad", 1).await.is_empty());
    assert_eq!(all(&log, ReadAll::default()).await.len(), 1);
}

pub async fn verify_passes_on_an_intact_log_and_names_a_changed_byte(f: Fixture) {
    let log = f.log;
    for n in 0..30 {
        log.append(
            StreamId::new("case", n % 4).unwrap(),
            ExpectedVersion::Any,
            vec![numbered("Noted", n)],
        )
        .await
        .unwrap();
    }
    let report = log.verify().await.unwrap();
    assert_eq!(
        (report.streams, report.events, report.first_break.clone()),
        (4, 30, None)
    );

    let Some(tamper) = f.tamper else {
        // KurrentDB: no API alters a stored event, so the break cannot be staged here.
        return;
    };
    // The 18th event is the 5th of case-1 (n = 17: 1, 5, 9, 13, 17).
    tamper(every_position(&log).await[17]).await;
    let broken = log
        .verify()
        .await
        .unwrap()
        .first_break
        .expect("a break is reported");
    assert_eq!((broken.stream.as_str(), broken.version), ("case-1", 5));
}

pub async fn an_append_to_several_streams_stores_every_part_or_none(f: Fixture) {
    let log = f.log;
    let first = vec![
        (
            stream("registry-cases.073015.2026"),
            ExpectedVersion::NoStream,
            vec![numbered("NumberAssigned", 1)],
        ),
        (
            stream("case-a"),
            ExpectedVersion::NoStream,
            vec![numbered("CaseOpened", 1)],
        ),
    ];
    let outcomes = log.append_all(first.clone()).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    let every = every_position(&log).await;
    let parts = [outcomes[0].last_position, outcomes[1].first_position];
    assert_eq!(
        ranks(&every, parts),
        [1, 2],
        "one commit, in the order given"
    );

    // One part refused: nothing of the other is stored either.
    let refused = log
        .append_all(vec![
            (
                stream("registry-cases.073015.2026"),
                ExpectedVersion::Exact(1),
                vec![numbered("NumberAssigned", 2)],
            ),
            (
                stream("case-a"),
                ExpectedVersion::NoStream,
                vec![numbered("CaseOpened", 2)],
            ),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict { stream, .. } if stream.as_str() == "case-a"),
        "{refused}"
    );
    assert_eq!(event_count(&log).await, 2);
    assert_eq!(
        of_stream(&log, "registry-cases.073015.2026", 1).await.len(),
        1
    );

    // A repeat of a stored multi-stream append returns its outcomes and stores nothing.
    assert_eq!(log.append_all(first).await.unwrap(), outcomes);
    assert_eq!(event_count(&log).await, 2);
    assert!(matches!(
        log.append_all(Vec::new()).await,
        Err(StoreError::Invalid(InvalidInput::EmptyAppend))
    ));
}

/// Eight writers number 25 holders each from one register: every number is taken by exactly one
/// holder, and every holder's stream carries the number the register gave it, with no gap.
pub async fn a_register_and_what_it_numbers_commit_together_under_concurrency(f: Fixture) {
    let log = f.log;
    let register = "registry-cases.073029.2026";
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let holder = format!("case-w{w}n{i}");
                    loop {
                        let version = of_stream(&log, register, 1).await.len() as u64;
                        let number = version + 1;
                        let result = log
                            .append_all(vec![
                                (
                                    stream(register),
                                    ExpectedVersion::Exact(version),
                                    vec![event("NumberAssigned", json!({ "holder": holder }))],
                                ),
                                (
                                    stream(&holder),
                                    ExpectedVersion::NoStream,
                                    vec![event("CaseOpened", json!({ "number": number }))],
                                ),
                            ])
                            .await;
                        match result {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let numbers = of_stream(&log, register, 1).await;
    assert_eq!(numbers.len(), 200);
    for assigned in &numbers {
        let data: serde_json::Value = assigned.decode().unwrap();
        let holder = data["holder"].as_str().unwrap();
        let opened = of_stream(&log, holder, 1).await;
        assert_eq!(opened.len(), 1, "{holder}");
        let opening: serde_json::Value = opened[0].decode().unwrap();
        assert_eq!(opening["number"], assigned.version, "{holder}");
    }
    assert_eq!(event_count(&log).await, 400, "nothing else was stored");
}

/// Appends queued one after the other are planned in that order, so each may expect the version
/// the one before it is to make (a register numbering without waiting for each commit); one
/// refused takes down those that counted on it, and nothing else.
pub async fn queued_appends_are_planned_in_the_order_queued(f: Fixture) {
    let log = f.log;
    let register = "registry-cases.073004.2026";
    let part = |version: u64, holder: &str, expected: ExpectedVersion| {
        vec![
            (
                stream(register),
                if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                },
                vec![event("NumberAssigned", json!({ "holder": holder }))],
            ),
            (
                stream(holder),
                expected,
                vec![event("CaseOpened", json!({ "number": version + 1 }))],
            ),
        ]
    };
    // Taken, so that the holder's part at version 3 is refused.
    log.append(
        stream("case-q3"),
        ExpectedVersion::NoStream,
        vec![numbered("Taken", 0)],
    )
    .await
    .unwrap();
    let queued: Vec<_> = (0..6u64)
        .map(|v| {
            let holder = format!("case-q{v}");
            log.queue_all(part(v, &holder, ExpectedVersion::NoStream))
                .unwrap()
        })
        .collect();
    let mut outcomes = Vec::new();
    for q in queued {
        outcomes.push(q.await);
    }
    let versions: Vec<_> = outcomes
        .iter()
        .map(|o| o.as_ref().map(|parts| parts[0].last_version).ok())
        .collect();
    assert_eq!(versions, [Some(1), Some(2), Some(3), None, None, None]);
    assert!(
        matches!(&outcomes[3], Err(StoreError::Conflict { stream, .. }) if stream.as_str() == "case-q3")
    );
    for later in &outcomes[4..] {
        assert!(
            matches!(later, Err(StoreError::Conflict { stream, actual: Some(3), .. }) if stream.as_str() == register),
            "{later:?}"
        );
    }
    // Queued again from the version stored, they go through.
    let again = log
        .queue_all(part(3, "case-q4", ExpectedVersion::NoStream))
        .unwrap();
    assert_eq!(again.await.unwrap()[0].last_version, 4);
    assert_eq!(of_stream(&log, register, 1).await.len(), 4);
}

/// Two processes on one store (two nodes on PostgreSQL, the CLI beside `serve` on SQLite): what a
/// writer remembers of a stream goes stale when the other appends to it, and must never be acted
/// on — no version written twice, no conflict missed, no position skipped.
pub async fn two_processes_on_one_store_never_act_on_what_the_other_changed(f: Fixture) {
    use ExpectedVersion::{Any, Exact, NoStream};
    /// One event appended: its version and position.
    async fn one(
        log: &EventLog,
        s: &str,
        expected: ExpectedVersion,
    ) -> Result<(u64, u64), StoreError> {
        log.append(stream(s), expected, vec![numbered("Noted", 0)])
            .await
            .map(|out| (out.last_version, out.last_position))
    }
    let (a, b) = (f.log, (f.another_process)().await);
    let s = "case-shared";
    let mut shared = Vec::new();
    let mut version_of = async |log: &EventLog, expected| {
        let (version, position) = one(log, s, expected).await?;
        shared.push(position);
        Ok::<_, StoreError>(version)
    };
    assert_eq!(version_of(&a, NoStream).await.unwrap(), 1);
    assert_eq!(version_of(&b, Exact(1)).await.unwrap(), 2);
    // `a` last saw version 1.
    let err = one(&a, s, Exact(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: Some(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(version_of(&a, Any).await.unwrap(), 3);
    assert_eq!(version_of(&b, Any).await.unwrap(), 4);
    assert_eq!(version_of(&a, Exact(4)).await.unwrap(), 5);
    // Each write lands after the other process's, whichever process made it.
    assert_eq!(ranks(&every_position(&a).await, shared), [1, 2, 3, 4, 5]);
    // A stream the other process made is not new to this one.
    one(&b, "case-b", NoStream).await.unwrap();
    let err = one(&a, "case-b", NoStream).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    // A retry through the other process gets the original outcome.
    let again = numbered("A", 8);
    let first = a
        .append(stream("case-retry"), NoStream, vec![again.clone()])
        .await
        .unwrap();
    let retried = b
        .append(stream("case-retry"), NoStream, vec![again])
        .await
        .unwrap();
    assert_eq!(retried, first);

    // Both at once, on the same few streams.
    let writers: Vec<_> = [a.clone(), a.clone(), b.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, log)| {
            tokio::spawn(async move {
                for i in 0..100 {
                    let s = StreamId::new("case", (w + i) % 3).unwrap();
                    log.append(s, Any, vec![numbered("Noted", i)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let events = all(&a, ReadAll::default()).await;
    assert_eq!(events.len(), 7 + 400);
    assert_positions(&positions(&events), f.dense);
    assert_versions_run_from_one(&events);
    assert_eq!(b.verify().await.unwrap().first_break, None);
}
