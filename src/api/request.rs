//! One span per request, and the request's id. `X-Request-Id` is taken from the request (a proxy
//! or a client may set it) or made; it comes back in the response, in every problem document,
//! and becomes the correlation id of every event the request appends, so a line of the log and
//! an event of the store can be traced to the request that caused them.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

pub const HEADER: &str = "x-request-id";

/// The id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId {
    /// As given (or made): what the response and the logs carry.
    pub text: String,
    /// The same, as the events' correlation id: the given text if it is a UUID, else a UUID
    /// derived from it (so the same given id always correlates the same).
    pub correlation: Uuid,
}

impl RequestId {
    fn from_header(value: Option<&HeaderValue>) -> Self {
        let given = value
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| (1..=200).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()));
        match given {
            Some(text) => RequestId {
                correlation: Uuid::parse_str(text)
                    .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, text.as_bytes())),
                text: text.to_owned(),
            },
            None => {
                let id = Uuid::now_v7();
                RequestId {
                    text: id.to_string(),
                    correlation: id,
                }
            }
        }
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request this task serves, if it serves one.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(RequestId::clone).ok()
}

/// The correlation id for events appended while serving a request.
pub fn correlation_id() -> Option<Uuid> {
    current().map(|r| r.correlation)
}

/// The outer layer: the span with method, route, status and latency, and the id.
pub async fn trace(request: Request, next: Next) -> Response {
    let id = RequestId::from_header(request.headers().get(HEADER));
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = tracing::field::Empty,
        request_id = %id.text,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = CURRENT
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    span.record("status", status);
    let elapsed = started.elapsed().as_secs_f64();
    span.record("latency_ms", elapsed * 1000.0);
    let route = response
        .extensions()
        .get::<RouteName>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    metrics::counter!("sportello_http_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("sportello_http_request_duration_seconds", "route" => route)
        .record(elapsed);
    span.in_scope(|| tracing::info!(status, "answered"));
    if let Ok(value) = HeaderValue::from_str(&id.text) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The inner layer, on matched routes only: names the route (`/api/v1/cases/{code}`, never the
/// code itself) in the request's span.
pub async fn name_route(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|path| {
        tracing::Span::current().record("route", path.as_str());
        RouteName(path.as_str().to_owned())
    });
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(route);
    }
    response
}

/// The matched route, for the metrics' labels (a template: never a code or an id).
#[derive(Clone)]
struct RouteName(String);
