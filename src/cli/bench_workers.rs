//! `sportello bench receipts`: how fast one worker process turns opened cases into receipts, end
//! to end (reactor, queue, notice job, transport, record on the case), and its memory.

use super::bench::{Scratch, Target, anonymous_mb, resident_mb};
use super::open_urp;
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use sportello_config::{SecretUrl, Settings};
use sportello_engine::app::{Actor, CitizenInput, NewContact, Urp};
use sportello_engine::domain::case::{CaseKind, Channel};
use sportello_projections::runner::{acquire, has_reached, run};
use sportello_projections::{Consumer, Views};
use sportello_workers::queue::{Backend, Queue};
use sportello_workers::reactor::Reactor;
use sportello_workers::run::JobWorkers;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ReceiptsArgs {
    /// Cases opened (each with an e-mail address) before the workers start.
    #[arg(long, default_value_t = 5_000)]
    cases: u64,
    /// The job queue: sqlite (a fresh file beside the store, the default) or a redis:// URL
    /// (a namespace of its own, deleted afterwards).
    #[arg(long, default_value = "sqlite")]
    queue: String,
    #[command(flatten)]
    target: Target,
}

/// A scratch store with a queue and an outbox of their own (a Redis namespace of its own).
struct Bench {
    scratch: Scratch,
    settings: Settings,
    side: std::path::PathBuf,
    queue_name: &'static str,
}

impl Bench {
    async fn prepare(settings: &Settings, target: &Target, queue: &str) -> anyhow::Result<Self> {
        let scratch = Scratch::create(settings, target).await?;
        let mut settings = scratch.settings.clone();
        let run_id = uuid::Uuid::now_v7().simple().to_string();
        let side = std::env::temp_dir().join(format!("sportello-bench-{run_id}"));
        settings.workers.namespace = format!("sportello-bench-{run_id}");
        let (url, queue_name) = match queue {
            "sqlite" => (
                format!("sqlite://{}", side.join("jobs.db").display()),
                "sqlite",
            ),
            url if url.starts_with("redis://") => (url.to_owned(), "redis"),
            other => bail!("--queue must be sqlite or a redis:// URL, not '{other}'"),
        };
        settings.workers.queue_url = Some(SecretUrl::new(url));
        if settings.mail.transport == sportello_config::MailTransport::Outbox {
            settings.mail.outbox_dir = Some(side.join("outbox"));
        }
        Ok(Self {
            scratch,
            settings,
            side,
            queue_name,
        })
    }

    async fn finish(self, queue: &Queue) -> anyhow::Result<()> {
        if let Backend::Redis(_) = &queue.backend {
            queue.delete_namespace().await?;
        }
        let _ = std::fs::remove_dir_all(&self.side);
        self.scratch.finish().await
    }
}

/// The reactor and the notice workers of one process, as `serve` runs them.
struct Running {
    reactor: &'static dyn Consumer,
    views: Views,
    stop: tokio::sync::watch::Sender<bool>,
    reactor_task: tokio::task::JoinHandle<Result<(), sportello_projections::ViewsError>>,
    workers_task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(urp: &Urp, settings: &Settings, queue: &Queue) -> anyhow::Result<Self> {
        let attempts = settings.workers.notice_attempts.max(1);
        let reactor: &'static dyn Consumer =
            Reactor::new(queue.clone(), attempts, settings.workers.max_waiting_jobs).leak();
        let views = Views::open(settings.store.url.expose()).await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut s: tokio::sync::watch::Receiver<bool>| async move {
            let _ = s.wait_for(|s| *s).await;
        };
        let reactor_task = {
            let (log, views, url) = (
                urp.log().clone(),
                views.clone(),
                settings.store.url.expose().to_owned(),
            );
            let stop = until_stopped(stopped.clone());
            tokio::spawn(async move {
                let guard = acquire(&views, &url, reactor, "bench").await?;
                run(&log, &views, reactor, &guard, stop).await
            })
        };
        let workers = JobWorkers::from_settings(settings, urp.clone(), queue)?;
        let workers_task = tokio::spawn(workers.run(until_stopped(stopped)));
        Ok(Self {
            reactor,
            views,
            stop,
            reactor_task,
            workers_task,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.workers_task.await;
        let _ = self.reactor_task.await;
    }
}

/// Opens case `n` of a benchmark (`cittadino{n}@example.it`); returns its position in the log.
pub async fn open_case(urp: &Urp, settings: &Settings, n: u64) -> anyhow::Result<u64> {
    let actor = Actor {
        name: "system:bench".into(),
        ..Actor::default()
    };
    let contact = NewContact {
        case_id: uuid::Uuid::now_v7(),
        comune: settings.comuni[(n % settings.comuni.len() as u64) as usize]
            .istat
            .to_string(),
        kind: CaseKind::Segnalazione,
        channel: Channel::Web,
        service: None,
        subject: "Lampione spento in via Roma".into(),
        description: None,
        citizen: Some(CitizenInput {
            email: Some(format!("cittadino{n}@example.it")),
            ..CitizenInput::default()
        }),
        received_at: chrono::Utc::now(),
        privacy_consent: true,
    };
    let opened = urp
        .open_case(&actor, contact)
        .await
        .map_err(|e| anyhow::anyhow!("opening a bench case: {e}"))?;
    Ok(opened.position)
}

pub async fn receipts(settings: &Settings, args: ReceiptsArgs) -> anyhow::Result<()> {
    if args.cases == 0 {
        bail!("--cases must be at least 1");
    }
    let bench = Bench::prepare(settings, &args.target, &args.queue).await?;
    let settings = bench.settings.clone();
    let urp = open_urp(&settings).await?;
    // Opened 32 at a time (group commit) so that a million cases take minutes, not an hour.
    futures::stream::iter(0..args.cases)
        .map(|n| open_case(&urp, &settings, n))
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let head = urp.log().head().await?;

    let queue = Queue::connect(&settings)
        .await
        .context("failed to open the job queue")?;
    super::memory::trim_periodically(super::memory::SERVING_TRIM);
    let rss_before = resident_mb();
    let started = Instant::now();
    let running = Running::start(&urp, &settings, &queue).await?;
    // Interrupted, the run still removes its namespace: a million jobs left behind are 800 MB
    // of Redis.
    let watched = tokio::select! {
        watched = watch_receipts(&urp, &running, head, args.cases, rss_before) => watched,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let seconds = started.elapsed().as_secs_f64();
    running.stop().await;
    drop(urp);
    let (store, queue_name) = (bench.scratch.backend, bench.queue_name);
    bench.finish(&queue).await?;
    let Watched {
        peak_rss,
        rss_by_tenth,
        anon_by_tenth,
        queued_by,
    } = watched?;
    println!(
        "measure=receipts store={store} queue={queue_name} transport={:?} cases={} seconds={seconds:.3} receipts_per_s={:.0} all_queued_after_s={:.3} rss_before_mb={rss_before:.1} peak_rss_mb={peak_rss:.1} rss_by_tenth_mb={} anon_by_tenth_mb={}",
        settings.mail.transport,
        args.cases,
        args.cases as f64 / seconds,
        queued_by.unwrap_or(seconds),
        rss_by_tenth.join("/"),
        anon_by_tenth.join("/"),
    );
    Ok(())
}

/// What `bench receipts` saw while the receipts were sent.
struct Watched {
    peak_rss: f64,
    /// Resident memory as each tenth of the receipts is reached: flat, or growing with the jobs.
    rss_by_tenth: Vec<String>,
    /// The same, without the pages of mapped files.
    anon_by_tenth: Vec<String>,
    /// Seconds until the reactor had queued every job.
    queued_by: Option<f64>,
}

/// Watches the log until every case has its receipt (one `NoticeSent` each after `head`).
async fn watch_receipts(
    urp: &Urp,
    running: &Running,
    head: u64,
    cases: u64,
    rss_before: f64,
) -> anyhow::Result<Watched> {
    let started = Instant::now();
    let mut watched = Watched {
        peak_rss: rss_before,
        rss_by_tenth: Vec::with_capacity(10),
        anon_by_tenth: Vec::with_capacity(10),
        queued_by: None,
    };
    loop {
        let now = urp.log().head().await?;
        let rss = resident_mb();
        watched.peak_rss = watched.peak_rss.max(rss);
        while watched.rss_by_tenth.len() < 10
            && (now - head) * 10 >= cases * (watched.rss_by_tenth.len() as u64 + 1)
        {
            watched.rss_by_tenth.push(format!("{rss:.1}"));
            watched.anon_by_tenth.push(format!("{:.1}", anonymous_mb()));
        }
        if watched.queued_by.is_none()
            && has_reached(urp.log(), &running.views, running.reactor, head).await?
        {
            watched.queued_by = Some(started.elapsed().as_secs_f64());
        }
        if now >= head + cases {
            return Ok(watched);
        }
        // Gives up below 100 receipts a second (and never before ten minutes).
        let patience = Duration::from_secs((cases / 100).max(600));
        if started.elapsed() > patience {
            bail!(
                "only {} of {cases} receipts after {} s",
                now - head,
                patience.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(clap::Args)]
pub struct ReactorLagArgs {
    /// Cases opened per second, paced.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// For how long.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The job queue: sqlite (a fresh file beside the store, the default) or a redis:// URL.
    #[arg(long, default_value = "sqlite")]
    queue: String,
    #[command(flatten)]
    target: Target,
}

/// `sportello bench reactor-lag`: cases opened at a steady rate while the reactor and the
/// notice workers run, as in `serve`; for each case, the time from its append being acknowledged
/// to the reactor's checkpoint passing it (which moves only once the queue stored its job).
pub async fn reactor_lag(settings: &Settings, args: ReactorLagArgs) -> anyhow::Result<()> {
    if args.rate == 0 || args.seconds == 0 {
        bail!("--rate and --seconds must be at least 1");
    }
    let bench = Bench::prepare(settings, &args.target, &args.queue).await?;
    let settings = bench.settings.clone();
    let urp = open_urp(&settings).await?;
    let queue = Queue::connect(&settings)
        .await
        .context("failed to open the job queue")?;
    let running = Running::start(&urp, &settings, &queue).await?;
    let (reactor, views) = (running.reactor, running.views.clone());

    let total = args.rate * args.seconds;
    let (appended, mut acknowledged) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let started = Instant::now();
    let producer = {
        let (urp, settings) = (urp.clone(), settings.clone());
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
            let mut opening = tokio::task::JoinSet::new();
            for n in 0..total {
                pace.tick().await;
                let (urp, settings, appended) = (urp.clone(), settings.clone(), appended.clone());
                opening.spawn(async move {
                    let position = open_case(&urp, &settings, n).await?;
                    let _ = appended.send((position, Instant::now()));
                    anyhow::Ok(())
                });
            }
            while let Some(done) = opening.join_next().await {
                done??;
            }
            anyhow::Ok(started.elapsed().as_secs_f64())
        })
    };
    let mut waiting = std::collections::BTreeMap::new();
    let mut lags_ms: Vec<f64> = Vec::with_capacity(total as usize);
    while (lags_ms.len() as u64) < total {
        while let Ok((position, at)) = acknowledged.try_recv() {
            waiting.insert(position, at);
        }
        let checkpoint = views.checkpoint(reactor.id()).await?;
        let now = Instant::now();
        let rest = waiting.split_off(&(checkpoint + 1));
        lags_ms.extend(
            waiting
                .values()
                .map(|at| now.saturating_duration_since(*at).as_secs_f64() * 1000.0),
        );
        waiting = rest;
        if started.elapsed() > Duration::from_secs(args.seconds + 120) {
            bail!(
                "only {} of {total} cases were queued in time",
                lags_ms.len()
            );
        }
        if producer.is_finished() && waiting.is_empty() && acknowledged.is_empty() {
            // Every case appended is accounted for once the producer is done.
            if (lags_ms.len() as u64) < total {
                let _ = producer.await??;
                bail!("the producer ended before opening every case");
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let intake_seconds = producer.await??;
    running.stop().await;
    drop(urp);
    lags_ms.sort_by(f64::total_cmp);
    let at = |q: f64| lags_ms[((lags_ms.len() - 1) as f64 * q).round() as usize];
    let (store, queue_name) = (bench.scratch.backend, bench.queue_name);
    bench.finish(&queue).await?;
    println!(
        "measure=reactor_lag store={store} queue={queue_name} cases={total} rate={} achieved_per_s={:.0} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
        args.rate,
        total as f64 / intake_seconds,
        at(0.5),
        at(0.99),
        at(1.0),
    );
    Ok(())
}
