//! Open311 GeoReport v2 (<https://wiki.open311.org/GeoReport_v2>) under `/open311/v2/`, for the
//! reporting apps that already speak it.
//!
//! - `jurisdiction_id` is a comune's ISTAT code (required where the installation has several).
//! - The service types are the comune's active services in the catalogue, each with the fields
//!   of its first published form as attributes (attachments left out: Open311 cannot send
//!   them), and one more, `segnalazione`, for a report about no service in particular.
//! - A request opens a case of kind `segnalazione` on channel `app` through the application
//!   service, with the same checks, sealing and rate limit as `POST /api/v1/cases`: the location,
//!   the attributes and `media_url` go into the sealed description, and `privacy_consent=true`
//!   must say that the app showed the privacy notice.
//! - What is listed is public: code, service, status, dates and the office responsible. The
//!   description, the location, the photo and the reporter never appear (they may identify a
//!   person), and only reports (`segnalazione`) are listed.
//! - A request's id is its case code; its token is the case id (the answer is immediate, so the
//!   token is only there for clients that ask for one).
//!
//! Answers are JSON or XML after the path's extension; errors are the spec's list of `code` (the
//! HTTP status) and `description` (Italian), with `error_code`, this API's stable code, beside.
//! `/open311/discovery.{json,xml}` (Open311 Service Discovery) says where the endpoint is.

use super::guard::{ClientAddr, idempotent_id};
use super::problem::ApiError;
use super::public::{inbox_row, status_label};
use super::{AppState, Shared};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Europe::Rome;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sportello_config::IstatCode;
use sportello_engine::app::{Actor, CitizenInput, NewContact};
use sportello_engine::domain::case::{CaseKind, Channel};
use sportello_engine::domain::service::{FieldDef, FieldKind, field_errors};
use sportello_projections::catalogue;
use sportello_projections::inbox::{self, InboxRow, ReceivedQuery};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The service type of a report about no service in the catalogue.
const GENERAL: &str = "segnalazione";
/// The kind of case a request opens, and the only kind listed.
const KIND: &str = "segnalazione";
/// The longest span `requests` answers for (the spec's 90 days), and its default.
const SPAN_DAYS: i64 = 90;
/// At most this many requests in one answer.
const MAX_REQUESTS: u64 = 1000;
/// At most this many ids in one `service_request_id`.
const MAX_IDS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Xml,
}

/// `name.json` or `name.xml`: the name and the format asked for.
fn split(file: &str) -> Result<(&str, Format), Failure> {
    let unknown = || {
        Failure::new(
            Format::Json,
            ApiError::not_found(
                "format_unknown",
                "Formato non previsto: usa l'estensione .json o .xml.",
            ),
        )
    };
    let (name, extension) = file.rsplit_once('.').ok_or_else(unknown)?;
    let format = match extension {
        "json" => Format::Json,
        "xml" => Format::Xml,
        _ => return Err(unknown()),
    };
    if name.is_empty() {
        return Err(unknown());
    }
    Ok((name, format))
}

/// An answer: a JSON value, or the same as XML under `root` (lists name their items after
/// themselves: `services` holds `service`s, `service_requests` holds `request`s).
struct Answer {
    format: Format,
    status: StatusCode,
    root: &'static str,
    body: Value,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let (content_type, bytes) = match self.format {
            Format::Json => ("application/json; charset=utf-8", self.body.to_string()),
            Format::Xml => ("text/xml; charset=utf-8", xml(self.root, &self.body)),
        };
        let mut response = (self.status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Reporting apps run in browsers too; nothing here depends on who asks.
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        response
    }
}

fn item_of(list: &str) -> &str {
    match list {
        "services" => "service",
        "endpoints" => "endpoint",
        "formats" => "format",
        "attributes" => "attribute",
        "values" => "value",
        "errors" => "error",
        _ => "request",
    }
}

fn xml(root: &str, body: &Value) -> String {
    let mut writer = Writer::new(Vec::new());
    let written = writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .and_then(|()| element(&mut writer, root, body));
    // Writing to memory does not fail.
    debug_assert!(written.is_ok());
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

fn element(writer: &mut Writer<Vec<u8>>, name: &str, value: &Value) -> std::io::Result<()> {
    let text = match value {
        Value::Null => return writer.write_event(Event::Empty(BytesStart::new(name))),
        Value::Array(items) => {
            writer.write_event(Event::Start(BytesStart::new(name)))?;
            for item in items {
                element(writer, item_of(name), item)?;
            }
            return writer.write_event(Event::End(BytesEnd::new(name)));
        }
        Value::Object(fields) => {
            writer.write_event(Event::Start(BytesStart::new(name)))?;
            for (field, value) in fields {
                element(writer, field, value)?;
            }
            return writer.write_event(Event::End(BytesEnd::new(name)));
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    writer.write_event(Event::Start(BytesStart::new(name)))?;
    writer.write_event(Event::Text(BytesText::new(&text)))?;
    writer.write_event(Event::End(BytesEnd::new(name)))
}

/// An error, in the format the path asked for.
struct Failure {
    format: Format,
    error: ApiError,
}

impl Failure {
    fn new(format: Format, error: ApiError) -> Self {
        Self { format, error }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let e = self.error;
        // Open311 answers a request it cannot take with 400; 422 is this API's own word for it.
        let status = match e.status {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        let mut description = e.detail;
        for field in &e.errors {
            description.push_str(&format!(" {}: {}", field.field, field.message));
        }
        let mut response = Answer {
            format: self.format,
            status,
            root: "errors",
            body: json!([{
                "code": status.as_u16(),
                "description": description,
                "error_code": e.errors.first().map_or(e.code.as_str(), |f| f.code.as_str()),
            }]),
        }
        .into_response();
        if let Some(seconds) = e.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn bad_request(code: &str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, detail)
}

/// The parameters of a request, from its query and (for a POST) its form-encoded body.
#[derive(Default)]
struct Params(BTreeMap<String, Vec<String>>);

impl Params {
    fn parse(query: Option<&str>, body: &[u8]) -> Self {
        let mut params = Params::default();
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .chain(form_urlencoded::parse(body));
        for (key, value) in pairs {
            params
                .0
                .entry(key.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        params
    }

    /// The value of `name`, trimmed; none when absent or blank.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(|values| values.last())
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| {
            bad_request(
                &format!("{name}_required"),
                format!("Manca il parametro obbligatorio «{name}»."),
            )
        })
    }

    /// A comma-separated list.
    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The comune asked for: `jurisdiction_id`, which may be left out where there is only one.
fn jurisdiction(state: &AppState, params: &Params) -> Result<String, ApiError> {
    let comuni = &state.settings.comuni;
    let Some(given) = params.get("jurisdiction_id") else {
        return match comuni.as_slice() {
            [only] => Ok(only.istat.to_string()),
            _ => Err(bad_request(
                "jurisdiction_id_required",
                "Indica il comune con «jurisdiction_id» (il codice ISTAT, ad esempio 073015).",
            )),
        };
    };
    IstatCode::parse(given)
        .ok()
        .filter(|code| state.settings.comune(code).is_some())
        .map(|code| code.to_string())
        .ok_or_else(|| {
            ApiError::not_found(
                "jurisdiction_not_found",
                "Il comune indicato in «jurisdiction_id» non fa parte di questa installazione.",
            )
        })
}

/// A service type: a service of the catalogue, or the general report.
struct ServiceType {
    code: String,
    name: String,
    description: String,
    group: String,
    /// The catalogue's service (none for the general report).
    service: Option<String>,
    /// The service's first published form, (id, version): its fields are the attributes.
    form: Option<(String, u32)>,
}

impl ServiceType {
    fn general() -> Self {
        Self {
            code: GENERAL.into(),
            name: "Segnalazione all'URP".into(),
            description: "Un problema da segnalare al Comune (strade, illuminazione, rifiuti, \
                          verde pubblico…): la riceve l'Ufficio Relazioni con il Pubblico, che la \
                          affida all'ufficio competente."
                .into(),
            group: "URP".into(),
            service: None,
            form: None,
        }
    }

    /// What the service's form asks that Open311 can send: its fields but the attachments.
    async fn attributes(&self, state: &AppState) -> Result<Vec<FieldDef>, ApiError> {
        let Some((id, version)) = &self.form else {
            return Ok(Vec::new());
        };
        let form = state.urp.form(id).await?;
        Ok(form.usable(*version).map_or_else(
            |_| Vec::new(),
            |def| {
                def.fields
                    .iter()
                    .filter(|f| !matches!(f.kind, FieldKind::Attachment))
                    .cloned()
                    .collect()
            },
        ))
    }

    fn listed(&self, metadata: bool) -> Value {
        json!({
            "service_code": self.code,
            "service_name": self.name,
            "description": self.description,
            "metadata": metadata,
            "type": "realtime",
            "keywords": self.group.to_lowercase(),
            "group": self.group,
        })
    }

    fn definition(&self, fields: &[FieldDef]) -> Value {
        let attributes: Vec<Value> = fields
            .iter()
            .enumerate()
            .map(|(order, field)| {
                let (datatype, about, values) = datatype(&field.kind);
                let mut attribute = json!({
                    "variable": true,
                    "code": field.name,
                    "datatype": datatype,
                    "required": field.required,
                    "datatype_description": about,
                    "order": order + 1,
                    "description": field.label,
                });
                if let Some(values) = values {
                    attribute["values"] = Value::Array(values);
                }
                attribute
            })
            .collect();
        json!({ "service_code": self.code, "attributes": attributes })
    }
}

/// A field's Open311 datatype, what to type in it, and its values when it is a list.
fn datatype(kind: &FieldKind) -> (&'static str, String, Option<Vec<Value>>) {
    let value = |key: &str, name: &str| json!({ "key": key, "name": name });
    match kind {
        FieldKind::Text { max_length } if *max_length > 200 => (
            "text",
            format!("Testo, al massimo {max_length} caratteri"),
            None,
        ),
        FieldKind::Text { max_length } => (
            "string",
            format!("Testo, al massimo {max_length} caratteri"),
            None,
        ),
        FieldKind::Email => (
            "string",
            "Indirizzo e-mail (se manca, quello dato in «email»)".into(),
            None,
        ),
        FieldKind::Phone => (
            "string",
            "Numero di telefono (se manca, quello dato in «phone»)".into(),
            None,
        ),
        FieldKind::Date => ("datetime", "Data nel formato AAAA-MM-GG".into(), None),
        FieldKind::Number { min, max } => {
            let bound = |b: &Option<f64>, word: &str| b.map(|b| format!(", {word} {b}"));
            let about = format!(
                "Numero{}{}",
                bound(min, "almeno").unwrap_or_default(),
                bound(max, "al massimo").unwrap_or_default()
            );
            ("number", about, None)
        }
        FieldKind::Choice { options } => (
            "singlevaluelist",
            "Una delle opzioni".into(),
            Some(options.iter().map(|o| value(o, o)).collect()),
        ),
        FieldKind::Boolean => (
            "singlevaluelist",
            "Sì o no".into(),
            Some(vec![value("true", "Sì"), value("false", "No")]),
        ),
        // Left out of the attributes ([`ServiceType::attributes`]).
        FieldKind::Attachment => ("string", String::new(), None),
    }
}

/// The comune's service types: its active services by title, then the general report (unless a
/// service of the catalogue has its code).
async fn service_types(state: &AppState, comune: &str) -> Result<Vec<ServiceType>, ApiError> {
    let mut types = Vec::new();
    for entry in catalogue::query(&state.reader, Some(comune)).await? {
        let text = |key: &str| {
            entry.card[key]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default()
        };
        types.push(ServiceType {
            code: text("code"),
            name: text("title"),
            description: text("description"),
            group: text("category"),
            service: Some(text("code")),
            form: entry.forms.first().map(|f| (f.id.clone(), f.version)),
        });
    }
    if !types.iter().any(|t| t.code == GENERAL) {
        types.push(ServiceType::general());
    }
    Ok(types)
}

async fn service_type(state: &AppState, comune: &str, code: &str) -> Result<ServiceType, ApiError> {
    service_types(state, comune)
        .await?
        .into_iter()
        .find(|t| t.code == code)
        .ok_or_else(|| {
            ApiError::not_found(
                "service_not_found",
                "Il tipo di segnalazione indicato non esiste o non è attivo in questo comune.",
            )
        })
}

fn reply(format: Format, answer: Result<(StatusCode, &'static str, Value), ApiError>) -> Response {
    match answer {
        Ok((status, root, body)) => Answer {
            format,
            status,
            root,
            body,
        }
        .into_response(),
        Err(error) => Failure::new(format, error).into_response(),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "Risorsa Open311 inesistente: services, requests o tokens.",
    )
}

async fn services(state: &AppState, comune: &str) -> Result<Value, ApiError> {
    let mut listed = Vec::new();
    for service in service_types(state, comune).await? {
        let metadata = !service.attributes(state).await?.is_empty();
        listed.push(service.listed(metadata));
    }
    Ok(Value::Array(listed))
}

/// When the list starts and ends: the spec's `start_date` and `end_date`, at most 90 days
/// apart, the last 90 days when neither is given.
fn span(params: &Params, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let date = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        params
            .get(name)
            .map(|text| {
                DateTime::parse_from_rfc3339(text)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| {
                        bad_request(
                            &format!("{name}_invalid"),
                            format!(
                                "«{name}» deve essere una data e ora W3C, ad esempio \
                                 2026-12-01T00:00:00+01:00."
                            ),
                        )
                    })
            })
            .transpose()
    };
    let most = Duration::days(SPAN_DAYS);
    let (from, until) = match (date("start_date")?, date("end_date")?) {
        (Some(from), Some(until)) => (from, until),
        (Some(from), None) => (from, from + most),
        (None, Some(until)) => (until - most, until),
        (None, None) => (now - most, now),
    };
    if until < from {
        return Err(bad_request(
            "date_range_invalid",
            "«end_date» viene prima di «start_date».",
        ));
    }
    if until - from > most {
        return Err(bad_request(
            "date_range_too_long",
            format!(
                "Tra «start_date» ed «end_date» possono passare al massimo {SPAN_DAYS} giorni."
            ),
        ));
    }
    // `end_date` is the last instant included.
    Ok((from, until + Duration::microseconds(1)))
}

async fn requests(state: &AppState, comune: &str, params: &Params) -> Result<Value, ApiError> {
    let types = service_types(state, comune).await?;
    let ids = params.list("service_request_id");
    // Ids given: they alone count (the spec: "overrides all other arguments").
    if !ids.is_empty() {
        if ids.len() > MAX_IDS {
            return Err(bad_request(
                "too_many_ids",
                format!("Si possono chiedere al massimo {MAX_IDS} segnalazioni alla volta."),
            ));
        }
        let mut found = Vec::new();
        for id in &ids {
            if let Some(row) = report(state, comune, "code", id).await? {
                found.push(request_view(state, &types, &row));
            }
        }
        return Ok(Value::Array(found));
    }
    let mut services = Vec::new();
    for code in params.list("service_code") {
        let known = types.iter().find(|t| t.code == code).ok_or_else(|| {
            bad_request(
                "service_code_unknown",
                format!("Il tipo di segnalazione «{code}» non esiste in questo comune."),
            )
        })?;
        services.push(known.service.clone());
    }
    let statuses = params.list("status");
    if let Some(other) = statuses
        .iter()
        .find(|s| !matches!(s.as_str(), "open" | "closed"))
    {
        return Err(bad_request(
            "status_invalid",
            format!("«status» può valere open o closed, non «{other}»."),
        ));
    }
    let asked = |s: &str| statuses.iter().any(|x| x == s);
    // Both or neither: every status.
    let open = (asked("open") != asked("closed")).then(|| asked("open"));
    let (from, until) = span(params, Utc::now())?;
    let rows = inbox::received(
        &state.reader,
        &ReceivedQuery {
            comune: comune.to_owned(),
            kind: KIND.into(),
            services,
            open,
            from,
            until,
            limit: MAX_REQUESTS,
        },
    )
    .await?;
    Ok(Value::Array(
        rows.iter()
            .map(|row| request_view(state, &types, row))
            .collect(),
    ))
}

/// The report whose `column` (`code` or `id`) is `value`, when it is one of the comune's.
async fn report(
    state: &AppState,
    comune: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<InboxRow>, ApiError> {
    Ok(inbox_row(state, column, value)
        .await?
        .filter(|row| row.comune == comune && row.kind == KIND))
}

fn request_not_found() -> ApiError {
    ApiError::not_found(
        "request_not_found",
        "Nessuna segnalazione di questo comune ha questo identificativo.",
    )
}

/// Answers a GET under `/open311/v2/` in the format its extension names: `answer` gets the
/// name before the extension, the comune asked for and the parameters, and gives the XML root
/// and the body.
async fn answer_get(
    state: &AppState,
    file: &str,
    query: Option<String>,
    answer: impl AsyncFnOnce(&str, String, &Params) -> Result<(&'static str, Value), ApiError>,
) -> Response {
    let (name, format) = match split(file) {
        Ok(split) => split,
        Err(failure) => return failure.into_response(),
    };
    let params = Params::parse(query.as_deref(), &[]);
    let answered = match jurisdiction(state, &params) {
        Ok(comune) => answer(name, comune, &params).await,
        Err(e) => Err(e),
    };
    reply(
        format,
        answered.map(|(root, body)| (StatusCode::OK, root, body)),
    )
}

/// When this API last changed, for the discovery document's `changeset`.
const CHANGESET: &str = "2026-12-07T00:00:00+01:00";

/// `GET /open311/discovery.{format}` (Open311 Service Discovery): where the GeoReport v2 endpoint
/// is and whom to ask.
pub async fn discovery(State(state): State<Shared>, Path(file): Path<String>) -> Response {
    let format = match split(&file) {
        Ok(("discovery", format)) => format,
        Ok((_, format)) => return Failure::new(format, not_found()).into_response(),
        Err(failure) => return failure.into_response(),
    };
    let settings = &state.settings;
    let seat = settings.comune(&settings.union.seat);
    let reach = seat
        .map(|c| {
            [&c.urp.email, &c.urp.phone]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|r| !r.is_empty())
        .map_or_else(String::new, |r| format!(": {r}"));
    let body = json!({
        "changeset": CHANGESET,
        "contact": format!(
            "Ufficio Relazioni con il Pubblico, {}{reach}",
            settings.union.name
        ),
        "key_service": "Non serve una chiave: le segnalazioni chiedono privacy_consent=true, \
                        dopo aver mostrato l'informativa sul trattamento dei dati personali.",
        "endpoints": [{
            "specification": "http://wiki.open311.org/GeoReport_v2",
            "url": format!("{}/open311/v2", settings.mail.public_url.trim_end_matches('/')),
            "changeset": CHANGESET,
            "type": "production",
            "formats": ["application/json", "text/xml"],
        }],
    });
    reply(format, Ok((StatusCode::OK, "discovery", body)))
}

/// `GET services.{format}`, `GET requests.{format}`.
pub async fn list(
    State(state): State<Shared>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    answer_get(
        &state,
        &file,
        query,
        async |name, comune, params| match name {
            "services" => Ok(("services", services(&state, &comune).await?)),
            "requests" => Ok(("service_requests", requests(&state, &comune, params).await?)),
            _ => Err(not_found()),
        },
    )
    .await
}

/// `GET services/{code}.{format}`: a service type's attributes.
pub async fn definition(
    State(state): State<Shared>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    answer_get(&state, &file, query, async |code, comune, _| {
        let found = service_type(&state, &comune, code).await?;
        let fields = found.attributes(&state).await?;
        Ok(("service_definition", found.definition(&fields)))
    })
    .await
}

/// `GET requests/{id}.{format}`: one request, as a list of one.
pub async fn request(
    State(state): State<Shared>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    answer_get(&state, &file, query, async |code, comune, _| {
        let row = report(&state, &comune, "code", code)
            .await?
            .ok_or_else(request_not_found)?;
        let types = service_types(&state, &comune).await?;
        Ok((
            "service_requests",
            json!([request_view(&state, &types, &row)]),
        ))
    })
    .await
}

/// `GET tokens/{token}.{format}`: the request a token stands for.
pub async fn token(
    State(state): State<Shared>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    answer_get(&state, &file, query, async |token, comune, _| {
        let id = Uuid::parse_str(token).map_err(|_| request_not_found())?;
        let row = report(&state, &comune, "id", &id.to_string())
            .await?
            .ok_or_else(request_not_found)?;
        Ok((
            "service_requests",
            json!([{ "service_request_id": row.code, "token": token }]),
        ))
    })
    .await
}

/// A time as the spec writes it: W3C, with Rome's offset.
fn w3c(at: DateTime<Utc>) -> String {
    at.with_timezone(&Rome)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The end of the due day in Rome: when the answer is expected at the latest.
fn end_of(day: NaiveDate) -> Option<DateTime<Utc>> {
    let last = NaiveTime::from_hms_opt(23, 59, 59)?;
    Rome.from_local_datetime(&day.and_time(last))
        .latest()
        .map(|t| t.with_timezone(&Utc))
}

/// What anyone may read of a report: nothing the citizen wrote, nothing that places them.
fn request_view(state: &AppState, types: &[ServiceType], row: &InboxRow) -> Value {
    let service_code = row.service.clone().unwrap_or_else(|| GENERAL.to_owned());
    let service_name = types
        .iter()
        .find(|t| t.code == service_code)
        .map_or_else(|| service_code.clone(), |t| t.name.clone());
    let status = row.public_status();
    let updated = [
        Some(&row.received_at),
        row.taken_in_charge_at.as_ref(),
        row.answered_at.as_ref(),
        row.closed_at.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|t| parse_time(t))
    .max();
    let due = NaiveDate::parse_from_str(&row.due_on, "%Y-%m-%d").ok();
    let agency = IstatCode::parse(&row.comune)
        .ok()
        .and_then(|code| state.settings.comune(&code))
        .map_or_else(
            || "URP".to_owned(),
            |c| format!("URP del Comune di {}", c.name),
        );
    json!({
        "service_request_id": row.code,
        "status": if row.is_open() { "open" } else { "closed" },
        "status_notes": status_label(status),
        "service_name": service_name,
        "service_code": service_code,
        "agency_responsible": agency,
        "service_notice": due
            .filter(|_| row.is_open())
            .map(|d| format!("Risposta prevista entro il {}.", d.format("%d/%m/%Y"))),
        "requested_datetime": parse_time(&row.received_at).map(w3c),
        "updated_datetime": updated.map(w3c),
        "expected_datetime": due.and_then(end_of).map(w3c),
    })
}

/// `POST requests.{format}`: a citizen's report, opened as a case.
pub async fn create(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let format = match split(&file) {
        Ok(("requests", format)) => format,
        Ok((_, format)) => return Failure::new(format, not_found()).into_response(),
        Err(failure) => return failure.into_response(),
    };
    let answer = async {
        state.limiter.check(address)?;
        let form_encoded = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form_encoded {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Invia i parametri come application/x-www-form-urlencoded.",
            ));
        }
        let params = Params::parse(query.as_deref(), &body);
        let opened = open_report(&state, &headers, &params, &body).await?;
        Ok((StatusCode::CREATED, "service_requests", opened))
    };
    reply(format, answer.await)
}

async fn open_report(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    body: &[u8],
) -> Result<Value, ApiError> {
    let comune = jurisdiction(state, params)?;
    let code = params.required("service_code")?;
    let service = service_type(state, &comune, code).await?;
    let place = location(params)?;
    let fields = service.attributes(state).await?;
    let values = attributes(params, &fields)?;
    let text = params.get("description");
    let media_url = params.get("media_url");
    if let Some(url) = media_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ApiError::invalid(
            "media_url",
            "media_url_invalid",
            "«media_url» deve essere un indirizzo http o https.",
        ));
    }
    // What the citizen wrote and where, all of it sealed with the case's texts.
    let mut description = text.unwrap_or_default().to_owned();
    let mut note = |line: String| {
        if !description.is_empty() {
            description.push('\n');
        }
        description.push_str(&line);
    };
    note(place);
    for field in &fields {
        if let Some(value) = values.get(&field.name) {
            let shown = match value {
                Value::String(s) => s.clone(),
                Value::Bool(true) => "sì".into(),
                Value::Bool(false) => "no".into(),
                other => other.to_string(),
            };
            note(format!("{}: {shown}", field.label));
        }
    }
    if let Some(url) = media_url {
        note(format!("Foto: {url}"));
    }
    let name = [params.get("first_name"), params.get("last_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let citizen = CitizenInput {
        name: Some(name).filter(|n| !n.is_empty()),
        email: params.get("email").map(str::to_owned),
        phone: params.get("phone").map(str::to_owned),
        ..CitizenInput::default()
    };
    let has_citizen = citizen.name.is_some() || citizen.email.is_some() || citizen.phone.is_some();
    let fingerprint = hex::encode(Sha256::digest(body));
    let case_id = idempotent_id(state, headers, "POST /open311/v2/requests", &fingerprint)
        .await?
        .unwrap_or_else(Uuid::now_v7);
    let contact = NewContact {
        case_id,
        comune,
        kind: CaseKind::Segnalazione,
        channel: Channel::App,
        service: service.service.clone(),
        subject: subject(text, &service.name),
        description: Some(description),
        citizen: has_citizen.then_some(citizen),
        received_at: Utc::now(),
        privacy_consent: params.get("privacy_consent") == Some("true"),
    };
    let actor = Actor {
        name: "citizen".into(),
        channel: Some("open311".into()),
        correlation_id: super::request::correlation_id(),
        ..Actor::default()
    };
    let opened = state.urp.open_case(&actor, contact).await?;
    let key = opened.access_key.clone().unwrap_or_default();
    let notice = format!(
        "Segnalazione {} ricevuta dall'URP: risposta prevista entro il {}. Per seguirla sul \
         sito del comune servono il codice e la chiave di accesso {key}.",
        opened.code,
        opened.due_on.format("%d/%m/%Y"),
    );
    Ok(json!([{
        "service_request_id": opened.code,
        "token": opened.case_id,
        "service_notice": notice,
        "account_id": null,
        "access_key": key,
    }]))
}

/// Where: `lat` and `long` together, `address_string` or `address_id`; one is required.
fn location(params: &Params) -> Result<String, ApiError> {
    let coordinate = |name: &'static str, limit: f64| -> Result<Option<f64>, ApiError> {
        params
            .get(name)
            .map(|text| {
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && v.abs() <= limit)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            name,
                            "coordinate_invalid",
                            format!("«{name}» deve essere un numero tra -{limit} e {limit}."),
                        )
                    })
            })
            .transpose()
    };
    let mut lines = Vec::new();
    match (coordinate("lat", 90.0)?, coordinate("long", 180.0)?) {
        (Some(lat), Some(long)) => lines.push(format!(
            "Posizione: {lat}, {long} (https://www.openstreetmap.org/?mlat={lat}&mlon={long})"
        )),
        (None, None) => {}
        _ => {
            return Err(ApiError::invalid(
                "lat",
                "coordinates_incomplete",
                "Servono sia «lat» sia «long».",
            ));
        }
    }
    if let Some(address) = params.get("address_string") {
        lines.push(format!("Indirizzo: {address}"));
    }
    if let Some(id) = params.get("address_id") {
        lines.push(format!("Codice indirizzo: {id}"));
    }
    if lines.is_empty() {
        return Err(ApiError::invalid(
            "address_string",
            "location_required",
            "Indica dove: «lat» e «long», oppure «address_string».",
        ));
    }
    Ok(lines.join("\n"))
}

/// `attribute[code]=value` (or `attribute[code][]=value`) as the form's values, checked against
/// the form's fields.
fn attributes(params: &Params, fields: &[FieldDef]) -> Result<BTreeMap<String, Value>, ApiError> {
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, given) in &params.0 {
        let Some(code) = key
            .strip_prefix("attribute[")
            .and_then(|rest| rest.strip_suffix("[]").unwrap_or(rest).strip_suffix(']'))
        else {
            continue;
        };
        let given: Vec<&str> = given
            .iter()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        let [text] = given.as_slice() else {
            if given.len() > 1 {
                errors.push(ApiError::invalid(
                    key,
                    "attribute_single_value",
                    format!("«{code}» accetta un solo valore."),
                ));
            }
            continue;
        };
        let kind = fields.iter().find(|f| f.name == code).map(|f| &f.kind);
        let value = match kind {
            Some(FieldKind::Number { .. }) => text
                .replace(',', ".")
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String((*text).to_owned()), Value::Number),
            Some(FieldKind::Boolean) => match *text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => Value::String(other.to_owned()),
            },
            // A date sent as a W3C date and time is the day it names.
            Some(FieldKind::Date) => Value::String(text.get(..10).unwrap_or(text).to_owned()),
            _ => Value::String((*text).to_owned()),
        };
        values.insert(code.to_owned(), value);
    }
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    // A form's e-mail or phone left out is the reporter's own, given with the request.
    for field in fields {
        let own = match field.kind {
            FieldKind::Email => params.get("email"),
            FieldKind::Phone => params.get("phone"),
            _ => None,
        };
        if let Some(own) = own {
            values
                .entry(field.name.clone())
                .or_insert_with(|| Value::String(own.to_owned()));
        }
    }
    let problems = field_errors(fields, &values, &[]);
    if problems.is_empty() {
        Ok(values)
    } else {
        let mut e = ApiError::fields(problems);
        for field in &mut e.errors {
            field.field = format!("attribute[{}]", field.field);
        }
        Err(e)
    }
}

/// The case's subject: the description's first line, shortened, or the service's name.
fn subject(description: Option<&str>, service_name: &str) -> String {
    const LONGEST: usize = 120;
    let Some(first) = description.and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
    else {
        return service_name.to_owned();
    };
    if first.chars().count() <= LONGEST {
        return first.to_owned();
    }
    let cut: String = first.chars().take(LONGEST).collect();
    let at_word = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", at_word.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params::parse(Some(query), &[])
    }

    #[test]
    fn xml_names_the_items_of_a_list_after_it() {
        let body = json!([{
            "service_code": "a&b",
            "metadata": true,
            "attributes": [{ "code": "x", "values": [{ "key": "1", "name": "uno" }] }],
            "account_id": null,
        }]);
        assert_eq!(
            xml("services", &body),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><services><service><account_id/>\
             <attributes><attribute><code>x</code><values><value><key>1</key><name>uno</name>\
             </value></values></attribute></attributes><metadata>true</metadata>\
             <service_code>a&amp;b</service_code></service></services>"
        );
    }

    #[test]
    fn the_extension_chooses_the_format_and_nothing_else_is_one() {
        assert_eq!(split("services.json").ok().map(|s| s.1), Some(Format::Json));
        assert_eq!(
            split("MAS-2026-000001.xml").ok().map(|s| s.0),
            Some("MAS-2026-000001")
        );
        for bad in ["services", "services.csv", ".json", "services.JSON"] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_date_range_is_at_most_ninety_days_and_the_last_ninety_by_default() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (from, until) = span(&params(""), now).unwrap();
        assert_eq!(from, now - Duration::days(90));
        assert!(until > now);
        let (from, _) = span(&params("start_date=2026-12-01T00:00:00%2B01:00"), now).unwrap();
        assert_eq!(w3c(from), "2026-12-01T00:00:00+01:00");
        for bad in [
            "start_date=2026-01-01T00:00:00Z&end_date=2026-12-01T00:00:00Z",
            "start_date=2026-12-02T00:00:00Z&end_date=2026-12-01T00:00:00Z",
            "start_date=ieri",
        ] {
            assert_eq!(span(&params(bad), now).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn a_location_needs_both_coordinates_or_an_address() {
        let at = location(&params("lat=40.58&long=17.11")).unwrap();
        assert!(at.contains("40.58, 17.11"), "{at}");
        assert!(
            location(&params("address_string=Via+Roma+1"))
                .unwrap()
                .contains("Via Roma 1")
        );
        for bad in [
            "",
            "lat=40.5",
            "lat=91&long=17",
            "lat=abc&long=17",
            "lat=NaN&long=1",
        ] {
            assert!(location(&params(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn attributes_are_checked_against_the_form_and_typed_as_it_says() {
        let fields = vec![
            FieldDef {
                name: "mq".into(),
                label: "Metri quadri".into(),
                kind: FieldKind::Number {
                    min: Some(1.0),
                    max: Some(500.0),
                },
                required: true,
            },
            FieldDef {
                name: "urgente".into(),
                label: "Urgente".into(),
                kind: FieldKind::Boolean,
                required: false,
            },
        ];
        let values = attributes(
            &params("attribute[mq]=12,5&attribute[urgente]=true"),
            &fields,
        )
        .unwrap();
        assert_eq!(values["mq"], json!(12.5));
        assert_eq!(values["urgente"], json!(true));
        for (bad, code) in [
            ("", "field_required"),
            ("attribute[mq]=9000", "field_out_of_range"),
            ("attribute[mq]=1&attribute[colore]=blu", "field_unknown"),
            (
                "attribute[mq]=1&attribute[urgente]=forse",
                "field_not_boolean",
            ),
            (
                "attribute[mq][]=1&attribute[mq][]=2",
                "attribute_single_value",
            ),
        ] {
            let e = attributes(&params(bad), &fields).unwrap_err();
            assert_eq!(e.errors[0].code, code, "{bad}");
        }
    }

    #[test]
    fn the_subject_is_the_first_line_cut_at_a_word_or_the_service() {
        assert_eq!(
            subject(None, "Segnalazione all'URP"),
            "Segnalazione all'URP"
        );
        assert_eq!(
            subject(Some("\n  Lampione spento\nda tre giorni"), "x"),
            "Lampione spento"
        );
        let long = "parola ".repeat(40);
        let cut = subject(Some(&long), "x");
        assert!(
            cut.ends_with("parola…") && cut.chars().count() <= 121,
            "{cut}"
        );
    }
}
