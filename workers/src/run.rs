//! The job workers of one process, on an apalis `Monitor`: started together, restarted when one
//! fails, and stopped together with the jobs in flight allowed to finish.

use crate::liveness::{Liveness, WorkerLock};
use crate::notices::{Delivered, NoticeContext, NoticeError, deliver};
use crate::queue::{Backend, DueJobs, NoticeJob, Queue};
use crate::schedule::{Duties, DutyError, Performed, Schedule, ScheduledJob, Scheduler, Ticks};
use apalis::layers::WorkerBuilderExt;
use apalis::layers::retry::HasherRng;
use apalis::layers::retry::RetryPolicy;
use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::prelude::*;
use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How often an idle worker looks for jobs pushed by another process or come due (without a
/// poll strategy it would only wake on its 30 s heartbeat).
const POLL: Duration = Duration::from_millis(100);
/// How often the workers of the SQLite queue look for a worker gone with jobs in hand.
const SWEEP: Duration = Duration::from_secs(5);
/// How long a stop waits for the jobs in flight.
const SHUTDOWN: Duration = Duration::from_secs(30);

/// Registers a worker on `$queue` (either backend) running `$handler` with `$data`.
macro_rules! queue_worker {
    ($monitor:expr, $queue:expr, $data:expr, $concurrency:expr, $retries:expr, $handler:expr) => {{
        // One arm per backend: the same worker, on two storage types.
        macro_rules! on {
            ($storage:expr) => {{
                let storage = $storage.clone();
                let data = $data.clone();
                let name = $queue.name().to_owned();
                let liveness = $queue.liveness.clone();
                move |restarts: usize| {
                    let name = worker_name(&name, restarts);
                    let held = liveness.as_ref().and_then(|l| hold(l, &name));
                    WorkerBuilder::new(name)
                        .backend(storage.clone().poll_with_strategy(Every::new(POLL)))
                        .data(data.clone())
                        .data(held)
                        .concurrency($concurrency)
                        .retry(RetryPolicy::retries($retries).with_backoff(backoff()))
                        .build($handler)
                }
            }};
        }
        match &$queue.workers {
            Backend::Sqlite(storage) => $monitor.register(on!(storage)),
            Backend::Redis(storage) => $monitor.register(on!(storage)),
        }
    }};
}

/// Wakes an idle worker every `interval`. apalis's own `IntervalStrategy` replaces a timer that
/// fired with a new one it does not poll, so the new one holds no waker: when the fetch that
/// follows comes back empty at its first poll, the worker is parked with nothing to wake it but
/// its heartbeat (ten minutes on SQLite). A day's scheduled job was left waiting that way. This
/// one polls the new timer before it reports the interval passed.
struct Every {
    interval: Duration,
    timer: apalis_core::timer::Delay,
}

impl Every {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            timer: apalis_core::timer::Delay::new(interval),
        }
    }
}

impl PollStrategy for Every {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        if Pin::new(&mut self.timer).poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timer.reset(self.interval);
        // Hands `cx`'s waker to the timer just set.
        let _ = Pin::new(&mut self.timer).poll(cx);
        Poll::Ready(Some(()))
    }
}

/// A name unique to this process and this start, as Redis wants for a restarted worker.
fn worker_name(queue: &str, restarts: usize) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{queue}-{host}-{}-{restarts}", std::process::id())
}

/// The lock file that tells the SQLite queue this worker is alive. Without it (the folder cannot
/// be written) the worker still runs, and apalis's slow heartbeat stands for it.
fn hold(liveness: &Liveness, worker: &str) -> Option<WorkerLock> {
    liveness
        .hold(worker)
        .inspect_err(|error| tracing::error!(worker, %error, "cannot make the worker's lock file"))
        .ok()
}

/// Counts a job's outcome (done, skipped, retried, dead) and its duration for `/metrics`.
fn measured(queue: &'static str, started: Instant, outcome: &'static str) {
    metrics::histogram!("sportello_job_duration_seconds", "queue" => queue)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("sportello_jobs_total", "queue" => queue, "outcome" => outcome).increment(1);
}

async fn notice_job(
    job: NoticeJob,
    ctx: Data<Arc<NoticeContext>>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let started = Instant::now();
    let result = deliver(&ctx, &job, attempt.current().max(1)).await;
    let outcome = match &result {
        Ok(Delivered::Recorded(_)) => "done",
        Ok(Delivered::AlreadyRecorded) => "skipped",
        Err(NoticeError::GivenUp(_)) => "dead",
        Err(NoticeError::Retry(_)) => "retried",
    };
    measured(crate::queue::NOTICES, started, outcome);
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

async fn scheduled_job(job: ScheduledJob, duties: Data<Arc<Duties>>) -> Result<(), BoxDynError> {
    let started = Instant::now();
    let result = crate::schedule::perform(&duties, &job).await;
    let outcome = match &result {
        Ok(Performed::Done(_)) => "done",
        Ok(Performed::AlreadyDone) => "skipped",
        Err(DutyError::GivenUp(_)) => "dead",
        Err(DutyError::Retry(_)) => "retried",
    };
    measured(crate::queue::SCHEDULED, started, outcome);
    match result {
        Ok(_) => Ok(()),
        Err(e @ DutyError::GivenUp(_)) => {
            tracing::warn!(schedule = job.schedule.name(), period = %job.period, error = %e, "scheduled job given up");
            Err(AbortError::new(e).into())
        }
        Err(e) => {
            tracing::warn!(schedule = job.schedule.name(), period = %job.period, error = %e, "scheduled job to retry");
            Err(e.into())
        }
    }
}

/// A tick only says "look now": the scheduler queues whatever period has come. A tick is not
/// tried again by apalis (nor is its error logged), so it tries until the queue takes the jobs.
async fn tick(_tick: apalis_cron::Tick<chrono_tz::Tz>, scheduler: Data<Arc<Scheduler>>) {
    enqueue_due(&scheduler).await;
}

/// Queues the periods due, trying again every 5 s while the queue or the log is out of reach.
async fn enqueue_due(scheduler: &Scheduler) {
    while let Err(error) = scheduler.enqueue_due().await {
        tracing::warn!(%error, "cannot queue the scheduled periods due yet");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn backoff() -> apalis::layers::retry::backoff::ExponentialBackoff<HasherRng> {
    ExponentialBackoffMaker::new(
        Duration::from_millis(500),
        Duration::from_secs(60),
        0.5,
        HasherRng::default(),
    )
    .expect("valid backoff bounds")
    .make_backoff()
}

/// The workers' monitor, ready to run.
pub struct JobWorkers {
    monitor: Monitor,
    scheduler: Option<Arc<Scheduler>>,
    /// The Redis queues' due jobs, promoted every second (see [`DueJobs`]).
    due: Vec<DueJobs>,
    /// On SQLite, the lock files swept for workers gone (see [`Liveness`]).
    liveness: Option<Liveness>,
}

impl JobWorkers {
    pub fn new(queue: &Queue, context: NoticeContext, concurrency: usize) -> Self {
        let context = Arc::new(context);
        let retries = context.attempts.saturating_sub(1);
        let monitor = Monitor::new()
            .shutdown_timeout(SHUTDOWN)
            .should_restart(|worker, error| {
                tracing::error!(worker = worker.name(), %error, "job worker failed; restarting");
                true
            });
        let monitor = queue_worker!(monitor, queue, context, concurrency, retries, notice_job);
        Self {
            monitor,
            scheduler: None,
            due: queue.due_jobs().into_iter().collect(),
            liveness: queue.liveness.clone(),
        }
    }

    /// Adds the scheduled jobs (a worker on their queue, one job at a time) and the ticks of every
    /// schedule, in Europe/Rome as `clock` reads it.
    pub fn with_schedules(
        self,
        queue: &Queue<ScheduledJob>,
        duties: Duties,
        attempts: u64,
    ) -> Self {
        let settings = duties.settings.schedules.clone();
        let clock = duties.clock;
        // Before the catch-up that `run` starts: every tick worker looks for its first tick after it.
        let started = clock.now();
        let scheduler = Arc::new(Scheduler {
            log: duties.urp.log().clone(),
            queue: queue.clone(),
            settings: settings.clone(),
            clock,
            attempts,
        });
        let duties = Arc::new(duties);
        let retries = attempts.saturating_sub(1) as usize;
        let mut monitor = queue_worker!(self.monitor, queue, duties, 1, retries, scheduled_job);
        for schedule in Schedule::ALL {
            let scheduler = scheduler.clone();
            let settings = settings.clone();
            monitor = monitor.register(move |restarts: usize| {
                let ticks = apalis_cron::CronScheduler::new(Ticks::new(
                    schedule, &settings, clock, started,
                ))
                .with_timezone(chrono_tz::Europe::Rome);
                WorkerBuilder::new(worker_name(&format!("tick-{}", schedule.name()), restarts))
                    .backend(ticks)
                    .data(scheduler.clone())
                    .build(tick)
            });
        }
        let mut due = self.due;
        due.extend(queue.due_jobs());
        Self {
            monitor,
            scheduler: Some(scheduler),
            due,
            liveness: self.liveness,
        }
    }

    /// The notice workers as configured (`[workers]`, `[mail]`), acting through `urp`.
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

    /// Runs until `stop` completes, then lets the jobs in flight finish. On start, the periods
    /// missed while no worker ran are queued (tried again until the queue takes them).
    pub async fn run(self, stop: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let due = self.due;
        let promoting = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                for jobs in &due {
                    // A Redis out of reach is the workers' own error to report; this tries again.
                    let _ = jobs.promote().await;
                }
            }
        });
        let sweeping = self.liveness.map(|liveness| {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SWEEP);
                loop {
                    every.tick().await;
                    match liveness.sweep().await {
                        Ok(0) => {}
                        Ok(jobs) => {
                            tracing::warn!(jobs, "jobs of a worker gone given back to the queue")
                        }
                        Err(error) => tracing::warn!(%error, "cannot look for workers gone"),
                    }
                }
            })
        });
        if let Some(scheduler) = self.scheduler {
            tokio::spawn(async move { enqueue_due(&scheduler).await });
        }
        let ran = self
            .monitor
            .run_with_signal(async {
                stop.await;
                Ok(())
            })
            .await;
        promoting.abort();
        if let Some(sweeping) = sweeping {
            sweeping.abort();
        }
        ran.map_err(|e| anyhow::anyhow!("job workers failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::{ArcWake, waker};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Wakes(AtomicUsize);

    impl ArcWake for Wakes {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn woken(wakes: &Wakes, times: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if wakes.0.load(Ordering::SeqCst) >= times {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn an_idle_worker_is_woken_every_interval_even_when_not_polled_in_between() {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let snapshot = PollSnapshot::new();
        let mut every = Every::new(Duration::from_millis(20));
        assert!(every.poll_drive(&mut cx, &snapshot).is_pending());
        assert!(woken(&wakes, 1), "the first interval never woke the worker");
        assert!(every.poll_drive(&mut cx, &snapshot).is_ready());
        // The backend parks the worker without polling the strategy again: the next interval
        // must still wake it.
        assert!(
            woken(&wakes, 2),
            "the worker was left parked after an interval"
        );
    }
}
