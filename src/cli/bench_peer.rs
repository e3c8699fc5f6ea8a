//! `sportello bench peer`: the peer benchmarks' workload (`../shared/peers/`, run by
//! `scripts/bench-peers.sh`), done by this store, with the same measures and the same JSON line,
//! so that the peers' driver runs it interleaved with `eventsourcing`, `cqrs-es` and Emmett.
//!
//! N streams `case-{i:06d}` of 10 events of about 300 bytes; a: every event its own append with
//! the expected version; b: each stream's 10 events in one append; c: the whole log read in
//! global order in pages of 1,000, every payload decoded, the events counted by type and the
//! ratings summed (the run fails unless that gives the expected projection). It works on the
//! configured store itself (`--store`): the driver creates and removes it between runs.

use super::bench::peak_resident_mb;
use anyhow::bail;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sportello_config::Settings;
use sportello_engine::{EventLog, ExpectedVersion, NewEvent, ReadAll, StoreError, StreamId};
use std::collections::BTreeMap;
use std::time::Instant;

const EVENTS_PER_STREAM: u64 = 10;
const READ_PAGE: u64 = 1000;
const NOTE: &str = "Customer called about the invoice total; agent checked the ledger, \
                    confirmed the discrepancy and scheduled a follow-up.";

#[derive(clap::Args)]
pub struct PeerArgs {
    /// a: single-event appends; b: one append per stream; c: read everything b wrote.
    #[arg(long, value_enum)]
    measure: Measure,
    #[arg(long, default_value_t = 10_000)]
    streams: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Measure {
    A,
    B,
    C,
}

/// The workload's payload, its keys in the workload's order.
#[derive(Serialize, Deserialize)]
struct Payload<'a> {
    case_id: &'a str,
    seq: u64,
    title: &'a str,
    author: &'a str,
    status: &'a str,
    note: &'a str,
    rating: u64,
    at: &'a str,
}

fn stream(i: u64) -> StreamId {
    StreamId::new("case", format!("{i:06}")).expect("a valid stream name")
}

fn event(i: u64, j: u64) -> NewEvent {
    let k = i * EVENTS_PER_STREAM + j;
    let event_type = match j {
        0 => "CaseOpened",
        j if j == EVENTS_PER_STREAM - 1 => "CaseClosed",
        j if j % 2 == 1 => "CaseRated",
        _ => "NoteAdded",
    };
    let at = chrono::DateTime::from_timestamp(1_735_689_600 + k as i64, 0)
        .expect("a time in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let payload = Payload {
        case_id: &format!("case-{i:06}"),
        seq: j,
        title: &format!("Case {i:06}: customer reports a billing discrepancy"),
        author: &format!("user-{:04}", k % 997),
        status: if j == EVENTS_PER_STREAM - 1 {
            "closed"
        } else {
            "open"
        },
        note: NOTE,
        rating: k % 5 + 1,
        at: &at,
    };
    NewEvent::new(event_type, &payload).expect("the workload's payload is a JSON object")
}

pub async fn run(settings: &Settings, args: PeerArgs) -> anyhow::Result<()> {
    if args.streams == 0 {
        bail!("--streams must be at least 1");
    }
    let log = super::open_store(settings).await?;
    if args.measure != Measure::C && log.head().await? > 0 {
        bail!(
            "bench peer writes its workload into the store given with --store itself: give it \
             an empty one (the peers' driver makes a fresh one for every run)"
        );
    }
    let n = args.streams;
    let mut extra = serde_json::Map::new();
    let started = Instant::now();
    let events = match args.measure {
        Measure::A => {
            for i in 0..n {
                for j in 0..EVENTS_PER_STREAM {
                    log.append(stream(i), ExpectedVersion::Exact(j), vec![event(i, j)])
                        .await?;
                }
            }
            n * EVENTS_PER_STREAM
        }
        Measure::B => {
            for i in 0..n {
                let events = (0..EVENTS_PER_STREAM).map(|j| event(i, j)).collect();
                log.append(stream(i), ExpectedVersion::NoStream, events)
                    .await?;
            }
            n * EVENTS_PER_STREAM
        }
        Measure::C => read(&log, n, &mut extra).await?,
    };
    let seconds = started.elapsed().as_secs_f64();
    if args.measure == Measure::A {
        // Untimed: a stale writer (expecting version 9 of a stream at 10) must be refused.
        let stale = log
            .append(
                stream(0),
                ExpectedVersion::Exact(EVENTS_PER_STREAM - 1),
                vec![event(0, EVENTS_PER_STREAM - 1)],
            )
            .await;
        let check = match stale {
            Err(StoreError::Conflict { .. }) => "ok".to_owned(),
            Ok(_) => "FAILED: stale write accepted".to_owned(),
            Err(e) => format!("FAILED: {e}"),
        };
        extra.insert("occ_check".into(), check.into());
    }
    let failed = extra
        .values()
        .any(|v| v.as_str().is_some_and(|s| s.starts_with("FAILED")));
    let line = serde_json::json!({
        "peer": "sportello",
        "store": log.backend_name(),
        "measure": match args.measure { Measure::A => "a", Measure::B => "b", Measure::C => "c" },
        "streams": n,
        "events": events,
        "seconds": rounded(seconds, 4),
        "events_per_s": rounded(events as f64 / seconds, 1),
        "rss_mb": rounded(peak_resident_mb(), 1),
        "extra": extra,
    });
    println!("{line}");
    if failed {
        bail!("the run did not give what the workload expects: {line}");
    }
    Ok(())
}

/// `x` to `places` decimals, as the peers print their figures.
fn rounded(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// Measure c: reads the log in pages, decodes, counts and checks the projection.
async fn read(
    log: &EventLog,
    n: u64,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<u64> {
    let (mut counts, mut ratings, mut bytes, mut events) =
        (BTreeMap::<String, u64>::new(), 0u64, 0u64, 0u64);
    let mut from = 1;
    loop {
        let page = log
            .read_all(ReadAll {
                from,
                limit: Some(READ_PAGE),
                ..ReadAll::default()
            })
            .try_collect::<Vec<_>>()
            .await?;
        for event in &page {
            let payload: Payload<'_> = event.decode()?;
            ratings += payload.rating;
            bytes += event.data.len() as u64;
            match counts.get_mut(&event.event_type) {
                Some(count) => *count += 1,
                None => {
                    counts.insert(event.event_type.clone(), 1);
                }
            }
        }
        events += page.len() as u64;
        match page.last() {
            Some(last) if page.len() as u64 == READ_PAGE => from = last.position + 1,
            _ => break,
        }
    }
    let want: BTreeMap<String, u64> = [
        ("CaseClosed", n),
        ("CaseOpened", n),
        ("CaseRated", 4 * n),
        ("NoteAdded", 4 * n),
    ]
    .into_iter()
    .map(|(t, c)| (t.to_owned(), c))
    .collect();
    let check = if counts == want && ratings == 30 * n {
        "ok".to_owned()
    } else {
        format!("FAILED: want {want:?} and {} ratings", 30 * n)
    };
    extra.insert("projection".into(), serde_json::to_value(&counts)?);
    extra.insert("rating_sum".into(), ratings.into());
    extra.insert("projection_check".into(), check.into());
    extra.insert(
        "avg_state_bytes".into(),
        rounded(bytes as f64 / events.max(1) as f64, 1).into(),
    );
    Ok(events)
}
