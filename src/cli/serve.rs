//! `sportello serve`: the HTTP API, with the projections followed in the same process (by
//! default); `sportello project`: the projections alone, for deployments that run them apart.

use super::open_urp;
use crate::api::{self, AppState};
use anyhow::Context;
use sportello_config::Settings;
use sportello_engine::EventLog;
use sportello_engine::vault::Vault;
use sportello_projections::catalogue::Catalogue;
use sportello_projections::inbox::Inbox;
use sportello_projections::runner::{acquire, run};
use sportello_projections::satisfaction::{Closures, Ratings};
use sportello_projections::subject_texts::SubjectTexts;
use sportello_projections::{Projection, Views};
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
    /// Leave the projections to another process (`sportello project`).
    #[arg(long)]
    no_projections: bool,
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
    let urp = open_urp(settings).await?;
    let url = settings.store.url.expose().to_owned();
    let views = Views::open(&url)
        .await
        .context("failed to open the read models")?;
    ensure_all(&views).await?;
    let (stop, stopped) = watch::channel(false);
    let runners = if args.no_projections {
        JoinSet::new()
    } else {
        spawn_runners(urp.log().clone(), urp.vault().clone(), &url, stopped).await?
    };
    let bind = args.bind.unwrap_or_else(|| settings.api.bind.clone());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr()?;
    let state = Arc::new(AppState::new(urp, views, Arc::new(settings.clone())));
    // Scripts and tests read the address from this line.
    println!("sportello: listening on http://{address}");
    std::io::stdout().flush()?;
    tracing::info!(%address, "serving");
    axum::serve(
        listener,
        api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop_signal())
    .await
    .context("the HTTP server failed")?;
    let _ = stop.send(true);
    finish(runners).await;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ProjectArgs {}

/// Follows the log with every projection until stopped.
pub async fn run_project(settings: &Settings, _args: ProjectArgs) -> anyhow::Result<ExitCode> {
    let urp = open_urp(settings).await?;
    let log = urp.log().clone();
    let url = settings.store.url.expose().to_owned();
    ensure_all(&Views::open(&url).await?).await?;
    let (stop, stopped) = watch::channel(false);
    let runners = spawn_runners(log, urp.vault().clone(), &url, stopped).await?;
    println!("sportello: following the log with the projections");
    std::io::stdout().flush()?;
    stop_signal().await;
    let _ = stop.send(true);
    finish(runners).await;
    Ok(ExitCode::SUCCESS)
}

async fn ensure_all(views: &Views) -> anyhow::Result<()> {
    views.ensure::<Inbox>().await?;
    views.ensure::<Ratings>().await?;
    views.ensure::<Closures>().await?;
    views.ensure::<Catalogue>().await?;
    views.ensure::<SubjectTexts>().await?;
    Ok(())
}

/// One task per projection. They share one read-model connection of their own (on SQLite, one
/// writer per file: taking turns on a mutex beats queueing on the file lock), apart from the
/// connection queries use.
async fn spawn_runners(
    log: EventLog,
    vault: Vault,
    url: &str,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<JoinSet<()>> {
    let views = Views::open(url)
        .await
        .context("failed to open the read models")?
        .with_vault(vault);
    let owner = format!("serve-{}-{}", std::process::id(), uuid::Uuid::now_v7());
    let runner = |log: EventLog| Runner {
        log,
        views: views.clone(),
        url: url.to_owned(),
        owner: owner.clone(),
        stopped: stopped.clone(),
    };
    let mut set = JoinSet::new();
    set.spawn(keep_running::<Inbox>(runner(log.clone())));
    set.spawn(keep_running::<Ratings>(runner(log.clone())));
    set.spawn(keep_running::<Closures>(runner(log.clone())));
    set.spawn(keep_running::<Catalogue>(runner(log.clone())));
    set.spawn(keep_running::<SubjectTexts>(runner(log)));
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
async fn finish(mut runners: JoinSet<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while runners.join_next().await.is_some() {}
    })
    .await;
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// Runs projection `P` for as long as the process lives: waits for its turn (another process
/// may hold it), catches up, follows; after a failure, starts again from its checkpoint.
async fn keep_running<P: Projection>(runner: Runner) {
    let Runner {
        log,
        views,
        url,
        owner,
        stopped,
    } = runner;
    loop {
        if *stopped.borrow() {
            return;
        }
        let attempt = async {
            let guard = tokio::select! {
                guard = acquire::<P>(&views, &url, &owner) => guard?,
                _ = until_stopped(stopped.clone()) => return Ok(()),
            };
            tracing::info!(projection = P::NAME, version = P::VERSION, "running");
            run::<P>(&log, &views, &guard, until_stopped(stopped.clone())).await
        };
        match attempt.await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(projection = P::NAME, %error, "projection runner stopped; restarting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
