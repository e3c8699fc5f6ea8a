//! Health, readiness (with each projection's lag) and the OpenAPI document.

use super::problem::ApiError;
use super::{Shared, public, staff};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use sportello_projections::read_models;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

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

#[utoipa::path(get, path = "/readyz", tag = "operazioni",
    responses((status = 200, body = Readiness, description = "Every projection is live"),
              (status = 503, body = Readiness, description = "A projection is still being built")))]
pub async fn readyz(
    State(state): State<Shared>,
) -> Result<(StatusCode, Json<Readiness>), ApiError> {
    let head = state.urp.log().head().await?;
    let mut projections = Vec::new();
    for consumer in read_models().all() {
        let id = consumer.id();
        let (checkpoint, status) = state.views.status(id).await?;
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

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`sportello token create --role … --comune … --name …`",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sportello",
        description = "API degli Uffici Relazioni con il Pubblico: richieste dei cittadini, moduli, valutazioni; lavoro degli operatori e statistiche. Errori in formato RFC 9457 (application/problem+json) con codice stabile e messaggio in italiano.",
        license(name = "EUPL-1.2")
    ),
    paths(
        public::open_case, public::follow_case, public::send_documents, public::withdraw,
        public::services, public::service, public::form, public::submit, public::feedback,
        staff::me, staff::inbox, staff::case_detail, staff::open_case, staff::act,
        staff::satisfaction, staff::service_levels, staff::erase_subject,
        healthz, readyz,
    ),
    components(schemas(super::problem::Problem, super::problem::FieldProblem)),
    modifiers(&BearerAuth),
    tags(
        (name = "pubblico", description = "Per i cittadini, senza autenticazione"),
        (name = "staff", description = "Per il personale URP, con token"),
        (name = "operazioni", description = "Stato del servizio"),
    )
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/api/openapi.json", tag = "operazioni",
    responses((status = 200, description = "This document")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
