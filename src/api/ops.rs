//! Health, readiness (with each projection's lag) and the OpenAPI document ([`super::spec`]).

use super::Shared;
use super::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use sportello_projections::{ConsumerId, read_models};
use sportello_workers::reactor::REACTOR;
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
    /// Positions of the log not yet considered by the projection.
    pub lag: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub head: u64,
    pub projections: Vec<ProjectionLag>,
}

/// Every consumer this installation reports, with its checkpoint and status: the read models, and
/// the reactor once a worker has started it (while it lags, receipts wait).
pub async fn reported_consumers(
    state: &super::AppState,
) -> Result<Vec<(ConsumerId, u64, String)>, ApiError> {
    let mut ids: Vec<ConsumerId> = read_models().all().iter().map(|c| c.id()).collect();
    if state.views.recorded_status(REACTOR).await?.is_some() {
        ids.push(REACTOR);
    }
    let mut reported = Vec::with_capacity(ids.len());
    for id in ids {
        let (checkpoint, status) = state.views.status(id).await?;
        reported.push((id, checkpoint, status));
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
    let mut projections = Vec::new();
    for (id, checkpoint, status) in reported_consumers(&state).await? {
        projections.push(ProjectionLag {
            name: id.name.into(),
            version: id.version,
            status,
            checkpoint,
            lag: head.saturating_sub(checkpoint),
        });
    }
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
