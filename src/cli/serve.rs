//! `sportello serve`: the HTTP API, with the projections followed in the same process (by
//! default); `sportello project`: the projections alone, for deployments that run them apart.

use super::open_urp;
use crate::api::{self, AppState};
use anyhow::Context;
use sportello_config::Settings;
use sportello_engine::EventLog;
use sportello_engine::vault::Vault;
use sportello_projections::runner::{acquire, run};
use sportello_projections::{Consumer, Registry, Views, read_models};
use sportello_workers::clock::Clock;
use sportello_workers::mail::Mailer;
use sportello_workers::queue::Queues;
use sportello_workers::reactor::Reactor;
use sportello_workers::run::JobWorkers;
use sportello_workers::schedule::Duties;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default: api.bind, 127.0.0.1:8080); port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Leave the projections to another process (`sportello project` or `sportello worker`).
    #[arg(long)]
    no_projections: bool,
    /// Leave the reactor and the job workers to another process (`sportello worker`).
    #[arg(long)]
    no_workers: bool,
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run_serve(settings: &Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Counting starts before anything runs.
    api::metrics::install();
    super::memory::trim_periodically(super::memory::SERVING_TRIM);
    let urp = open_urp(settings).await?;
    let url = settings.data_url().expose().to_owned();
    let views = Views::open(&url)
        .await
        .context("failed to open the read models")?;
    if args.no_projections {
        // Queries need the tables; otherwise the runners create them before serving begins.
        read_models().ensure_all(&views).await?;
    }
    let (stop, stopped) = watch::channel(false);
    let background = Background::start(
        settings,
        &urp,
        !args.no_projections,
        settings.workers.in_serve && !args.no_workers,
        stopped,
    )
    .await?;
    let bind = args.bind.unwrap_or_else(|| settings.api.bind.clone());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr()?;
    let mut state = AppState::new(urp, views, Arc::new(settings.clone()));
    if let Some(read_url) = &settings.store.read_url {
        anyhow::ensure!(
            url.starts_with("postgres"),
            "store.read_url names a PostgreSQL replica, but the store is not PostgreSQL"
        );
        let reader = Views::open_replica(read_url.expose())
            .await
            .context("failed to open the read models' replica (store.read_url)")?;
        state = state.with_reader(reader);
    }
    if let Some(queue) = &background.queue {
        state = state.with_queue(queue.clone());
    }
    let state = Arc::new(state);
    // Scripts and tests read the address from this line.
    println!("sportello: listening on http://{address}");
    std::io::stdout().flush()?;
    tracing::info!(%address, "serving");
    axum::serve(
        listener,
        api::app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop_signal())
    .await
    .context("the HTTP server failed")?;
    let _ = stop.send(true);
    background.finish().await;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ProjectArgs {}

#[derive(clap::Args)]
pub struct WorkerArgs {}

/// The projections, the reactor and the job workers, without HTTP: several of these can run on
/// several machines against one PostgreSQL and one Redis, each consumer run by one at a time.
pub async fn run_worker(settings: &Settings, _args: WorkerArgs) -> anyhow::Result<ExitCode> {
    super::memory::trim_periodically(super::memory::SERVING_TRIM);
    let urp = open_urp(settings).await?;
    let (stop, stopped) = watch::channel(false);
    let background = Background::start(settings, &urp, true, true, stopped).await?;
    println!("sportello: worker running (projections, reactor, jobs)");
    std::io::stdout().flush()?;
    stop_signal().await;
    let _ = stop.send(true);
    background.finish().await;
    Ok(ExitCode::SUCCESS)
}

/// What runs beside (or instead of) HTTP: the consumers of the log and the job workers.
struct Background {
    runners: JoinSet<()>,
    jobs: Option<tokio::task::JoinHandle<()>>,
    queue: Option<Queues>,
}

impl Background {
    async fn start(
        settings: &Settings,
        urp: &sportello_engine::app::Urp,
        projections: bool,
        workers: bool,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let url = settings.data_url().expose();
        let mut registry = if projections {
            read_models()
        } else {
            Registry::empty()
        };
        let mut workers_ready = None;
        let mut queue_kept = None;
        if workers {
            let queues = Queues::connect(settings)
                .await
                .context("failed to open the job queues")?;
            let attempts = settings.workers.notice_attempts.max(1);
            registry = registry.with(
                Reactor::new(
                    queues.notices.clone(),
                    attempts,
                    settings.workers.max_waiting_jobs,
                )
                .leak(),
            );
            queue_kept = Some(queues.clone());
            let duties = Duties {
                urp: urp.clone(),
                views: Views::open(url)
                    .await
                    .context("failed to open the read models")?,
                mailer: Mailer::from_settings(settings)?,
                settings: Arc::new(settings.clone()),
                clock: Clock::from_env()?,
            };
            workers_ready =
                Some(
                    JobWorkers::from_settings(settings, urp.clone(), &queues.notices)?
                        .with_schedules(&queues.scheduled, duties, attempts),
                );
        }
        // The runners first: they create the read models the jobs read.
        let runners = spawn_runners(
            &registry,
            urp.log().clone(),
            urp.vault().clone(),
            url,
            stopped.clone(),
        )
        .await?;
        let jobs = workers_ready.map(|workers| {
            let stop = until_stopped(stopped);
            tokio::spawn(async move {
                if let Err(error) = workers.run(stop).await {
                    tracing::error!(%error, "job workers stopped");
                }
            })
        });
        Ok(Self {
            runners,
            jobs,
            queue: queue_kept,
        })
    }

    /// Lets the runners release their leases and the jobs in flight finish.
    async fn finish(self) {
        finish(self.runners).await;
        if let Some(jobs) = self.jobs {
            let _ = jobs.await;
        }
    }
}

/// Follows the log with every projection until stopped.
pub async fn run_project(settings: &Settings, _args: ProjectArgs) -> anyhow::Result<ExitCode> {
    super::memory::trim_periodically(super::memory::SERVING_TRIM);
    let urp = open_urp(settings).await?;
    let log = urp.log().clone();
    let url = settings.data_url().expose().to_owned();
    let registry = read_models();
    let (stop, stopped) = watch::channel(false);
    let runners = spawn_runners(&registry, log, urp.vault().clone(), &url, stopped).await?;
    println!("sportello: following the log with the projections");
    std::io::stdout().flush()?;
    stop_signal().await;
    let _ = stop.send(true);
    finish(runners).await;
    Ok(ExitCode::SUCCESS)
}

/// One task per consumer of the registry. They share one read-model connection of their own (on
/// SQLite, one writer per file: taking turns on a mutex beats queueing on the file lock), apart
/// from the connection queries use.
pub(super) async fn spawn_runners(
    registry: &Registry,
    log: EventLog,
    vault: Vault,
    url: &str,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<JoinSet<()>> {
    let views = Views::open(url)
        .await
        .context("failed to open the read models")?
        .with_vault(vault);
    // Before the first `/readyz`: a consumer without its checkpoint would not be reported yet.
    registry.ensure_all(&views).await?;
    let owner = format!("serve-{}-{}", std::process::id(), uuid::Uuid::now_v7());
    let mut set = JoinSet::new();
    for &consumer in registry.all() {
        set.spawn(keep_running(
            consumer,
            Runner {
                log: log.clone(),
                views: views.clone(),
                url: url.to_owned(),
                owner: owner.clone(),
                stopped: stopped.clone(),
            },
        ));
    }
    Ok(set)
}

struct Runner {
    log: EventLog,
    views: Views,
    url: String,
    owner: String,
    stopped: watch::Receiver<bool>,
}

/// Lets the runners release their leases, briefly.
pub(super) async fn finish(mut runners: JoinSet<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while runners.join_next().await.is_some() {}
    })
    .await;
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Runs `consumer` for as long as the process lives: waits for its turn (another process may
/// hold it), catches up, follows; after a failure, starts again from its checkpoint.
async fn keep_running(consumer: &'static dyn Consumer, runner: Runner) {
    let Runner {
        log,
        views,
        url,
        owner,
        stopped,
    } = runner;
    let id = consumer.id();
    loop {
        if *stopped.borrow() {
            return;
        }
        let attempt = async {
            let guard = tokio::select! {
                guard = acquire(&views, &url, consumer, &owner) => guard?,
                _ = until_stopped(stopped.clone()) => return Ok(()),
            };
            tracing::info!(consumer = id.name, version = id.version, "running");
            run(
                &log,
                &views,
                consumer,
                &guard,
                until_stopped(stopped.clone()),
            )
            .await
        };
        match attempt.await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(consumer = id.name, %error, "runner stopped; restarting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
