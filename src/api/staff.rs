//! The URP staff's work: the inbox of their comune, a case's detail and timeline with the
//! citizen's data unsealed, the actions on a case, the statistics, and GDPR erasure (admins).

use super::guard::{Staff, idempotency_key, min_position, wait_for};
use super::problem::{ApiError, Body, OptionalBody, Params, PathParams};
use super::public::{
    CaseWriteResponse, NewCaseRequest, OpenedCaseResponse, act_on_case, command_id,
    decode_timeline, new_contact, opened_response, status_name,
};
use super::{AppState, Shared, spec};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Rome;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sportello_engine::app::staff::Role;
use sportello_engine::app::{Actor, AppError, Refusal};
use sportello_engine::domain::Aggregate;
use sportello_engine::domain::case::{Case, CaseCommand, CaseEvent, Outcome};
use sportello_engine::vault::{Sealed, Unsealed};
use sportello_projections::inbox::{self, Inbox, InboxPage, InboxQuery};
use sportello_projections::satisfaction::{self, Ratings, SatisfactionQuery, SatisfactionReport};
use sportello_projections::service_levels::{self, ServiceLevelQuery, ServiceLevelReport};
use sportello_projections::subject_texts::SubjectTexts;
use sportello_projections::{Filter, SqlValue, name_of};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Today in Rome, the day terms are counted in.
pub fn today() -> NaiveDate {
    Utc::now().with_timezone(&Rome).date_naive()
}

fn actor(staff: &Staff) -> Actor {
    Actor {
        name: staff.actor_name(),
        channel: None,
        correlation_id: super::request::correlation_id(),
        ..Actor::default()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    pub role: String,
    pub comune: String,
}

#[utoipa::path(get, path = "/api/v1/staff/me", tag = "staff", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = super::problem::Problem)))]
pub async fn me(staff: Staff) -> Json<Me> {
    Json(Me {
        name: staff.0.name,
        role: staff.0.role.as_str().into(),
        comune: staff.0.comune,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    pub office: Option<String>,
    pub operator: Option<String>,
    pub kind: Option<String>,
    pub channel: Option<String>,
    pub service: Option<String>,
    /// received, taken_in_charge, assigned, suspended, answered, closed.
    pub status: Option<String>,
    pub code: Option<String>,
    pub transferred_from: Option<String>,
    /// true: only open cases past their due date; false: all the others.
    pub overdue: Option<bool>,
    /// YYYY-MM-DD.
    pub received_from: Option<NaiveDate>,
    /// YYYY-MM-DD, exclusive.
    pub received_until: Option<NaiveDate>,
    /// Words the subject has, or their beginnings, in any order; case and accents ignored.
    pub text: Option<String>,
    /// 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    pub min_position: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/staff/cases", tag = "staff", security(("bearer" = [])),
    params(InboxParams),
    responses((status = 200, body = Object, description = "{total, entries: [inbox rows with days_left and overdue]}"),
              (status = 401, body = super::problem::Problem), (status = 403, body = super::problem::Problem)))]
pub async fn inbox(
    State(state): State<Shared>,
    staff: Staff,
    headers: HeaderMap,
    Params(p): Params<InboxParams>,
) -> Result<Json<InboxPage>, ApiError> {
    Ok(Json(inbox_page(&state, &staff, p, &headers, None).await?))
}

/// A page of the staff member's inbox; `after` is the keyset cursor (due date, code) the pages
/// use.
pub async fn inbox_page(
    state: &AppState,
    staff: &Staff,
    p: InboxParams,
    headers: &HeaderMap,
    after: Option<inbox::Cursor>,
) -> Result<InboxPage, ApiError> {
    staff.works_cases()?;
    let limit = p.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit_out_of_range",
            "Si possono chiedere da 1 a 1000 pratiche per pagina.",
        ));
    }
    let wait = min_position(p.min_position, headers);
    wait_for::<Inbox>(state, wait).await?;
    if p.text.is_some() {
        wait_for::<SubjectTexts>(state, wait).await?;
    }
    let query = InboxQuery {
        // The comune that owns the case now: a transferred case belongs to the receiving one.
        comune: Some(staff.0.comune.clone()),
        office: p.office,
        operator: p.operator,
        kind: p.kind,
        channel: p.channel,
        service: p.service,
        status: p.status,
        code: p.code,
        transferred_from: p.transferred_from,
        overdue: p.overdue,
        received_from: p.received_from,
        received_until: p.received_until,
        text: p.text,
        limit: limit.into(),
        offset: p.offset.unwrap_or(0).into(),
        after,
    };
    Ok(inbox::query(&state.reader, &query, today()).await?)
}

/// A case's events and the state they leave, if it belongs to the staff member's comune now;
/// 404 otherwise (a case of another comune is not theirs to know about).
async fn own_case(state: &AppState, staff: &Staff, id: &str) -> Result<OwnCase, ApiError> {
    staff.works_cases()?;
    let not_found = || {
        ApiError::not_found(
            "case_not_found",
            "La pratica non esiste o non è di competenza del tuo comune.",
        )
    };
    let case_id: Uuid = id.parse().map_err(|_| not_found())?;
    let timeline = match state.urp.case_events(case_id).await {
        Ok(events) => decode_timeline(events)?,
        Err(AppError::Refused(Refusal::Case(_))) => return Err(not_found()),
        Err(other) => return Err(other.into()),
    };
    let case = timeline
        .iter()
        .fold(Case::default(), |case, (_, event)| case.evolve(event));
    if case.comune != staff.0.comune {
        return Err(not_found());
    }
    Ok(OwnCase {
        id: case_id,
        case,
        timeline,
    })
}

struct OwnCase {
    id: Uuid,
    case: Case,
    timeline: Vec<(sportello_engine::RecordedEvent, CaseEvent)>,
}

async fn unseal(state: &AppState, sealed: &Option<Sealed>) -> Result<Option<String>, ApiError> {
    match sealed {
        None => Ok(None),
        Some(s) => match state.urp.vault().unseal(s).await {
            Ok(Unsealed::Clear(text)) => Ok(Some(text)),
            Ok(Unsealed::Erased) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "cannot unseal");
                Err(ApiError::internal())
            }
        },
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CitizenView {
    pub subject_id: Uuid,
    /// True once the citizen's data were erased (GDPR art. 17): the fields below are gone.
    pub erased: bool,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fiscal_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub position: u64,
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor: Option<String>,
    /// What the event says, without sealed values.
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetail {
    pub id: Uuid,
    pub code: String,
    pub comune: String,
    pub kind: Option<String>,
    pub channel: Option<String>,
    pub service: Option<String>,
    pub status: String,
    pub office: Option<String>,
    pub operator: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub due_on: Option<NaiveDate>,
    pub days_left: Option<i64>,
    pub outcome: Option<String>,
    pub transferred_from: Option<String>,
    /// The citizen's subject and description, unsealed (null once erased).
    pub subject: Option<String>,
    pub description: Option<String>,
    pub personal_data_erased: bool,
    pub citizen: Option<CitizenView>,
    /// The reason of the legal hold in force: while held, retention erases nothing of the case.
    pub legal_hold: Option<String>,
    /// The files the citizen sent, oldest first.
    pub documents: Vec<DocumentView>,
    pub timeline: Vec<TimelineEntry>,
}

/// A file sent for a case, as staff see it (its content at `…/documents/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: Uuid,
    /// The file's name, unsealed (null once the citizen's data were erased: the file is gone too).
    pub name: Option<String>,
    pub media_type: String,
    pub bytes: u64,
    pub sha256: String,
    pub received_at: DateTime<Utc>,
}

fn details(event: &CaseEvent) -> Value {
    match event {
        CaseEvent::CaseOpened {
            kind,
            channel,
            service,
            received_at,
            term_days,
            due_on,
            ..
        } => json!({
            "kind": kind, "channel": channel, "service": service, "received_at": received_at,
            "term_days": term_days, "due_on": due_on,
        }),
        CaseEvent::CaseTakenInCharge {
            office,
            expected_by,
            ..
        } => {
            json!({ "office": office, "expected_by": expected_by })
        }
        CaseEvent::CaseAssigned { operator } => json!({ "operator": operator }),
        CaseEvent::CaseTransferred {
            from_comune,
            to_comune,
            reason,
            ..
        } => {
            json!({ "from_comune": from_comune, "to_comune": to_comune, "reason": reason })
        }
        CaseEvent::DocumentsRequested { documents, .. } => json!({ "documents": documents }),
        CaseEvent::DocumentsReceived {
            suspended_days,
            due_on,
            documents,
            ..
        } => {
            let files: Vec<Value> = documents
                .iter()
                .map(|d| json!({ "id": d.id, "media_type": d.media_type, "bytes": d.bytes }))
                .collect();
            json!({ "suspended_days": suspended_days, "due_on": due_on, "documents": files })
        }
        CaseEvent::CaseAnswered { text, .. } => json!({ "text": text }),
        CaseEvent::CaseClosed { outcome, .. } => json!({ "outcome": outcome }),
        CaseEvent::CaseReopened { reason, .. } => json!({ "reason": reason }),
        CaseEvent::CaseWithdrawn { .. } => json!({}),
        CaseEvent::NoticeSent {
            kind,
            channel,
            outcome,
            ..
        } => json!({ "kind": kind, "channel": channel, "outcome": outcome }),
        CaseEvent::OfficeReminded {
            threshold,
            due_on,
            office,
            outcome,
            ..
        } => {
            json!({ "threshold": threshold, "due_on": due_on, "office": office, "outcome": outcome })
        }
        CaseEvent::LegalHoldPlaced { reason, .. } | CaseEvent::LegalHoldReleased { reason, .. } => {
            json!({ "reason": reason })
        }
    }
}

#[utoipa::path(get, path = "/api/v1/staff/cases/{id}", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CaseDetail), (status = 404, body = super::problem::Problem)))]
pub async fn case_detail(
    State(state): State<Shared>,
    staff: Staff,
    PathParams(id): PathParams<String>,
) -> Result<Json<CaseDetail>, ApiError> {
    let OwnCase {
        id: case_id,
        case,
        timeline: events,
    } = own_case(&state, &staff, &id).await?;
    let mut detail = CaseDetail {
        id: case_id,
        code: String::new(),
        comune: String::new(),
        kind: None,
        channel: None,
        service: None,
        status: String::new(),
        office: None,
        operator: None,
        received_at: None,
        due_on: None,
        days_left: None,
        outcome: None,
        transferred_from: None,
        subject: None,
        description: None,
        personal_data_erased: false,
        citizen: None,
        legal_hold: None,
        documents: Vec::new(),
        timeline: Vec::with_capacity(events.len()),
    };
    for (recorded, event) in &events {
        match event {
            CaseEvent::CaseOpened {
                kind,
                channel,
                service,
                subject,
                description,
                citizen,
                ..
            } => {
                detail.kind = Some(name_of(kind));
                detail.channel = Some(name_of(channel));
                detail.service = service.clone();
                detail.subject = unseal(&state, &Some(subject.clone())).await?;
                detail.description = unseal(&state, description).await?;
                detail.personal_data_erased = detail.subject.is_none();
                if let Some(c) = citizen {
                    let name = unseal(&state, &c.name).await?;
                    let email = unseal(&state, &c.email).await?;
                    let phone = unseal(&state, &c.phone).await?;
                    let fiscal_code = unseal(&state, &c.fiscal_code).await?;
                    let had_any = [&c.name, &c.email, &c.phone, &c.fiscal_code]
                        .iter()
                        .any(|f| f.is_some());
                    let erased = had_any
                        && [&name, &email, &phone, &fiscal_code]
                            .iter()
                            .all(|f| f.is_none());
                    detail.personal_data_erased |= erased;
                    detail.citizen = Some(CitizenView {
                        subject_id: c.subject_id,
                        erased,
                        name,
                        email,
                        phone,
                        fiscal_code,
                    });
                }
            }
            CaseEvent::CaseTransferred { from_comune, .. } => {
                detail.transferred_from = Some(from_comune.clone());
            }
            CaseEvent::DocumentsReceived { documents, at, .. } => {
                for d in documents {
                    detail.documents.push(DocumentView {
                        id: d.id,
                        name: unseal(&state, &Some(d.name.clone())).await?,
                        media_type: d.media_type.clone(),
                        bytes: d.bytes,
                        sha256: d.sha256.clone(),
                        received_at: *at,
                    });
                }
            }
            _ => {}
        }
        detail.timeline.push(TimelineEntry {
            position: recorded.position,
            version: recorded.version,
            event_type: recorded.event_type.clone(),
            at: recorded.occurred_at,
            recorded_at: recorded.recorded_at,
            actor: recorded.metadata.actor.clone(),
            details: details(event),
        });
    }
    let open = !matches!(status_name(&case), "answered" | "closed" | "withdrawn");
    detail.code = case.code.clone();
    detail.comune = case.comune.clone();
    detail.status = status_name(&case).into();
    detail.office = case.office.clone();
    detail.operator = case.operator.clone();
    detail.legal_hold = case.legal_hold.clone();
    detail.received_at = case.received_at;
    detail.due_on = case.due_on;
    detail.days_left = case
        .due_on
        .filter(|_| open)
        .map(|d| (d - today()).num_days());
    detail.outcome = case.outcome.as_ref().map(name_of);
    Ok(Json(detail))
}

#[utoipa::path(get, path = "/api/v1/staff/cases/{id}/documents/{document}", tag = "staff",
    security(("bearer" = [])), params(("id" = Uuid, Path), ("document" = Uuid, Path)),
    responses((status = 200, description = "The file as sent (PDF, JPEG or PNG), to download"),
              (status = 404, body = super::problem::Problem)))]
pub async fn case_document(
    State(state): State<Shared>,
    staff: Staff,
    PathParams((id, document)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    document_download(&state, &staff, &id, &document).await
}

/// A file sent for one of the staff member's cases, to download: never shown inline (a sandbox
/// besides), under its unsealed name. 404 for another comune's case, another case's file, or a
/// file whose citizen was erased.
pub async fn document_download(
    state: &AppState,
    staff: &Staff,
    case_id: &str,
    document: &str,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("document_not_found", "Il documento non esiste.");
    let own = own_case(state, staff, case_id).await?;
    let file = own
        .timeline
        .iter()
        .filter_map(|(_, event)| match event {
            CaseEvent::DocumentsReceived { documents, .. } => Some(documents),
            _ => None,
        })
        .flatten()
        .find(|d| d.id.to_string() == document)
        .ok_or_else(not_found)?;
    let name = unseal(state, &Some(file.name.clone()))
        .await?
        .ok_or_else(not_found)?;
    let content = match state.urp.vault().document(file.id).await {
        Ok(Some(content)) => content,
        Ok(None) => return Err(not_found()),
        Err(e) => return Err(AppError::from(e).into()),
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
    );
    let header = |v: &str| axum::http::HeaderValue::from_str(v).map_err(|_| ApiError::internal());
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, header(&file.media_type)?),
            (
                axum::http::header::CONTENT_DISPOSITION,
                header(&disposition)?,
            ),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                header("sandbox; default-src 'none'")?,
            ),
            (
                axum::http::header::CACHE_CONTROL,
                header("private, no-store")?,
            ),
        ],
        content,
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/staff/cases", tag = "staff", security(("bearer" = [])),
    request_body = NewCaseRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe")),
    responses((status = 201, body = OpenedCaseResponse), (status = 422, body = super::problem::Problem)))]
pub async fn open_case(
    State(state): State<Shared>,
    staff: Staff,
    headers: HeaderMap,
    Body(request, _): Body<NewCaseRequest>,
) -> Result<(StatusCode, Json<OpenedCaseResponse>), ApiError> {
    staff.works_cases()?;
    if request.comune != staff.0.comune {
        return Err(ApiError::forbidden(
            "Puoi registrare richieste solo per il tuo comune: per un altro comune registrala e poi trasmettila.",
        ));
    }
    let received_at = request.received_at;
    if received_at.is_some_and(|at| at > Utc::now()) {
        return Err(ApiError::invalid(
            "received_at",
            "in_the_future",
            "La data di ricezione non può essere nel futuro.",
        ));
    }
    let case_id = match idempotency_key(&headers)? {
        Some(key) => Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("sportello:staff:{}:{key}", staff.0.token_id).as_bytes(),
        ),
        None => Uuid::now_v7(),
    };
    let mut contact = new_contact(request, case_id);
    if let Some(at) = received_at {
        contact.received_at = at;
    }
    let at = contact.received_at;
    let actor = Actor {
        channel: Some(name_of(&contact.channel)),
        at: received_at,
        ..actor(&staff)
    };
    let opened = state.urp.open_case(&actor, contact).await?;
    Ok((
        StatusCode::CREATED,
        Json(opened_response(&state, opened, at).await?),
    ))
}

/// The body of a staff action; each action reads the fields it needs.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// take-in-charge.
    #[schema(min_length = 1, pattern = r"[^\s\u0085]")]
    pub office: Option<String>,
    /// assign.
    #[schema(min_length = 1, pattern = r"[^\s\u0085]")]
    pub operator: Option<String>,
    /// transfer: ISTAT code of the receiving comune.
    #[schema(pattern = "^[0-9]{6}$")]
    pub to_comune: Option<String>,
    /// transfer, reopen, legal-hold, release-legal-hold.
    #[schema(min_length = 1, pattern = r"[^\s\u0085]")]
    pub reason: Option<String>,
    /// request-documents.
    #[schema(schema_with = spec::document_names)]
    pub documents: Option<Vec<String>>,
    /// answer.
    #[schema(min_length = 1, pattern = r"[^\s\u0085]")]
    pub text: Option<String>,
    /// close (a withdrawal's outcome comes only from the citizen).
    #[schema(schema_with = spec::closing_outcomes)]
    pub outcome: Option<Outcome>,
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        ApiError::invalid(
            field,
            "required",
            format!("Il campo «{field}» è obbligatorio."),
        )
    })
}

/// The staff's actions on a case and the body fields each one needs. The OpenAPI document
/// publishes one operation per action from this table.
pub const ACTIONS: &[(&str, &[&str])] = &[
    ("take-in-charge", &["office"]),
    ("assign", &["operator"]),
    ("transfer", &["to_comune", "reason"]),
    ("request-documents", &["documents"]),
    ("documents-received", &[]),
    ("answer", &["text"]),
    ("close", &["outcome"]),
    ("reopen", &["reason"]),
    ("legal-hold", &["reason"]),
    ("release-legal-hold", &["reason"]),
];

#[utoipa::path(post, path = "/api/v1/staff/cases/{id}/{action}", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("action" = String, Path,
        description = "take-in-charge, assign, transfer, request-documents, documents-received, answer, close, reopen, legal-hold, release-legal-hold"),
        ("Idempotency-Key" = Option<String>, Header)),
    request_body = ActionRequest,
    responses((status = 200, body = CaseWriteResponse), (status = 404, body = super::problem::Problem),
              (status = 409, body = super::problem::Problem), (status = 422, body = super::problem::Problem)))]
pub async fn act(
    State(state): State<Shared>,
    staff: Staff,
    PathParams((id, action)): PathParams<(String, String)>,
    headers: HeaderMap,
    OptionalBody(request): OptionalBody<ActionRequest>,
) -> Result<Json<CaseWriteResponse>, ApiError> {
    let case_id = own_case(&state, &staff, &id).await?.id;
    let now = Utc::now();
    let command = match action.as_str() {
        "take-in-charge" => CaseCommand::TakeInCharge {
            office: required(request.office, "office")?,
            at: now,
            expected_by: NaiveDate::default(),
        },
        "assign" => CaseCommand::Assign {
            operator: required(request.operator, "operator")?,
        },
        "transfer" => {
            let to_comune = required(request.to_comune, "to_comune")?;
            state.urp.check_comune(&to_comune).map_err(|_| {
                ApiError::invalid(
                    "to_comune",
                    "comune_unknown",
                    format!("Il comune {to_comune} non fa parte di questa installazione."),
                )
            })?;
            CaseCommand::Transfer {
                to_comune,
                reason: required(request.reason, "reason")?,
                at: now,
            }
        }
        "request-documents" => CaseCommand::RequestDocuments {
            documents: request.documents.ok_or_else(|| {
                ApiError::invalid("documents", "required", "Indica i documenti da richiedere.")
            })?,
            at: now,
        },
        "documents-received" => CaseCommand::ReceiveDocuments {
            at: now,
            suspended_days: 0,
            due_on: NaiveDate::default(),
            documents: Vec::new(),
        },
        "answer" => CaseCommand::Answer {
            text: required(request.text, "text")?,
            at: now,
        },
        "close" => CaseCommand::Close {
            outcome: request.outcome.ok_or_else(|| {
                ApiError::invalid(
                    "outcome",
                    "required",
                    "Indica l'esito: accolta, respinta, non_di_competenza o duplicata.",
                )
            })?,
            at: now,
        },
        "reopen" => CaseCommand::Reopen {
            reason: required(request.reason, "reason")?,
            at: now,
        },
        // Keeping data past retention is a supervisor's decision, as erasing is an admin's.
        "legal-hold" | "release-legal-hold" => {
            staff.require_supervisor()?;
            let reason = required(request.reason, "reason")?;
            if action == "legal-hold" {
                CaseCommand::PlaceLegalHold { reason, at: now }
            } else {
                CaseCommand::ReleaseLegalHold { reason, at: now }
            }
        }
        _ => {
            return Err(ApiError::not_found(
                "action_unknown",
                "Azione sconosciuta: take-in-charge, assign, transfer, request-documents, documents-received, answer, close, reopen, legal-hold, release-legal-hold.",
            ));
        }
    };
    let id = command_id(&headers, case_id, &action)?;
    Ok(Json(
        act_on_case(&state, &actor(&staff), case_id, id, command).await?,
    ))
}

/// `YYYY-MM`, exactly (the pattern the OpenAPI document publishes).
fn is_month(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
        && (1..=12).contains(&text[5..].parse::<u32>().unwrap_or(0))
}

fn months(from: &Option<String>, to: &Option<String>) -> Result<(), ApiError> {
    for (field, month) in [("from", from), ("to", to)] {
        if let Some(m) = month
            && !is_month(m)
        {
            return Err(ApiError::invalid(
                field,
                "month_invalid",
                "Il mese va scritto AAAA-MM.",
            ));
        }
    }
    Ok(())
}

/// `a,b,c` as a list (the read model refuses a dimension it does not have).
fn dimensions(group_by: &Option<String>) -> Vec<String> {
    match group_by.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list.split(',').map(str::to_owned).collect(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SatisfactionParams {
    /// First month, YYYY-MM.
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub from: Option<String>,
    /// Last month, YYYY-MM, inclusive.
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub to: Option<String>,
    /// Comma-separated: comune, target_type, target, channel, month, scale.
    #[param(
        pattern = r"^((comune|target_type|target|channel|month|scale)(,(comune|target_type|target|channel|month|scale))*)?$"
    )]
    pub group_by: Option<String>,
    pub comune: Option<String>,
    pub target_type: Option<String>,
    pub target: Option<String>,
    pub channel: Option<String>,
    pub scale: Option<String>,
    pub min_position: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/staff/stats/satisfaction", tag = "staff", security(("bearer" = [])),
    params(SatisfactionParams),
    responses((status = 200, body = Object, description = "{rows: [{…grouped keys, scale, count, distribution, share_positive, mean (stars), reasons, participation_rate}]}"),
              (status = 422, body = super::problem::Problem)))]
pub async fn satisfaction(
    State(state): State<Shared>,
    _staff: Staff,
    headers: HeaderMap,
    Params(p): Params<SatisfactionParams>,
) -> Result<Json<SatisfactionReport>, ApiError> {
    months(&p.from, &p.to)?;
    let group_by = dimensions(&p.group_by);
    let wait = min_position(p.min_position, &headers);
    wait_for::<Ratings>(&state, wait).await?;
    wait_for::<satisfaction::Closures>(&state, wait).await?;
    let query = SatisfactionQuery {
        from: p.from,
        to: p.to,
        comune: p.comune,
        target_type: p.target_type,
        target: p.target,
        channel: p.channel,
        scale: p.scale,
        group_by,
    };
    Ok(Json(satisfaction::query(&state.reader, &query).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceLevelParams {
    /// First month, YYYY-MM.
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub from: Option<String>,
    /// Last month, YYYY-MM, inclusive.
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub to: Option<String>,
    /// Comma-separated: comune, kind, month.
    #[param(pattern = r"^((comune|kind|month)(,(comune|kind|month))*)?$")]
    pub group_by: Option<String>,
    pub comune: Option<String>,
    pub kind: Option<String>,
    pub min_position: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/staff/stats/service-levels", tag = "staff", security(("bearer" = [])),
    params(ServiceLevelParams),
    responses((status = 200, body = Object, description = "{rows: [{…grouped keys, opened, closed, closed_within_term, share_within_term, median_days_to_answer, p90_days_to_answer, currently_overdue}]}"),
              (status = 422, body = super::problem::Problem)))]
pub async fn service_levels(
    State(state): State<Shared>,
    _staff: Staff,
    headers: HeaderMap,
    Params(p): Params<ServiceLevelParams>,
) -> Result<Json<ServiceLevelReport>, ApiError> {
    months(&p.from, &p.to)?;
    let group_by = dimensions(&p.group_by);
    wait_for::<Inbox>(&state, min_position(p.min_position, &headers)).await?;
    let query = ServiceLevelQuery {
        from: p.from,
        to: p.to,
        comune: p.comune,
        kind: p.kind,
        group_by,
    };
    Ok(Json(
        service_levels::query(&state.reader, &query, today()).await?,
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// Why (the request's protocol number, say); kept in the log.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EraseResponse {
    pub subject_id: Uuid,
    pub erased: bool,
    /// The subject search has dropped the texts and scrubbed its files (false when it was behind:
    /// it will when it catches up).
    pub search_scrubbed: bool,
    pub position: u64,
}

#[utoipa::path(post, path = "/api/v1/staff/subjects/{subject_id}/erase", tag = "staff", security(("bearer" = [])),
    params(("subject_id" = Uuid, Path)), request_body = EraseRequest,
    responses((status = 200, body = EraseResponse), (status = 403, body = super::problem::Problem),
              (status = 404, body = super::problem::Problem)))]
pub async fn erase_subject(
    State(state): State<Shared>,
    staff: Staff,
    PathParams(subject_id): PathParams<String>,
    OptionalBody(body): OptionalBody<EraseRequest>,
) -> Result<Json<EraseResponse>, ApiError> {
    staff.require(Role::Admin)?;
    let not_found = || {
        ApiError::not_found(
            "subject_not_found",
            "Nessuna pratica del tuo comune riguarda questa persona.",
        )
    };
    let subject: Uuid = subject_id.parse().map_err(|_| not_found())?;
    // An administrator erases the citizens of their own comune's cases.
    let rows = state
        .views
        .select::<Inbox>(
            Filter::new()
                .and("citizen_subject = ?", SqlValue::Text(subject.to_string()))
                .and("comune = ?", SqlValue::Text(staff.0.comune.clone())),
            "id",
            1,
            0,
        )
        .await?;
    if rows.is_empty() {
        return Err(not_found());
    }
    let reason = body
        .reason
        .unwrap_or_else(|| "richiesta dell'interessato (GDPR art. 17)".into());
    let position = state
        .urp
        .erase_subject(&actor(&staff), subject, &reason)
        .await?;
    // The key is gone: every sealed value is unreadable now. The subject search held the texts
    // in clear: wait for it to drop them and scrub its files, so that the answer means "gone".
    let scrubbed = match wait_for::<SubjectTexts>(&state, Some(position)).await {
        Ok(()) => state.views.scrub::<SubjectTexts>().await.is_ok(),
        Err(_) => false,
    };
    if !scrubbed {
        tracing::warn!(%subject, "erased; the subject search will drop the texts when it catches up");
    }
    Ok(Json(EraseResponse {
        subject_id: subject,
        erased: true,
        search_scrubbed: scrubbed,
        position,
    }))
}
