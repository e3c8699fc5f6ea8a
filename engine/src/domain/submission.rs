//! An online-form submission (`submission-<uuid>`).
//!
//! It must cite a published, not withdrawn form version and pass that version's checks; then it
//! is accepted with a registration number progressive per comune and year (from the register,
//! taken only once the submission is known to be valid, so refused ones leave no gap) and opens a
//! case with the service's term.

use super::service::{CatalogueError, FieldError, FormDef, validate_submission};
use super::{Aggregate, DomainError, RefusalKind};
use crate::vault::Sealed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SubmissionEvent {
    SubmissionAccepted {
        form_id: String,
        form_version: u32,
        service: String,
        comune: String,
        registration_number: u64,
        registration_year: i32,
        /// The submitted values, sealed as one JSON object under the citizen's subject.
        values: Sealed,
        documents: Vec<String>,
        case_id: Uuid,
        submitted_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AcceptSubmission {
    pub form_id: String,
    pub form_version: u32,
    /// The cited version as the form stream has it (looked up before deciding).
    pub form: Result<FormDef, CatalogueError>,
    /// Clear values, for the checks only; the event keeps `sealed_values`.
    pub values: BTreeMap<String, Value>,
    pub sealed_values: Sealed,
    pub documents: Vec<String>,
    pub comune: String,
    pub registration_number: u64,
    pub registration_year: i32,
    pub case_id: Uuid,
    pub submitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmissionError {
    #[error("the submission was already accepted")]
    AlreadyAccepted,
    #[error(transparent)]
    Form(#[from] CatalogueError),
    #[error("{} field(s) are not valid", .0.len())]
    Invalid(Vec<FieldError>),
}

impl DomainError for SubmissionError {
    fn kind(&self) -> RefusalKind {
        match self {
            SubmissionError::AlreadyAccepted => RefusalKind::Conflict,
            SubmissionError::Form(e) => e.kind(),
            SubmissionError::Invalid(_) => RefusalKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            SubmissionError::AlreadyAccepted => "submission_already_accepted",
            SubmissionError::Form(e) => e.code(),
            SubmissionError::Invalid(_) => "submission_invalid",
        }
    }

    fn message_it(&self) -> String {
        match self {
            SubmissionError::AlreadyAccepted => "La domanda è già stata registrata.".into(),
            SubmissionError::Form(e) => e.message_it(),
            SubmissionError::Invalid(errors) => format!(
                "La domanda non è completa o contiene errori ({} campi da correggere).",
                errors.len()
            ),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Submission {
    pub accepted: Option<(u64, Uuid)>,
}

impl Aggregate for Submission {
    type Command = AcceptSubmission;
    type Event = SubmissionEvent;
    type Error = SubmissionError;
    const CATEGORY: &'static str = "submission";

    fn decide(&self, c: &AcceptSubmission) -> Result<Vec<SubmissionEvent>, SubmissionError> {
        if self.accepted.is_some() {
            return Err(SubmissionError::AlreadyAccepted);
        }
        let form = c
            .form
            .as_ref()
            .map_err(|e| SubmissionError::Form(e.clone()))?;
        validate_submission(form, &c.values, &c.documents).map_err(SubmissionError::Invalid)?;
        Ok(vec![SubmissionEvent::SubmissionAccepted {
            form_id: c.form_id.clone(),
            form_version: c.form_version,
            service: form.service.clone(),
            comune: c.comune.clone(),
            registration_number: c.registration_number,
            registration_year: c.registration_year,
            values: c.sealed_values.clone(),
            documents: c.documents.clone(),
            case_id: c.case_id,
            submitted_at: c.submitted_at,
        }])
    }

    fn evolve(mut self, event: &SubmissionEvent) -> Self {
        let SubmissionEvent::SubmissionAccepted {
            registration_number,
            case_id,
            ..
        } = event;
        self.accepted = Some((*registration_number, *case_id));
        self
    }

    fn event_type(_event: &SubmissionEvent) -> &'static str {
        "SubmissionAccepted"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::harness::given;
    use crate::domain::service::{FieldDef, FieldKind};
    use chrono::TimeZone;
    use serde_json::json;

    fn form() -> FormDef {
        FormDef {
            service: "segnalazioni".into(),
            title: "Segnalazione".into(),
            fields: vec![FieldDef {
                name: "testo".into(),
                label: "Testo".into(),
                kind: FieldKind::Text { max_length: 500 },
                required: true,
            }],
            documents: vec![],
        }
    }

    fn accept(
        form: Result<FormDef, CatalogueError>,
        values: serde_json::Value,
    ) -> AcceptSubmission {
        AcceptSubmission {
            form_id: "segnalazione".into(),
            form_version: 1,
            form,
            values: serde_json::from_value(values).unwrap(),
            sealed_values: Sealed {
                subject: Uuid::nil(),
                nonce: String::new(),
                ciphertext: String::new(),
            },
            documents: vec![],
            comune: "073015".into(),
            registration_number: 7,
            registration_year: 2026,
            case_id: Uuid::nil(),
            submitted_at: Utc.with_ymd_and_hms(2026, 5, 4, 9, 0, 0).unwrap(),
        }
    }

    fn accepted() -> SubmissionEvent {
        SubmissionEvent::SubmissionAccepted {
            form_id: "segnalazione".into(),
            form_version: 1,
            service: "segnalazioni".into(),
            comune: "073015".into(),
            registration_number: 7,
            registration_year: 2026,
            values: Sealed {
                subject: Uuid::nil(),
                nonce: String::new(),
                ciphertext: String::new(),
            },
            documents: vec![],
            case_id: Uuid::nil(),
            submitted_at: Utc.with_ymd_and_hms(2026, 5, 4, 9, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_valid_submission_on_a_published_version_is_accepted_with_its_number() {
        given::<Submission>(&[])
            .when(&accept(Ok(form()), json!({"testo": "Lampione spento"})))
            .then(&[accepted()]);
    }

    #[test]
    fn it_rejects_a_withdrawn_or_unpublished_version() {
        given::<Submission>(&[])
            .when(&accept(
                Err(CatalogueError::VersionWithdrawn(1)),
                json!({"testo": "x"}),
            ))
            .then_refused(SubmissionError::Form(CatalogueError::VersionWithdrawn(1)));
        given::<Submission>(&[])
            .when(&accept(
                Err(CatalogueError::VersionNotPublished(3)),
                json!({"testo": "x"}),
            ))
            .then_refused(SubmissionError::Form(CatalogueError::VersionNotPublished(
                3,
            )));
    }

    #[test]
    fn it_rejects_an_invalid_submission_with_its_field_errors() {
        let refused = accept(Ok(form()), json!({})).clone();
        let err = Submission::default().decide(&refused).unwrap_err();
        let SubmissionError::Invalid(errors) = err else {
            panic!()
        };
        assert_eq!(errors[0].code, "field_required");
    }

    #[test]
    fn it_rejects_accepting_twice() {
        given::<Submission>(&[accepted()])
            .when(&accept(Ok(form()), json!({"testo": "x"})))
            .then_refused(SubmissionError::AlreadyAccepted);
    }
}
