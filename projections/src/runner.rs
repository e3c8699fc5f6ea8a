//! Running a projection: catch up from its checkpoint, then follow the log.

use crate::model::Projection;
use crate::views::{LEASE, Views, ViewsError};
use futures::StreamExt;
use sportello_engine::{EventLog, RecordedEvent};
use sqlx::Connection;
use std::future::Future;
use std::time::Duration;

/// Events applied per transaction.
const BATCH: usize = 2000;

/// Proof that this process is the projection's only runner; dropping it lets another take over.
pub enum RunnerGuard {
    /// SQLite: a lease renewed by every batch and while idle.
    Lease { owner: String },
    /// PostgreSQL: a session advisory lock, released by the server when this connection ends.
    Advisory {
        owner: String,
        _connection: sqlx::PgConnection,
    },
}

impl RunnerGuard {
    pub fn owner(&self) -> &str {
        match self {
            RunnerGuard::Lease { owner } | RunnerGuard::Advisory { owner, .. } => owner,
        }
    }
}

/// Waits until this process may run projection `P`, then returns the guard.
pub async fn acquire<P: Projection>(
    views: &Views,
    store_url: &str,
    owner: &str,
) -> Result<RunnerGuard, ViewsError> {
    views.ensure::<P>().await?;
    loop {
        match views {
            Views::Sqlite(_) => {
                if views.take_lease::<P>(owner).await? {
                    return Ok(RunnerGuard::Lease {
                        owner: owner.to_owned(),
                    });
                }
            }
            Views::Postgres(_) => {
                let mut connection = sqlx::PgConnection::connect(store_url)
                    .await
                    .map_err(|e| ViewsError::Database(e.to_string()))?;
                let locked: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock(hashtext('sportello-projection:' || $1))",
                )
                .bind(P::NAME)
                .fetch_one(&mut connection)
                .await
                .map_err(|e| ViewsError::Database(e.to_string()))?;
                if locked {
                    return Ok(RunnerGuard::Advisory {
                        owner: owner.to_owned(),
                        _connection: connection,
                    });
                }
            }
        }
        tracing::debug!(
            projection = P::NAME,
            "another runner holds the projection; waiting"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Applies every event after the checkpoint up to the current end of the log. `progress` gets
/// (checkpoint, head) after each batch. Returns the checkpoint.
pub async fn catch_up<P: Projection>(
    log: &EventLog,
    views: &Views,
    guard: &RunnerGuard,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, ViewsError> {
    let head = log.head().await?;
    let mut checkpoint = views.checkpoint::<P>().await?;
    let mut query = P::filter();
    query.from = checkpoint + 1;
    query.limit = None;
    let mut batches = log.read_all(query).ready_chunks(BATCH);
    while let Some(batch) = batches.next().await {
        let events = batch
            .into_iter()
            .collect::<Result<Vec<RecordedEvent>, _>>()?;
        checkpoint = views.apply_batch::<P>(guard.owner(), events).await?;
        progress(checkpoint, head);
    }
    Ok(checkpoint)
}

/// Drops the projection and builds it again from the first event, then marks it live.
pub async fn rebuild<P: Projection>(
    log: &EventLog,
    views: &Views,
    guard: &RunnerGuard,
    progress: impl FnMut(u64, u64),
) -> Result<u64, ViewsError> {
    views.reset::<P>().await?;
    let checkpoint = catch_up::<P>(log, views, guard, progress).await?;
    views.create_indexes::<P>().await?;
    views.mark_live::<P>().await?;
    Ok(checkpoint)
}

/// Catches up, marks the projection live, then follows new events until `shutdown` completes.
pub async fn run<P: Projection>(
    log: &EventLog,
    views: &Views,
    guard: &RunnerGuard,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ViewsError> {
    let checkpoint = catch_up::<P>(log, views, guard, |_, _| {}).await?;
    views.mark_live::<P>().await?;
    let mut query = P::filter();
    query.from = checkpoint + 1;
    query.limit = None;
    let mut batches = log.subscribe(query).ready_chunks(BATCH);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return views.release_lease::<P>(guard.owner()).await,
            batch = batches.next() => {
                let Some(batch) = batch else { return Ok(()) };
                let events = batch.into_iter().collect::<Result<Vec<RecordedEvent>, _>>()?;
                views.apply_batch::<P>(guard.owner(), events).await?;
            }
            // Keep the lease while nothing happens.
            _ = tokio::time::sleep(LEASE / 3) => {
                if !views.take_lease::<P>(guard.owner()).await? {
                    return Err(ViewsError::LeaseLost(P::NAME));
                }
            }
        }
    }
}

/// Where an "as of" build stops.
#[derive(Debug, Clone, Copy)]
pub enum AsOf {
    /// Every event up to and including this global position.
    Position(u64),
    /// Every event that occurred before this instant.
    Instant(chrono::DateTime<chrono::Utc>),
}

/// Builds `P` into `views` (a scratch database) from the log as it stood at `as_of`, leaving the
/// live projections untouched. Returns the last position applied.
pub async fn build_as_of<P: Projection>(
    log: &EventLog,
    views: &Views,
    as_of: AsOf,
) -> Result<u64, ViewsError> {
    views.reset::<P>().await?;
    let owner = "as-of";
    if !views.take_lease::<P>(owner).await? {
        return Err(ViewsError::LeaseLost(P::NAME));
    }
    let mut query = P::filter();
    let cap = match as_of {
        AsOf::Position(p) => p,
        AsOf::Instant(t) => {
            query.occurred_until = Some(query.occurred_until.map_or(t, |u| u.min(t)));
            u64::MAX
        }
    };
    let mut last = 0;
    let mut batches = log
        .read_all(query)
        .take_while(|e| futures::future::ready(e.as_ref().map_or(true, |e| e.position <= cap)))
        .ready_chunks(BATCH);
    while let Some(batch) = batches.next().await {
        let events = batch
            .into_iter()
            .collect::<Result<Vec<RecordedEvent>, _>>()?;
        last = views.apply_batch::<P>(owner, events).await?;
    }
    views.create_indexes::<P>().await?;
    Ok(last)
}
