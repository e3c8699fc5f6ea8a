//! `sportello bench receipts`: how fast one worker process turns opened cases into receipts, end
//! to end (reactor, queue, notice job, transport, record on the case), and its memory.

use super::bench::{Scratch, Target, resident_mb};
use super::open_urp;
use anyhow::{Context, bail};
use sportello_config::{SecretUrl, Settings};
use sportello_engine::app::{Actor, CitizenInput, NewContact};
use sportello_engine::domain::case::{CaseKind, Channel};
use sportello_projections::runner::{acquire, run};
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

pub async fn receipts(settings: &Settings, args: ReceiptsArgs) -> anyhow::Result<()> {
    if args.cases == 0 {
        bail!("--cases must be at least 1");
    }
    let scratch = Scratch::create(settings, &args.target).await?;
    let mut settings = scratch.settings.clone();
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let side = std::env::temp_dir().join(format!("sportello-bench-{run_id}"));
    settings.workers.namespace = format!("sportello-bench-{run_id}");
    settings.workers.queue_url = Some(SecretUrl::new(match args.queue.as_str() {
        "sqlite" => format!("sqlite://{}", side.join("jobs.db").display()),
        url if url.starts_with("redis://") => url.to_owned(),
        other => bail!("--queue must be sqlite or a redis:// URL, not '{other}'"),
    }));
    if settings.mail.transport == sportello_config::MailTransport::Outbox {
        settings.mail.outbox_dir = Some(side.join("outbox"));
    }
    let urp = open_urp(&settings).await?;
    let actor = Actor {
        name: "system:bench".into(),
        ..Actor::default()
    };
    for n in 0..args.cases {
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
        urp.open_case(&actor, contact)
            .await
            .map_err(|e| anyhow::anyhow!("opening a bench case: {e}"))?;
    }
    let head = urp.log().head().await?;

    let queue = Queue::connect(&settings)
        .await
        .context("failed to open the job queue")?;
    let attempts = settings.workers.notice_attempts.max(1);
    let reactor: &'static dyn Consumer = Reactor::new(queue.clone(), attempts).leak();
    let views = Views::open(settings.store.url.expose()).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut s: tokio::sync::watch::Receiver<bool>| async move {
        let _ = s.wait_for(|s| *s).await;
    };
    let rss_before = resident_mb();
    let started = Instant::now();
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
    let workers = JobWorkers::from_settings(&settings, urp.clone(), &queue)?;
    let workers_task = tokio::spawn(workers.run(until_stopped(stopped.clone())));
    // Every receipt is one `NoticeSent` after the intake's head.
    let mut peak_rss = rss_before;
    let mut queued_by = None;
    let target = head + args.cases;
    loop {
        let now = urp.log().head().await?;
        peak_rss = peak_rss.max(resident_mb());
        if queued_by.is_none() && views.checkpoint(reactor.id()).await? >= head {
            queued_by = Some(started.elapsed().as_secs_f64());
        }
        if now >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "only {} of {} receipts after 10 minutes",
                now - head,
                args.cases
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = workers_task.await;
    let _ = reactor_task.await;
    if let Backend::Redis(_) = &queue.backend {
        queue.delete_namespace().await?;
    }
    let _ = std::fs::remove_dir_all(&side);
    drop(urp);
    scratch.finish().await?;
    println!(
        "measure=receipts store={} queue={} transport={:?} cases={} seconds={seconds:.3} receipts_per_s={:.0} all_queued_after_s={:.3} rss_before_mb={rss_before:.1} peak_rss_mb={peak_rss:.1}",
        scratch.backend,
        if args.queue == "sqlite" {
            "sqlite"
        } else {
            "redis"
        },
        settings.mail.transport,
        args.cases,
        args.cases as f64 / seconds,
        queued_by.unwrap_or(seconds),
    );
    Ok(())
}
