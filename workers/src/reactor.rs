//! The reactor: a consumer of the log, run by the same runner as the projections (one runner at
//! a time across nodes, fenced), that queues the jobs events call for. Requests never queue
//! anything themselves: what is in the log is all that happened, and the reactor is how the rest
//! follows.
//!
//! Its checkpoint moves only after the queue has stored every job of a batch, so a crash replays
//! the batch and the jobs' idempotency keys (from the causing event) make the replay queue
//! nothing twice.

use crate::queue::{NoticeJob, Queue};
use async_trait::async_trait;
use sportello_engine::domain::case::{CaseEvent, NoticeKind};
use sportello_engine::{ReadAll, RecordedEvent};
use sportello_projections::{Consumer, ConsumerId, RunnerGuard, Views, ViewsError};

pub const REACTOR: ConsumerId = ConsumerId {
    name: "reactor",
    version: 1,
};

pub struct Reactor {
    queue: Queue,
    attempts: u64,
}

impl Reactor {
    pub fn new(queue: Queue, attempts: u64) -> Self {
        Self { queue, attempts }
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

#[async_trait]
impl Consumer for Reactor {
    fn id(&self) -> ConsumerId {
        REACTOR
    }

    fn filter(&self) -> ReadAll {
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
        let count = jobs.len();
        self.queue
            .push(jobs, self.attempts)
            .await
            .map_err(|e| ViewsError::Unavailable(e.to_string()))?;
        views.advance_checkpoint(guard, last).await?;
        metrics::counter!("sportello_reactor_jobs_queued_total").increment(count as u64);
        Ok(last)
    }
}
