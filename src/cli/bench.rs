//! `sportello bench`: throughput of the event store, measured the way the targets are stated.
//!
//! By default every run writes to a fresh store beside the configured one (a new SQLite file in
//! the same folder, or a new database on the same PostgreSQL server) and removes it afterwards, so
//! measurements never touch real data. `--in-place` uses the configured store itself.

use super::open_store;
use anyhow::{Context, bail};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sportello_config::{SecretUrl, Settings};
use sportello_engine::store::postgres::ScratchDatabase;
use sportello_engine::{EventLog, ExpectedVersion, NewEvent, ReadAll, StreamId};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Append N streams × K events with C concurrent writers.
    Appends(AppendsArgs),
    /// Read the whole log back and decode every payload.
    Read(ReadArgs),
    /// Rebuild every projection from a log of N cases (5 events each).
    Rebuild(RebuildArgs),
    /// Latency of the staff's queries (inbox, satisfaction) on read models of N cases.
    Queries(super::bench_queries::QueriesArgs),
    /// Receipts per second from one worker process: N cases opened, then reactor, queue, notice
    /// job, transport and record, end to end.
    Receipts(super::bench_workers::ReceiptsArgs),
    /// Reactor lag under a steady intake: from an append acknowledged to its job queued.
    ReactorLag(super::bench_workers::ReactorLagArgs),
    /// Every open-data dataset of one month from the read models of a log of N cases, one a
    /// minute (so a month holds the same cases whatever N): time and peak memory of `export`.
    Opendata(OpenDataArgs),
    /// Bytes written to disk for each case opened (SQLite, Linux): the log, the vault's keys and
    /// the read models, checkpoints included, at a low rate or in a burst.
    Writes(super::bench_writes::WritesArgs),
    /// One run of the peer benchmarks' workload on the configured store itself, printed as the
    /// peers print it (`scripts/bench-peers.sh` runs it beside them).
    Peer(super::bench_peer::PeerArgs),
}

#[derive(clap::Args)]
pub struct OpenDataArgs {
    /// Cases written to the fresh store (5 events each), one a minute from 2025-01-01.
    #[arg(long, default_value_t = 200_000)]
    cases: u64,
    /// The month exported.
    #[arg(long, default_value = "2025-02")]
    period: String,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct RebuildArgs {
    /// Cases written to the fresh store before rebuilding (ignored with --in-place).
    #[arg(long, default_value_t = 200_000)]
    cases: u64,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct AppendsArgs {
    #[arg(long, default_value_t = 1000)]
    streams: u64,
    #[arg(long, default_value_t = 10)]
    events_per_stream: u64,
    /// single: one event per append, each acknowledged before that writer's next;
    /// batch: all K events of a stream in one append.
    #[arg(long, value_enum, default_value_t = Mode::Single)]
    mode: Mode,
    /// Writers appending at once.
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub struct ReadArgs {
    /// Events written to the fresh store before reading (ignored with --in-place).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
pub(super) struct Target {
    /// Use the configured store itself instead of a fresh one beside it.
    #[arg(long)]
    in_place: bool,
    /// Keep the fresh store afterwards (its URL is printed).
    #[arg(long)]
    keep: bool,
}

impl Target {
    pub(super) fn in_place(&self) -> bool {
        self.in_place
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Single,
    Batch,
}

/// The benchmark payload: about 300 bytes, shaped like a contact.
#[derive(Serialize, Deserialize)]
struct Payload<'a> {
    kind: &'a str,
    comune: &'a str,
    channel: &'a str,
    office: &'a str,
    subject: &'a str,
    description: &'a str,
    rating: u8,
    at: &'a str,
    n: u64,
}

fn payload(n: u64) -> NewEvent {
    let body = Payload {
        kind: "segnalazione",
        comune: ["073004", "073015", "073029"][(n % 3) as usize],
        channel: "web",
        office: "Ufficio Relazioni con il Pubblico",
        subject: "Buca sul marciapiede in via Roma all'altezza del civico 12",
        description: "Segnalo una buca profonda sul marciapiede che rende difficile il passaggio",
        rating: (n % 5) as u8 + 1,
        at: "2026-11-26T10:15:00Z",
        n,
    };
    NewEvent::new("BenchContactRecorded", &body).expect("the bench payload is a JSON object")
}

pub async fn run(settings: &Settings, command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Appends(args) => appends(settings, args).await,
        BenchCommand::Read(args) => read(settings, args).await,
        BenchCommand::Opendata(args) => opendata(settings, args).await,
        BenchCommand::Rebuild(args) => rebuild(settings, args).await,
        BenchCommand::Queries(args) => super::bench_queries::run(settings, args).await,
        BenchCommand::Receipts(args) => super::bench_workers::receipts(settings, args).await,
        BenchCommand::ReactorLag(args) => super::bench_workers::reactor_lag(settings, args).await,
        BenchCommand::Writes(args) => super::bench_writes::run(settings, args).await,
        BenchCommand::Peer(args) => super::bench_peer::run(settings, args).await,
    }
    .map(|()| ExitCode::SUCCESS)
}

async fn appends(settings: &Settings, args: AppendsArgs) -> anyhow::Result<()> {
    if args.streams == 0 || args.events_per_stream == 0 || args.concurrency == 0 {
        bail!("--streams, --events-per-stream and --concurrency must be at least 1");
    }
    let scratch = Scratch::create(settings, &args.target).await?;
    let log = open_store(&scratch.settings).await?;
    let fsync_before = fsync_rate(&scratch.disk)?;
    // A unique prefix lets several bench processes share one store (--in-place).
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    let writers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let log = log.clone();
            let run_id = run_id.clone();
            let (streams, k, mode, c) = (
                args.streams,
                args.events_per_stream,
                args.mode,
                args.concurrency,
            );
            tokio::spawn(async move { write_streams(log, run_id, w, c, streams, k, mode).await })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let fsync = (fsync_before + fsync_rate(&scratch.disk)?) / 2.0;
    let events = args.streams * args.events_per_stream;
    let name = match args.mode {
        Mode::Single => "appends_single",
        Mode::Batch => "appends_batch",
    };
    drop(log);
    scratch.finish().await?;
    println!(
        "measure={name} store={} events={events} seconds={seconds:.3} events_per_s={:.0} fsync_per_s={fsync:.0} concurrency={} events_per_fsync={:.2}",
        scratch.backend,
        events as f64 / seconds,
        args.concurrency,
        events as f64 / seconds / fsync
    );
    Ok(())
}

async fn write_streams(
    log: EventLog,
    run_id: String,
    writer: u64,
    writers: u64,
    streams: u64,
    k: u64,
    mode: Mode,
) -> anyhow::Result<()> {
    for s in (writer..streams).step_by(writers as usize) {
        let stream = StreamId::new("bench", format!("{run_id}-{s}"))?;
        match mode {
            Mode::Single => {
                for v in 0..k {
                    log.append(
                        stream.clone(),
                        ExpectedVersion::Exact(v),
                        vec![payload(s * k + v)],
                    )
                    .await?;
                }
            }
            Mode::Batch => {
                let events = (0..k).map(|v| payload(s * k + v)).collect();
                log.append(stream, ExpectedVersion::NoStream, events)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn read(settings: &Settings, args: ReadArgs) -> anyhow::Result<()> {
    let scratch = Scratch::create(settings, &args.target).await?;
    let log = open_store(&scratch.settings).await?;
    if !args.target.in_place {
        seed(&log, args.events).await?;
    }
    let rss_before = resident_mb();
    let mut peak_rss = rss_before;
    let started = Instant::now();
    let mut events = log.read_all(ReadAll::default());
    let (mut count, mut checksum) = (0u64, 0u64);
    while let Some(event) = events.try_next().await? {
        // Decode every payload the way a projection would: into its own type, borrowing.
        let body: Payload<'_> = event
            .decode()
            .with_context(|| format!("payload at position {}", event.position))?;
        checksum = checksum.wrapping_add(u64::from(body.rating) + body.comune.len() as u64);
        count += 1;
        if count % 100_000 == 0 {
            peak_rss = peak_rss.max(resident_mb());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    peak_rss = peak_rss.max(resident_mb());
    if checksum == 0 && count > 0 {
        bail!("no payload decoded");
    }
    drop(events);
    drop(log);
    scratch.finish().await?;
    println!(
        "measure=read store={} events={count} seconds={seconds:.3} events_per_s={:.0} rss_mb={peak_rss:.1} rss_before_read_mb={rss_before:.1}",
        scratch.backend,
        count as f64 / seconds
    );
    Ok(())
}

/// Fills a fresh store quickly: 100-event appends from 4 writers.
async fn seed(log: &EventLog, events: u64) -> anyhow::Result<()> {
    const PER_STREAM: u64 = 100;
    seed_streams(log, events.div_ceil(PER_STREAM), move |s| {
        let n = PER_STREAM.min(events - s * PER_STREAM);
        let batch = (0..n).map(|v| payload(s * PER_STREAM + v)).collect();
        Ok((StreamId::new("bench", s)?, batch))
    })
    .await
}

/// Appends `streams` streams, stream `s` holding `stream(s)`, from 4 writers.
async fn seed_streams(
    log: &EventLog,
    streams: u64,
    stream: impl Fn(u64) -> anyhow::Result<(StreamId, Vec<NewEvent>)> + Copy + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for s in (w..streams).step_by(4) {
                    let (id, events) = stream(s)?;
                    log.append(id, ExpectedVersion::NoStream, events).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    eprintln!(
        "seeded {streams} streams in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where a bench run writes, and how to remove it afterwards.
pub(super) struct Scratch {
    pub(super) settings: Settings,
    pub(super) backend: &'static str,
    /// A folder on the store's disk, for the fsync measurement.
    disk: PathBuf,
    cleanup: Cleanup,
}

enum Cleanup {
    Nothing,
    Files(Vec<PathBuf>),
    Database(ScratchDatabase),
}

impl Scratch {
    pub(super) async fn create(settings: &Settings, target: &Target) -> anyhow::Result<Self> {
        let url = settings.store.url.expose().to_owned();
        if sportello_config::is_kurrentdb_url(&url) {
            bail!(
                "`sportello bench` measures the SQLite and PostgreSQL stores; the KurrentDB backend \
                 has no benchmark yet (ADR 0010)"
            );
        }
        let mut settings = settings.clone();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let folder = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            let mut cleanup = Cleanup::Nothing;
            if !target.in_place {
                let file = folder.join(format!("bench-{}.db", uuid::Uuid::now_v7().simple()));
                let name = file.to_string_lossy().into_owned();
                settings.store.url = SecretUrl::new(format!("sqlite://{name}"));
                if !target.keep {
                    let views = sportello_projections::views_path_of(&name);
                    // The runners' lock files are a folder beside the read models.
                    cleanup = Cleanup::Files(
                        ["", "-wal", "-shm"]
                            .iter()
                            .flat_map(|s| [format!("{name}{s}"), format!("{views}{s}")])
                            .chain([format!("{views}.locks")])
                            .map(PathBuf::from)
                            .collect(),
                    );
                } else {
                    eprintln!("bench store kept at sqlite://{name}");
                }
            }
            return Ok(Self {
                settings,
                backend: "sqlite",
                disk: folder.to_path_buf(),
                cleanup,
            });
        }
        // PostgreSQL: the server's disk is not ours to write to, so the fsync rate is measured
        // in the working directory (the same disk on a single-machine deployment).
        let mut cleanup = Cleanup::Nothing;
        if !target.in_place {
            let scratch = ScratchDatabase::create(&url, "sportello_bench")
                .await
                .context("failed to create the bench database")?;
            settings.store.url = SecretUrl::new(scratch.url.clone());
            if target.keep {
                eprintln!("bench store kept at {}", settings.store.url);
            } else {
                cleanup = Cleanup::Database(scratch);
            }
        }
        Ok(Self {
            settings,
            backend: "postgres",
            disk: PathBuf::from("."),
            cleanup,
        })
    }

    /// A store an earlier run kept (`--keep`), used as it is and left in place.
    pub(super) fn kept(settings: &Settings, url: &str) -> Self {
        let mut settings = settings.clone();
        settings.store.url = SecretUrl::new(url.to_owned());
        let (backend, disk) = match url.strip_prefix("sqlite://") {
            Some(path) => ("sqlite", Path::new(path).parent().unwrap_or(Path::new("."))),
            None => ("postgres", Path::new(".")),
        };
        Self {
            settings,
            backend,
            disk: disk.to_path_buf(),
            cleanup: Cleanup::Nothing,
        }
    }

    pub(super) async fn finish(&self) -> anyhow::Result<()> {
        match &self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::Files(files) => {
                for file in files {
                    if file.is_dir() {
                        let _ = std::fs::remove_dir_all(file);
                    } else {
                        let _ = std::fs::remove_file(file);
                    }
                }
            }
            Cleanup::Database(scratch) => scratch.drop_database().await?,
        }
        Ok(())
    }
}

/// Durable 4 KiB overwrites per second in `dir` for about a second: the bound on sequential
/// durable commits (a WAL commit is a write and an fsync).
fn fsync_rate(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join(format!(".fsync-probe-{}", uuid::Uuid::now_v7().simple()));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let block = [0x5au8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        file.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

/// Resident memory of this process in MB (Linux; 0 elsewhere).
pub(super) fn resident_mb() -> f64 {
    status_mb("VmRSS:")
}

/// The most this process has held resident, in MB (Linux; 0 elsewhere).
pub(super) fn peak_resident_mb() -> f64 {
    status_mb("VmHWM:")
}

/// The part of the resident memory that is the process's own (heap, stacks), without the
/// pages of files it maps: what grows when something leaks.
pub(super) fn anonymous_mb() -> f64 {
    status_mb("RssAnon:")
}

fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A case's life in five events, as the domain writes them (the sealed texts are stand-ins).
pub(super) fn case_events(n: u64) -> Vec<NewEvent> {
    use chrono::{Duration, TimeZone, Utc};
    let received = Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap()
        + Duration::minutes((n % 500_000) as i64);
    case_events_at(n, received)
}

/// Case `n`'s stream.
pub(super) fn case_stream(n: u64) -> StreamId {
    StreamId::new("case", case_subject(n)).expect("'case' is a category")
}

/// The data subject case `n`'s texts are sealed under: one of its own, as an anonymous contact's,
/// with its case's id.
pub(super) fn case_subject(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128(u128::from(n) + 1)
}

/// [`case_events`] for a case received at `received`.
pub(super) fn case_events_at(n: u64, received: chrono::DateTime<chrono::Utc>) -> Vec<NewEvent> {
    use chrono::Duration;
    use sportello_engine::domain::case::{CaseEvent, CaseKind, Channel, Outcome};
    use sportello_engine::vault::Sealed;
    let comune = ["073004", "073015", "073029"][(n % 3) as usize].to_owned();
    let sealed = Sealed {
        subject: case_subject(n),
        nonce: "AAAAAAAAAAAAAAAA".into(),
        ciphertext: "c2lnaWxsYXRv".into(),
    };
    let events = [
        CaseEvent::CaseOpened {
            code: format!("BEN-2025-{n:06}"),
            comune: comune.clone(),
            kind: CaseKind::ALL[(n % 6) as usize],
            channel: Channel::ALL[(n % 7) as usize],
            service: None,
            subject: sealed,
            description: None,
            citizen: None,
            received_at: received,
            term_days: 30,
            due_on: (received + Duration::days(30)).date_naive(),
            access_key_hash: None,
        },
        CaseEvent::CaseTakenInCharge {
            office: "URP".into(),
            at: received + Duration::days(1),
            expected_by: (received + Duration::days(30)).date_naive(),
        },
        CaseEvent::CaseAssigned {
            operator: "staff:bench".into(),
        },
        CaseEvent::CaseAnswered {
            text: "Risposta".into(),
            at: received + Duration::days((n % 40) as i64 + 2),
        },
        CaseEvent::CaseClosed {
            outcome: Outcome::Accolta,
            at: received + Duration::days((n % 40) as i64 + 3),
        },
    ];
    events
        .iter()
        .map(|e| {
            let event_type = serde_json::to_value(e)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let metadata = sportello_engine::Metadata {
                comune: Some(comune.clone()),
                ..Default::default()
            };
            NewEvent::new(event_type, e)
                .expect("a case event is a JSON object")
                .with_metadata(metadata)
        })
        .collect()
}

/// Appends `cases` case streams, case `n` holding `events_of(n)`.
async fn seed_cases(
    log: &EventLog,
    cases: u64,
    events_of: fn(u64) -> Vec<NewEvent>,
) -> anyhow::Result<()> {
    seed_streams(log, cases, move |n| Ok((case_stream(n), events_of(n)))).await
}

/// Case `n` of a log that grows with time: received `n` minutes after 2025-01-01 09:00.
fn case_events_by_minute(n: u64) -> Vec<NewEvent> {
    use chrono::{Duration, TimeZone, Utc};
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 9, 0, 0).unwrap();
    case_events_at(n, start + Duration::minutes(n as i64))
}

async fn opendata(settings: &Settings, args: OpenDataArgs) -> anyhow::Result<()> {
    use sportello_projections::runner::{acquire, rebuild};
    use sportello_projections::{Views, read_models};
    if sportello_projections::opendata::Month::parse(&args.period).is_none() {
        anyhow::bail!("'{}' is not a month: write it YYYY-MM", args.period);
    }
    let scratch = Scratch::create(settings, &args.target).await?;
    let log = open_store(&scratch.settings).await?;
    if !args.target.in_place {
        seed_cases(&log, args.cases, case_events_by_minute).await?;
    }
    let url = scratch.settings.store.url.expose().to_owned();
    let views = Views::open(&url).await?;
    let models = read_models()
        .only(&["inbox", "ratings", "closures"])
        .map_err(anyhow::Error::msg)?;
    for &consumer in models.all() {
        let guard = acquire(&views, &url, consumer, "bench").await?;
        rebuild(&log, &views, consumer, &guard, |_, _| {}).await?;
        views.release(&guard).await?;
    }
    let head = log.head().await?;
    drop(views);
    // `export` in a process of its own, as an operator runs it: its peak memory is its own.
    let out = std::env::temp_dir().join(format!("sportello-bench-od-{}", uuid::Uuid::now_v7()));
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--store", &url, "export", "--period", &args.period, "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0.0_f64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kb) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let seconds = started.elapsed().as_secs_f64();
    let rows: usize = std::fs::read_dir(out.join("contatti-urp").join(&args.period))
        .ok()
        .and_then(|mut versions| versions.next())
        .and_then(|v| v.ok())
        .and_then(|v| {
            std::fs::read_to_string(v.path().join(format!("contatti-urp-{}.csv", args.period))).ok()
        })
        .map_or(0, |csv| csv.lines().count().saturating_sub(1));
    let _ = std::fs::remove_dir_all(&out);
    drop(log);
    scratch.finish().await?;
    if !status.success() {
        anyhow::bail!("sportello export failed ({status})");
    }
    println!(
        "measure=opendata store={} events={head} period={} seconds={seconds:.3} peak_rss_mb={:.1} contatti_rows={rows}",
        scratch.backend,
        args.period,
        peak_kb / 1024.0
    );
    Ok(())
}

async fn rebuild(settings: &Settings, args: RebuildArgs) -> anyhow::Result<()> {
    use sportello_projections::read_model;
    use sportello_projections::runner::{acquire, rebuild};
    use sportello_projections::{Views, inbox::Inbox, satisfaction::Closures};
    let scratch = Scratch::create(settings, &args.target).await?;
    let log = open_store(&scratch.settings).await?;
    if !args.target.in_place {
        seed_cases(&log, args.cases, case_events).await?;
    }
    let url = scratch.settings.store.url.expose().to_owned();
    let views = Views::open(&url).await?;
    let head = log.head().await?;
    let rss_before = resident_mb();
    let started = Instant::now();
    super::memory::trim_periodically(super::memory::REBUILD_TRIM);
    let (mut peak_rss, mut peak_anon) = (rss_before, anonymous_mb());
    for consumer in [read_model::<Inbox>(), read_model::<Closures>()] {
        let guard = acquire(&views, &url, consumer, "bench").await?;
        rebuild(&log, &views, consumer, &guard, |_, _| {
            peak_rss = peak_rss.max(resident_mb());
            peak_anon = peak_anon.max(anonymous_mb());
        })
        .await?;
        // And after the indexes, built at the end.
        peak_rss = peak_rss.max(resident_mb());
        peak_anon = peak_anon.max(anonymous_mb());
        views.release(&guard).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(views);
    drop(log);
    scratch.finish().await?;
    println!(
        "measure=rebuild store={} events={head} seconds={seconds:.3} events_per_s={:.0} rss_mb={peak_rss:.1} anon_mb={peak_anon:.1} rss_before_mb={rss_before:.1}",
        scratch.backend,
        head as f64 / seconds
    );
    Ok(())
}
