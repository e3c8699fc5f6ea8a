//! What a citizen does from the web: open a contact, follow it with its access key, send the
//! documents asked for or withdraw it, read the catalogue and the forms, submit a form, rate.

use super::guard::{ClientAddr, idempotency_key, idempotent_id, min_position, wait_for};
use super::problem::{ApiError, Body, Params, PathParams};
use super::{AppState, Shared, spec};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sportello_engine::app::{
    Actor, AppError, CitizenInput, NewContact, NewSubmission, OpenedCase, Refusal,
};
use sportello_engine::domain::Aggregate;
use sportello_engine::domain::case::{Case, CaseCommand, CaseEvent, CaseKind, Channel};
use sportello_engine::domain::feedback::{FeedbackError, GiveFeedback, Scale, Target, TargetType};
use sportello_projections::catalogue::{self, Catalogue, CatalogueEntry};
use sportello_projections::inbox::{Inbox, InboxRow};
use sportello_projections::{Filter, SqlValue, name_of};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CitizenRequest {
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 254, pattern = r"^[^\s\u0085@]+@[^\s\u0085@]+$")]
    pub email: Option<String>,
    #[schema(max_length = 200)]
    pub phone: Option<String>,
    #[schema(max_length = 200)]
    pub fiscal_code: Option<String>,
}

impl CitizenRequest {
    pub fn into_input(self) -> CitizenInput {
        CitizenInput {
            subject_id: None,
            name: self.name,
            email: self.email,
            phone: self.phone,
            fiscal_code: self.fiscal_code,
        }
    }
}

/// A contact opened by a citizen (or, under `/staff`, recorded by an operator).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCaseRequest {
    /// ISTAT code of the comune addressed, e.g. `073015` (Massafra).
    #[schema(pattern = "^[0-9]{6}$")]
    pub comune: String,
    #[schema(schema_with = spec::case_kinds)]
    pub kind: CaseKind,
    /// web or app from the public API; sportello, telefono, email, pec, posta for staff.
    #[schema(schema_with = spec::channels)]
    pub channel: Channel,
    /// Code of the service it concerns, whose term applies (the default term otherwise).
    pub service: Option<String>,
    // Not only white space as the server counts it: Unicode's, where U+0085 is white space
    // (JSON Schema's `\s` leaves it out).
    #[schema(min_length = 1, max_length = 200, pattern = r"[^\s\u0085]")]
    pub subject: String,
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    pub citizen: Option<CitizenRequest>,
    /// The citizen has read the privacy notice (GDPR art. 13); must be true.
    #[schema(schema_with = spec::must_be_true)]
    pub privacy_consent: bool,
    /// Staff only: when the contact was received, if entered afterwards.
    #[serde(default)]
    pub received_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenedCaseResponse {
    pub id: Uuid,
    pub code: String,
    /// Keep it: it is the only way to follow the case (`GET /api/v1/cases/{code}?key=…`).
    pub access_key: Option<String>,
    pub status: String,
    pub received_at: DateTime<Utc>,
    /// The latest date by which the case will be completed (PNRR C.SE.1.10).
    pub expected_by: NaiveDate,
    /// Global position of the write, for `min_position`.
    pub position: u64,
}

/// What the application service takes for a new contact (it checks the rules).
pub fn new_contact(request: NewCaseRequest, case_id: Uuid) -> NewContact {
    NewContact {
        case_id,
        comune: request.comune,
        kind: request.kind,
        channel: request.channel,
        service: request.service,
        subject: request.subject,
        description: request.description,
        citizen: request.citizen.map(CitizenRequest::into_input),
        received_at: Utc::now(),
        privacy_consent: request.privacy_consent,
    }
}

/// The answer to a new case; a repeated request reports the head it has seen.
pub async fn opened_response(
    state: &AppState,
    opened: OpenedCase,
    received_at: DateTime<Utc>,
) -> Result<OpenedCaseResponse, ApiError> {
    let position = match opened.position {
        0 => state.urp.log().head().await?,
        p => p,
    };
    let case = &opened.state;
    Ok(OpenedCaseResponse {
        id: opened.case_id,
        code: opened.code,
        access_key: opened.access_key,
        status: status_name(case).into(),
        received_at: case.received_at.unwrap_or(received_at),
        expected_by: opened.due_on,
        position,
    })
}

pub fn citizen_actor() -> Actor {
    Actor {
        name: "citizen".into(),
        channel: Some("web".into()),
        correlation_id: super::request::correlation_id(),
        ..Actor::default()
    }
}

#[utoipa::path(post, path = "/api/v1/cases", tag = "pubblico",
    request_body = NewCaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe")),
    responses((status = 201, body = OpenedCaseResponse), (status = 422, body = super::problem::Problem),
              (status = 429, body = super::problem::Problem)))]
pub async fn open_case(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Body(request, fingerprint): Body<NewCaseRequest>,
) -> Result<(StatusCode, Json<OpenedCaseResponse>), ApiError> {
    state.limiter.check(address)?;
    if !matches!(request.channel, Channel::Web | Channel::App) {
        return Err(ApiError::invalid(
            "channel",
            "channel_not_public",
            "Dal sito si possono aprire solo richieste con canale «web» o «app».",
        ));
    }
    if request.received_at.is_some() {
        return Err(ApiError::invalid(
            "received_at",
            "field_not_allowed",
            "La data di ricezione è registrata dal sistema.",
        ));
    }
    let case_id = idempotent_id(&state, &headers, "POST /cases", &fingerprint)
        .await?
        .unwrap_or_else(Uuid::now_v7);
    let contact = new_contact(request, case_id);
    let received_at = contact.received_at;
    let opened = state.urp.open_case(&citizen_actor(), contact).await?;
    let response = opened_response(&state, opened, received_at).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyParams {
    /// The access key received when the case was opened.
    pub key: Option<String>,
    /// Wait until the case views include this global position (read your own writes).
    pub min_position: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Milestone {
    /// received, taken_in_charge, transferred, documents_requested, documents_received,
    /// answered, closed, reopened, withdrawn.
    pub kind: String,
    /// In Italian, for the citizen.
    pub label: String,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_by: Option<NaiveDate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
}

/// What a citizen sees of their case: status and dated milestones, nothing personal.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseStatusResponse {
    pub code: String,
    pub status: String,
    pub status_label: String,
    pub received_at: Option<DateTime<Utc>>,
    pub taken_in_charge_at: Option<DateTime<Utc>>,
    pub expected_by: Option<NaiveDate>,
    pub answered_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub milestones: Vec<Milestone>,
}

/// A case's status as answers name it, from the case's own state machine.
pub fn status_name(case: &Case) -> &'static str {
    case.lifecycle().public_name()
}

pub fn status_label(status: &str) -> &'static str {
    match status {
        "received" => "Ricevuta",
        "taken_in_charge" => "Presa in carico",
        "assigned" => "Assegnata a un operatore",
        "suspended" => "In attesa di documenti",
        "answered" => "Risposta inviata",
        "withdrawn" => "Ritirata",
        _ => "Chiusa",
    }
}

/// The citizen's view of a case, folded from its events.
pub fn public_status(events: &[CaseEvent]) -> CaseStatusResponse {
    let mut case = Case::default();
    let mut view = CaseStatusResponse {
        code: String::new(),
        status: String::new(),
        status_label: String::new(),
        received_at: None,
        taken_in_charge_at: None,
        expected_by: None,
        answered_at: None,
        closed_at: None,
        outcome: None,
        milestones: Vec::new(),
    };
    for event in events {
        let milestone = |kind: &str, label: &str, at: DateTime<Utc>| Milestone {
            kind: kind.into(),
            label: label.into(),
            at,
            expected_by: None,
            documents: None,
        };
        let m = match event {
            CaseEvent::CaseOpened {
                received_at,
                due_on,
                ..
            } => {
                view.received_at = Some(*received_at);
                view.expected_by = Some(*due_on);
                Some(milestone("received", "Richiesta ricevuta", *received_at))
            }
            CaseEvent::CaseTakenInCharge {
                at, expected_by, ..
            } => {
                view.taken_in_charge_at = Some(*at);
                view.expected_by = Some(*expected_by);
                Some(Milestone {
                    expected_by: Some(*expected_by),
                    ..milestone("taken_in_charge", "Presa in carico dall'ufficio", *at)
                })
            }
            CaseEvent::CaseAssigned { .. } => None,
            CaseEvent::CaseTransferred { at, .. } => Some(milestone(
                "transferred",
                "Trasmessa all'URP del comune competente",
                *at,
            )),
            CaseEvent::DocumentsRequested { documents, at } => Some(Milestone {
                documents: Some(documents.clone()),
                ..milestone(
                    "documents_requested",
                    "Richiesti documenti integrativi: i termini sono sospesi",
                    *at,
                )
            }),
            CaseEvent::DocumentsReceived { at, due_on, .. } => {
                view.expected_by = Some(*due_on);
                Some(Milestone {
                    expected_by: Some(*due_on),
                    ..milestone(
                        "documents_received",
                        "Documenti ricevuti: i termini riprendono",
                        *at,
                    )
                })
            }
            CaseEvent::CaseAnswered { at, .. } => {
                view.answered_at = Some(*at);
                Some(milestone("answered", "Risposta inviata", *at))
            }
            CaseEvent::CaseClosed { at, outcome } => {
                view.closed_at = Some(*at);
                view.outcome = Some(name_of(outcome));
                Some(milestone("closed", "Pratica chiusa", *at))
            }
            CaseEvent::CaseReopened { at, .. } => {
                view.answered_at = None;
                view.closed_at = None;
                view.outcome = None;
                Some(milestone("reopened", "Pratica riaperta", *at))
            }
            CaseEvent::CaseWithdrawn { at } => {
                view.closed_at = Some(*at);
                view.outcome = Some("ritirata_dal_cittadino".into());
                Some(milestone("withdrawn", "Ritirata dal cittadino", *at))
            }
            // What the workers and the archive do is the office's business, not a milestone.
            CaseEvent::NoticeSent { .. }
            | CaseEvent::OfficeReminded { .. }
            | CaseEvent::LegalHoldPlaced { .. }
            | CaseEvent::LegalHoldReleased { .. } => None,
        };
        view.milestones.extend(m);
        case = case.evolve(event);
    }
    view.code = case.code.clone();
    view.status = status_name(&case).into();
    view.status_label = status_label(&view.status).into();
    view
}

/// The decoded events of a case with when each was recorded.
pub async fn case_timeline(
    state: &AppState,
    case_id: Uuid,
) -> Result<Vec<(sportello_engine::RecordedEvent, CaseEvent)>, ApiError> {
    decode_timeline(state.urp.case_events(case_id).await?)
}

/// A case's recorded events, each with its decoded payload.
pub fn decode_timeline(
    events: Vec<sportello_engine::RecordedEvent>,
) -> Result<Vec<(sportello_engine::RecordedEvent, CaseEvent)>, ApiError> {
    events
        .into_iter()
        .map(|recorded| {
            let event = recorded.decode::<CaseEvent>().map_err(|e| {
                tracing::error!(position = recorded.position, error = %e, "undecodable case event");
                ApiError::internal()
            })?;
            Ok((recorded, event))
        })
        .collect()
}

/// The case id behind a code, from the inbox; waits for the inbox to reach the head once when
/// the code is not (yet) there, so a case just opened is found.
pub async fn case_id_for_code(state: &AppState, code: &str) -> Result<Option<Uuid>, ApiError> {
    Ok(inbox_row(state, "code", code)
        .await?
        .and_then(|r| r.id.parse().ok()))
}

/// The inbox's row whose `column` (`code` or `id`) is `value`; waits for the inbox to reach the
/// head once when there is none (yet), so a case just opened is found, and answers 503 when it
/// does not reach it in time.
pub async fn inbox_row(
    state: &AppState,
    column: &'static str,
    value: &str,
) -> Result<Option<InboxRow>, ApiError> {
    let lookup = || async {
        let rows = state
            .reader
            .select::<Inbox>(
                Filter::new().and(&format!("{column} = ?"), SqlValue::Text(value.to_owned())),
                "id",
                1,
                0,
            )
            .await?;
        Ok::<_, ApiError>(rows.into_iter().next())
    };
    if let Some(row) = lookup().await? {
        return Ok(Some(row));
    }
    // Not there, or not yet: a read model (or a replica) still behind answers 503, not "none".
    let head = state.urp.log().head().await?;
    wait_for::<Inbox>(state, Some(head)).await?;
    lookup().await
}

/// The case a citizen's code and key open; 404 alike for an unknown code and a wrong key.
pub async fn citizen_case(
    state: &AppState,
    code: &str,
    key: Option<&str>,
) -> Result<Uuid, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "case_not_found",
            "Nessuna pratica corrisponde a questo codice e a questa chiave di accesso.",
        )
    };
    let key = key.filter(|k| !k.trim().is_empty()).ok_or_else(not_found)?;
    let case_id = case_id_for_code(state, code).await?.ok_or_else(not_found)?;
    if !state.urp.access_key_matches(case_id, key) {
        return Err(not_found());
    }
    Ok(case_id)
}

#[utoipa::path(get, path = "/api/v1/cases/{code}", tag = "pubblico",
    params(("code" = String, Path, description = "e.g. MAS-2026-000123"), KeyParams),
    responses((status = 200, body = CaseStatusResponse), (status = 404, body = super::problem::Problem)))]
pub async fn follow_case(
    State(state): State<Shared>,
    PathParams(code): PathParams<String>,
    headers: HeaderMap,
    Params(params): Params<KeyParams>,
) -> Result<Json<CaseStatusResponse>, ApiError> {
    wait_for::<Inbox>(&state, min_position(params.min_position, &headers)).await?;
    let case_id = citizen_case(&state, &code, params.key.as_deref()).await?;
    let events: Vec<CaseEvent> = case_timeline(&state, case_id)
        .await?
        .into_iter()
        .map(|(_, event)| event)
        .collect();
    Ok(Json(public_status(&events)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentsRequest {
    /// What is being sent (the files travel through the comune's protocol, e.g. by PEC).
    #[schema(schema_with = spec::document_names)]
    pub documents: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseWriteResponse {
    pub id: Uuid,
    pub code: String,
    pub status: String,
    pub expected_by: Option<NaiveDate>,
    pub position: u64,
}

/// Runs a command on a case and answers with its new state.
pub async fn act_on_case(
    state: &AppState,
    actor: &Actor,
    case_id: Uuid,
    command_id: Uuid,
    command: CaseCommand,
) -> Result<CaseWriteResponse, ApiError> {
    let done = state.urp.act(actor, case_id, command_id, command).await?;
    let position = match done.outcome {
        Some(o) => o.last_position,
        None => state.urp.log().head().await?,
    };
    Ok(CaseWriteResponse {
        id: case_id,
        code: done.state.code.clone(),
        status: status_name(&done.state).into(),
        expected_by: done.state.due_on,
        position,
    })
}

/// The command id of an action on a case: derived from its `Idempotency-Key` (a retry is the same
/// command), new otherwise.
pub fn command_id(headers: &HeaderMap, case_id: Uuid, action: &str) -> Result<Uuid, ApiError> {
    Ok(match idempotency_key(headers)? {
        Some(key) => Uuid::new_v5(&case_id, format!("{action}|{key}").as_bytes()),
        None => Uuid::now_v7(),
    })
}

#[utoipa::path(post, path = "/api/v1/cases/{code}/documents", tag = "pubblico",
    params(("code" = String, Path), KeyParams,
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe")), request_body = DocumentsRequest,
    responses((status = 200, body = CaseWriteResponse), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem)))]
pub async fn send_documents(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    PathParams(code): PathParams<String>,
    headers: HeaderMap,
    Params(params): Params<KeyParams>,
    Body(request, _): Body<DocumentsRequest>,
) -> Result<Json<CaseWriteResponse>, ApiError> {
    state.limiter.check(address)?;
    if request.documents.is_empty() || request.documents.iter().any(|d| d.trim().is_empty()) {
        return Err(ApiError::invalid(
            "documents",
            "required",
            "Indica i documenti che stai inviando.",
        ));
    }
    let case_id = citizen_case(&state, &code, params.key.as_deref()).await?;
    let command = CaseCommand::ReceiveDocuments {
        at: Utc::now(),
        suspended_days: 0,
        due_on: NaiveDate::default(),
        documents: Vec::new(),
    };
    let id = command_id(&headers, case_id, "documents")?;
    Ok(Json(
        act_on_case(&state, &citizen_actor(), case_id, id, command).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/cases/{code}/withdraw", tag = "pubblico",
    params(("code" = String, Path), KeyParams,
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe")),
    responses((status = 200, body = CaseWriteResponse), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem)))]
pub async fn withdraw(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    PathParams(code): PathParams<String>,
    headers: HeaderMap,
    Params(params): Params<KeyParams>,
) -> Result<Json<CaseWriteResponse>, ApiError> {
    state.limiter.check(address)?;
    let case_id = citizen_case(&state, &code, params.key.as_deref()).await?;
    let command = CaseCommand::Withdraw { at: Utc::now() };
    let id = command_id(&headers, case_id, "withdraw")?;
    Ok(Json(
        act_on_case(&state, &citizen_actor(), case_id, id, command).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueParams {
    /// Only the services of this comune (ISTAT code).
    pub comune: Option<String>,
    pub min_position: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServicesResponse {
    #[schema(value_type = Vec<Object>)]
    pub services: Vec<CatalogueEntry>,
}

#[utoipa::path(get, path = "/api/v1/services", tag = "pubblico", params(CatalogueParams),
    responses((status = 200, body = ServicesResponse)))]
pub async fn services(
    State(state): State<Shared>,
    headers: HeaderMap,
    Params(params): Params<CatalogueParams>,
) -> Result<Json<ServicesResponse>, ApiError> {
    wait_for::<Catalogue>(&state, min_position(params.min_position, &headers)).await?;
    let services = catalogue::query(&state.reader, params.comune.as_deref()).await?;
    Ok(Json(ServicesResponse { services }))
}

#[utoipa::path(get, path = "/api/v1/services/{code}", tag = "pubblico",
    params(("code" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = super::problem::Problem)))]
pub async fn service(
    State(state): State<Shared>,
    PathParams(code): PathParams<String>,
    headers: HeaderMap,
    Params(params): Params<CatalogueParams>,
) -> Result<Json<CatalogueEntry>, ApiError> {
    wait_for::<Catalogue>(&state, min_position(params.min_position, &headers)).await?;
    catalogue::find(&state.reader, &code)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "service_not_found",
                "Il servizio richiesto non esiste o non è attivo.",
            )
        })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FormResponse {
    pub id: String,
    pub version: u32,
    /// The form: service, title, fields (name, label, kind, required) and documents asked for.
    #[schema(value_type = Object)]
    pub form: sportello_engine::domain::service::FormDef,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormParams {
    /// A given version (the latest usable one when omitted).
    pub version: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/forms/{id}", tag = "pubblico",
    params(("id" = String, Path), FormParams),
    responses((status = 200, body = FormResponse), (status = 404, body = super::problem::Problem)))]
pub async fn form(
    State(state): State<Shared>,
    PathParams(id): PathParams<String>,
    Params(params): Params<FormParams>,
) -> Result<Json<FormResponse>, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "form_not_found",
            "Il modulo richiesto non esiste o non è più in uso.",
        )
    };
    let form = state.urp.form(&id).await?;
    let version = match params.version {
        Some(v) => v,
        None => form
            .versions
            .iter()
            .rev()
            .find(|(_, (_, withdrawn))| !withdrawn)
            .map(|(v, _)| *v)
            .ok_or_else(not_found)?,
    };
    let def = form.usable(version).map_err(|_| not_found())?.clone();
    Ok(Json(FormResponse {
        id,
        version,
        form: def,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionRequest {
    #[schema(min_length = 1)]
    pub form_id: String,
    /// The published version the citizen filled in.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "super::problem::whole_number")]
    pub form_version: u32,
    #[schema(pattern = "^[0-9]{6}$")]
    pub comune: String,
    #[schema(value_type = Object)]
    pub values: BTreeMap<String, Value>,
    #[serde(default)]
    pub documents: Vec<String>,
    pub citizen: CitizenRequest,
    #[schema(schema_with = spec::must_be_true)]
    pub privacy_consent: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubmissionResponse {
    pub submission_id: Uuid,
    /// Progressive per comune and year, with no gaps.
    pub registration_number: u64,
    pub case: OpenedCaseResponse,
    pub position: u64,
}

#[utoipa::path(post, path = "/api/v1/submissions", tag = "pubblico",
    request_body = SubmissionRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe")),
    responses((status = 201, body = SubmissionResponse), (status = 422, body = super::problem::Problem)))]
pub async fn submit(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Body(request, fingerprint): Body<SubmissionRequest>,
) -> Result<(StatusCode, Json<SubmissionResponse>), ApiError> {
    state.limiter.check(address)?;
    let submission_id = idempotent_id(&state, &headers, "POST /submissions", &fingerprint)
        .await?
        .unwrap_or_else(Uuid::now_v7);
    let submitted_at = Utc::now();
    let done = state
        .urp
        .submit(
            &citizen_actor(),
            NewSubmission {
                submission_id,
                form_id: request.form_id,
                form_version: request.form_version,
                values: request.values,
                documents: request.documents,
                comune: request.comune,
                citizen: request.citizen.into_input(),
                submitted_at,
                privacy_consent: request.privacy_consent,
            },
        )
        .await?;
    let case = opened_response(&state, done.case, submitted_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubmissionResponse {
            submission_id: done.submission_id,
            registration_number: done.registration_number,
            position: case.position,
            case,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackTarget {
    #[serde(rename = "type")]
    #[schema(schema_with = spec::target_types)]
    pub target_type: TargetType,
    /// The service code, the page path, or the case code (or id).
    #[schema(min_length = 1, pattern = r"[^\s\u0085]")]
    pub id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    pub target: FeedbackTarget,
    #[schema(pattern = "^[0-9]{6}$")]
    pub comune: String,
    #[schema(schema_with = spec::channels)]
    pub channel: Channel,
    /// faces (1 dissatisfied, 2 neutral, 3 satisfied) or stars (1–5).
    #[schema(schema_with = spec::scales)]
    pub scale: Scale,
    #[schema(minimum = 1, maximum = 5)]
    #[serde(deserialize_with = "super::problem::whole_number")]
    pub score: u8,
    /// The reasons offered for the score (see the rules of this schema).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Up to 200 characters; stored sealed.
    #[schema(max_length = 200)]
    pub comment: Option<String>,
    /// Required when rating a case: its access key.
    pub access_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub id: Uuid,
    pub position: u64,
}

#[utoipa::path(post, path = "/api/v1/feedback", tag = "pubblico",
    request_body = FeedbackRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe")),
    responses((status = 201, body = FeedbackResponse), (status = 409, body = super::problem::Problem),
              (status = 422, body = super::problem::Problem)))]
pub async fn feedback(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Body(request, fingerprint): Body<FeedbackRequest>,
) -> Result<(StatusCode, Json<FeedbackResponse>), ApiError> {
    state.limiter.check(address)?;
    state.urp.check_comune(&request.comune)?;
    let mut subject = None;
    let target_id = match request.target.target_type {
        TargetType::Case => {
            let key = request.access_key.as_deref();
            let case_id = match request.target.id.parse::<Uuid>() {
                Ok(id) if key.is_some_and(|k| state.urp.access_key_matches(id, k)) => id,
                Ok(_) => {
                    return Err(ApiError::not_found(
                        "case_not_found",
                        "Nessuna pratica corrisponde a questo codice e a questa chiave di accesso.",
                    ));
                }
                Err(_) => citizen_case(&state, &request.target.id, key).await?,
            };
            // A comment on a case is the citizen's: sealed under them, erased with them.
            subject = state.urp.case(case_id).await?.0.citizen_subject;
            case_id.to_string()
        }
        _ => request.target.id.clone(),
    };
    let replay = idempotent_id(&state, &headers, "POST /feedback", &fingerprint).await?;
    let command = GiveFeedback {
        target: Target {
            target_type: request.target.target_type,
            id: target_id,
        },
        comune: request.comune,
        channel: request.channel,
        scale: request.scale,
        score: request.score,
        reasons: request.reasons,
        comment: None,
        given_at: Utc::now(),
        case_closed: None,
        case_kind: None,
    };
    let target = command.target.clone();
    match state
        .urp
        .give_feedback(&citizen_actor(), command, request.comment, subject, replay)
        .await
    {
        Ok((id, position)) => Ok((StatusCode::CREATED, Json(FeedbackResponse { id, position }))),
        // A retry with the same key and body: the rating is there; answer as the first time.
        Err(AppError::Refused(Refusal::Feedback(FeedbackError::AlreadyGiven)))
            if replay.is_some() =>
        {
            let id = match target.target_type {
                TargetType::Case => sportello_engine::domain::feedback::feedback_id_for_case(
                    target.id.parse().map_err(|_| ApiError::internal())?,
                ),
                _ => replay.unwrap_or_default(),
            };
            let position = state.urp.log().head().await?;
            Ok((StatusCode::CREATED, Json(FeedbackResponse { id, position })))
        }
        Err(e) => Err(e.into()),
    }
}
