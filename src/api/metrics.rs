//! `GET /metrics` in the Prometheus text format: what the process counted (HTTP requests by
//! route and status, jobs by queue and outcome, their durations) and, measured at each scrape,
//! every reported consumer's lag behind the log and the job queue's depth by status.

use super::Shared;
use super::problem::ApiError;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Seconds; a request or a job past 10 s is a failure of its own.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed on first use (tests build many routers in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then this one only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Installs the recorder and folds its histograms' samples into their buckets every 5 seconds.
/// The recorder keeps each sample until then: in a process nobody scrapes, every request and
/// every job would be kept for good.
pub fn install() {
    let handle = handle();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
}

#[utoipa::path(get, path = "/metrics", tag = "operazioni",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format")))]
pub async fn metrics(State(state): State<Shared>) -> Result<impl IntoResponse, ApiError> {
    let handle = handle();
    let head = state.urp.log().head().await?;
    for consumer in super::ops::reported_consumers(&state, head).await? {
        metrics::gauge!("sportello_consumer_lag_events", "consumer" => consumer.id.name)
            .set(consumer.lag as f64);
    }
    metrics::gauge!("sportello_log_head_position").set(head as f64);
    if let Some(queue) = &state.queue {
        // A queue out of reach must not hide the rest: the depth is then simply not updated.
        match queue.depth().await {
            Ok(depth) => {
                for (queue, status, count) in depth {
                    metrics::gauge!("sportello_queue_depth", "queue" => queue, "status" => status)
                        .set(count);
                }
            }
            Err(error) => tracing::warn!(%error, "queue depth not measured"),
        }
    }
    handle.run_upkeep();
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    ))
}
