//! `sportello bench writes`: the bytes that reach the disk for each case opened, by who writes
//! them — the log's writer (events, the register's numbers), the vault (a key per data subject,
//! in the log's file), the read models — with the checkpoints that copy each WAL back into its
//! file. Linux only: it reads `write_bytes` of the process and of its threads in `/proc`.

use super::bench::{Scratch, Target};
use super::bench_workers::open_case;
use super::open_urp;
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use sportello_engine::app::Urp;
use sportello_projections::runner::wait_until_reached;
use sportello_projections::{Registry, Views, read_models};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct WritesArgs {
    /// Cases opened while measuring (after 20 that warm the files up).
    #[arg(long, default_value_t = 300)]
    cases: u64,
    /// Cases opened at once. At 1 (a low rate) each case waits until every read model has it;
    /// above, nobody waits until the end (a burst: group commits and batches).
    #[arg(long, default_value_t = 1)]
    concurrency: u64,
    #[command(flatten)]
    target: Target,
}

/// The threads that write the log's file (names as the kernel keeps them: 15 bytes at most).
const LOG_WRITER: &str = "sportello-sqlite-writer";
const KEY_WRITER: &str = "sportello-keys";

/// Bytes this process has caused to be written to storage: in all, and by the log's two writers.
#[derive(Clone, Copy, Default)]
struct Written {
    total: u64,
    log: u64,
    keys: u64,
}

impl Written {
    fn now() -> anyhow::Result<Self> {
        let mut written = Written {
            total: write_bytes(Path::new("/proc/self/io"))?,
            ..Written::default()
        };
        for task in std::fs::read_dir("/proc/self/task")? {
            let task = task?.path();
            let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            let name = name.trim_end();
            let is = |thread: &str| !name.is_empty() && thread.starts_with(name);
            if is(LOG_WRITER) {
                written.log += write_bytes(&task.join("io"))?;
            } else if is(KEY_WRITER) {
                written.keys += write_bytes(&task.join("io"))?;
            }
        }
        Ok(written)
    }

    fn since(self, before: Written) -> Written {
        Written {
            total: self.total - before.total,
            log: self.log - before.log,
            keys: self.keys - before.keys,
        }
    }

    /// What the other threads wrote: the read models' runners.
    fn rest(self) -> u64 {
        self.total - self.log - self.keys
    }
}

fn write_bytes(io: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(io).with_context(|| {
        format!(
            "cannot read {}: `bench writes` needs Linux's per-process I/O accounting",
            io.display()
        )
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no write_bytes in {}", io.display()))
}

/// Copies a SQLite file's WAL back into it and empties the WAL; returns the bytes that took.
async fn checkpoint(path: String) -> anyhow::Result<u64> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let before = write_bytes(Path::new("/proc/self/io"))?;
        let conn = rusqlite::Connection::open(&path)?;
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            bail!("the checkpoint of {path} could not finish: something is still writing");
        }
        drop(conn);
        Ok(write_bytes(Path::new("/proc/self/io"))? - before)
    })
    .await?
}

/// Waits until every read model has read the log up to `position`.
async fn caught_up(
    urp: &Urp,
    views: &Views,
    registry: &Registry,
    position: u64,
) -> anyhow::Result<()> {
    let patience = Duration::from_secs(60);
    match wait_until_reached(urp.log(), views, registry.all(), position, patience).await? {
        Some(behind) => bail!("the read model {} is behind the log", behind.name),
        None => Ok(()),
    }
}

pub async fn run(settings: &sportello_config::Settings, args: WritesArgs) -> anyhow::Result<()> {
    if args.cases == 0 || args.concurrency == 0 {
        bail!("--cases and --concurrency must be at least 1");
    }
    // Off Linux this fails here, before anything is written.
    Written::now()?;
    let scratch = Scratch::create(settings, &args.target).await?;
    let settings = scratch.settings.clone();
    let url = settings.store.url.expose().to_owned();
    let Some(store_file) = url.strip_prefix("sqlite://").map(str::to_owned) else {
        bail!(
            "`bench writes` measures the SQLite store (a PostgreSQL server writes in its own processes)"
        );
    };
    let views_file = sportello_projections::views_path_of(&store_file);
    let measured = measure(&settings, &args, &store_file, &views_file).await;
    scratch.finish().await?;
    let m = measured?;

    let per_case = |bytes: u64| bytes as f64 / args.cases as f64;
    let per_event = |bytes: u64| bytes as f64 / m.events as f64;
    let log = m.window.log + m.window.keys + m.log_checkpoint;
    let views = m.window.rest() + m.views_checkpoint;
    let total = log + views;
    println!(
        "{} cases opened {}, {} events ({:.1} a case), {:.0} events/s",
        args.cases,
        if args.concurrency == 1 {
            "one at a time, each waiting for every read model".to_owned()
        } else {
            format!("{} at once", args.concurrency)
        },
        m.events,
        m.events as f64 / args.cases as f64,
        m.events as f64 / m.seconds,
    );
    println!(
        "{:<48} {:>12} {:>12}",
        "bytes written", "a case", "an event"
    );
    let row = |what: &str, bytes: u64| {
        println!(
            "{what:<48} {:>12.0} {:>12.0}",
            per_case(bytes),
            per_event(bytes)
        );
    };
    row("log file: events and numbers (log's writer)", m.window.log);
    row("log file: keys of data subjects (vault)", m.window.keys);
    row("log file: checkpoint at the end", m.log_checkpoint);
    row("read models (their runners)", m.window.rest());
    row("read models: checkpoint at the end", m.views_checkpoint);
    row("in all", total);
    println!(
        "measure=writes store=sqlite cases={} concurrency={} events={} events_per_s={:.0} log_bytes_per_case={:.0} views_bytes_per_case={:.0} total_bytes_per_case={:.0} log_bytes_per_event={:.0} views_bytes_per_event={:.0}",
        args.cases,
        args.concurrency,
        m.events,
        m.events as f64 / m.seconds,
        per_case(log),
        per_case(views),
        per_case(total),
        per_event(log),
        per_event(views),
    );
    Ok(())
}

struct Measured {
    events: u64,
    seconds: f64,
    window: Written,
    log_checkpoint: u64,
    views_checkpoint: u64,
}

async fn measure(
    settings: &sportello_config::Settings,
    args: &WritesArgs,
    store_file: &str,
    views_file: &str,
) -> anyhow::Result<Measured> {
    let urp = open_urp(settings).await?;
    let registry = read_models();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let url = settings.store.url.expose();
    let runners = super::serve::spawn_runners(
        &registry,
        urp.log().clone(),
        urp.vault().clone(),
        url,
        stopped,
    )
    .await?;
    let views = Views::open(url).await?;
    let outcome = async {
        // The files and tables are made, the statements prepared, then both WALs emptied.
        for n in 0..20 {
            let position = open_case(&urp, settings, n).await?;
            caught_up(&urp, &views, &registry, position).await?;
        }
        checkpoint(store_file.to_owned()).await?;
        checkpoint(views_file.to_owned()).await?;

        let head = urp.log().head().await?;
        let before = Written::now()?;
        let started = Instant::now();
        let first = 1_000_000;
        if args.concurrency == 1 {
            for n in first..first + args.cases {
                let position = open_case(&urp, settings, n).await?;
                caught_up(&urp, &views, &registry, position).await?;
            }
        } else {
            futures::stream::iter(first..first + args.cases)
                .map(|n| open_case(&urp, settings, n))
                .buffer_unordered(args.concurrency as usize)
                .try_for_each(|_| async { Ok(()) })
                .await?;
            caught_up(&urp, &views, &registry, urp.log().head().await?).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let window = Written::now()?.since(before);
        let events = urp.log().head().await? - head;
        Ok::<_, anyhow::Error>(Measured {
            events,
            seconds,
            window,
            log_checkpoint: checkpoint(store_file.to_owned()).await?,
            views_checkpoint: checkpoint(views_file.to_owned()).await?,
        })
    }
    .await;
    let _ = stop.send(true);
    super::serve::finish(runners).await;
    outcome
}
