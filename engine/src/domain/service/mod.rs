//! Published services and forms (d.lgs. 33/2013 art. 35): `service-<code>` and `form-<id>`.
//!
//! A service card follows the Designers Italia model: what it is, who it is for, what is needed,
//! the maximum term. A form is a sequence of published versions, each with typed fields and the
//! documents it asks for. Art. 35 says nothing unpublished may be required of a citizen, so:
//! a form version may only ask for documents its service card publishes, a submission must cite a
//! published, not withdrawn version, and it is checked against exactly that version.

use super::{Aggregate, DomainError, RefusalKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCard {
    pub code: String,
    pub title: String,
    /// ISTAT codes of the comuni offering it.
    pub comuni: Vec<String>,
    pub category: String,
    pub description: String,
    /// "A chi è rivolto".
    pub audience: String,
    /// "Cosa serve": the documents a citizen may be asked for.
    pub documents: Vec<String>,
    /// Maximum term in days (L. 241/1990 art. 2: 30 by default, up to 180).
    pub term_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServiceEvent {
    ServicePublished { card: ServiceCard },
    ServiceRevised { card: ServiceCard },
    ServiceWithdrawn { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCommand {
    Publish(ServiceCard),
    Revise(ServiceCard),
    Withdraw { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("the service is already published")]
    AlreadyPublished,
    #[error("the service or form does not exist")]
    NotFound,
    #[error("the service is withdrawn")]
    Withdrawn,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("the term must be between 1 and 180 days, got {0}")]
    TermOutOfRange(u32),
    #[error("the card's code {0} does not match the service")]
    CodeMismatch(String),
    #[error("the form asks for document '{0}', which the service card does not publish")]
    UnpublishedDocument(String),
    #[error("field '{0}' appears twice")]
    DuplicateField(String),
    #[error("field '{0}' is a choice without options")]
    ChoiceWithoutOptions(String),
    #[error("version {0} of the form is not published")]
    VersionNotPublished(u32),
    #[error("version {0} of the form is withdrawn")]
    VersionWithdrawn(u32),
}

impl DomainError for CatalogueError {
    fn kind(&self) -> RefusalKind {
        match self {
            CatalogueError::NotFound => RefusalKind::NotFound,
            CatalogueError::AlreadyPublished | CatalogueError::Withdrawn => RefusalKind::Conflict,
            _ => RefusalKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CatalogueError::AlreadyPublished => "catalogue_already_published",
            CatalogueError::NotFound => "catalogue_not_found",
            CatalogueError::Withdrawn => "catalogue_withdrawn",
            CatalogueError::Empty(_) => "catalogue_field_empty",
            CatalogueError::TermOutOfRange(_) => "catalogue_term_out_of_range",
            CatalogueError::CodeMismatch(_) => "catalogue_code_mismatch",
            CatalogueError::UnpublishedDocument(_) => "catalogue_unpublished_document",
            CatalogueError::DuplicateField(_) => "catalogue_duplicate_field",
            CatalogueError::ChoiceWithoutOptions(_) => "catalogue_choice_without_options",
            CatalogueError::VersionNotPublished(_) => "form_version_not_published",
            CatalogueError::VersionWithdrawn(_) => "form_version_withdrawn",
        }
    }

    fn message_it(&self) -> String {
        match self {
            CatalogueError::AlreadyPublished => "Il servizio è già pubblicato.".into(),
            CatalogueError::NotFound => "Servizio o modulo inesistente.".into(),
            CatalogueError::Withdrawn => "Il servizio non è più attivo.".into(),
            CatalogueError::Empty(f) => format!("Il campo «{f}» è obbligatorio."),
            CatalogueError::TermOutOfRange(d) => {
                format!("Il termine deve essere tra 1 e 180 giorni (indicati {d}).")
            }
            CatalogueError::CodeMismatch(c) => {
                format!("Il codice {c} non corrisponde al servizio.")
            }
            CatalogueError::UnpublishedDocument(d) => format!(
                "Il modulo non può richiedere il documento «{d}»: non è pubblicato nella scheda del servizio (d.lgs. 33/2013, art. 35)."
            ),
            CatalogueError::DuplicateField(f) => format!("Il campo «{f}» compare due volte."),
            CatalogueError::ChoiceWithoutOptions(f) => {
                format!("Il campo a scelta «{f}» non ha opzioni.")
            }
            CatalogueError::VersionNotPublished(v) => {
                format!("La versione {v} del modulo non è pubblicata.")
            }
            CatalogueError::VersionWithdrawn(v) => {
                format!("La versione {v} del modulo è stata ritirata.")
            }
        }
    }
}

fn check_card(card: &ServiceCard) -> Result<(), CatalogueError> {
    for (value, field) in [
        (&card.code, "codice"),
        (&card.title, "titolo"),
        (&card.category, "categoria"),
        (&card.description, "descrizione"),
        (&card.audience, "a chi è rivolto"),
    ] {
        if value.trim().is_empty() {
            return Err(CatalogueError::Empty(field));
        }
    }
    if card.comuni.is_empty() {
        return Err(CatalogueError::Empty("comuni"));
    }
    if !(1..=180).contains(&card.term_days) {
        return Err(CatalogueError::TermOutOfRange(card.term_days));
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    pub card: Option<ServiceCard>,
    pub active: bool,
}

impl Aggregate for Service {
    type Command = ServiceCommand;
    type Event = ServiceEvent;
    type Error = CatalogueError;
    const CATEGORY: &'static str = "service";

    fn decide(&self, command: &ServiceCommand) -> Result<Vec<ServiceEvent>, CatalogueError> {
        Ok(vec![match command {
            ServiceCommand::Publish(card) => {
                if self.card.is_some() {
                    return Err(CatalogueError::AlreadyPublished);
                }
                check_card(card)?;
                ServiceEvent::ServicePublished { card: card.clone() }
            }
            ServiceCommand::Revise(card) => {
                let current = self.card.as_ref().ok_or(CatalogueError::NotFound)?;
                if !self.active {
                    return Err(CatalogueError::Withdrawn);
                }
                if card.code != current.code {
                    return Err(CatalogueError::CodeMismatch(card.code.clone()));
                }
                check_card(card)?;
                ServiceEvent::ServiceRevised { card: card.clone() }
            }
            ServiceCommand::Withdraw { reason } => {
                if self.card.is_none() {
                    return Err(CatalogueError::NotFound);
                }
                if !self.active {
                    return Err(CatalogueError::Withdrawn);
                }
                if reason.trim().is_empty() {
                    return Err(CatalogueError::Empty("motivo"));
                }
                ServiceEvent::ServiceWithdrawn {
                    reason: reason.clone(),
                }
            }
        }])
    }

    fn evolve(mut self, event: &ServiceEvent) -> Self {
        match event {
            ServiceEvent::ServicePublished { card } | ServiceEvent::ServiceRevised { card } => {
                self.card = Some(card.clone());
                self.active = true;
            }
            ServiceEvent::ServiceWithdrawn { .. } => self.active = false,
        }
        self
    }

    fn event_type(event: &ServiceEvent) -> &'static str {
        match event {
            ServiceEvent::ServicePublished { .. } => "ServicePublished",
            ServiceEvent::ServiceRevised { .. } => "ServiceRevised",
            ServiceEvent::ServiceWithdrawn { .. } => "ServiceWithdrawn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FieldKind {
    Text {
        max_length: usize,
    },
    Email,
    Phone,
    Date,
    Number {
        min: Option<f64>,
        max: Option<f64>,
    },
    Choice {
        options: Vec<String>,
    },
    Boolean,
    /// The value is the name of an uploaded document.
    Attachment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub label: String,
    #[serde(flatten)]
    pub kind: FieldKind,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormDef {
    pub service: String,
    pub title: String,
    pub fields: Vec<FieldDef>,
    /// Documents this version asks for; each must be on the service card.
    pub documents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FormEvent {
    FormVersionPublished { version: u32, form: FormDef },
    FormVersionWithdrawn { version: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum FormCommand {
    /// `service_documents` is what the service card publishes, looked up before deciding.
    Publish {
        form: FormDef,
        service_documents: Vec<String>,
    },
    Withdraw {
        version: u32,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Form {
    /// Published versions and whether each was withdrawn.
    pub versions: BTreeMap<u32, (FormDef, bool)>,
}

impl Form {
    /// The version a submission cites, if it may still be used.
    pub fn usable(&self, version: u32) -> Result<&FormDef, CatalogueError> {
        match self.versions.get(&version) {
            None => Err(CatalogueError::VersionNotPublished(version)),
            Some((_, true)) => Err(CatalogueError::VersionWithdrawn(version)),
            Some((def, false)) => Ok(def),
        }
    }

    pub fn latest_usable(&self) -> Option<(u32, &FormDef)> {
        self.versions
            .iter()
            .rev()
            .find(|(_, (_, w))| !w)
            .map(|(v, (d, _))| (*v, d))
    }
}

impl Aggregate for Form {
    type Command = FormCommand;
    type Event = FormEvent;
    type Error = CatalogueError;
    const CATEGORY: &'static str = "form";

    fn decide(&self, command: &FormCommand) -> Result<Vec<FormEvent>, CatalogueError> {
        Ok(vec![match command {
            FormCommand::Publish {
                form,
                service_documents,
            } => {
                if form.title.trim().is_empty() {
                    return Err(CatalogueError::Empty("titolo"));
                }
                if let Some(doc) = form
                    .documents
                    .iter()
                    .find(|d| !service_documents.contains(d))
                {
                    return Err(CatalogueError::UnpublishedDocument(doc.clone()));
                }
                let mut names = std::collections::HashSet::new();
                for field in &form.fields {
                    if field.name.trim().is_empty() {
                        return Err(CatalogueError::Empty("nome del campo"));
                    }
                    if !names.insert(field.name.as_str()) {
                        return Err(CatalogueError::DuplicateField(field.name.clone()));
                    }
                    if let FieldKind::Choice { options } = &field.kind
                        && options.is_empty()
                    {
                        return Err(CatalogueError::ChoiceWithoutOptions(field.name.clone()));
                    }
                }
                let version = self.versions.keys().last().copied().unwrap_or(0) + 1;
                FormEvent::FormVersionPublished {
                    version,
                    form: form.clone(),
                }
            }
            FormCommand::Withdraw { version } => {
                self.usable(*version)?;
                FormEvent::FormVersionWithdrawn { version: *version }
            }
        }])
    }

    fn evolve(mut self, event: &FormEvent) -> Self {
        match event {
            FormEvent::FormVersionPublished { version, form } => {
                self.versions.insert(*version, (form.clone(), false));
            }
            FormEvent::FormVersionWithdrawn { version } => {
                if let Some(entry) = self.versions.get_mut(version) {
                    entry.1 = true;
                }
            }
        }
        self
    }

    fn event_type(event: &FormEvent) -> &'static str {
        match event {
            FormEvent::FormVersionPublished { .. } => "FormVersionPublished",
            FormEvent::FormVersionWithdrawn { .. } => "FormVersionWithdrawn",
        }
    }
}

/// A problem with one field of a submission, in Italian for the citizen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

/// Checks submitted values and documents against a published form version.
pub fn validate_submission(
    form: &FormDef,
    values: &BTreeMap<String, Value>,
    documents: &[String],
) -> Result<(), Vec<FieldError>> {
    let mut errors = field_errors(&form.fields, values, documents);
    for doc in &form.documents {
        if !documents.contains(doc) {
            errors.push(FieldError {
                field: doc.clone(),
                code: "document_missing",
                message: format!("Manca il documento richiesto: {doc}."),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// What is wrong with `values` against `fields`: a value for no field, a required field without
/// a value, a value of the wrong kind; an attachment must name one of `documents`.
pub fn field_errors(
    fields: &[FieldDef],
    values: &BTreeMap<String, Value>,
    documents: &[String],
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, code: &'static str, message: String| {
        errors.push(FieldError {
            field: field.to_owned(),
            code,
            message,
        })
    };
    for name in values.keys() {
        if !fields.iter().any(|f| &f.name == name) {
            err(
                name,
                "field_unknown",
                format!("Il campo «{name}» non è previsto dal modulo pubblicato."),
            );
        }
    }
    for field in fields {
        let value = values
            .get(&field.name)
            .filter(|v| !v.is_null() && *v != &Value::String(String::new()));
        let Some(value) = value else {
            if field.required {
                err(
                    &field.name,
                    "field_required",
                    format!("Il campo «{}» è obbligatorio.", field.label),
                );
            }
            continue;
        };
        let label = &field.label;
        match &field.kind {
            FieldKind::Text { max_length } => match value.as_str() {
                Some(s) if s.chars().count() > *max_length => err(
                    &field.name,
                    "field_too_long",
                    format!("Il campo «{label}» può avere al massimo {max_length} caratteri."),
                ),
                Some(_) => {}
                None => err(
                    &field.name,
                    "field_not_text",
                    format!("Il campo «{label}» deve essere un testo."),
                ),
            },
            FieldKind::Email => {
                let ok = value.as_str().is_some_and(|s| {
                    let mut parts = s.split('@');
                    matches!((parts.next(), parts.next(), parts.next()), (Some(u), Some(d), None)
                        if !u.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !s.contains(' '))
                });
                if !ok {
                    err(
                        &field.name,
                        "field_not_email",
                        format!("Il campo «{label}» deve essere un indirizzo email valido."),
                    );
                }
            }
            FieldKind::Phone => {
                let ok = value.as_str().is_some_and(|s| {
                    let digits: String = s
                        .chars()
                        .filter(|c| !matches!(c, ' ' | '-' | '/' | '.'))
                        .collect();
                    let body = digits.strip_prefix('+').unwrap_or(&digits);
                    (6..=15).contains(&body.len()) && body.chars().all(|c| c.is_ascii_digit())
                });
                if !ok {
                    err(
                        &field.name,
                        "field_not_phone",
                        format!("Il campo «{label}» deve essere un numero di telefono."),
                    );
                }
            }
            FieldKind::Date => {
                let ok = value
                    .as_str()
                    .is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok());
                if !ok {
                    err(
                        &field.name,
                        "field_not_date",
                        format!("Il campo «{label}» deve essere una data (AAAA-MM-GG)."),
                    );
                }
            }
            FieldKind::Number { min, max } => match value.as_f64() {
                Some(n) if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) => err(
                    &field.name,
                    "field_out_of_range",
                    format!(
                        "Il campo «{label}» deve essere compreso tra {} e {}.",
                        min.map_or("-∞".into(), |m| m.to_string()),
                        max.map_or("+∞".into(), |m| m.to_string())
                    ),
                ),
                Some(_) => {}
                None => err(
                    &field.name,
                    "field_not_number",
                    format!("Il campo «{label}» deve essere un numero."),
                ),
            },
            FieldKind::Choice { options } => {
                if !value
                    .as_str()
                    .is_some_and(|s| options.iter().any(|o| o == s))
                {
                    err(
                        &field.name,
                        "field_not_an_option",
                        format!("Scegli una delle opzioni previste per «{label}»."),
                    );
                }
            }
            FieldKind::Boolean => {
                if !value.is_boolean() {
                    err(
                        &field.name,
                        "field_not_boolean",
                        format!("Il campo «{label}» deve essere sì o no."),
                    );
                }
            }
            FieldKind::Attachment => {
                if !value
                    .as_str()
                    .is_some_and(|s| documents.iter().any(|d| d == s))
                {
                    err(
                        &field.name,
                        "field_attachment_missing",
                        format!("Allega il documento indicato in «{label}»."),
                    );
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests;
