//! The public pages: what a citizen reads and does without signing in.
//!
//! A case's code and access key travel only in the body of a POST, never in a URL (URLs end up
//! in logs, histories and referrers).

use super::rating::RatingBox;
use super::{Layout, Section, comune_name, error_page, page};
use crate::api::Shared;
use crate::api::guard::ClientAddr;
use crate::api::problem::ApiError;
use crate::api::public::{
    CitizenRequest, NewCaseRequest, act_on_case, case_timeline, citizen_actor, citizen_case,
    new_contact, public_status,
};
use askama::Template;
use axum::Form;
use axum::extract::Multipart;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sportello_config::UrpContacts;
use sportello_engine::app::documents::{MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, NewDocument};
use sportello_engine::app::{AppError, Refusal};
use sportello_engine::domain::Aggregate;
use sportello_engine::domain::case::{Case, CaseCommand, CaseError, CaseKind, Channel};
use sportello_projections::catalogue::{self, CatalogueEntry};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The kinds of contact a citizen may open, with what the form calls them.
pub(crate) const KINDS: [(CaseKind, &str, &str); 6] = [
    (
        CaseKind::Informazione,
        "informazione",
        "Richiesta di informazioni",
    ),
    (
        CaseKind::Segnalazione,
        "segnalazione",
        "Segnalazione di un disservizio o di un problema",
    ),
    (CaseKind::Reclamo, "reclamo", "Reclamo"),
    (CaseKind::Suggerimento, "suggerimento", "Suggerimento"),
    (
        CaseKind::AccessoAgliAtti,
        "accesso_agli_atti",
        "Accesso agli atti (L. 241/1990)",
    ),
    (
        CaseKind::AccessoCivico,
        "accesso_civico",
        "Accesso civico (d.lgs. 33/2013)",
    ),
];

pub fn date_it(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

pub fn datetime_it(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Europe::Rome)
        .format("%d/%m/%Y, ore %H:%M")
        .to_string()
}

pub struct ComuneView {
    pub name: String,
    pub istat: String,
    pub urp: UrpContacts,
}

pub(crate) fn comuni(state: &Shared) -> Vec<ComuneView> {
    state
        .settings
        .comuni
        .iter()
        .map(|c| ComuneView {
            name: c.name.clone(),
            istat: c.istat.to_string(),
            urp: c.urp.clone(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct Home {
    pub layout: Layout,
    pub comuni: Vec<ComuneView>,
}

pub async fn home(State(state): State<Shared>) -> Response {
    page(
        StatusCode::OK,
        &Home {
            layout: Layout::new(&state, "Ufficio Relazioni con il Pubblico", Section::Home),
            comuni: comuni(&state),
        },
    )
}

/// A service card as the pages show it.
pub struct ServiceView {
    pub code: String,
    pub title: String,
    pub category: String,
    pub description: String,
    pub audience: String,
    pub documents: Vec<String>,
    pub term_days: u64,
    /// The names of the comuni offering it.
    pub comuni: String,
    /// Their ISTAT codes.
    pub offered: Vec<String>,
    /// Forms in force: (id, title, version).
    pub forms: Vec<(String, String, u32)>,
}

impl ServiceView {
    fn from_entry(state: &Shared, entry: CatalogueEntry) -> Self {
        let text = |key: &str| {
            entry
                .card
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let offered: Vec<&str> = entry
            .card
            .get("comuni")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let comuni = state
            .settings
            .comuni
            .iter()
            .filter(|c| offered.contains(&c.istat.to_string().as_str()))
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            code: text("code"),
            title: text("title"),
            category: text("category"),
            description: text("description"),
            audience: text("audience"),
            documents: entry
                .card
                .get("documents")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            term_days: entry
                .card
                .get("term_days")
                .and_then(Value::as_u64)
                .unwrap_or(30),
            comuni,
            offered: offered.iter().map(|c| c.to_string()).collect(),
            forms: entry
                .forms
                .into_iter()
                .map(|f| (f.id, f.title, f.version))
                .collect(),
        }
    }
}

#[derive(Default, Deserialize)]
pub struct ServicesQuery {
    #[serde(default)]
    comune: String,
}

#[derive(Template)]
#[template(path = "services.html")]
pub struct Services {
    pub layout: Layout,
    pub comuni: Vec<ComuneView>,
    pub comune: String,
    pub services: Vec<ServiceView>,
}

pub async fn services(
    State(state): State<Shared>,
    query: Result<Query<ServicesQuery>, QueryRejection>,
) -> Response {
    // A malformed query shows every service rather than an error.
    let comune = query.map(|q| q.0.comune).unwrap_or_default();
    let filter = Some(comune.as_str()).filter(|c| !c.is_empty());
    match catalogue::query(&state.reader, filter).await {
        Ok(entries) => page(
            StatusCode::OK,
            &Services {
                layout: Layout::new(&state, "Servizi", Section::Services),
                comuni: comuni(&state),
                comune,
                services: entries
                    .into_iter()
                    .map(|e| ServiceView::from_entry(&state, e))
                    .collect(),
            },
        ),
        Err(e) => error_page(&state, e.into()),
    }
}

#[derive(Template)]
#[template(path = "service.html")]
pub struct ServicePage {
    pub layout: Layout,
    pub service: ServiceView,
    /// Rated as a page of the first comune offering it.
    pub rating: Option<RatingBox>,
}

pub async fn service(State(state): State<Shared>, Path(code): Path<String>) -> Response {
    let found = match catalogue::find(&state.reader, &code).await {
        Ok(found) => found,
        Err(e) => return error_page(&state, e.into()),
    };
    match found {
        Some(entry) => {
            let service = ServiceView::from_entry(&state, entry);
            let rating = service
                .offered
                .first()
                .map(|comune| RatingBox::service(&service.code, comune.clone()));
            page(
                StatusCode::OK,
                &ServicePage {
                    layout: Layout::new(&state, service.title.clone(), Section::Services),
                    service,
                    rating,
                },
            )
        }
        None => error_page(
            &state,
            ApiError::not_found(
                "service_not_found",
                "Il servizio richiesto non esiste o non è attivo.",
            ),
        ),
    }
}

/// What the contact form posts; every field optional here, checked below.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ContactInput {
    pub comune: String,
    pub kind: String,
    pub service: String,
    pub subject: String,
    pub description: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub privacy_consent: Option<String>,
    /// Given with the form: the same form posted twice (a double click, a reload) opens one case.
    #[serde(skip_serializing)]
    pub token: String,
}

#[derive(Template)]
#[template(path = "contact.html")]
pub struct ContactPage {
    pub layout: Layout,
    pub comuni: Vec<ComuneView>,
    pub kinds: Vec<(&'static str, &'static str)>,
    pub services: Vec<(String, String)>,
    pub form: ContactInput,
    /// Field name → Italian message.
    pub errors: BTreeMap<String, String>,
    /// A refusal that concerns no single field.
    pub problem: Option<String>,
}

/// The contact form's fields in the order it shows them: the order of its error summary.
const CONTACT_FIELDS: [&str; 9] = [
    "comune",
    "kind",
    "service",
    "subject",
    "description",
    "name",
    "email",
    "phone",
    "privacy_consent",
];

impl ContactPage {
    pub fn error(&self, field: &str) -> Option<&String> {
        self.errors.get(field)
    }

    /// The errors in the form's order (any about another field last).
    pub fn summary(&self) -> Vec<(&str, &str)> {
        let rank = |f: &str| {
            CONTACT_FIELDS
                .iter()
                .position(|x| *x == f)
                .unwrap_or(usize::MAX)
        };
        let mut errors: Vec<(&str, &str)> = self
            .errors
            .iter()
            .map(|(f, m)| (f.as_str(), m.as_str()))
            .collect();
        errors.sort_by_key(|(f, _)| rank(f));
        errors
    }
}

#[derive(Default, Deserialize)]
pub struct ContactQuery {
    #[serde(default)]
    servizio: String,
}

async fn contact_page(
    state: &Shared,
    form: ContactInput,
    errors: BTreeMap<String, String>,
    problem: Option<String>,
) -> Result<ContactPage, ApiError> {
    let services = catalogue::query(&state.reader, None)
        .await?
        .into_iter()
        .map(|e| ServiceView::from_entry(state, e))
        .map(|s| (s.code, s.title))
        .collect();
    let title = if errors.is_empty() && problem.is_none() {
        "Scrivi all'URP"
    } else {
        "Errore: controlla i dati inseriti · Scrivi all'URP"
    };
    Ok(ContactPage {
        layout: Layout::new(state, title, Section::Contact),
        comuni: comuni(state),
        kinds: KINDS
            .iter()
            .map(|(_, name, label)| (*name, *label))
            .collect(),
        services,
        form,
        errors,
        problem,
    })
}

pub async fn contact_form(
    State(state): State<Shared>,
    query: Result<Query<ContactQuery>, QueryRejection>,
) -> Response {
    let form = ContactInput {
        service: query.map(|q| q.0.servizio).unwrap_or_default(),
        token: Uuid::new_v4().to_string(),
        ..ContactInput::default()
    };
    match contact_page(&state, form, BTreeMap::new(), None).await {
        Ok(p) => page(StatusCode::OK, &p),
        Err(e) => error_page(&state, e),
    }
}

#[derive(Template)]
#[template(path = "contact_done.html")]
pub struct ContactDone {
    pub layout: Layout,
    pub code: String,
    pub access_key: String,
    pub expected_by: String,
    pub comune: String,
    pub receipt_by_email: bool,
}

/// The checks the form makes before the application service makes its own: the ones whose
/// message must name the form's field rather than the API's.
fn check_contact(state: &Shared, form: &ContactInput) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    let mut refuse = |field: &str, message: &str| {
        errors.insert(field.to_owned(), message.to_owned());
    };
    if !state
        .settings
        .comuni
        .iter()
        .any(|c| c.istat.to_string() == form.comune)
    {
        refuse("comune", "Scegli il comune a cui ti rivolgi.");
    }
    if !KINDS.iter().any(|(_, name, _)| *name == form.kind) {
        refuse("kind", "Scegli il tipo di richiesta.");
    }
    if form.subject.trim().is_empty() {
        refuse("subject", "Scrivi l'oggetto della richiesta.");
    }
    if form.privacy_consent.is_none() {
        refuse(
            "privacy_consent",
            "Per inviare la richiesta conferma di aver letto l'informativa sul trattamento dei dati personali.",
        );
    }
    errors
}

pub(crate) fn optional(value: &str) -> Option<String> {
    Some(value.trim().to_owned()).filter(|v| !v.is_empty())
}

pub async fn open_contact(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    Form(form): Form<ContactInput>,
) -> Response {
    if let Err(e) = state.limiter.check(address) {
        return error_page(&state, e);
    }
    let errors = check_contact(&state, &form);
    if !errors.is_empty() {
        return match contact_page(&state, form, errors, None).await {
            Ok(p) => page(StatusCode::UNPROCESSABLE_ENTITY, &p),
            Err(e) => error_page(&state, e),
        };
    }
    let kind = KINDS
        .iter()
        .find(|(_, name, _)| *name == form.kind)
        .map(|(kind, _, _)| *kind)
        .unwrap_or(CaseKind::Informazione);
    let request = NewCaseRequest {
        comune: form.comune.clone(),
        kind,
        channel: Channel::Web,
        service: optional(&form.service),
        subject: form.subject.trim().to_owned(),
        description: optional(&form.description),
        citizen: Some(CitizenRequest {
            name: optional(&form.name),
            email: optional(&form.email),
            phone: optional(&form.phone),
            fiscal_code: None,
        }),
        privacy_consent: true,
        received_at: None,
    };
    // The same form (token) with the same content is the same case: a second post gets the
    // confirmation of the first. The id is derived, never taken from the client as it is.
    let case_id = match Uuid::parse_str(&form.token) {
        Ok(token) => Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!(
                "sportello:web-contact|{token}|{}",
                serde_json::to_string(&form).unwrap_or_default()
            )
            .as_bytes(),
        ),
        Err(_) => Uuid::now_v7(),
    };
    let receipt_by_email = optional(&form.email).is_some();
    let comune = comune_name(&state, &form.comune);
    match state
        .urp
        .open_case(&citizen_actor(), new_contact(request, case_id))
        .await
    {
        Ok(opened) => page(
            StatusCode::OK,
            &ContactDone {
                layout: Layout::new(&state, "Richiesta inviata", Section::Contact),
                code: opened.code,
                access_key: opened.access_key.unwrap_or_default(),
                expected_by: date_it(opened.due_on),
                comune,
                receipt_by_email,
            },
        ),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status != StatusCode::UNPROCESSABLE_ENTITY {
                return error_page(&state, e);
            }
            // The application service's refusals, next to the fields they concern.
            let mut errors = BTreeMap::new();
            for problem in &e.errors {
                let field = problem.field.trim_start_matches("citizen.");
                errors.insert(field.to_owned(), problem.message.clone());
            }
            let problem = errors.is_empty().then(|| e.detail.clone());
            match contact_page(&state, form, errors, problem).await {
                Ok(p) => page(StatusCode::UNPROCESSABLE_ENTITY, &p),
                Err(e) => error_page(&state, e),
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FollowInput {
    pub code: String,
    pub key: String,
}

#[derive(Template)]
#[template(path = "follow.html")]
pub struct FollowPage {
    pub layout: Layout,
    pub code: String,
    pub problem: Option<String>,
}

pub async fn follow_form(State(state): State<Shared>) -> Response {
    page(
        StatusCode::OK,
        &FollowPage {
            layout: Layout::new(&state, "Segui la tua pratica", Section::Follow),
            code: String::new(),
            problem: None,
        },
    )
}

pub struct MilestoneView {
    pub label: String,
    pub at: String,
    pub expected_by: Option<String>,
    pub documents: Vec<String>,
}

#[derive(Template)]
#[template(path = "case_status.html")]
pub struct CaseStatusPage {
    pub layout: Layout,
    pub code: String,
    /// Posted back by the page's forms: never in a URL.
    pub key: String,
    pub status: String,
    pub received_at: Option<String>,
    pub taken_in_charge_at: Option<String>,
    pub expected_by: Option<String>,
    pub closed: bool,
    pub milestones: Vec<MilestoneView>,
    /// The documents the office asks for, while it waits for them.
    pub documents_asked: Option<Vec<String>>,
    pub can_withdraw: bool,
    pub rating: Option<RatingBox>,
    /// What was just done.
    pub done: Option<String>,
    /// A refusal, next to the form of the action it concerns: (action, message).
    pub refused: Option<(&'static str, String)>,
    pub token: String,
}

impl CaseStatusPage {
    pub fn refusal(&self, action: &str) -> Option<&String> {
        self.refused
            .as_ref()
            .filter(|(a, _)| *a == action)
            .map(|(_, m)| m)
    }
}

/// The case page of a citizen who gave its code and key.
async fn status_page(
    state: &Shared,
    case_id: Uuid,
    key: &str,
    done: Option<String>,
    refused: Option<(&'static str, ApiError)>,
) -> Response {
    let events = match case_timeline(state, case_id).await {
        Ok(timeline) => timeline.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        Err(e) => return error_page(state, e),
    };
    // The comune that owns the case now, from the same events (no second read of the stream).
    let comune = events
        .iter()
        .fold(Case::default(), |case, event| case.evolve(event))
        .comune;
    let status = public_status(&events);
    let documents_asked = (status.status == "suspended")
        .then(|| {
            status
                .milestones
                .iter()
                .rev()
                .find_map(|m| m.documents.clone())
        })
        .flatten();
    let closed = status.closed_at.is_some();
    let rating =
        (status.status == "closed").then(|| RatingBox::case(state, &status.code, key, &comune));
    let http_status = refused.as_ref().map_or(StatusCode::OK, |(_, e)| e.status);
    page(
        http_status,
        &CaseStatusPage {
            layout: Layout::new(state, format!("Pratica {}", status.code), Section::Follow),
            key: key.to_owned(),
            status: status.status_label,
            received_at: status.received_at.map(datetime_it),
            taken_in_charge_at: status.taken_in_charge_at.map(datetime_it),
            expected_by: status.expected_by.map(date_it),
            closed,
            can_withdraw: !matches!(status.status.as_str(), "answered" | "closed" | "withdrawn"),
            milestones: status
                .milestones
                .into_iter()
                .map(|m| MilestoneView {
                    label: m.label,
                    at: datetime_it(m.at),
                    expected_by: m.expected_by.map(date_it),
                    documents: m.documents.unwrap_or_default(),
                })
                .collect(),
            code: status.code,
            documents_asked,
            rating,
            done,
            refused: refused.map(|(action, e)| (action, super::staff::problem_text(&e))),
            token: Uuid::new_v4().to_string(),
        },
    )
}

/// The case of a code and key, or the follow page again with the reason.
async fn followed(state: &Shared, code: &str, key: &str) -> Result<Uuid, Response> {
    let code = code.trim().to_uppercase();
    match citizen_case(state, &code, Some(key.trim())).await {
        Ok(id) => Ok(id),
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(page(
            StatusCode::NOT_FOUND,
            &FollowPage {
                layout: Layout::new(
                    state,
                    "Errore: pratica non trovata · Segui la tua pratica",
                    Section::Follow,
                ),
                code,
                problem: Some(e.detail),
            },
        )),
        Err(e) => Err(error_page(state, e)),
    }
}

pub async fn follow_case(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    Form(input): Form<FollowInput>,
) -> Response {
    // Each try counts against the address's allowance: access keys cannot be guessed at speed.
    if let Err(e) = state.limiter.check(address) {
        return error_page(&state, e);
    }
    match followed(&state, &input.code, &input.key).await {
        Ok(case_id) => status_page(&state, case_id, input.key.trim(), None, None).await,
        Err(page) => page,
    }
}

/// What the withdrawal form posts: the code and key again, the form's token and the confirmation.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CaseActionInput {
    pub code: String,
    pub key: String,
    pub token: String,
    pub confirm: Option<String>,
}

/// The same form posted twice is one action: its token names the command.
fn form_command_id(case_id: Uuid, name: &str, token: &str) -> Uuid {
    Uuid::parse_str(token)
        .map(|t| Uuid::new_v5(&case_id, format!("{name}|{t}").as_bytes()))
        .unwrap_or_else(|_| Uuid::now_v7())
}

/// Acts for the citizen and shows the case again, with what was done or the refusal.
async fn citizen_act(
    state: &Shared,
    case_id: Uuid,
    key: &str,
    (name, token): (&'static str, &str),
    command: CaseCommand,
    done: String,
) -> Response {
    let command_id = form_command_id(case_id, name, token);
    match act_on_case(state, &citizen_actor(), case_id, command_id, command).await {
        Ok(_) => status_page(state, case_id, key, Some(done), None).await,
        Err(e) if e.status.is_client_error() => {
            status_page(state, case_id, key, None, Some((name, e))).await
        }
        Err(e) => error_page(state, e),
    }
}

/// `POST /pratiche/ritiro`: the citizen withdraws the request.
pub async fn withdraw(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    Form(input): Form<CaseActionInput>,
) -> Response {
    if let Err(e) = state.limiter.check(address) {
        return error_page(&state, e);
    }
    let case_id = match followed(&state, &input.code, &input.key).await {
        Ok(id) => id,
        Err(page) => return page,
    };
    let key = input.key.trim();
    if input.confirm.is_none() {
        let e = ApiError::invalid(
            "confirm",
            "confirmation_required",
            "Per ritirare la richiesta conferma di volerlo fare.",
        );
        return status_page(&state, case_id, key, None, Some(("withdraw", e))).await;
    }
    let done = "La richiesta è stata ritirata: l'ufficio non la tratterà più.".to_owned();
    let command = CaseCommand::Withdraw { at: Utc::now() };
    citizen_act(
        &state,
        case_id,
        key,
        ("withdraw", &input.token),
        command,
        done,
    )
    .await
}

/// The upload form as it arrived: the code, key and token, and the files.
#[derive(Default)]
struct DocumentsUpload {
    code: String,
    key: String,
    token: String,
    files: Vec<NewDocument>,
}

/// Reads the upload, a file at a time, refusing one larger than the limit as soon as it is
/// (the request's own limit bounds the whole).
async fn read_upload(mut form: Multipart) -> Result<DocumentsUpload, ApiError> {
    let broken = || {
        ApiError::invalid(
            "documents",
            "upload_failed",
            "Il caricamento dei file non è riuscito: riprova. Ogni file può essere al massimo di 10 MB.",
        )
    };
    let mut upload = DocumentsUpload::default();
    while let Some(mut field) = form.next_field().await.map_err(|_| broken())? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let mut content = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|_| broken())? {
                if content.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(ApiError::invalid(
                        "documents",
                        "too_large",
                        format!(
                            "Il file «{file_name}» supera i {} MB.",
                            MAX_DOCUMENT_BYTES / 1024 / 1024
                        ),
                    ));
                }
                content.extend_from_slice(&chunk);
            }
            // A file input left empty still sends a part, with no name and no bytes.
            if !(file_name.is_empty() && content.is_empty()) {
                upload.files.push(NewDocument {
                    name: file_name,
                    content,
                });
            }
            continue;
        }
        let text = field.text().await.map_err(|_| broken())?;
        match name.as_str() {
            "code" => upload.code = text,
            "key" => upload.key = text,
            "token" => upload.token = text,
            _ => {}
        }
    }
    Ok(upload)
}

/// The request limit of an upload: every file at its largest, and room for the other fields.
pub const UPLOAD_LIMIT: usize = MAX_DOCUMENTS * MAX_DOCUMENT_BYTES + 64 * 1024;

/// `POST /pratiche/documenti`: the citizen sends the files the office asked for; they are kept
/// sealed and the case's term starts again.
pub async fn send_documents(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    form: Multipart,
) -> Response {
    if let Err(e) = state.limiter.check(address) {
        return error_page(&state, e);
    }
    let upload = match read_upload(form).await {
        Ok(upload) => upload,
        Err(e) => return error_page(&state, e),
    };
    let case_id = match followed(&state, &upload.code, &upload.key).await {
        Ok(id) => id,
        Err(page) => return page,
    };
    let key = upload.key.trim();
    let names: Vec<String> = upload.files.iter().map(|f| f.name.clone()).collect();
    let documents = match state.urp.keep_documents(case_id, upload.files).await {
        Ok(documents) => documents,
        // The form sent again after it went through: the act below finds it done (or refuses).
        Err(AppError::Refused(Refusal::Case(CaseError::NotSuspended))) => Vec::new(),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status.is_client_error() {
                return status_page(&state, case_id, key, None, Some(("documents", e))).await;
            }
            return error_page(&state, e);
        }
    };
    let done = format!(
        "Abbiamo ricevuto {} ({}): il termine della pratica riprende a decorrere.",
        if names.len() == 1 {
            "il documento".to_owned()
        } else {
            format!("{} documenti", names.len())
        },
        names.join(", ")
    );
    let command = CaseCommand::ReceiveDocuments {
        at: Utc::now(),
        suspended_days: 0,
        due_on: NaiveDate::default(),
        documents,
    };
    citizen_act(
        &state,
        case_id,
        key,
        ("documents", &upload.token),
        command,
        done,
    )
    .await
}

#[derive(Template)]
#[template(path = "privacy.html")]
pub struct Privacy {
    pub layout: Layout,
    pub comuni: Vec<ComuneView>,
    /// (kind, days) of retention after closing.
    pub retention: Vec<(&'static str, u64)>,
}

pub async fn privacy(State(state): State<Shared>) -> Response {
    let retention = KINDS
        .iter()
        .filter_map(|(_, name, label)| Some((*label, state.settings.retention.days(name)?)))
        .collect();
    page(
        StatusCode::OK,
        &Privacy {
            layout: Layout::new(
                &state,
                "Informativa sul trattamento dei dati personali",
                Section::Other,
            ),
            comuni: comuni(&state),
            retention,
        },
    )
}
