//! A published form filled in by a citizen (d.lgs. 33/2013 art. 35: only what the published
//! version asks for): the page is generated from the form's definition, each error comes back in
//! Italian next to its field, and the submission gets its registration number and a case to
//! follow. The submission goes through the API's own handler (`POST /api/v1/submissions`).

use super::citizen::{ComuneView, date_it};
use super::{Layout, Section, error_page, page};
use crate::api::Shared;
use crate::api::guard::ClientAddr;
use crate::api::problem::{ApiError, Body, Params, PathParams};
use crate::api::public::{CitizenRequest, FormParams, SubmissionRequest, form, submit};
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;
use sportello_engine::domain::service::{FieldKind, FormDef, validate_submission};
use sportello_projections::catalogue;
use std::collections::BTreeMap;
use uuid::Uuid;

/// One field of the form as the page draws it.
pub struct FieldView {
    /// The input's name: `campo_<field name>`.
    pub input: String,
    pub label: String,
    pub required: bool,
    /// text, email, tel, date, number, textarea, select, checkbox.
    pub widget: &'static str,
    pub max_length: Option<usize>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub options: Vec<String>,
    pub value: String,
    pub error: Option<String>,
}

/// A document the form asks for, as a checkbox: "I attach it".
pub struct DocumentView {
    pub input: String,
    pub name: String,
    pub chosen: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage {
    pub layout: Layout,
    pub id: String,
    pub version: u32,
    pub title: String,
    pub service: String,
    pub fields: Vec<FieldView>,
    pub documents: Vec<DocumentView>,
    pub comuni: Vec<ComuneView>,
    /// What the citizen posted (the comune and their own data), to fill the form again.
    pub posted: BTreeMap<String, String>,
    /// Errors of the form's own fields are beside them; these are the others: (input, message).
    pub errors: Vec<(String, String)>,
    pub token: String,
}

impl FormPage {
    pub fn value(&self, name: &str) -> &str {
        self.posted.get(name).map_or("", String::as_str)
    }

    pub fn error(&self, input: &str) -> Option<&String> {
        self.errors.iter().find(|(i, _)| i == input).map(|(_, m)| m)
    }

    /// Every error, in the order of the page, for the summary at the top.
    pub fn summary(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter_map(|f| f.error.as_ref().map(|e| (f.input.clone(), e.clone())))
            .chain(self.errors.iter().cloned())
            .collect()
    }
}

#[derive(Template)]
#[template(path = "form_done.html")]
pub struct FormDone {
    pub layout: Layout,
    pub title: String,
    pub registration_number: u64,
    pub code: String,
    pub access_key: String,
    pub expected_by: String,
}

fn field_views(
    def: &FormDef,
    posted: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
) -> Vec<FieldView> {
    def.fields
        .iter()
        .map(|f| {
            let input = format!("campo_{}", f.name);
            let (widget, max_length, min, max, options) = match &f.kind {
                FieldKind::Text { max_length } if *max_length > 200 => {
                    ("textarea", Some(*max_length), None, None, Vec::new())
                }
                FieldKind::Text { max_length } => {
                    ("text", Some(*max_length), None, None, Vec::new())
                }
                FieldKind::Email => ("email", Some(254), None, None, Vec::new()),
                FieldKind::Phone => ("tel", Some(30), None, None, Vec::new()),
                FieldKind::Date => ("date", None, None, None, Vec::new()),
                FieldKind::Number { min, max } => ("number", None, *min, *max, Vec::new()),
                FieldKind::Choice { options } => ("select", None, None, None, options.clone()),
                FieldKind::Boolean => ("checkbox", None, None, None, Vec::new()),
                // The value names one of the documents the citizen attaches.
                FieldKind::Attachment => ("select", None, None, None, def.documents.clone()),
            };
            FieldView {
                value: posted.get(&input).cloned().unwrap_or_default(),
                error: errors.get(&f.name).cloned(),
                input,
                label: f.label.clone(),
                required: f.required,
                widget,
                max_length,
                min,
                max,
                options,
            }
        })
        .collect()
}

/// The form's latest usable version, or the one asked for.
async fn definition(
    state: &Shared,
    id: &str,
    version: Option<u32>,
) -> Result<(u32, FormDef), ApiError> {
    let found = form(
        State(state.clone()),
        PathParams(id.to_owned()),
        Params(FormParams { version }),
    )
    .await?
    .0;
    Ok((found.version, found.form))
}

/// The comuni offering the form's service.
async fn offering(state: &Shared, service: &str) -> Result<Vec<ComuneView>, ApiError> {
    let offered: Vec<String> = catalogue::find(&state.reader, service)
        .await?
        .and_then(|e| e.card.get("comuni").cloned())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    Ok(super::citizen::comuni(state)
        .into_iter()
        .filter(|c| offered.is_empty() || offered.contains(&c.istat))
        .collect())
}

#[allow(clippy::too_many_arguments)]
async fn form_page(
    state: &Shared,
    id: &str,
    version: u32,
    def: FormDef,
    posted: BTreeMap<String, String>,
    field_errors: BTreeMap<String, String>,
    errors: Vec<(String, String)>,
    status: StatusCode,
) -> Response {
    let comuni = match offering(state, &def.service).await {
        Ok(c) => c,
        Err(e) => return error_page(state, e),
    };
    let title = if field_errors.is_empty() && errors.is_empty() {
        def.title.clone()
    } else {
        format!("Errore: controlla i dati inseriti · {}", def.title)
    };
    let documents = def
        .documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let input = format!("documento_{i}");
            DocumentView {
                chosen: posted.contains_key(&input),
                error: errors
                    .iter()
                    .find(|(e, _)| *e == input)
                    .map(|(_, m)| m.clone()),
                name: d.clone(),
                input,
            }
        })
        .collect();
    page(
        status,
        &FormPage {
            layout: Layout::new(state, title, Section::Services),
            id: id.to_owned(),
            version,
            title: def.title.clone(),
            service: def.service.clone(),
            fields: field_views(&def, &posted, &field_errors),
            documents,
            comuni,
            token: posted
                .get("token")
                .cloned()
                .unwrap_or_else(|| Uuid::new_v4().to_string()),
            posted,
            errors,
        },
    )
}

pub async fn show(State(state): State<Shared>, PathParams(id): PathParams<String>) -> Response {
    match definition(&state, &id, None).await {
        Ok((version, def)) => {
            form_page(
                &state,
                &id,
                version,
                def,
                BTreeMap::new(),
                BTreeMap::new(),
                Vec::new(),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => error_page(&state, e),
    }
}

/// Errors as (field, message): those of the form's fields by field name, the others (a document,
/// the citizen's data) by the page's input.
fn split_errors(
    def: &FormDef,
    errors: impl Iterator<Item = (String, String)>,
) -> (BTreeMap<String, String>, Vec<(String, String)>) {
    let mut fields = BTreeMap::new();
    let mut others = Vec::new();
    for (field, message) in errors {
        let field = field.trim_start_matches("values.");
        if def.fields.iter().any(|f| f.name == field) {
            fields.insert(field.to_owned(), message);
        } else {
            let input = field.trim_start_matches("citizen.");
            let input = match def.documents.iter().position(|d| d == input) {
                Some(i) => format!("documento_{i}"),
                None => input.to_owned(),
            };
            others.push((input, message));
        }
    }
    (fields, others)
}

fn optional(posted: &BTreeMap<String, String>, name: &str) -> Option<String> {
    posted
        .get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub async fn send(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    PathParams(id): PathParams<String>,
    Form(posted): Form<BTreeMap<String, String>>,
) -> Response {
    // The version the citizen filled in, not whatever is latest by the time they send it.
    let version = posted.get("version").and_then(|v| v.parse().ok());
    let (version, def) = match definition(&state, &id, version).await {
        Ok(found) => found,
        Err(e) => return error_page(&state, e),
    };
    let mut values = BTreeMap::new();
    for field in &def.fields {
        let Some(text) = optional(&posted, &format!("campo_{}", field.name)) else {
            if let FieldKind::Boolean = field.kind {
                values.insert(field.name.clone(), Value::Bool(false));
            }
            continue;
        };
        let value = match field.kind {
            FieldKind::Boolean => Value::Bool(true),
            // A number the citizen typed with a comma is still a number.
            FieldKind::Number { .. } => text
                .replace(',', ".")
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::String(text), Value::Number),
            _ => Value::String(text),
        };
        values.insert(field.name.clone(), value);
    }
    let documents: Vec<String> = def
        .documents
        .iter()
        .enumerate()
        .filter(|(i, _)| posted.contains_key(&format!("documento_{i}")))
        .map(|(_, d)| d.clone())
        .collect();
    let mut errors = Vec::new();
    let comune = optional(&posted, "comune").unwrap_or_default();
    if comune.is_empty() {
        errors.push((
            "comune".to_owned(),
            "Scegli il comune a cui presenti la domanda.".to_owned(),
        ));
    }
    if !posted.contains_key("privacy_consent") {
        errors.push((
            "privacy_consent".to_owned(),
            "Per inviare la domanda conferma di aver letto l'informativa sul trattamento dei dati personali.".to_owned(),
        ));
    }
    let (field_errors, errors) = 'refused: {
        if !errors.is_empty() {
            // The form's own fields are checked too, so that one try shows every error.
            let (field_errors, others) = match validate_submission(&def, &values, &documents) {
                Ok(()) => (BTreeMap::new(), Vec::new()),
                Err(found) => split_errors(&def, found.into_iter().map(|e| (e.field, e.message))),
            };
            errors.extend(others);
            break 'refused (field_errors, errors);
        }
        let request = SubmissionRequest {
            form_id: id.clone(),
            form_version: version,
            comune,
            values,
            documents,
            citizen: CitizenRequest {
                name: optional(&posted, "name"),
                email: optional(&posted, "email"),
                phone: optional(&posted, "phone"),
                fiscal_code: optional(&posted, "fiscal_code").map(|c| c.to_uppercase()),
            },
            privacy_consent: true,
        };
        // The same form posted twice (a double click, a reload) is one submission.
        let fingerprint = serde_json::to_string(&posted).unwrap_or_default();
        let mut headers = HeaderMap::new();
        if let Some(token) = posted.get("token").and_then(|t| Uuid::parse_str(t).ok())
            && let Ok(value) = HeaderValue::from_str(&format!("form-{token}"))
        {
            headers.insert("idempotency-key", value);
        }
        match submit(
            State(state.clone()),
            ClientAddr(address),
            headers,
            Body(request, fingerprint),
        )
        .await
        {
            Ok((_, axum::Json(done))) => {
                return page(
                    StatusCode::OK,
                    &FormDone {
                        layout: Layout::new(&state, "Domanda inviata", Section::Services),
                        title: def.title,
                        registration_number: done.registration_number,
                        code: done.case.code,
                        access_key: done.case.access_key.unwrap_or_default(),
                        expected_by: date_it(done.case.expected_by),
                    },
                );
            }
            Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                // The domain's errors name the form's fields (or a document, or the citizen's data).
                let (field_errors, mut others) = split_errors(
                    &def,
                    e.errors
                        .iter()
                        .map(|p| (p.field.clone(), p.message.clone())),
                );
                if field_errors.is_empty() && others.is_empty() {
                    others.push((String::new(), e.detail));
                }
                (field_errors, others)
            }
            Err(e) => return error_page(&state, e),
        }
    };
    form_page(
        &state,
        &id,
        version,
        def,
        posted,
        field_errors,
        errors,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}
