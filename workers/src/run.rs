//! The job workers of one process, on an apalis `Monitor`: started together, restarted when one
//! fails, and stopped together with the jobs in flight allowed to finish.

use crate::notices::{Delivered, NoticeContext, NoticeError, deliver};
use crate::queue::{Backend, NoticeJob, Queue};
use apalis::layers::WorkerBuilderExt;
use apalis::layers::retry::HasherRng;
use apalis::layers::retry::RetryPolicy;
use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an idle worker looks for jobs pushed by another process or come due (without a
/// poll strategy it would only wake on its 30 s heartbeat).
const POLL: Duration = Duration::from_millis(100);
/// How long a stop waits for the jobs in flight.
const SHUTDOWN: Duration = Duration::from_secs(30);

/// A name unique to this process and this start, as Redis wants for a restarted worker.
fn worker_name(queue: &str, restarts: usize) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{queue}-{host}-{}-{restarts}", std::process::id())
}

async fn notice_job(
    job: NoticeJob,
    ctx: Data<Arc<NoticeContext>>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    const NOTICES: &str = crate::queue::NOTICES;
    let started = Instant::now();
    let result = deliver(&ctx, &job, attempt.current().max(1)).await;
    metrics::histogram!("sportello_job_duration_seconds", "queue" => NOTICES)
        .record(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(Delivered::Recorded(_)) => "done",
        Ok(Delivered::AlreadyRecorded) => "skipped",
        Err(NoticeError::GivenUp(_)) => "dead",
        Err(NoticeError::Retry(_)) => "retried",
    };
    metrics::counter!("sportello_jobs_total", "queue" => NOTICES, "outcome" => outcome)
        .increment(1);
    match result {
        Ok(_) => Ok(()),
        Err(e @ NoticeError::GivenUp(_)) => {
            tracing::warn!(case = %job.case_id, kind = job.kind.name(), error = %e, "notice given up");
            Err(AbortError::new(e).into())
        }
        Err(e) => {
            tracing::info!(case = %job.case_id, kind = job.kind.name(), error = %e, "notice to retry");
            Err(e.into())
        }
    }
}

/// The workers' monitor, ready to run.
pub struct JobWorkers {
    monitor: Monitor,
}

impl JobWorkers {
    pub fn new(queue: &Queue, context: NoticeContext, concurrency: usize) -> Self {
        let context = Arc::new(context);
        let retries = context.attempts.saturating_sub(1);
        let backoff = || {
            ExponentialBackoffMaker::new(
                Duration::from_millis(500),
                Duration::from_secs(60),
                0.5,
                HasherRng::default(),
            )
            .expect("valid backoff bounds")
            .make_backoff()
        };
        // One arm per backend: the same worker, on two storage types.
        macro_rules! notices_worker {
            ($storage:expr) => {{
                let storage = $storage.clone();
                let context = context.clone();
                let name = queue.name().to_owned();
                move |restarts: usize| {
                    WorkerBuilder::new(worker_name(&name, restarts))
                        .backend(storage.clone().poll_with_interval(POLL))
                        .data(context.clone())
                        .concurrency(concurrency)
                        .retry(RetryPolicy::retries(retries).with_backoff(backoff()))
                        .build(notice_job)
                }
            }};
        }
        let monitor = Monitor::new()
            .shutdown_timeout(SHUTDOWN)
            .should_restart(|worker, error| {
                tracing::error!(worker = worker.name(), %error, "job worker failed; restarting");
                true
            });
        let monitor = match &queue.backend {
            Backend::Sqlite(storage) => monitor.register(notices_worker!(storage)),
            Backend::Redis(storage) => monitor.register(notices_worker!(storage)),
        };
        Self { monitor }
    }

    /// The workers as configured (`[workers]`, `[mail]`), acting through `urp`.
    pub fn from_settings(
        settings: &sportello_config::Settings,
        urp: sportello_engine::app::Urp,
        queue: &Queue,
    ) -> anyhow::Result<Self> {
        let context = NoticeContext {
            urp,
            mailer: crate::mail::Mailer::from_settings(settings)?,
            public_url: settings.mail.public_url.clone(),
            attempts: settings.workers.notice_attempts.max(1) as usize,
        };
        Ok(Self::new(
            queue,
            context,
            settings.workers.concurrency.max(1) as usize,
        ))
    }

    /// Runs until `stop` completes, then lets the jobs in flight finish.
    pub async fn run(self, stop: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        self.monitor
            .run_with_signal(async {
                stop.await;
                Ok(())
            })
            .await
            .map_err(|e| anyhow::anyhow!("job workers failed: {e}"))
    }
}
