//! `/opendata/`: the published files as the publication wrote them (`opendata.dir`), for a
//! harvester (the DCAT-AP_IT catalogue at `catalog.ttl` and `catalog.jsonld`) and for a person
//! (an index page). Read-only, open to every origin, with `ETag` and `Last-Modified` so that a
//! portal harvesting every night downloads only what changed.

use super::Shared;
use super::problem::ApiError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sportello_projections::opendata::{Dataset, Month};
use sportello_workers::publication::files::{current_manifests, month_in_italian, sha256};
use std::time::SystemTime;

/// Content types by extension: only these are served.
fn content_type(path: &str) -> Option<&'static str> {
    Some(match path.rsplit_once('.')?.1 {
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        "jsonld" => "application/ld+json",
        "ttl" => "text/turtle; charset=utf-8",
        _ => return None,
    })
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "Il file richiesto non è tra i dati pubblicati.",
    )
}

fn http_date(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn open_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("ETag, Last-Modified"),
    );
}

const FIXED: &str = "public, max-age=31536000, immutable";
const CHANGING: &str = "public, max-age=300";

/// What every published answer carries: open to every origin, its type, how long to cache it.
fn published(headers: &mut HeaderMap, kind: &'static str, cache: &'static str) {
    open_headers(headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
}

/// A CORS preflight (a browser app sending `If-None-Match` asks first).
pub async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    open_headers(headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("If-None-Match, If-Modified-Since"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

/// One published file; hidden folders (a version being written) and anything outside
/// `opendata.dir` are not reachable.
pub async fn file(
    State(state): State<Shared>,
    Path(path): Path<String>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || p.starts_with('.') || p.contains('\\'))
    {
        return Err(not_found());
    }
    let kind = content_type(&path).ok_or_else(not_found)?;
    let full = parts
        .iter()
        .fold(state.settings.opendata_dir(), |dir, p| dir.join(p));
    let (bytes, modified) = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&full)?;
        let modified = std::fs::metadata(&full)?.modified()?;
        Ok::<_, std::io::Error>((bytes, modified))
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|_| not_found())?;
    let etag = format!("\"{}\"", &sha256(&bytes)[..32]);
    let last_modified = http_date(modified);
    let fresh = match request.get(header::IF_NONE_MATCH) {
        Some(tags) => tags
            .to_str()
            .is_ok_and(|t| t.split(',').any(|t| t.trim() == etag || t.trim() == "*")),
        None => request
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .is_some_and(|since| {
                chrono::DateTime::<chrono::Utc>::from(modified).timestamp() <= since.timestamp()
            }),
    };
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(bytes))
    };
    // A version never changes; the index and the catalogue change with every publication.
    let cache = if parts.len() == 4 { FIXED } else { CHANGING };
    let headers = response.headers_mut();
    published(headers, kind, cache);
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    headers.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&last_modified).expect("an HTTP date"),
    );
    Ok(response)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The index page: the catalogue and every dataset's current files, newest month first.
pub async fn index(State(state): State<Shared>) -> Response {
    let dir = state.settings.opendata_dir();
    let current = tokio::task::spawn_blocking(move || current_manifests(&dir))
        .await
        .unwrap_or_default();
    let union = escape(&state.settings.union.name);
    let mut body = format!(
        "<!doctype html>\n<html lang=\"it\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Dati aperti degli URP — {union}</title>\n</head>\n<body>\n<main>\n\
         <h1>Dati aperti degli URP — {union}</h1>\n\
         <p>Dati mensili degli Uffici Relazioni con il Pubblico, con licenza \
         <a href=\"https://creativecommons.org/licenses/by/4.0/deed.it\">CC BY 4.0</a>. \
         I conteggi pari a 1 o 2 non sono pubblicati (segreto statistico): il metodo è descritto \
         in ogni <code>datapackage.json</code>.</p>\n\
         <p>Catalogo DCAT-AP_IT per i portali: <a href=\"catalog.ttl\">Turtle</a>, \
         <a href=\"catalog.jsonld\">JSON-LD</a>. Elenco dei file con le impronte SHA-256: \
         <a href=\"manifest.json\">manifest.json</a>.</p>\n"
    );
    for dataset in Dataset::ALL {
        let mut periods: Vec<_> = current
            .iter()
            .filter(|(m, _)| m.dataset == dataset.name())
            .collect();
        if periods.is_empty() {
            continue;
        }
        periods.sort_by(|a, b| b.0.period.cmp(&a.0.period));
        body.push_str(&format!(
            "<section>\n<h2>{}</h2>\n<p>{}</p>\n<ul>\n",
            escape(dataset.title()),
            escape(dataset.description())
        ));
        for (manifest, folder) in periods {
            let label =
                Month::parse(&manifest.period).map_or(manifest.period.clone(), month_in_italian);
            let stem = format!("{}-{}", manifest.dataset, manifest.period);
            body.push_str(&format!(
                "<li>{label} (versione {v}): <a href=\"{f}/{stem}.csv\">CSV</a>, \
                 <a href=\"{f}/{stem}.json\">JSON</a>, \
                 <a href=\"{f}/datapackage.json\">descrizione (Frictionless)</a></li>\n",
                label = escape(&label),
                v = manifest.version,
                f = escape(folder),
                stem = escape(&stem),
            ));
        }
        body.push_str("</ul>\n</section>\n");
    }
    if current.is_empty() {
        body.push_str("<p>Nessun dato è stato ancora pubblicato.</p>\n");
    }
    body.push_str("</main>\n</body>\n</html>\n");
    let mut response = Response::new(Body::from(body));
    published(response.headers_mut(), "text/html; charset=utf-8", CHANGING);
    response
}
