//! Running a consumer of the log: catch up from its checkpoint, then follow the log.
//!
//! A [`Consumer`] is anything that reads the log in order and keeps a checkpoint: a projection
//! (its rows and checkpoint in one transaction, [`ReadModel`]) or a reactor whose effect is
//! elsewhere (jobs enqueued idempotently, then the checkpoint moved). The runner gives each one a
//! single runner at a time ([`RunnerGuard`]), batches, and the same catch-up, follow, rebuild and
//! as-of builds.

use crate::model::{ConsumerId, Projection};
pub use crate::views::RunnerGuard;
use crate::views::{LEASE, Views, ViewsError};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use sportello_engine::{EventLog, ReadAll, RecordedEvent, StoreError};
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

/// Events applied per transaction.
const BATCH: usize = 2000;

/// A checkpointed reader of the log.
#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    fn id(&self) -> ConsumerId;
    /// The events it reads.
    fn filter(&self) -> ReadAll;
    /// Creates what it keeps (tables, its checkpoint) if missing.
    async fn ensure(&self, views: &Views) -> Result<(), ViewsError>;
    /// Forgets what it kept, to start again from the first event.
    async fn reset(&self, views: &Views) -> Result<(), ViewsError>;
    /// Runs once a build from the first event is done (a projection's indexes).
    async fn finish_build(&self, _views: &Views) -> Result<(), ViewsError> {
        Ok(())
    }
    /// Applies a batch and moves the checkpoint past it, fenced by `guard`: events at or below
    /// the checkpoint are skipped, so a batch replayed after a crash changes nothing. Returns the
    /// checkpoint.
    async fn apply(
        &self,
        views: &Views,
        guard: &RunnerGuard,
        events: Vec<RecordedEvent>,
    ) -> Result<u64, ViewsError>;
    /// True when it unseals personal data (its views need the vault).
    fn unseals(&self) -> bool {
        false
    }
    /// Applies `batches` in turn as [`Consumer::apply`] does, calling `progress` with the
    /// checkpoint after each. Returns the last checkpoint, `None` when there was no batch.
    async fn apply_all(
        &self,
        views: &Views,
        guard: &RunnerGuard,
        mut batches: Batches,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Option<u64>, ViewsError> {
        let mut checkpoint = None;
        while let Some(events) = batches.next().await {
            let applied = self.apply(views, guard, events?).await?;
            progress(applied);
            checkpoint = Some(applied);
        }
        Ok(checkpoint)
    }
}

/// The log read in batches, as a runner applies it.
pub type Batches = BoxStream<'static, Result<Vec<RecordedEvent>, StoreError>>;

/// A [`Projection`] as a consumer: its rows and checkpoint move in one transaction.
pub struct ReadModel<P>(PhantomData<fn() -> P>);

impl<P> ReadModel<P> {
    pub const NEW: Self = ReadModel(PhantomData);
}

/// The consumer of projection `P`.
pub fn read_model<P: Projection>() -> &'static dyn Consumer {
    &ReadModel::<P>::NEW
}

#[async_trait]
impl<P: Projection> Consumer for ReadModel<P> {
    fn id(&self) -> ConsumerId {
        P::id()
    }

    fn filter(&self) -> ReadAll {
        P::filter()
    }

    async fn ensure(&self, views: &Views) -> Result<(), ViewsError> {
        views.ensure::<P>().await
    }

    async fn reset(&self, views: &Views) -> Result<(), ViewsError> {
        views.reset::<P>().await
    }

    async fn finish_build(&self, views: &Views) -> Result<(), ViewsError> {
        views.finish_build::<P>().await
    }

    async fn apply(
        &self,
        views: &Views,
        guard: &RunnerGuard,
        events: Vec<RecordedEvent>,
    ) -> Result<u64, ViewsError> {
        views.apply_batch::<P>(guard, events).await
    }

    fn unseals(&self) -> bool {
        P::UNSEALS
    }

    /// Decodes each batch while the one before it is applied: the database's thread, which
    /// bounds a rebuild, does only the database's work.
    async fn apply_all(
        &self,
        views: &Views,
        guard: &RunnerGuard,
        mut batches: Batches,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Option<u64>, ViewsError> {
        let (decoded, mut ready) = tokio::sync::mpsc::channel(1);
        let decoder = {
            let views = views.clone();
            tokio::spawn(async move {
                while let Some(events) = batches.next().await {
                    let batch = match events {
                        Ok(events) => views.decode_batch::<P>(events).await,
                        Err(e) => Err(e.into()),
                    };
                    let failed = batch.is_err();
                    if decoded.send(batch).await.is_err() || failed {
                        return;
                    }
                }
            })
        };
        let applied = async {
            let mut checkpoint = None;
            while let Some(batch) = ready.recv().await {
                let applied = views.apply_decoded::<P>(guard, batch?).await?;
                progress(applied);
                checkpoint = Some(applied);
            }
            Ok(checkpoint)
        }
        .await;
        decoder.abort();
        applied
    }
}

/// Waits until this process may run `consumer`, then returns the guard.
pub async fn acquire(
    views: &Views,
    store_url: &str,
    consumer: &dyn Consumer,
    owner: &str,
) -> Result<RunnerGuard, ViewsError> {
    consumer.ensure(views).await?;
    loop {
        if let Some(guard) = views.try_acquire(store_url, consumer.id(), owner).await? {
            return Ok(guard);
        }
        tracing::debug!(
            consumer = consumer.id().name,
            "another runner holds it; waiting"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Applies every event after the checkpoint up to `until` (the current end of the log when
/// `None`). `progress` gets (checkpoint, head) after each batch. Returns the last checkpoint.
async fn apply_from_checkpoint(
    log: &EventLog,
    views: &Views,
    consumer: &dyn Consumer,
    guard: &RunnerGuard,
    query: ReadAll,
    until: u64,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<u64, ViewsError> {
    let checkpoint = views.checkpoint(consumer.id()).await?;
    let mut query = query;
    query.from = checkpoint + 1;
    query.limit = None;
    let batches = log
        .read_all(query)
        .take_while(move |e| {
            futures::future::ready(e.as_ref().map_or(true, |e| e.position <= until))
        })
        .ready_chunks(BATCH)
        .map(|batch| batch.into_iter().collect::<Result<Vec<RecordedEvent>, _>>())
        .boxed();
    let mut progress = |applied| progress(applied, until);
    Ok(consumer
        .apply_all(views, guard, batches, &mut progress)
        .await?
        .unwrap_or(checkpoint))
}

/// Applies every event after the checkpoint up to the current end of the log. `progress` gets
/// (checkpoint, head) after each batch. Returns the checkpoint.
pub async fn catch_up(
    log: &EventLog,
    views: &Views,
    consumer: &dyn Consumer,
    guard: &RunnerGuard,
    progress: impl FnMut(u64, u64) + Send,
) -> Result<u64, ViewsError> {
    let head = log.head().await?;
    apply_from_checkpoint(
        log,
        views,
        consumer,
        guard,
        consumer.filter(),
        head,
        progress,
    )
    .await
}

/// Drops what the consumer kept and builds it again from the first event, then marks it live.
pub async fn rebuild(
    log: &EventLog,
    views: &Views,
    consumer: &dyn Consumer,
    guard: &RunnerGuard,
    progress: impl FnMut(u64, u64) + Send,
) -> Result<u64, ViewsError> {
    consumer.reset(views).await?;
    let checkpoint = catch_up(log, views, consumer, guard, progress).await?;
    consumer.finish_build(views).await?;
    views.mark_live(consumer.id()).await?;
    Ok(checkpoint)
}

/// Catches up, marks the consumer live, then follows new events until `shutdown` completes.
///
/// Each pass reads up to the head as it was when the pass began. The checkpoint moves with what
/// it applies; past events that do not concern the consumer it moves only every
/// [`IDLE_CHECKPOINT_LAG`] positions, as each move is a commit (a page written to disk for
/// nothing): [`has_reached`] and [`lag`] find on the log that nothing in between concerns it.
pub async fn run(
    log: &EventLog,
    views: &Views,
    consumer: &dyn Consumer,
    guard: &RunnerGuard,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ViewsError> {
    tokio::pin!(shutdown);
    let id = consumer.id();
    let mut seen = pass(log, views, consumer, guard).await?;
    views.mark_live(id).await?;
    retire_older(views, id).await?;
    let mut renewed = tokio::time::Instant::now();
    loop {
        views.refresh_statistics().await?;
        tokio::select! {
            _ = &mut shutdown => return views.release(guard).await,
            _ = log.wait_for_append(seen, LEASE / 3) => {}
        }
        if log.head().await? > seen {
            seen = pass(log, views, consumer, guard).await?;
            renewed = tokio::time::Instant::now();
        } else if renewed.elapsed() >= LEASE / 3 {
            // Keep the guard while nothing happens, and drop older versions once the process
            // that served them (a deployment's previous binary) has let them go.
            if !views.renew(guard).await? {
                return Err(ViewsError::LeaseLost(id.name));
            }
            retire_older(views, id).await?;
            renewed = tokio::time::Instant::now();
        }
    }
}

/// Positions of events that do not concern a consumer it passes without recording its checkpoint.
pub const IDLE_CHECKPOINT_LAG: u64 = 256;

async fn retire_older(views: &Views, id: ConsumerId) -> Result<(), ViewsError> {
    let retired = views.retire_older(id).await?;
    if !retired.is_empty() {
        tracing::info!(consumer = id.name, ?retired, "older versions retired");
    }
    Ok(())
}

/// Applies what the log holds past the checkpoint up to the head read first; records that head
/// as the checkpoint when what was not applied reaches [`IDLE_CHECKPOINT_LAG`]. Returns the head.
async fn pass(
    log: &EventLog,
    views: &Views,
    consumer: &dyn Consumer,
    guard: &RunnerGuard,
) -> Result<u64, ViewsError> {
    let head = log.head().await?;
    if views.checkpoint(consumer.id()).await? >= head {
        return Ok(head);
    }
    let applied = apply_from_checkpoint(
        log,
        views,
        consumer,
        guard,
        consumer.filter(),
        head,
        |_, _| {},
    )
    .await?;
    if head - applied >= IDLE_CHECKPOINT_LAG {
        views.advance_checkpoint(guard, head).await?;
    }
    Ok(head)
}

/// The position of the first event `filter` reads after `checkpoint`, if any.
async fn first_unapplied(
    log: &EventLog,
    filter: ReadAll,
    checkpoint: u64,
) -> Result<Option<u64>, ViewsError> {
    let mut query = filter;
    query.from = checkpoint + 1;
    query.limit = Some(1);
    let mut next = log.read_all(query);
    Ok(match next.next().await {
        Some(event) => Some(event?.position),
        None => None,
    })
}

/// True when `consumer` has applied every event it reads up to `position`: its checkpoint is
/// there, or no event it reads lies between its checkpoint and `position` (checked on the log: a
/// runner does not record every position it passes, and nobody may be running it right now). A
/// position past the log's head is not reached: it was not written here yet (a client's mistake,
/// or a write on another node this one has not seen), and answering would pass stale data off as
/// fresh.
pub async fn has_reached(
    log: &EventLog,
    views: &Views,
    consumer: &dyn Consumer,
    position: u64,
) -> Result<bool, ViewsError> {
    let checkpoint = views.checkpoint(consumer.id()).await?;
    if checkpoint >= position {
        return Ok(true);
    }
    if position > log.head().await? {
        return Ok(false);
    }
    Ok(first_unapplied(log, consumer.filter(), checkpoint)
        .await?
        .is_none_or(|next| next > position))
}

/// Waits until each of `consumers` has applied the log up to `position` (see [`has_reached`]),
/// looking again after 1 ms, then twice as long each time up to 200 ms. Returns the first one
/// still behind once `patience` has passed, `None` when all are there.
pub async fn wait_until_reached(
    log: &EventLog,
    views: &Views,
    consumers: &[&'static dyn Consumer],
    position: u64,
    patience: Duration,
) -> Result<Option<ConsumerId>, ViewsError> {
    let started = tokio::time::Instant::now();
    for &consumer in consumers {
        let mut pause = Duration::from_millis(1);
        while !has_reached(log, views, consumer, position).await? {
            if started.elapsed() >= patience {
                return Ok(Some(consumer.id()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
    Ok(None)
}

/// How far behind `head` a consumer at `checkpoint` is: the positions from the first event it
/// reads and has not applied up to `head` (0 when none of them concerns it).
pub async fn lag(
    log: &EventLog,
    filter: ReadAll,
    checkpoint: u64,
    head: u64,
) -> Result<u64, ViewsError> {
    if checkpoint >= head {
        return Ok(0);
    }
    Ok(match first_unapplied(log, filter, checkpoint).await? {
        Some(next) if next <= head => head + 1 - next,
        _ => 0,
    })
}

/// Where an "as of" build stops.
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    /// Every event up to and including this global position.
    Position(u64),
    /// Every event that occurred before this instant.
    Instant(chrono::DateTime<chrono::Utc>),
}

/// Builds `consumer` into `views` (a scratch database) from the log as it stood at `as_of`,
/// leaving the live read models untouched. Returns the last position applied.
pub async fn build_as_of(
    log: &EventLog,
    views: &Views,
    consumer: &dyn Consumer,
    as_of: AsOf,
) -> Result<u64, ViewsError> {
    consumer.reset(views).await?;
    let guard = views
        .try_acquire("", consumer.id(), "as-of")
        .await?
        .ok_or(ViewsError::LeaseLost(consumer.id().name))?;
    let mut query = consumer.filter();
    let until = match as_of {
        AsOf::Position(p) => p,
        AsOf::Instant(t) => {
            query.occurred_until = Some(query.occurred_until.map_or(t, |u| u.min(t)));
            u64::MAX
        }
    };
    let last = apply_from_checkpoint(log, views, consumer, &guard, query, until, |_, _| {}).await?;
    consumer.finish_build(views).await?;
    views.release(&guard).await?;
    Ok(last)
}
