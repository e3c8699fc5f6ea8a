//! Signing in to the staff's pages: a username and a password ([`users`]) open a session whose
//! secret travels only in a `Secure; HttpOnly; SameSite=Lax` cookie; the database keeps its
//! hash ([`sportello_projections::sessions`]). Every form of a session carries its CSRF token,
//! and every POST is also checked to come from this site.
//!
//! Another way in (the comune's OIDC provider, say) would end in [`start`] like the password
//! does: the session does not care how the staff member proved who they are.

use super::{Layout, Section, error_page, page};
use crate::api::Shared;
use crate::api::guard::{ClientAddr, Staff};
use crate::api::problem::ApiError;
use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sportello_engine::app::staff::StaffMember;
use sportello_engine::app::users;
use sportello_projections::sessions::Session;
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "sportello_sessione";
/// Where the staff's pages start.
pub const HOME: &str = "/ufficio";
pub const SIGN_IN: &str = "/ufficio/accesso";
/// Where signing in lands first, to see that the browser kept the cookie.
pub const CHECK: &str = "/ufficio/accesso/verifica";

/// A staff member signed in to the pages, with their session's CSRF token.
pub struct SignedIn {
    pub staff: Staff,
    pub csrf: String,
    id_hash: String,
}

impl SignedIn {
    pub fn member(&self) -> &StaffMember {
        &self.staff.0
    }

    /// Refuses a form that does not carry this session's token (a page of another site, or of
    /// a session that has ended).
    pub fn check(&self, token: &str) -> Result<(), ApiError> {
        if bool::from(token.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "Il modulo è scaduto o non proviene da questa pagina: ricarica la pagina e riprova.",
            ))
        }
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// Sent back to the sign-in page, to come back here afterwards.
fn to_sign_in(parts: &Parts) -> Response {
    let path = parts.uri.path();
    let target = if path.starts_with(HOME) && parts.method == axum::http::Method::GET {
        format!("{SIGN_IN}?torna={}", urlencoding(path))
    } else {
        SIGN_IN.to_owned()
    };
    Redirect::to(&target).into_response()
}

/// Only paths of the staff's pages come back in `torna` (no redirect elsewhere), and they hold
/// nothing but ASCII letters, digits, dashes and slashes.
fn urlencoding(path: &str) -> String {
    path.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-/_".contains(*c))
        .collect()
}

impl FromRequestParts<Shared> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(to_sign_in(parts));
        };
        let id_hash = hash(&secret);
        let session = match state.views.session(&id_hash).await {
            Ok(Some(session)) => session,
            Ok(None) => return Err(to_sign_in(parts)),
            Err(e) => return Err(error_page(state, e.into())),
        };
        // Activity keeps the session open; written at most every five minutes, not every page.
        let idle = state.settings.api.session_idle_minutes as i64 * 60_000;
        let now = now_ms();
        if session.idle_until - now < idle - 5 * 60_000
            && let Err(e) = state.views.extend_session(&id_hash, now + idle).await
        {
            tracing::warn!(error = %e, "a session's idle time not extended");
        }
        Ok(SignedIn {
            staff: Staff(session.member),
            csrf: session.csrf,
            id_hash,
        })
    }
}

/// Opens a session for `member` and answers with its cookie and a redirect to `target`.
pub async fn start(
    state: &Shared,
    member: StaffMember,
    target: &str,
) -> Result<Response, ApiError> {
    let api = &state.settings.api;
    let secret = random_token();
    let now = now_ms();
    let expires_at = now + api.session_hours as i64 * 3_600_000;
    let session = Session {
        member,
        csrf: random_token(),
        idle_until: now + api.session_idle_minutes as i64 * 60_000,
    };
    state
        .views
        .open_session(&hash(&secret), &session, expires_at)
        .await?;
    let cookie = Cookie::build((COOKIE, secret))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::hours(api.session_hours as i64))
        .build();
    Ok(with_cookie(Redirect::to(target).into_response(), &cookie))
}

fn with_cookie(mut response: Response, cookie: &Cookie<'_>) -> Response {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "staff/sign_in.html")]
struct SignInPage {
    layout: Layout,
    username: String,
    target: String,
    error: Option<String>,
    signed_out: bool,
}

#[derive(Deserialize)]
pub struct SignInParams {
    torna: Option<String>,
    uscito: Option<String>,
}

fn target(torna: Option<String>) -> String {
    torna
        .map(|t| urlencoding(&t))
        .filter(|t| t.starts_with(HOME))
        .unwrap_or_else(|| HOME.to_owned())
}

pub async fn sign_in_form(
    State(state): State<Shared>,
    Query(params): Query<SignInParams>,
) -> Response {
    page(
        StatusCode::OK,
        &SignInPage {
            layout: Layout::staff(&state, "Accesso per il personale", Section::Other, None),
            username: String::new(),
            target: target(params.torna),
            error: None,
            signed_out: params.uscito.is_some(),
        },
    )
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    torna: Option<String>,
}

pub async fn sign_in(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    Form(form): Form<SignInForm>,
) -> Response {
    if let Err(e) = state.limiter.check(address) {
        return error_page(&state, e);
    }
    let target = target(form.torna);
    match users::sign_in(state.urp.log(), &form.username, &form.password).await {
        Ok(Some(member)) => {
            tracing::info!(user = %member.token_id, "signed in");
            start(&state, member, &format!("{CHECK}?torna={target}"))
                .await
                .unwrap_or_else(|e| error_page(&state, e))
        }
        Ok(None) => page(
            StatusCode::UNAUTHORIZED,
            &SignInPage {
                layout: Layout::staff(&state, "Accesso per il personale", Section::Other, None),
                username: form.username,
                target,
                error: Some("Nome utente o password non corretti.".into()),
                signed_out: false,
            },
        ),
        Err(e) => error_page(&state, e.into()),
    }
}

/// `GET /ufficio/accesso/verifica`: on to the page asked for if the browser sent the session's
/// cookie back; otherwise it refused it (a `Secure` cookie over plain HTTP, or cookies turned
/// off), and signing in again would only loop.
pub async fn check_cookie(
    State(state): State<Shared>,
    Query(params): Query<SignInParams>,
    headers: HeaderMap,
) -> Response {
    if session_cookie(&headers).is_some() {
        return Redirect::to(&target(params.torna)).into_response();
    }
    page(
        StatusCode::BAD_REQUEST,
        &SignInPage {
            layout: Layout::staff(&state, "Accesso per il personale", Section::Other, None),
            username: String::new(),
            target: target(params.torna),
            error: Some(
                "Il browser non ha conservato la sessione: le pagine per il personale funzionano solo \
                 in HTTPS (o su localhost) e con i cookie attivi."
                    .into(),
            ),
            signed_out: false,
        },
    )
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    State(state): State<Shared>,
    signed_in: SignedIn,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(e) = signed_in.check(&form.csrf) {
        return error_page(&state, e);
    }
    if let Err(e) = state.views.close_session(&signed_in.id_hash).await {
        return error_page(&state, e.into());
    }
    let gone = Cookie::build((COOKIE, ""))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    with_cookie(
        Redirect::to(&format!("{SIGN_IN}?uscito=1")).into_response(),
        &gone,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_staff_pages_are_returned_to() {
        assert_eq!(
            target(Some("/ufficio/pratiche/abc".into())),
            "/ufficio/pratiche/abc"
        );
        assert_eq!(target(Some("https://evil.example/ufficio".into())), HOME);
        assert_eq!(target(Some("//evil.example".into())), HOME);
        assert_eq!(
            target(Some("/ufficio?x=\"<script>".into())),
            "/ufficioxscript"
        );
        assert_eq!(target(None), HOME);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sportello_sessione=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("sportello_sessione="),
        );
        assert_eq!(session_cookie(&headers), None);
    }
}
