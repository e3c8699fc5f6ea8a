//! Errors as RFC 9457 problem details: a stable `code`, an Italian `detail` for whoever reads it,
//! field-level `errors` for validation, and nothing internal in a 500.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sportello_engine::StoreError;
use sportello_engine::app::{AppError, Refusal};
use sportello_engine::domain::service::FieldError;
use sportello_engine::domain::{DomainError, RefusalKind};
use sportello_projections::ViewsError;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The field, as a path in the request body or the parameter name.
    pub field: String,
    pub code: String,
    pub message: String,
}

impl From<FieldError> for FieldProblem {
    fn from(f: FieldError) -> Self {
        FieldProblem {
            field: f.field,
            code: f.code.to_owned(),
            message: f.message,
        }
    }
}

/// The body of every error answer (`application/problem+json`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, in Italian.
    pub detail: String,
    /// Stable and machine-readable, e.g. `case_not_found`.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// The request's `X-Request-Id`, to quote when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
    pub errors: Vec<FieldProblem>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, code: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "La richiesta contiene dati non validi.",
        );
        e.errors.push(FieldProblem {
            field: field.to_owned(),
            code: code.to_owned(),
            message,
        });
        e
    }

    pub fn fields(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "Alcuni campi del modulo non sono validi.",
        );
        e.errors = errors.into_iter().map(FieldProblem::from).collect();
        e
    }

    pub fn not_found(code: &str, detail: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Si è verificato un errore interno: riprova più tardi.",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Serve un token di accesso valido (intestazione Authorization: Bearer …).",
        )
    }

    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
}

fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Richiesta non valida",
        401 => "Autenticazione richiesta",
        403 => "Operazione non consentita",
        404 => "Non trovato",
        405 => "Metodo non consentito",
        409 => "Conflitto con lo stato attuale",
        413 => "Richiesta troppo grande",
        415 => "Formato non supportato",
        422 => "Dati non validi",
        429 => "Troppe richieste",
        503 => "Servizio momentaneamente non disponibile",
        _ => "Errore interno",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            problem_type: format!("urn:sportello:problema:{}", self.code),
            title: title(self.status).into(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            errors: self.errors,
            request_id: super::request::current().map(|r| r.text),
        };
        let mut response = (self.status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Where each kind of refusal lands in HTTP.
fn refusal_status(kind: RefusalKind) -> StatusCode {
    match kind {
        RefusalKind::NotFound => StatusCode::NOT_FOUND,
        RefusalKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        RefusalKind::Conflict => StatusCode::CONFLICT,
        RefusalKind::Forbidden => StatusCode::FORBIDDEN,
    }
}

/// Seconds a client is asked to wait before retrying after a transient failure.
const RETRY_AFTER_SECONDS: u64 = 2;

impl ApiError {
    /// The domain refused: the status follows the refusal's kind; fields at fault are listed.
    pub fn refused(refusal: &Refusal) -> Self {
        let fields = refusal.fields();
        if refusal.kind() == RefusalKind::Invalid && !fields.is_empty() {
            return ApiError::fields(fields);
        }
        let mut e = ApiError::new(
            refusal_status(refusal.kind()),
            refusal.code(),
            refusal.message_it(),
        );
        e.errors = fields.into_iter().map(FieldProblem::from).collect();
        e
    }

    /// Something of ours failed. Transient (the database restarting, a busy file, a full disk):
    /// 503 with `Retry-After`, and the advice to retry with the same `Idempotency-Key`, which
    /// makes the retry safe whether or not the first attempt took effect. Anything else is a bug:
    /// 500, logged, with nothing internal in the answer.
    pub fn failed(transient: bool, code: &str, error: &dyn std::fmt::Display) -> Self {
        if transient {
            tracing::warn!(%error, code, "transient failure; the client is asked to retry");
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "Il servizio non è momentaneamente disponibile: riprova tra qualche secondo. \
                 Se ripeti un invio, usa la stessa intestazione Idempotency-Key: la richiesta \
                 non verrà registrata due volte.",
            );
            e.retry_after = Some(RETRY_AFTER_SECONDS);
            e
        } else {
            tracing::error!(%error, code, "request failed");
            ApiError::internal()
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Refused(refusal) => ApiError::refused(&refusal),
            AppError::Failed(failure) => {
                ApiError::failed(failure.is_transient(), failure.code(), &failure)
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::refused(&refusal)
    }
}

impl From<ViewsError> for ApiError {
    fn from(e: ViewsError) -> Self {
        match e {
            ViewsError::Invalid { field, message } => {
                ApiError::invalid(field, "parameter_invalid", message)
            }
            other => ApiError::failed(other.is_transient(), "read_model_failure", &other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        AppError::from(e).into()
    }
}

/// A JSON body, with problems instead of axum's plain-text rejections: 415 without a JSON
/// content type, 413 past the size limit, 400 for broken JSON, 422 naming the field that does not
/// fit. The second field is the SHA-256 (hex) of the bytes, the request's fingerprint.
pub struct Body<T>(pub T, pub String);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type_unsupported",
                "Il corpo della richiesta deve essere JSON (Content-Type: application/json).",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "La richiesta supera la dimensione massima consentita.",
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "body_unreadable",
                        "Il corpo della richiesta non è leggibile.",
                    )
                }
            })?;
        let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        parse_json(&bytes).map(|value| Body(value, fingerprint))
    }
}

/// A JSON body that may be left out: an empty body reads as `T::default()`.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0")
            || (req.headers().get(header::CONTENT_LENGTH).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none());
        if empty {
            return Ok(OptionalBody(T::default()));
        }
        Body::<T>::from_request(req, state)
            .await
            .map(|Body(value, _)| OptionalBody(value))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => Ok(value),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "json_malformed",
                    format!(
                        "Il corpo della richiesta non è JSON valido (riga {}, colonna {}).",
                        inner.line(),
                        inner.column()
                    ),
                ));
            }
            let field = if path == "." {
                "(corpo)".to_owned()
            } else {
                path
            };
            Err(ApiError::invalid(
                &field,
                "field_invalid",
                format!(
                    "Valore mancante o non valido: {}",
                    italian_serde(&inner.to_string())
                ),
            ))
        }
    }
}

/// A whole number as JSON may write it, `3` or `3.0` (JSON Schema counts both as integers).
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
                .map(|f| f as u64)
        })
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            D::Error::custom(format!(
                "invalid value: {number}, expected a whole number in range"
            ))
        })
}

/// serde's English, made readable for an Italian user (the field path says where).
fn italian_serde(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("manca il campo {rest}");
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return format!(
            "valore {}",
            rest.replace("expected one of", "atteso uno tra")
                .replace("expected", "atteso")
        );
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!(
            "campo non previsto {}",
            rest.replace("expected one of", "previsti")
                .replace("expected", "previsto")
        );
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        return format!("tipo non valido ({})", rest.replace("expected", "atteso"));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        return format!("valore non valido ({})", rest.replace("expected", "atteso"));
    }
    message.to_owned()
}

/// Query parameters with problems instead of plain-text rejections.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::invalid(
                    "query",
                    "parameter_invalid",
                    format!("Parametro non valido: {}", italian_serde(&e.body_text())),
                )
            })
    }
}

/// Path parameters with problems instead of plain-text rejections.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|_: PathRejection| {
                ApiError::not_found("not_found", "La risorsa richiesta non esiste.")
            })
    }
}
