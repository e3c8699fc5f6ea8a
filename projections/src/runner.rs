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
            Views::Sqlite(..) => {
                if views.take_lease::<P>(owner).await? {
                    return Ok(RunnerGuard::Lease {
                        owner: owner.to_owned(),
                    });
                }
            }
            Views::Postgres(..) => {
                let mut connection = sqlx::PgConnection::connect(store_url)
                    .await
                    .map_err(|e| ViewsError::Database(e.to_string()))?;
                let locked: bool = sqlx::query_scalar(
                    "SELECT pg_try_advisory_lock(hashtext('sportello-projection:' || $1))",
                )
                .bind(P::table())
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
///
/// Each pass reads up to the head as it was when the pass began and then moves the checkpoint to
/// that head even if no event there concerned the projection: "has seen everything up to P" is
/// then a plain comparison, which read-your-writes needs (see [`has_reached`]).
pub async fn run<P: Projection>(
    log: &EventLog,
    views: &Views,
    guard: &RunnerGuard,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ViewsError> {
    tokio::pin!(shutdown);
    let mut seen = pass::<P>(log, views, guard).await?;
    views.mark_live::<P>().await?;
    let retired = views.retire_older::<P>().await?;
    if !retired.is_empty() {
        tracing::info!(projection = P::NAME, ?retired, "older versions retired");
    }
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => return views.release_lease::<P>(guard.owner()).await,
            _ = log.wait_for_append(seen, LEASE / 3) => {}
        }
        if log.head().await? > seen {
            seen = pass::<P>(log, views, guard).await?;
            renewed = tokio::time::Instant::now();
        } else if renewed.elapsed() >= LEASE / 3 {
            // Keep the lease while nothing happens, and drop older versions once the process
            // that served them (a deployment's previous binary) has let them go.
            if !views.take_lease::<P>(guard.owner()).await? {
                return Err(ViewsError::LeaseLost(P::NAME));
            }
            let retired = views.retire_older::<P>().await?;
            if !retired.is_empty() {
                tracing::info!(projection = P::NAME, ?retired, "older versions retired");
            }
            renewed = tokio::time::Instant::now();
        }
    }
}

/// Applies what the log holds past the checkpoint up to the head read first, then records that
/// head as seen. Returns it.
async fn pass<P: Projection>(
    log: &EventLog,
    views: &Views,
    guard: &RunnerGuard,
) -> Result<u64, ViewsError> {
    let head = log.head().await?;
    let checkpoint = views.checkpoint::<P>().await?;
    if checkpoint >= head {
        return Ok(checkpoint);
    }
    let mut query = P::filter();
    query.from = checkpoint + 1;
    let mut batches = log
        .read_all(query)
        .take_while(|e| futures::future::ready(e.as_ref().map_or(true, |e| e.position <= head)))
        .ready_chunks(BATCH);
    while let Some(batch) = batches.next().await {
        let events = batch
            .into_iter()
            .collect::<Result<Vec<RecordedEvent>, _>>()?;
        views.apply_batch::<P>(guard.owner(), events).await?;
    }
    views.advance_checkpoint::<P>(guard.owner(), head).await?;
    Ok(head)
}

/// True when projection `P` has applied every event it reads up to `position`: its checkpoint is
/// there (a running runner moves it to every head it has seen), or no event it reads lies between
/// its checkpoint and `position` (checked on the log, for a projection nobody runs right now).
pub async fn has_reached<P: Projection>(
    log: &EventLog,
    views: &Views,
    position: u64,
) -> Result<bool, ViewsError> {
    let checkpoint = views.checkpoint::<P>().await?;
    if checkpoint >= position {
        return Ok(true);
    }
    let mut query = P::filter();
    query.from = checkpoint + 1;
    query.limit = Some(1);
    let mut next = log.read_all(query);
    Ok(match next.next().await {
        Some(event) => event?.position > position,
        None => true,
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
