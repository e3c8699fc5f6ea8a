//! The HTTP API (`sportello serve`): public intake under `/api/v1`, the staff's work under
//! `/api/v1/staff`, and `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`.
//!
//! ## Layout
//! - [`problem`]: RFC 9457 errors and the extractors that produce them.
//! - [`guard`]: staff tokens, per-address rate limits, idempotency keys, read-your-writes.
//! - [`public`]: what a citizen does (open a case, follow it, submit a form, rate).
//! - [`staff`]: the inbox, case detail and actions, statistics, erasure.
//! - [`ops`]: health, readiness with projection lag, the OpenAPI document.
//! - [`metrics`]: `/metrics` for Prometheus.
//! - [`open311`]: Open311 GeoReport v2 under `/open311/v2/`, for reporting apps.
//! - [`spec`]: the OpenAPI document, completed with what every operation of a kind answers.
//! - [`request`]: a span per request and its `X-Request-Id`, the correlation id of its events.
//!
//! The pages people use are in [`crate::web`], merged here.

pub mod guard;
pub mod metrics;
pub mod open311;
pub mod opendata;
pub mod ops;
pub mod problem;
pub mod public;
pub mod request;
pub mod spec;
pub mod staff;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use guard::{RateLimiter, TokenCache};
use problem::ApiError;
use sportello_config::Settings;
use sportello_engine::app::Urp;
use sportello_projections::Views;
use std::sync::Arc;
use std::time::Duration;

/// What every handler shares.
pub struct AppState {
    pub urp: Urp,
    /// The read models' database, for what this process writes there (sign-in sessions,
    /// idempotency keys); the runners have their own connections.
    pub views: Views,
    /// Where queries read the read models, with their checkpoints: `views`, or a replica of it
    /// (`store.read_url`).
    pub reader: Views,
    pub settings: Arc<Settings>,
    pub limiter: RateLimiter,
    pub tokens: TokenCache,
    /// How long a query given `min_position` waits for its projection.
    pub consistency_wait: Duration,
    /// The OpenAPI document of this installation, made once.
    pub openapi: serde_json::Value,
    /// The job queues, for their depth in `/metrics` (none where this process runs no workers).
    pub queue: Option<sportello_workers::queue::Queues>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(urp: Urp, views: Views, settings: Arc<Settings>) -> Self {
        let api = &settings.api;
        Self {
            limiter: RateLimiter::new(api.public_posts_per_minute, api.public_burst),
            tokens: TokenCache::default(),
            consistency_wait: Duration::from_millis(api.consistency_wait_ms),
            openapi: spec::document(&settings),
            urp,
            reader: views.clone(),
            views,
            settings,
            queue: None,
        }
    }

    /// Queries read a replica of the read models' database.
    pub fn with_reader(mut self, reader: Views) -> Self {
        self.reader = reader;
        self
    }

    pub fn with_queue(mut self, queue: sportello_workers::queue::Queues) -> Self {
        self.queue = Some(queue);
        self
    }
}

/// The whole HTTP API; tests drive it in-process (`tower::ServiceExt::oneshot`) or serve it.
pub fn app(state: Shared) -> Router {
    let max_body = state.settings.api.max_body_bytes as usize;
    let public = Router::new()
        .route("/cases", post(public::open_case))
        .route("/cases/{code}", get(public::follow_case))
        .route("/cases/{code}/documents", post(public::send_documents))
        .route("/cases/{code}/withdraw", post(public::withdraw))
        .route("/services", get(public::services))
        .route("/services/{code}", get(public::service))
        .route("/forms/{id}", get(public::form))
        .route("/submissions", post(public::submit))
        .route("/feedback", post(public::feedback));
    let staff = Router::new()
        .route("/me", get(staff::me))
        .route("/cases", get(staff::inbox).post(staff::open_case))
        .route("/cases/{id}", get(staff::case_detail))
        .route(
            "/cases/{id}/documents/{document}",
            get(staff::case_document),
        )
        .route("/cases/{id}/{action}", post(staff::act))
        .route("/stats/satisfaction", get(staff::satisfaction))
        .route("/stats/service-levels", get(staff::service_levels))
        .route("/subjects/{subject_id}/erase", post(staff::erase_subject));
    Router::new()
        .nest("/api/v1", public.nest("/staff", staff))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/open311/{file}", get(open311::discovery))
        .route(
            "/open311/v2/{file}",
            get(open311::list).post(open311::create),
        )
        .route("/open311/v2/services/{file}", get(open311::definition))
        .route("/open311/v2/requests/{file}", get(open311::request))
        .route("/open311/v2/tokens/{file}", get(open311::token))
        .route("/opendata/", get(opendata::index))
        .route(
            "/opendata/{*path}",
            get(opendata::file).options(opendata::preflight),
        )
        .merge(crate::web::routes())
        .route_layer(axum::middleware::from_fn(request::name_route))
        .fallback(crate::web::not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Metodo non consentito per questa risorsa.",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(crate::web::security_headers))
        .layer(axum::middleware::from_fn(request::trace))
        .with_state(state)
}
