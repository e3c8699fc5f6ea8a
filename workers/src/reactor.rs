//! The reactor: a consumer of the log, run by the same runner as the projections (one runner at
//! a time across nodes, fenced), that queues the jobs events call for. Requests never queue
//! anything themselves: what is in the log is all that happened, and the reactor is how the rest
//! follows.
//!
//! Its checkpoint moves only after the queue has stored every job of a batch, so a crash replays
//! the batch and the jobs' idempotency keys (from the causing event) make the replay queue
//! nothing twice.
//!
//! It holds back while the queue has `workers.max_waiting_jobs` waiting: a backlog (a relay down
//! for hours, a million cases imported) stays in the log, where it costs nothing, instead of
//! filling the queue (Redis's memory; and a Redis queue of 300,000 jobs served a third of the rate
//! of one of 30,000 in `bench receipts`).

use crate::queue::{NoticeJob, Queue};
use async_trait::async_trait;
use sportello_engine::domain::case::{CaseEvent, NoticeKind};
use sportello_engine::{ReadAll, RecordedEvent};
use sportello_projections::{Consumer, ConsumerId, LEASE, RunnerGuard, Views, ViewsError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const REACTOR: ConsumerId = ConsumerId {
    name: "reactor",
    version: 1,
};

pub struct Reactor {
    queue: Queue,
    attempts: u64,
    max_waiting: u64,
    /// Jobs queued since the queue's waiting jobs were last counted: they are counted once every
    /// `max_waiting / 2` jobs, not at every batch.
    unchecked: AtomicU64,
}

impl Reactor {
    pub fn new(queue: Queue, attempts: u64, max_waiting: u64) -> Self {
        Self {
            queue,
            attempts,
            max_waiting: max_waiting.max(2),
            unchecked: AtomicU64::new(0),
        }
    }

    /// Waits until at most half of `max_waiting` jobs wait in the queue, keeping the runner's
    /// lease meanwhile.
    async fn wait_for_room(&self, views: &Views, guard: &RunnerGuard) -> Result<(), ViewsError> {
        let mut renewed = tokio::time::Instant::now();
        loop {
            let waiting = self.queue.waiting().await.map_err(unavailable)?;
            metrics::gauge!("sportello_reactor_queue_waiting").set(waiting as f64);
            if waiting <= self.max_waiting / 2 {
                return Ok(());
            }
            if renewed.elapsed() >= LEASE / 3 {
                if !views.renew(guard).await? {
                    return Err(ViewsError::LeaseLost(REACTOR.name));
                }
                renewed = tokio::time::Instant::now();
            }
            tracing::debug!(waiting, "queue full; the reactor waits for the workers");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The reactor lives as long as the process; the registry holds `'static` consumers.
    pub fn leak(self) -> &'static Reactor {
        Box::leak(Box::new(self))
    }
}

/// The notice an event calls for, if any.
pub fn notice_for(event: &RecordedEvent) -> Option<NoticeJob> {
    let kind = match event.event_type.as_str() {
        "CaseOpened" => NoticeKind::Receipt,
        "CaseTakenInCharge" => NoticeKind::TakenInCharge,
        "DocumentsRequested" => NoticeKind::DocumentsRequested,
        "CaseAnswered" => NoticeKind::Answered,
        _ => return None,
    };
    // Decoding checks it is a case event of this program, not only a name that matches.
    event.decode::<CaseEvent>().ok()?;
    Some(NoticeJob {
        case_id: uuid::Uuid::parse_str(event.stream.id()).ok()?,
        cause: event.id,
        kind,
    })
}

impl Reactor {
    /// The events it turns into notices (what a reported lag counts).
    pub fn events_read() -> ReadAll {
        ReadAll {
            categories: vec!["case".into()],
            event_types: [
                "CaseOpened",
                "CaseTakenInCharge",
                "DocumentsRequested",
                "CaseAnswered",
            ]
            .map(String::from)
            .to_vec(),
            ..ReadAll::default()
        }
    }
}

#[async_trait]
impl Consumer for Reactor {
    fn id(&self) -> ConsumerId {
        REACTOR
    }

    fn filter(&self) -> ReadAll {
        Reactor::events_read()
    }

    async fn ensure(&self, views: &Views) -> Result<(), ViewsError> {
        views.ensure_checkpoint(REACTOR).await
    }

    async fn reset(&self, views: &Views) -> Result<(), ViewsError> {
        views.reset_checkpoint(REACTOR).await
    }

    async fn apply(
        &self,
        views: &Views,
        guard: &RunnerGuard,
        events: Vec<RecordedEvent>,
    ) -> Result<u64, ViewsError> {
        let checkpoint = views.checkpoint(REACTOR).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(checkpoint);
        };
        let jobs: Vec<NoticeJob> = events
            .iter()
            .filter(|e| e.position > checkpoint)
            .filter_map(notice_for)
            .collect();
        let count = jobs.len() as u64;
        // In parts of at most half the limit, each pushed once the queue was seen to hold at most
        // the other half: the reactor never makes the queue hold more than `max_waiting`.
        let half = self.max_waiting / 2;
        for part in jobs.chunks(half as usize) {
            let size = part.len() as u64;
            if self.unchecked.load(Ordering::Relaxed) + size > half {
                self.wait_for_room(views, guard).await?;
                self.unchecked.store(0, Ordering::Relaxed);
            }
            self.queue
                .push(part.to_vec(), self.attempts)
                .await
                .map_err(unavailable)?;
            self.unchecked.fetch_add(size, Ordering::Relaxed);
        }
        views.advance_checkpoint(guard, last).await?;
        metrics::counter!("sportello_reactor_jobs_queued_total").increment(count);
        Ok(last)
    }
}

fn unavailable(e: crate::queue::QueueError) -> ViewsError {
    ViewsError::Unavailable(e.to_string())
}
