//! Health, readiness (with each projection's lag) and the OpenAPI document ([`super::spec`]).

use super::Shared;
use super::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use sportello_engine::ReadAll;
use sportello_projections::{ConsumerId, read_models, runner};
use sportello_workers::reactor::{REACTOR, Reactor};
use utoipa::ToSchema;

#[utoipa::path(get, path = "/healthz", tag = "operazioni",
    responses((status = 200, description = "The process answers")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionLag {
    pub name: String,
    pub version: u32,
    /// building (catching up for the first time) or live.
    pub status: String,
    pub checkpoint: u64,
    /// Positions of the log from the first event it reads and has not applied to the head (0
    /// when none of them concerns it: its checkpoint is recorded only every so often then).
    pub lag: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub head: u64,
    pub projections: Vec<ProjectionLag>,
}

/// A consumer as reported: its checkpoint, status, and lag behind the log's head.
pub struct Reported {
    pub id: ConsumerId,
    pub checkpoint: u64,
    pub status: String,
    pub lag: u64,
}

/// Every consumer this installation reports, at the log's `head`: the read models, and the
/// reactor once a worker has started it (while it lags, receipts wait).
pub async fn reported_consumers(
    state: &super::AppState,
    head: u64,
) -> Result<Vec<Reported>, ApiError> {
    let mut consumers: Vec<(ConsumerId, ReadAll)> = read_models()
        .all()
        .iter()
        .map(|c| (c.id(), c.filter()))
        .collect();
    if state.reader.recorded_status(REACTOR).await?.is_some() {
        consumers.push((REACTOR, Reactor::events_read()));
    }
    let mut reported = Vec::with_capacity(consumers.len());
    for (id, reads) in consumers {
        let (checkpoint, status) = state.reader.status(id).await?;
        let lag = runner::lag(state.urp.log(), reads, checkpoint, head).await?;
        reported.push(Reported {
            id,
            checkpoint,
            status,
            lag,
        });
    }
    Ok(reported)
}

#[utoipa::path(get, path = "/readyz", tag = "operazioni",
    responses((status = 200, body = Readiness, description = "Every projection is live"),
              (status = 503, body = Readiness, description = "A projection is still being built")))]
pub async fn readyz(
    State(state): State<Shared>,
) -> Result<(StatusCode, Json<Readiness>), ApiError> {
    let head = state.urp.log().head().await?;
    let projections: Vec<ProjectionLag> = reported_consumers(&state, head)
        .await?
        .into_iter()
        .map(|c| ProjectionLag {
            name: c.id.name.into(),
            version: c.id.version,
            status: c.status,
            checkpoint: c.checkpoint,
            lag: c.lag,
        })
        .collect();
    let ready = projections.iter().all(|p| p.status == "live");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        Json(Readiness {
            ready,
            head,
            projections,
        }),
    ))
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "operazioni",
    responses((status = 200, description = "This document")))]
pub async fn openapi(State(state): State<Shared>) -> Json<serde_json::Value> {
    Json(state.openapi.clone())
}
