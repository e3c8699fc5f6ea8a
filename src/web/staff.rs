//! The URP staff's pages: the inbox of their comune, a case with its timeline and every action
//! as a form, and a contact received at the counter or on the phone. They call the same
//! handlers as the API (`crate::api::staff`), with the signed-in staff member as the caller, so
//! the rules, the scoping to the comune and the refusals are the API's own.
//!
//! The subject search is posted, never put in a URL: words of a subject may be personal data.

use super::citizen::{KINDS, date_it, datetime_it, optional};
use super::session::SignedIn;
use super::{Layout, Section, comune_name, error_page, page};
use crate::api::Shared;
use crate::api::guard::Staff;
use crate::api::problem::{ApiError, Body, OptionalBody, PathParams};
use crate::api::public::{CitizenRequest, NewCaseRequest, status_label};
use crate::api::staff::{
    self as api, ActionRequest, CaseDetail, DocumentView, InboxParams, TimelineEntry, today,
};
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Days, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Rome;
use serde::Deserialize;
use sportello_config::IstatCode;
use sportello_engine::domain::case::{Channel, Outcome};
use sportello_projections::inbox::{Cursor, InboxEntry};
use sportello_projections::name_of;
use uuid::Uuid;

/// Cases on one page of the inbox.
const PAGE: u32 = 50;

const STATUSES: [&str; 7] = [
    "received",
    "taken_in_charge",
    "assigned",
    "suspended",
    "answered",
    "closed",
    "withdrawn",
];

/// The channels a contact reaches an office by, as the staff's forms name them.
const CHANNELS: [(Channel, &str); 7] = [
    (Channel::Sportello, "Sportello (di persona)"),
    (Channel::Telefono, "Telefono"),
    (Channel::Email, "E-mail"),
    (Channel::Pec, "PEC"),
    (Channel::Posta, "Posta"),
    (Channel::Web, "Sito web"),
    (Channel::App, "App"),
];

const OUTCOMES: [(Outcome, &str); 4] = [
    (Outcome::Accolta, "Accolta"),
    (Outcome::Respinta, "Respinta"),
    (Outcome::NonDiCompetenza, "Non di competenza"),
    (Outcome::Duplicata, "Duplicata"),
];

pub(crate) fn kind_label(name: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(_, n, _)| *n == name)
        .map_or("Altro", |(_, _, label)| label)
}

pub(crate) fn channel_label(name: &str) -> &'static str {
    CHANNELS
        .iter()
        .find(|(c, _)| name_of(c) == name)
        .map_or("Altro", |(_, label)| label)
}

/// What the pages choose from: value and label.
pub struct Choice {
    pub value: String,
    pub label: String,
}

pub(crate) fn choices<'a>(items: impl IntoIterator<Item = (String, &'a str)>) -> Vec<Choice> {
    items
        .into_iter()
        .map(|(value, label)| Choice {
            value,
            label: label.to_owned(),
        })
        .collect()
}

fn kind_choices() -> Vec<Choice> {
    choices(KINDS.iter().map(|(_, n, l)| (n.to_string(), *l)))
}

fn channel_choices() -> Vec<Choice> {
    choices(CHANNELS.iter().map(|(c, l)| (name_of(c), *l)))
}

// ---------------------------------------------------------------------------------------------
// The inbox

/// The inbox's filters as the form sends them (empty: not filtered).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InboxFilters {
    pub stato: String,
    pub tipo: String,
    pub canale: String,
    pub ufficio: String,
    pub operatore: String,
    pub servizio: String,
    pub codice: String,
    pub trasferita_da: String,
    /// `scadute`, `in_termine` or empty.
    pub scadenza: String,
    /// YYYY-MM-DD, received on or after.
    pub dal: String,
    /// YYYY-MM-DD, received on or before.
    pub al: String,
    /// Words of the subject: only ever posted.
    pub testo: String,
    /// The last case of the page before: `due date` + `~` + `code`.
    pub dopo: String,
    pub csrf: String,
    /// Set after a transfer, for the message that says where the case went.
    pub trasmessa: String,
}

impl InboxFilters {
    /// The filters that are set, as hidden fields of the next page's form (the token apart).
    fn hidden(&self) -> Vec<(&'static str, String)> {
        [
            ("stato", &self.stato),
            ("tipo", &self.tipo),
            ("canale", &self.canale),
            ("ufficio", &self.ufficio),
            ("operatore", &self.operatore),
            ("servizio", &self.servizio),
            ("codice", &self.codice),
            ("trasferita_da", &self.trasferita_da),
            ("scadenza", &self.scadenza),
            ("dal", &self.dal),
            ("al", &self.al),
            ("testo", &self.testo),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_owned()))
        .collect()
    }

    /// The API's parameters, or the Italian message of what cannot be read.
    fn params(&self) -> Result<(InboxParams, Option<Cursor>), Vec<String>> {
        let mut problems = Vec::new();
        let mut date = |text: &str, what: &str| -> Option<NaiveDate> {
            let text = optional(text)?;
            let parsed = NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok();
            if parsed.is_none() {
                problems.push(format!(
                    "La data «{what}» non è valida: usa il formato AAAA-MM-GG."
                ));
            }
            parsed
        };
        let received_from = date(&self.dal, "ricevute dal");
        let received_until =
            date(&self.al, "ricevute fino al").and_then(|d| d.checked_add_days(Days::new(1)));
        let overdue = match self.scadenza.as_str() {
            "scadute" => Some(true),
            "in_termine" => Some(false),
            _ => None,
        };
        let after = optional(&self.dopo).and_then(|d| {
            d.split_once('~')
                .map(|(due, code)| (due.to_owned(), code.to_owned()))
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok((
            InboxParams {
                office: optional(&self.ufficio),
                operator: optional(&self.operatore),
                kind: optional(&self.tipo),
                channel: optional(&self.canale),
                service: optional(&self.servizio),
                status: optional(&self.stato),
                code: optional(&self.codice).map(|c| c.to_uppercase()),
                transferred_from: optional(&self.trasferita_da),
                overdue,
                received_from,
                received_until,
                text: optional(&self.testo),
                limit: Some(PAGE),
                offset: None,
                min_position: None,
            },
            after,
        ))
    }
}

pub enum Urgency {
    Overdue,
    Near,
    InTerm,
    Done,
}

pub struct InboxRowView {
    pub id: String,
    pub code: String,
    pub subject_hint: String,
    pub kind: &'static str,
    pub channel: &'static str,
    pub status: &'static str,
    pub received: String,
    pub office: String,
    pub operator: String,
    pub due: String,
    pub urgency: Urgency,
    /// "scaduta da 3 giorni", "scade tra 2 giorni", …
    pub term: String,
}

#[derive(Template)]
#[template(path = "staff/inbox.html")]
pub struct InboxPage {
    pub layout: Layout,
    pub filters: InboxFilters,
    pub statuses: Vec<Choice>,
    pub kinds: Vec<Choice>,
    pub channels: Vec<Choice>,
    pub comuni: Vec<Choice>,
    pub problems: Vec<String>,
    pub rows: Vec<InboxRowView>,
    pub total: String,
    /// The hidden fields of the next page's form, when there is one.
    pub next: Option<Vec<(&'static str, String)>>,
    /// The next page is posted when the search has words of a subject.
    pub next_posted: bool,
    pub paged: bool,
    pub near_days: u64,
}

impl InboxPage {
    pub fn selected(&self, current: &str, value: &str) -> bool {
        current == value
    }
}

/// The last day that counts as "near" for a case of `comune`: `reminders.working_days` working
/// days from today, as the reminders count them.
fn near_limit(state: &Shared, comune: &str) -> NaiveDate {
    let calendar = state.urp.calendar();
    let comune: Option<IstatCode> = comune.parse().ok();
    let mut day = today();
    let mut left = state.settings.reminders.working_days;
    while left > 0 {
        day = day.succ_opt().unwrap_or(day);
        if !calendar.is_closed(day, comune.as_ref()) {
            left -= 1;
        }
    }
    day
}

fn row_view(entry: InboxEntry, near: NaiveDate) -> InboxRowView {
    let row = entry.row;
    let due = NaiveDate::parse_from_str(&row.due_on, "%Y-%m-%d").ok();
    let (urgency, term) = match (entry.days_left, due) {
        (Some(d), _) if d < 0 => (
            Urgency::Overdue,
            format!(
                "scaduta da {} {}",
                -d,
                if d == -1 { "giorno" } else { "giorni" }
            ),
        ),
        (Some(d), Some(due)) if due <= near => (
            Urgency::Near,
            match d {
                0 => "scade oggi".to_owned(),
                1 => "scade domani".to_owned(),
                d => format!("scade tra {d} giorni"),
            },
        ),
        (Some(d), _) => (Urgency::InTerm, format!("{d} giorni al termine")),
        (None, _) => (Urgency::Done, String::new()),
    };
    InboxRowView {
        id: row.id,
        code: row.code,
        subject_hint: row.service.clone().unwrap_or_default(),
        kind: kind_label(&row.kind),
        channel: channel_label(&row.channel),
        status: status_label(&row.status),
        received: row
            .received_at
            .parse::<chrono::DateTime<Utc>>()
            .map(datetime_it)
            .unwrap_or(row.received_at),
        office: row.office.unwrap_or_default(),
        operator: row.operator.unwrap_or_default(),
        due: due.map(date_it).unwrap_or_default(),
        urgency,
        term,
    }
}

async fn inbox_page(state: &Shared, signed_in: &SignedIn, filters: InboxFilters) -> Response {
    // Analysts read statistics, never cases: their pages start there.
    if !signed_in.member().role.works_cases() {
        return Redirect::to("/ufficio/statistiche").into_response();
    }
    let member = signed_in.member();
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let mut total = String::new();
    let mut next = None;
    match filters.params() {
        Err(p) => problems = p,
        Ok((params, after)) => {
            match api::inbox_page(
                state,
                &Staff(member.clone()),
                params,
                &HeaderMap::new(),
                after,
            )
            .await
            {
                Ok(found) => {
                    let near = near_limit(state, &member.comune);
                    total = match (found.total, found.total_exact) {
                        (1, true) => "1 pratica".to_owned(),
                        (n, true) => format!("{n} pratiche"),
                        (n, false) => format!("Più di {n} pratiche"),
                    };
                    if found.entries.len() as u32 == PAGE
                        && let Some(last) = found.entries.last()
                    {
                        let mut hidden = filters.hidden();
                        hidden.push(("dopo", format!("{}~{}", last.row.due_on, last.row.code)));
                        next = Some(hidden);
                    }
                    rows = found
                        .entries
                        .into_iter()
                        .map(|e| row_view(e, near))
                        .collect();
                }
                Err(e) if e.status.is_client_error() => problems.push(e.detail),
                Err(e) => return error_page(state, e),
            }
        }
    }
    let comuni = state
        .settings
        .comuni
        .iter()
        .map(|c| (c.istat.to_string(), c.name.as_str()));
    let title = if problems.is_empty() {
        "Pratiche"
    } else {
        "Errore nei filtri · Pratiche"
    };
    page(
        if problems.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        },
        &InboxPage {
            layout: Layout::staff(state, title, Section::Inbox, Some(signed_in)),
            next_posted: !filters.testo.trim().is_empty(),
            paged: !filters.dopo.is_empty(),
            filters,
            statuses: choices(STATUSES.iter().map(|s| (s.to_string(), status_label(s)))),
            kinds: kind_choices(),
            channels: channel_choices(),
            comuni: choices(comuni),
            problems,
            rows,
            total,
            next,
            near_days: state.settings.reminders.working_days,
        },
    )
}

/// `GET /ufficio`: every filter but the subject's words, which are only ever posted.
pub async fn inbox(
    State(state): State<Shared>,
    signed_in: SignedIn,
    query: Result<axum::extract::Query<InboxFilters>, QueryRejection>,
) -> Response {
    let mut filters = query.map(|q| q.0).unwrap_or_default();
    filters.testo.clear();
    inbox_page(&state, &signed_in, filters).await
}

/// `POST /ufficio`: the search with the subject's words.
pub async fn inbox_search(
    State(state): State<Shared>,
    signed_in: SignedIn,
    Form(filters): Form<InboxFilters>,
) -> Response {
    if let Err(e) = signed_in.check(&filters.csrf) {
        return error_page(&state, e);
    }
    inbox_page(&state, &signed_in, filters).await
}

// ---------------------------------------------------------------------------------------------
// A case

pub struct EntryView {
    pub at: String,
    pub label: String,
    pub actor: String,
    pub details: Vec<(&'static str, String)>,
}

fn event_label(event_type: &str) -> &'static str {
    match event_type {
        "CaseOpened" => "Richiesta ricevuta",
        "CaseTakenInCharge" => "Presa in carico",
        "CaseAssigned" => "Assegnata",
        "CaseTransferred" => "Trasmessa a un altro comune",
        "DocumentsRequested" => "Documenti richiesti",
        "DocumentsReceived" => "Documenti ricevuti",
        "CaseAnswered" => "Risposta inviata",
        "CaseClosed" => "Chiusa",
        "CaseReopened" => "Riaperta",
        "CaseWithdrawn" => "Ritirata dal cittadino",
        "NoticeSent" => "Comunicazione al cittadino",
        "OfficeReminded" => "Promemoria all'ufficio",
        "LegalHoldPlaced" => "Conservazione per obbligo di legge",
        "LegalHoldReleased" => "Fine della conservazione per obbligo di legge",
        _ => "Evento",
    }
}

fn detail_label(key: &str) -> &'static str {
    match key {
        "kind" => "Tipo",
        "channel" => "Canale",
        "service" => "Servizio",
        "term_days" => "Termine (giorni)",
        "due_on" => "Scadenza",
        "office" => "Ufficio",
        "expected_by" => "Conclusione prevista entro",
        "operator" => "Operatore",
        "from_comune" => "Da",
        "to_comune" => "A",
        "reason" => "Motivo",
        "documents" => "Documenti",
        "suspended_days" => "Giorni di sospensione",
        "text" => "Testo",
        "outcome" => "Esito",
        "threshold" => "Soglia",
        _ => "Dettaglio",
    }
}

/// A value of an event's details as the page says it.
fn detail_text(state: &Shared, key: &str, value: String) -> String {
    let said = match (key, value.as_str()) {
        ("from_comune" | "to_comune", code) => return comune_name(state, code),
        ("due_on" | "expected_by", date) => {
            return NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map(date_it)
                .unwrap_or(value);
        }
        ("channel", channel) => channel_label(channel),
        ("outcome", outcome) => match outcome {
            "sent" => "inviata",
            "skipped_no_address" => "non inviata: nessun indirizzo",
            "skipped_erased" => "non inviata: dati cancellati",
            "given_up" => "non inviata dopo più tentativi",
            "ritirata_dal_cittadino" => "ritirata dal cittadino",
            other => OUTCOMES
                .iter()
                .find(|(o, _)| name_of(o) == other)
                .map_or("", |(_, label)| label),
        },
        // A case's kind, or a notice's.
        ("kind", kind) => match kind {
            "receipt" => "ricevuta",
            "taken_in_charge" => "presa in carico",
            "documents_requested" => "richiesta di documenti",
            "answered" => "risposta",
            other => kind_label(other),
        },
        ("threshold", "due_soon") => "termine vicino",
        ("threshold", "overdue") => "termine scaduto",
        _ => "",
    };
    if said.is_empty() {
        value
    } else {
        said.to_owned()
    }
}

fn entry_view(state: &Shared, entry: TimelineEntry) -> EntryView {
    let mut details = Vec::new();
    if let serde_json::Value::Object(map) = entry.details {
        for (key, value) in map {
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => detail_text(state, &key, s),
                // Files sent are listed on their own, with their names.
                serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                    format!("{} file", items.len())
                }
                serde_json::Value::Array(items) if items.is_empty() => continue,
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            // The subject's text is sealed, never in the details; the answer's text is the
            // office's own.
            if key != "received_at" {
                details.push((detail_label(&key), text));
            }
        }
    }
    EntryView {
        at: datetime_it(entry.at),
        label: event_label(&entry.event_type).to_owned(),
        actor: entry
            .actor
            .map(|a| a.trim_start_matches("staff:").to_owned())
            .unwrap_or_default(),
        details,
    }
}

/// The actions on a case, in the order the page shows them: name, title, what the page says
/// once done, supervisors only.
const ACTIONS: [(&str, &str, &str, bool); 10] = [
    (
        "take-in-charge",
        "Prendi in carico",
        "la pratica è in carico",
        false,
    ),
    (
        "assign",
        "Assegna a un operatore",
        "la pratica è assegnata",
        false,
    ),
    (
        "request-documents",
        "Chiedi documenti al cittadino",
        "la richiesta di documenti è registrata: il termine è sospeso",
        false,
    ),
    (
        "documents-received",
        "Registra i documenti ricevuti",
        "i documenti sono registrati: il termine riprende",
        false,
    ),
    ("answer", "Rispondi", "la risposta è registrata", false),
    ("close", "Chiudi la pratica", "la pratica è chiusa", false),
    (
        "reopen",
        "Riapri la pratica",
        "la pratica è riaperta",
        false,
    ),
    (
        "transfer",
        "Trasmetti a un altro comune",
        "la pratica è trasmessa",
        false,
    ),
    (
        "legal-hold",
        "Conserva per obbligo di legge",
        "la conservazione per obbligo di legge è registrata",
        true,
    ),
    (
        "release-legal-hold",
        "Togli la conservazione per obbligo di legge",
        "la conservazione per obbligo di legge è tolta",
        true,
    ),
];

/// A file the citizen sent, as the case page lists it.
pub struct DocumentLink {
    /// Where to download it; none once the citizen's data were erased.
    pub href: Option<String>,
    pub name: String,
    /// Type, size and when it arrived.
    pub about: String,
}

fn document_link(case_id: Uuid, d: &DocumentView) -> DocumentLink {
    let kind = match d.media_type.as_str() {
        "application/pdf" => "PDF",
        "image/jpeg" => "immagine JPEG",
        "image/png" => "immagine PNG",
        other => other,
    };
    let size = if d.bytes >= 1024 * 1024 {
        format!("{:.1} MB", d.bytes as f64 / (1024.0 * 1024.0)).replace('.', ",")
    } else {
        format!("{} KB", d.bytes.div_ceil(1024))
    };
    let about = format!("{kind}, {size}, ricevuto il {}", datetime_it(d.received_at));
    match &d.name {
        Some(name) => DocumentLink {
            href: Some(format!("/ufficio/pratiche/{case_id}/documenti/{}", d.id)),
            name: name.clone(),
            about,
        },
        None => DocumentLink {
            href: None,
            name: "Dati cancellati".into(),
            about,
        },
    }
}

/// `GET /ufficio/pratiche/{id}/documenti/{document}`: a file the citizen sent, to download.
pub async fn document(
    State(state): State<Shared>,
    signed_in: SignedIn,
    PathParams((id, document)): PathParams<(String, String)>,
) -> Response {
    let staff = Staff(signed_in.member().clone());
    match api::document_download(&state, &staff, &id, &document).await {
        Ok(file) => file,
        Err(e) => error_page(&state, e),
    }
}

pub struct ActionView {
    pub name: &'static str,
    pub title: &'static str,
    /// The refusal of the last try, shown beside its form.
    pub problem: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/case.html")]
pub struct CasePage {
    pub layout: Layout,
    pub case: CaseDetail,
    pub kind: &'static str,
    pub channel: &'static str,
    pub status: &'static str,
    pub received: String,
    pub due: String,
    pub term: String,
    pub overdue: bool,
    pub transferred_from: String,
    pub outcome: String,
    pub timeline: Vec<EntryView>,
    pub documents: Vec<DocumentLink>,
    pub actions: Vec<ActionView>,
    pub done: Option<&'static str>,
    pub offices: Vec<String>,
    pub outcomes: Vec<Choice>,
    pub other_comuni: Vec<Choice>,
    pub csrf: String,
    /// Makes a twice-posted form one action.
    pub form_token: String,
}

impl CasePage {
    pub fn action(&self, name: &str) -> Option<&ActionView> {
        self.actions.iter().find(|a| a.name == name)
    }
}

#[derive(Deserialize)]
pub struct CaseQuery {
    fatto: Option<String>,
}

async fn case_page_for(
    state: &Shared,
    signed_in: &SignedIn,
    id: String,
    failed: Option<(&str, ApiError)>,
    done: Option<&str>,
) -> Response {
    let staff = Staff(signed_in.member().clone());
    let mut case = match api::case_detail(State(state.clone()), staff, PathParams(id)).await {
        Ok(axum::Json(case)) => case,
        Err(e) => return error_page(state, e),
    };
    let supervisor = matches!(
        signed_in.member().role,
        sportello_engine::app::staff::Role::Supervisor | sportello_engine::app::staff::Role::Admin
    );
    let status_code = failed.as_ref().map_or(StatusCode::OK, |(_, e)| e.status);
    let actions = ACTIONS
        .iter()
        .filter(|(_, _, _, supervisors)| supervisor || !supervisors)
        .map(|(name, title, _, _)| ActionView {
            name,
            title,
            problem: failed
                .as_ref()
                .filter(|(action, _)| action == name)
                .map(|(_, e)| problem_text(e)),
        })
        .collect();
    let offices = state
        .settings
        .offices
        .iter()
        .filter(|o| o.comune.to_string() == case.comune)
        .map(|o| o.name.clone())
        .collect();
    let other_comuni = state
        .settings
        .comuni
        .iter()
        .filter(|c| c.istat.to_string() != case.comune)
        .map(|c| (c.istat.to_string(), c.name.as_str()));
    let other_comuni = choices(other_comuni);
    let timeline = std::mem::take(&mut case.timeline)
        .into_iter()
        .rev()
        .map(|e| entry_view(state, e))
        .collect();
    let (term, overdue) = match case.days_left {
        Some(d) if d < 0 => (format!("scaduta da {} giorni", -d), true),
        Some(0) => ("scade oggi".to_owned(), false),
        Some(d) => (format!("{d} giorni al termine"), false),
        None => (String::new(), false),
    };
    let title = format!(
        "{}Pratica {}",
        if failed.is_some() { "Errore · " } else { "" },
        case.code
    );
    let done = done.and_then(|d| {
        ACTIONS
            .iter()
            .find(|(n, ..)| *n == d)
            .map(|(_, _, said, _)| *said)
    });
    page(
        status_code,
        &CasePage {
            layout: Layout::staff(state, title, Section::Inbox, Some(signed_in)),
            kind: case.kind.as_deref().map_or("", kind_label),
            channel: case.channel.as_deref().map_or("", channel_label),
            status: status_label(&case.status),
            received: case.received_at.map(datetime_it).unwrap_or_default(),
            due: case.due_on.map(date_it).unwrap_or_default(),
            term,
            overdue,
            transferred_from: case
                .transferred_from
                .as_deref()
                .map(|c| comune_name(state, c))
                .unwrap_or_default(),
            outcome: case
                .outcome
                .clone()
                .map(|o| detail_text(state, "outcome", o))
                .unwrap_or_default(),
            timeline,
            documents: case
                .documents
                .iter()
                .map(|d| document_link(case.id, d))
                .collect(),
            case,
            actions,
            done,
            offices,
            outcomes: choices(OUTCOMES.iter().map(|(o, l)| (name_of(o), *l))),
            other_comuni,
            csrf: signed_in.csrf.clone(),
            form_token: Uuid::new_v4().to_string(),
        },
    )
}

/// A refusal as the page says it: the message, and each field's own.
pub(crate) fn problem_text(e: &ApiError) -> String {
    let mut text = e.detail.clone();
    for field in &e.errors {
        if !text.contains(&field.message) {
            text.push(' ');
            text.push_str(&field.message);
        }
    }
    text
}

pub async fn case_page(
    State(state): State<Shared>,
    signed_in: SignedIn,
    PathParams(id): PathParams<String>,
    query: Result<axum::extract::Query<CaseQuery>, QueryRejection>,
) -> Response {
    let done = query.ok().and_then(|q| q.0.fatto);
    case_page_for(&state, &signed_in, id, None, done.as_deref()).await
}

/// What an action's form posts; each action reads the fields it needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ActionForm {
    pub csrf: String,
    pub token: String,
    pub office: String,
    pub operator: String,
    pub to_comune: String,
    pub reason: String,
    /// One document a line.
    pub documents: String,
    pub text: String,
    pub outcome: String,
}

pub async fn act(
    State(state): State<Shared>,
    signed_in: SignedIn,
    PathParams((id, action)): PathParams<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(e) = signed_in.check(&form.csrf) {
        return error_page(&state, e);
    }
    let outcome = match optional(&form.outcome) {
        None => None,
        Some(o) => match OUTCOMES.iter().find(|(x, _)| name_of(x) == o) {
            Some((x, _)) => Some(*x),
            None => {
                let e =
                    ApiError::invalid("outcome", "outcome_unknown", "Scegli un esito dall'elenco.");
                return case_page_for(&state, &signed_in, id, Some((&action, e)), None).await;
            }
        },
    };
    let documents = (action == "request-documents").then(|| {
        form.documents
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let request = ActionRequest {
        office: optional(&form.office),
        operator: optional(&form.operator),
        to_comune: optional(&form.to_comune),
        reason: optional(&form.reason),
        documents,
        text: optional(&form.text),
        outcome,
    };
    // The form's token is the action's idempotency key: a form posted twice acts once.
    let mut headers = HeaderMap::new();
    if let Ok(token) = Uuid::parse_str(&form.token)
        && let Ok(value) = HeaderValue::from_str(&token.to_string())
    {
        headers.insert("idempotency-key", value);
    }
    let staff = Staff(signed_in.member().clone());
    match api::act(
        State(state.clone()),
        staff,
        PathParams((id.clone(), action.clone())),
        headers,
        OptionalBody(request),
    )
    .await
    {
        Ok(_) if action == "transfer" => {
            // The case now belongs to another comune: this office can no longer open it.
            Redirect::to("/ufficio?trasmessa=1").into_response()
        }
        Ok(_) => Redirect::to(&format!("/ufficio/pratiche/{id}?fatto={action}")).into_response(),
        Err(e) if e.status == StatusCode::NOT_FOUND || e.status.is_server_error() => {
            error_page(&state, e)
        }
        Err(e) => case_page_for(&state, &signed_in, id, Some((&action, e)), None).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Counter and phone intake

/// What the intake form posts.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IntakeForm {
    pub csrf: String,
    pub token: String,
    pub channel: String,
    pub kind: String,
    pub service: String,
    pub subject: String,
    pub description: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub fiscal_code: String,
    /// `YYYY-MM-DDTHH:MM` in Rome's time, empty for now.
    pub received_at: String,
    pub privacy_informed: Option<String>,
}

#[derive(Template)]
#[template(path = "staff/intake.html")]
pub struct IntakePage {
    pub layout: Layout,
    pub form: IntakeForm,
    pub comune: String,
    pub kinds: Vec<Choice>,
    pub channels: Vec<Choice>,
    pub errors: Vec<(String, String)>,
    pub opened: Option<(String, String, String, String)>,
}

impl IntakePage {
    pub fn error(&self, field: &str) -> Option<&String> {
        self.errors.iter().find(|(f, _)| f == field).map(|(_, m)| m)
    }
}

fn intake_page(
    state: &Shared,
    signed_in: &SignedIn,
    form: IntakeForm,
    errors: Vec<(String, String)>,
    opened: Option<(String, String, String, String)>,
) -> IntakePage {
    let title = if errors.is_empty() {
        "Registra un contatto"
    } else {
        "Errore: controlla i dati inseriti · Registra un contatto"
    };
    IntakePage {
        layout: Layout::staff(state, title, Section::Intake, Some(signed_in)),
        comune: comune_name(state, &signed_in.member().comune),
        kinds: kind_choices(),
        channels: choices(
            CHANNELS
                .iter()
                .filter(|(c, _)| !matches!(c, Channel::Web | Channel::App))
                .map(|(c, l)| (name_of(c), *l)),
        ),
        form,
        errors,
        opened,
    }
}

pub async fn intake_form(State(state): State<Shared>, signed_in: SignedIn) -> Response {
    let form = IntakeForm {
        token: Uuid::new_v4().to_string(),
        channel: "sportello".into(),
        ..IntakeForm::default()
    };
    page(
        StatusCode::OK,
        &intake_page(&state, &signed_in, form, Vec::new(), None),
    )
}

pub async fn intake(
    State(state): State<Shared>,
    signed_in: SignedIn,
    Form(mut form): Form<IntakeForm>,
) -> Response {
    if let Err(e) = signed_in.check(&form.csrf) {
        return error_page(&state, e);
    }
    let mut errors = Vec::new();
    let mut refuse =
        |field: &str, message: &str| errors.push((field.to_owned(), message.to_owned()));
    let channel = CHANNELS
        .iter()
        .find(|(c, _)| name_of(c) == form.channel)
        .map(|(c, _)| *c);
    if channel.is_none() {
        refuse("channel", "Scegli il canale da cui è arrivato il contatto.");
    }
    let kind = KINDS
        .iter()
        .find(|(_, n, _)| *n == form.kind)
        .map(|(k, _, _)| *k);
    if kind.is_none() {
        refuse("kind", "Scegli il tipo di richiesta.");
    }
    if form.subject.trim().is_empty() {
        refuse("subject", "Scrivi l'oggetto della richiesta.");
    }
    let received_at = match optional(&form.received_at) {
        None => None,
        Some(text) => match NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M")
            .ok()
            .and_then(|t| Rome.from_local_datetime(&t).earliest())
        {
            Some(t) => Some(t.with_timezone(&Utc)),
            None => {
                refuse("received_at", "La data di ricezione non è valida.");
                None
            }
        },
    };
    if form.privacy_informed.is_none() {
        refuse(
            "privacy_informed",
            "Conferma di aver dato al cittadino l'informativa sul trattamento dei dati personali.",
        );
    }
    let (Some(channel), Some(kind), true) = (channel, kind, errors.is_empty()) else {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &intake_page(&state, &signed_in, form, errors, None),
        );
    };
    let request = NewCaseRequest {
        comune: signed_in.member().comune.clone(),
        kind,
        channel,
        service: optional(&form.service),
        subject: form.subject.trim().to_owned(),
        description: optional(&form.description),
        citizen: Some(CitizenRequest {
            name: optional(&form.name),
            email: optional(&form.email),
            phone: optional(&form.phone),
            fiscal_code: optional(&form.fiscal_code).map(|c| c.to_uppercase()),
        }),
        privacy_consent: true,
        received_at,
    };
    let mut headers = HeaderMap::new();
    if let Ok(token) = Uuid::parse_str(&form.token)
        && let Ok(value) = HeaderValue::from_str(&format!("intake-{token}"))
    {
        headers.insert("idempotency-key", value);
    }
    let staff = Staff(signed_in.member().clone());
    match api::open_case(
        State(state.clone()),
        staff,
        headers,
        Body(request, String::new()),
    )
    .await
    {
        Ok((_, axum::Json(opened))) => {
            let done = (
                opened.code,
                opened.access_key.unwrap_or_default(),
                date_it(opened.expected_by),
                opened.id.to_string(),
            );
            // A fresh form for the next citizen in the queue.
            let next = IntakeForm {
                token: Uuid::new_v4().to_string(),
                channel: form.channel,
                ..IntakeForm::default()
            };
            page(
                StatusCode::OK,
                &intake_page(&state, &signed_in, next, Vec::new(), Some(done)),
            )
        }
        Err(e)
            if e.status == StatusCode::UNPROCESSABLE_ENTITY
                || e.status == StatusCode::FORBIDDEN =>
        {
            let mut errors: Vec<(String, String)> = e
                .errors
                .iter()
                .map(|p| {
                    (
                        p.field.trim_start_matches("citizen.").to_owned(),
                        p.message.clone(),
                    )
                })
                .collect();
            if errors.is_empty() {
                errors.push((String::new(), e.detail));
            }
            form.csrf.clear();
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &intake_page(&state, &signed_in, form, errors, None),
            )
        }
        Err(e) => error_page(&state, e),
    }
}
