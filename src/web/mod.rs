//! The pages people use, served by `sportello serve` beside the API and on the same application
//! service (`Urp`, the read models): no page calls the API over HTTP.
//!
//! Server-rendered HTML (askama templates in `templates/`, checked when the binary compiles,
//! escaping everything they print) in the Designers Italia style with Bootstrap Italia's CSS
//! ([`assets`]). Every page works without JavaScript.
//!
//! ## Layout
//! - [`forms`]: a published form, generated from its definition, filled in and sent.
//! - [`rating`]: rating a service page or a closed case (stars, or the three faces).
//! - [`citizen`]: the public pages — home, catalogue of services, a new contact, following a case.
//! - [`session`]: the staff's sign-in, sessions and CSRF tokens.
//! - [`staff`]: the staff's pages — the inbox, a case and its actions, counter intake.
//! - [`admin`]: the administrators' page — accounts, tokens, erasure, jobs, open data.
//! - [`stats`]: the statistics page, its charts ([`chart`]), tables and CSV files.
//! - [`assets`]: the embedded static files.
//! - This module: the routes, the security headers every response carries, the check that a form
//!   was posted from this site, and the HTML error page.

pub mod admin;
pub mod assets;
pub mod chart;
pub mod citizen;
pub mod forms;
pub mod rating;
pub mod session;
pub mod staff;
pub mod stats;

use crate::api::Shared;
use crate::api::problem::ApiError;
use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sportello_engine::app::staff::Role;

/// The pages and their static files.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(citizen::home))
        .route("/servizi", get(citizen::services))
        .route("/servizi/{code}", get(citizen::service))
        .route(
            "/contatti/nuovo",
            get(citizen::contact_form).post(citizen::open_contact),
        )
        .route(
            "/pratiche",
            get(citizen::follow_form).post(citizen::follow_case),
        )
        .route(
            "/pratiche/documenti",
            post(citizen::send_documents)
                .layer(axum::extract::DefaultBodyLimit::max(citizen::UPLOAD_LIMIT)),
        )
        .route("/pratiche/ritiro", post(citizen::withdraw))
        .route("/moduli/{id}", get(forms::show).post(forms::send))
        .route("/privacy", get(citizen::privacy))
        .route("/valutazione", post(rating::rate))
        .route(
            session::SIGN_IN,
            get(session::sign_in_form).post(session::sign_in),
        )
        .route(session::CHECK, get(session::check_cookie))
        .route("/ufficio/esci", post(session::sign_out))
        .route(session::HOME, get(staff::inbox).post(staff::inbox_search))
        .route("/ufficio/pratiche/{id}", get(staff::case_page))
        .route("/ufficio/pratiche/{id}/{action}", post(staff::act))
        .route(
            "/ufficio/pratiche/{id}/documenti/{document}",
            get(staff::document),
        )
        .route("/ufficio/amministrazione", get(admin::overview))
        .route("/ufficio/amministrazione/{action}", post(admin::act))
        .route("/ufficio/statistiche", get(stats::statistics))
        .route("/ufficio/statistiche/{table}", get(stats::csv))
        .route(
            "/ufficio/sportello",
            get(staff::intake_form).post(staff::intake),
        )
        .route("/static/{version}/{*name}", get(assets::serve))
        .route_layer(axum::middleware::from_fn(same_site_posts))
}

/// What every page's frame shows.
pub struct Layout {
    pub title: String,
    pub union_name: String,
    /// Where the static files are (`/static/{version}`).
    pub assets: String,
    /// The navigation entry of the page, for `aria-current`.
    pub section: Section,
    /// Who is signed in, on the staff's pages: their navigation and the sign-out form.
    pub staff: Option<StaffBar>,
}

pub struct StaffBar {
    /// Operators, supervisors and admins; analysts see only the statistics.
    pub works_cases: bool,
    pub admin: bool,
    pub name: String,
    pub role: &'static str,
    pub comune: String,
    pub csrf: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Home,
    Services,
    Contact,
    Follow,
    Inbox,
    Intake,
    Stats,
    Admin,
    Other,
}

impl Layout {
    pub fn new(state: &Shared, title: impl Into<String>, section: Section) -> Self {
        Self {
            title: title.into(),
            union_name: state.settings.union.name.clone(),
            assets: assets::root(),
            section,
            staff: None,
        }
    }

    /// A staff page's frame; `signed_in` is `None` only on the sign-in page.
    pub fn staff(
        state: &Shared,
        title: impl Into<String>,
        section: Section,
        signed_in: Option<&session::SignedIn>,
    ) -> Self {
        Self {
            staff: signed_in.map(|s| StaffBar {
                works_cases: s.member().role.works_cases(),
                admin: s.member().role == Role::Admin,
                name: s.member().name.clone(),
                role: role_label(s.member().role),
                comune: comune_name(state, &s.member().comune),
                csrf: s.csrf.clone(),
            }),
            ..Self::new(state, title, section)
        }
    }

    /// The signed-in staff member's name (empty on public pages).
    pub fn staff_name(&self) -> &str {
        self.staff.as_ref().map_or("", |s| s.name.as_str())
    }

    /// An administrator is signed in.
    pub fn is_admin(&self) -> bool {
        self.staff.as_ref().is_some_and(|s| s.admin)
    }

    /// The session's CSRF token, for the forms of a staff page.
    pub fn staff_csrf(&self) -> &str {
        self.staff.as_ref().map_or("", |s| s.csrf.as_str())
    }

    /// `aria-current="page"` on the navigation entry of this page.
    pub fn current(&self, section: Section) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Operator => "operatore",
        Role::Supervisor => "responsabile",
        Role::Analyst => "analista",
        Role::Admin => "amministratore",
    }
}

/// A comune's name from its ISTAT code (the code itself if it is not configured).
pub fn comune_name(state: &Shared, istat: &str) -> String {
    state
        .settings
        .comuni
        .iter()
        .find(|c| c.istat.to_string() == istat)
        .map_or_else(|| istat.to_owned(), |c| c.name.clone())
}

/// A rendered page with its status.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!DOCTYPE html><html lang=\"it\"><title>Errore</title><p>Si è verificato un errore interno: riprova più tardi.</p></html>"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub detail: String,
    pub code: String,
    pub request_id: Option<String>,
}

/// An [`ApiError`] as a page: the same Italian message and stable code the API gives.
pub fn error_page(state: &Shared, error: ApiError) -> Response {
    let title = match error.status {
        StatusCode::NOT_FOUND => "Pagina non trovata",
        StatusCode::TOO_MANY_REQUESTS => "Troppe richieste",
        s if s.is_server_error() => "Servizio non disponibile",
        _ => "Richiesta non valida",
    };
    let mut response = page(
        error.status,
        &ErrorPage {
            layout: Layout::new(state, title, Section::Other),
            status: error.status.as_u16(),
            detail: error.detail,
            code: error.code,
            request_id: crate::api::request::current().map(|r| r.text),
        },
    );
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// What no route answers: a page for a browser, a problem document for an API client.
pub async fn not_found(
    axum::extract::State(state): axum::extract::State<Shared>,
    headers: HeaderMap,
) -> Response {
    let error = ApiError::not_found("not_found", "La risorsa richiesta non esiste.");
    if wants_html(&headers) {
        error_page(&state, error)
    } else {
        error.into_response()
    }
}

/// True when the client asked for a page rather than JSON (a browser following a link).
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The headers every response carries: a Content-Security-Policy that allows only this site's
/// own files (no inline script or style, no framing), no MIME sniffing, no referrer outside; and
/// `no-store` on pages.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; font-src 'self' data:; \
             script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'; object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Pages may hold an access key or a citizen's data: no copy kept in any cache.
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A form posted from another site is refused: browsers say where a request comes from
/// (`Sec-Fetch-Site`, `Origin`), and only this site's own pages may post to it.
async fn same_site_posts(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && !from_this_site(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            Html("<!DOCTYPE html><html lang=\"it\"><title>Richiesta rifiutata</title><p>Il modulo è stato inviato da un altro sito: la richiesta è stata rifiutata (codice <code>cross_site_post</code>).</p></html>"),
        )
            .into_response();
    }
    next.run(request).await
}

fn from_this_site(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
        // Neither header: not a browser that could be tricked into posting.
        (None, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn only_this_sites_forms_may_post() {
        assert!(from_this_site(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        assert!(from_this_site(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!from_this_site(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(from_this_site(&headers(&[])));
    }
}
