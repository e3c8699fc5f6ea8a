//! The URP application service: what a citizen, an operator or the demo asks for, carried out
//! through the command handler, with the vault, the calendar and the registers looked up first.

use crate::calendar::LegalCalendar;
use crate::domain::case::{
    Case, CaseCommand, CaseError, CaseKind, Channel, Citizen, OpenCase, case_code,
};
use crate::domain::feedback::{
    Feedback, FeedbackError, GiveFeedback, SealedComment, TargetType, feedback_id_for_case,
};
use crate::domain::registry::{Register, number_for};
use crate::domain::service::{
    CatalogueError, Form, FormCommand, FormDef, Service, ServiceCard, ServiceCommand,
};
use crate::domain::submission::{AcceptSubmission, Submission, SubmissionError};
use crate::domain::{Aggregate, CommandError, CommandHandler, Handled};
use crate::store::{EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use crate::vault::{Sealed, Vault, VaultError};
use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Europe::Rome;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sportello_config::{IstatCode, Settings};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Who acts, and on whose behalf: becomes the events' metadata.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// `citizen`, `staff:<name>`, `system:demo`…
    pub name: String,
    pub channel: Option<String>,
    pub correlation_id: Option<Uuid>,
    /// When the facts happened, for records entered after the fact (a counter contact typed in
    /// later, the demo's history); `None` means now.
    pub at: Option<DateTime<Utc>>,
}

impl Actor {
    fn metadata(&self, comune: &str) -> Metadata {
        Metadata {
            actor: Some(self.name.clone()),
            comune: Some(comune.to_owned()),
            channel: self.channel.clone(),
            correlation_id: self.correlation_id,
            causation_id: None,
        }
    }
}

/// The personal data of a citizen, in clear, as it arrives.
#[derive(Debug, Clone, Default)]
pub struct CitizenInput {
    /// Reuse an existing data subject (a known citizen); a new one is created otherwise.
    pub subject_id: Option<Uuid>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub fiscal_code: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewContact {
    pub case_id: Uuid,
    pub comune: String,
    pub kind: CaseKind,
    pub channel: Channel,
    pub service: Option<String>,
    pub subject: String,
    pub description: Option<String>,
    pub citizen: Option<CitizenInput>,
    pub received_at: DateTime<Utc>,
    /// Days; the service's term when the contact concerns a service, 30 otherwise.
    pub term_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCase {
    pub case_id: Uuid,
    pub code: String,
    /// Given to the citizen to follow the case; only its hash is stored in the log, and a
    /// repeated request gets the same key back (it is derived, see [`Vault::access_key`]).
    pub access_key: Option<String>,
    pub subject_id: Option<Uuid>,
    pub due_on: chrono::NaiveDate,
    pub position: u64,
    /// The case as it stands after the request.
    pub state: Case,
}

/// A citizen's submission of a published form.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    pub submission_id: Uuid,
    pub form_id: String,
    pub form_version: u32,
    pub values: BTreeMap<String, Value>,
    /// Names of the uploaded documents.
    pub documents: Vec<String>,
    pub comune: String,
    pub citizen: CitizenInput,
    pub submitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Submitted {
    pub submission_id: Uuid,
    pub registration_number: u64,
    pub case: OpenedCase,
}

#[derive(Debug, thiserror::Error)]
pub enum UrpError {
    #[error(transparent)]
    Case(#[from] CaseError),
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Submission(#[from] SubmissionError),
    #[error("comune {0} is not part of this installation")]
    UnknownComune(String),
    #[error("the service {0} does not exist or is not active")]
    UnknownService(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the record kept changing; try again")]
    Contention,
    #[error("a stored event cannot be read: {0}")]
    Undecodable(String),
}

impl UrpError {
    /// True when the domain refused the request (the caller's to fix), false when something failed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            UrpError::Case(_)
                | UrpError::Feedback(_)
                | UrpError::Catalogue(_)
                | UrpError::Submission(_)
                | UrpError::UnknownComune(_)
                | UrpError::UnknownService(_)
                | UrpError::Vault(VaultError::SubjectErased(_))
        )
    }

    pub fn code(&self) -> &'static str {
        match self {
            UrpError::Case(e) => e.code(),
            UrpError::Feedback(e) => e.code(),
            UrpError::Catalogue(e) => e.code(),
            UrpError::Submission(e) => e.code(),
            UrpError::UnknownComune(_) => "comune_unknown",
            UrpError::UnknownService(_) => "service_unknown",
            UrpError::Vault(VaultError::SubjectErased(_)) => "subject_erased",
            UrpError::Vault(_) => "vault_failure",
            UrpError::Store(e) => e.code(),
            UrpError::Contention => "contention",
            UrpError::Undecodable(_) => "stored_event_corrupt",
        }
    }

    pub fn message_it(&self) -> String {
        match self {
            UrpError::Case(e) => e.message_it(),
            UrpError::Feedback(e) => e.message_it(),
            UrpError::Catalogue(e) => e.message_it(),
            UrpError::Submission(e) => e.message_it(),
            UrpError::UnknownComune(c) => format!("Il comune {c} non fa parte di questa installazione."),
            UrpError::UnknownService(s) => format!("Il servizio «{s}» non esiste o non è attivo."),
            UrpError::Contention => "La pratica è stata modificata nel frattempo: riprova.".into(),
            UrpError::Vault(VaultError::SubjectErased(_)) => {
                "I dati personali di questa persona sono stati cancellati su sua richiesta: non possono essere registrati di nuovo con lo stesso profilo.".into()
            }
            _ => "Si è verificato un errore interno: riprova più tardi.".into(),
        }
    }
}

impl From<crate::store::InvalidInput> for UrpError {
    fn from(e: crate::store::InvalidInput) -> Self {
        UrpError::Store(e.into())
    }
}

impl<E: std::error::Error + Into<UrpError> + 'static> From<CommandError<E>> for UrpError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Refused(e) => e.into(),
            CommandError::TooMuchContention(_) => UrpError::Contention,
            CommandError::Store(e) => UrpError::Store(e),
            e @ CommandError::Undecodable { .. } => UrpError::Undecodable(e.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct Urp {
    handler: CommandHandler,
    vault: Vault,
    calendar: LegalCalendar,
    /// ISTAT code → case-code prefix.
    prefixes: HashMap<String, String>,
}

/// The id of a command derived from what it is about, for commands that happen once per thing.
fn once(id: Uuid, what: &str) -> Uuid {
    Uuid::new_v5(&id, what.as_bytes())
}

impl Urp {
    pub fn new(log: EventLog, vault: Vault, settings: &Settings) -> Self {
        Self {
            handler: CommandHandler::new(log),
            vault,
            calendar: LegalCalendar::from_settings(settings),
            prefixes: settings
                .comuni
                .iter()
                .map(|c| (c.istat.to_string(), Settings::code_prefix(c)))
                .collect(),
        }
    }

    pub fn log(&self) -> &EventLog {
        self.handler.log()
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn calendar(&self) -> &LegalCalendar {
        &self.calendar
    }

    fn prefix(&self, comune: &str) -> Result<&str, UrpError> {
        self.prefixes
            .get(comune)
            .map(String::as_str)
            .ok_or_else(|| UrpError::UnknownComune(comune.to_owned()))
    }

    /// Opens a case: takes the next code of the comune's register, seals what the citizen wrote,
    /// computes the due date and records `CaseOpened`.
    pub async fn open_case(
        &self,
        actor: &Actor,
        contact: NewContact,
    ) -> Result<OpenedCase, UrpError> {
        let prefix = self.prefix(&contact.comune)?.to_owned();
        // A repeated request: the case is there (and its citizen may since have been erased).
        if let Ok((case, _)) = self.case(contact.case_id).await {
            return Ok(self.opened(contact.case_id, &case));
        }
        if contact.subject.trim().is_empty() {
            return Err(CaseError::Empty("oggetto").into());
        }
        let local = contact.received_at.with_timezone(&Rome);
        let year = local.year();
        let given_subject = contact.citizen.as_ref().and_then(|c| c.subject_id);
        let subject_id = contact
            .citizen
            .as_ref()
            .map(|c| c.subject_id.unwrap_or_else(Uuid::now_v7));
        // Without a citizen, the text is still sealed, under a subject of its own.
        let text_subject = subject_id.unwrap_or_else(|| once(contact.case_id, "text"));
        // A subject made just now has no key to look up: it is created with the first seal.
        let new_subject = subject_id.is_some() && given_subject.is_none();
        let none = CitizenInput::default();
        let c = contact.citizen.as_ref().unwrap_or(&none);
        let sealed = self
            .vault
            .seal_all(
                text_subject,
                new_subject,
                &[
                    Some(contact.subject.as_str()),
                    contact.description.as_deref(),
                    c.name.as_deref(),
                    c.email.as_deref(),
                    c.phone.as_deref(),
                    c.fiscal_code.as_deref(),
                ],
            )
            .await?;
        let [subject, description, name, email, phone, fiscal_code]: [Option<Sealed>; 6] =
            sealed.try_into().expect("six texts in, six out");
        let subject = subject.ok_or(CaseError::Empty("oggetto"))?;
        let citizen = subject_id.map(|subject_id| Citizen {
            subject_id,
            name,
            email,
            phone,
            fiscal_code,
        });
        let number = number_for(
            self.log(),
            Register::Cases,
            &contact.comune,
            year,
            contact.case_id,
        )
        .await?;
        let code = case_code(&prefix, year, number);
        let comune_code = IstatCode::parse(&contact.comune).ok();
        let due_on = self.calendar.due_date(
            local.date_naive(),
            contact.term_days,
            0,
            comune_code.as_ref(),
        );
        let access_key = self.vault.access_key(contact.case_id);
        let command = CaseCommand::Open(OpenCase {
            code: code.clone(),
            comune: contact.comune.clone(),
            kind: contact.kind,
            channel: contact.channel,
            service: contact.service.clone(),
            subject,
            description,
            citizen,
            received_at: contact.received_at,
            term_days: contact.term_days,
            due_on,
            access_key_hash: Some(hash_access_key(&access_key)),
        });
        let done: Handled<Case> = self
            .handler
            .handle_at(
                contact.case_id,
                once(contact.case_id, "open"),
                actor.metadata(&contact.comune),
                actor.at,
                &command,
            )
            .await?;
        Ok(OpenedCase {
            case_id: contact.case_id,
            code: done.state.code.clone(),
            access_key: Some(access_key),
            subject_id,
            due_on: done.state.due_on.unwrap_or(due_on),
            position: done.outcome.map_or(0, |o| o.last_position),
            state: done.state,
        })
    }

    /// What a repeated request gets back: the case as it was opened (the access key is derived
    /// again; position 0 means "already stored").
    fn opened(&self, case_id: Uuid, case: &Case) -> OpenedCase {
        OpenedCase {
            case_id,
            code: case.code.clone(),
            access_key: Some(self.vault.access_key(case_id)),
            subject_id: case.citizen_subject,
            due_on: case.due_on.unwrap_or_default(),
            position: 0,
            state: case.clone(),
        }
    }

    /// True when `key` is the access key given out for the case.
    pub fn access_key_matches(&self, case_id: Uuid, key: &str) -> bool {
        let expected = hash_access_key(&self.vault.access_key(case_id));
        let given = hash_access_key(key.trim());
        // Compare digests, so the time taken says nothing about the key.
        expected
            .as_bytes()
            .iter()
            .zip(given.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Every event of a case, in order (the timeline).
    pub async fn case_events(&self, case_id: Uuid) -> Result<Vec<crate::RecordedEvent>, UrpError> {
        use futures::TryStreamExt;
        let stream = StreamId::new(Case::CATEGORY, case_id)?;
        let events: Vec<_> = self.log().read_stream(stream, 1).try_collect().await?;
        if events.is_empty() {
            return Err(CaseError::NotFound.into());
        }
        Ok(events)
    }

    /// A staff action on a case. `command_id` makes a retried request idempotent.
    pub async fn act(
        &self,
        actor: &Actor,
        case_id: Uuid,
        command_id: Uuid,
        command: CaseCommand,
    ) -> Result<Handled<Case>, UrpError> {
        let (case, _) = self.case(case_id).await?;
        let command = self.complete(&case, command);
        Ok(self
            .handler
            .handle_at(
                case_id,
                command_id,
                actor.metadata(&case.comune),
                actor.at,
                &command,
            )
            .await?)
    }

    /// Fills in what the calendar decides: the expected date when taking in charge and the new due
    /// date when documents arrive.
    fn complete(&self, case: &Case, command: CaseCommand) -> CaseCommand {
        let comune = IstatCode::parse(&case.comune).ok();
        match command {
            CaseCommand::TakeInCharge { office, at, .. } => CaseCommand::TakeInCharge {
                office,
                at,
                expected_by: case
                    .due_on
                    .unwrap_or_else(|| at.with_timezone(&Rome).date_naive()),
            },
            CaseCommand::ReceiveDocuments { at, .. } => {
                let received = case
                    .received_at
                    .unwrap_or(at)
                    .with_timezone(&Rome)
                    .date_naive();
                let since = case
                    .suspended_at
                    .unwrap_or(at)
                    .with_timezone(&Rome)
                    .date_naive();
                let suspended_days = (at.with_timezone(&Rome).date_naive() - since)
                    .num_days()
                    .max(0) as u32;
                let due_on = self.calendar.due_date(
                    received,
                    case.term_days,
                    suspended_days,
                    comune.as_ref(),
                );
                CaseCommand::ReceiveDocuments {
                    at,
                    suspended_days,
                    due_on,
                }
            }
            other => other,
        }
    }

    /// The current state of a case and its version; `CaseError::NotFound` when it does not exist.
    pub async fn case(&self, case_id: Uuid) -> Result<(Case, u64), UrpError> {
        let stream = StreamId::new(Case::CATEGORY, case_id)?;
        let (case, version, _) = self.handler.load::<Case>(&stream).await?;
        if version == 0 {
            return Err(CaseError::NotFound.into());
        }
        Ok((case, version))
    }

    pub async fn publish_service(&self, actor: &Actor, card: ServiceCard) -> Result<(), UrpError> {
        let comune = card.comuni.first().cloned().unwrap_or_default();
        let id = once(Uuid::nil(), &format!("service:{}", card.code));
        self.handler
            .handle_at::<Service>(
                &card.code,
                id,
                actor.metadata(&comune),
                actor.at,
                &ServiceCommand::Publish(card.clone()),
            )
            .await?;
        Ok(())
    }

    pub async fn service(&self, code: &str) -> Result<Service, UrpError> {
        let stream = StreamId::new(Service::CATEGORY, code)?;
        Ok(self.handler.load::<Service>(&stream).await?.0)
    }

    /// A form with its published versions (empty when it does not exist).
    pub async fn form(&self, form_id: &str) -> Result<Form, UrpError> {
        let stream = StreamId::new(Form::CATEGORY, form_id)?;
        Ok(self.handler.load::<Form>(&stream).await?.0)
    }

    /// Publishes the next version of a form; its documents must be on the service card.
    pub async fn publish_form(
        &self,
        actor: &Actor,
        form_id: &str,
        form: FormDef,
        command_id: Uuid,
    ) -> Result<u32, UrpError> {
        let service = self.service(&form.service).await?;
        let card = service
            .card
            .filter(|_| service.active)
            .ok_or_else(|| UrpError::UnknownService(form.service.clone()))?;
        let comune = card.comuni.first().cloned().unwrap_or_default();
        let done = self
            .handler
            .handle_at::<Form>(
                form_id,
                command_id,
                actor.metadata(&comune),
                actor.at,
                &FormCommand::Publish {
                    form,
                    service_documents: card.documents,
                },
            )
            .await?;
        Ok(done.state.versions.keys().last().copied().unwrap_or(0))
    }

    /// A citizen submits a form: checked against the cited published version, numbered, and a
    /// case is opened with the service's term.
    pub async fn submit(
        &self,
        actor: &Actor,
        submission: NewSubmission,
    ) -> Result<Submitted, UrpError> {
        let NewSubmission {
            submission_id,
            form_id,
            form_version,
            values,
            documents,
            comune,
            citizen,
            submitted_at,
        } = submission;
        let (form_id, comune) = (form_id.as_str(), comune.as_str());
        self.prefix(comune)?;
        let submission_stream = StreamId::new(Submission::CATEGORY, submission_id)?;
        if let (
            Submission {
                accepted: Some((number, case_id)),
            },
            _,
            _,
        ) = self.handler.load::<Submission>(&submission_stream).await?
        {
            let (case, _) = self.case(case_id).await?;
            let case = self.opened(case_id, &case);
            return Ok(Submitted {
                submission_id,
                registration_number: number,
                case,
            });
        }
        let form_state = self
            .handler
            .load::<Form>(&StreamId::new(Form::CATEGORY, form_id)?)
            .await?
            .0;
        let form = form_state.usable(form_version).cloned();
        let card = match &form {
            Ok(def) => {
                let service = self.service(&def.service).await?;
                Some(
                    service
                        .card
                        .filter(|_| service.active)
                        .ok_or_else(|| UrpError::UnknownService(def.service.clone()))?,
                )
            }
            Err(_) => None,
        };
        // Check before taking a number, so that a refused submission leaves no gap.
        let subject = citizen.subject_id.unwrap_or_else(Uuid::now_v7);
        let case_id = once(submission_id, "case");
        let mut command = AcceptSubmission {
            form_id: form_id.to_owned(),
            form_version,
            form,
            values: values.clone(),
            sealed_values: self
                .vault
                .seal(subject, &serde_json::to_string(&values).unwrap_or_default())
                .await?,
            documents,
            comune: comune.to_owned(),
            registration_number: 0,
            registration_year: submitted_at.with_timezone(&Rome).year(),
            case_id,
            submitted_at,
        };
        Submission::default().decide(&command)?;
        command.registration_number = number_for(
            self.log(),
            Register::Submissions,
            comune,
            command.registration_year,
            submission_id,
        )
        .await?;
        let card = card.expect("a usable form has a service card");
        let done: Handled<Submission> = self
            .handler
            .handle_at(
                submission_id,
                once(submission_id, "accept"),
                actor.metadata(comune),
                actor.at,
                &command,
            )
            .await?;
        let (registration_number, case_id) = done
            .state
            .accepted
            .expect("an accepted submission has a number");
        let case = self
            .open_case(
                actor,
                NewContact {
                    case_id,
                    comune: comune.to_owned(),
                    kind: CaseKind::Informazione,
                    channel: Channel::Web,
                    service: Some(card.code.clone()),
                    subject: card.title.clone(),
                    description: None,
                    citizen: Some(CitizenInput {
                        subject_id: Some(subject),
                        ..citizen
                    }),
                    received_at: submitted_at,
                    term_days: card.term_days,
                },
            )
            .await?;
        Ok(Submitted {
            submission_id,
            registration_number,
            case,
        })
    }

    /// Records a rating. For a case, the feedback stream is derived from the case (one per case)
    /// and the case must be closed; otherwise `feedback_id` names it (a retried request passes the
    /// same one) or a new one is made.
    pub async fn give_feedback(
        &self,
        actor: &Actor,
        mut command: GiveFeedback,
        comment: Option<String>,
        subject: Option<Uuid>,
        feedback_id: Option<Uuid>,
    ) -> Result<(Uuid, u64), UrpError> {
        self.prefix(&command.comune)?;
        let feedback_id = match command.target.target_type {
            TargetType::Case => {
                let case_id: Uuid = command.target.id.parse().map_err(|_| CaseError::NotFound)?;
                let (case, _) = self.case(case_id).await?;
                command.case_closed = Some(case.status == crate::domain::case::CaseStatus::Closed);
                command.case_kind = case.kind;
                feedback_id_for_case(case_id)
            }
            _ => feedback_id.unwrap_or_else(Uuid::now_v7),
        };
        let stream = StreamId::new(Feedback::CATEGORY, feedback_id)?;
        if self.handler.load::<Feedback>(&stream).await?.0.given {
            return Err(FeedbackError::AlreadyGiven.into());
        }
        if let Some(text) = comment.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let chars = text.chars().count();
            let sealed = self
                .vault
                .seal(
                    subject.unwrap_or_else(|| once(feedback_id, "comment")),
                    text,
                )
                .await?;
            command.comment = Some(SealedComment { sealed, chars });
        }
        let comune = command.comune.clone();
        let done: Handled<Feedback> = self
            .handler
            .handle_at(
                feedback_id,
                once(feedback_id, "give"),
                actor.metadata(&comune),
                actor.at,
                &command,
            )
            .await?;
        if done.repeated {
            return Err(FeedbackError::AlreadyGiven.into());
        }
        Ok((feedback_id, done.outcome.map_or(0, |o| o.last_position)))
    }

    /// GDPR erasure: destroys the subject's key and records `SubjectErased`.
    pub async fn erase_subject(
        &self,
        actor: &Actor,
        subject: Uuid,
        reason: &str,
    ) -> Result<u64, UrpError> {
        self.vault.erase(subject).await?;
        let event = NewEvent::new("SubjectErased", &serde_json::json!({ "reason": reason }))?
            .with_id(once(subject, "erased"))
            .occurred_at(actor.at.unwrap_or_else(Utc::now))
            .with_metadata(Metadata {
                actor: Some(actor.name.clone()),
                correlation_id: actor.correlation_id,
                ..Metadata::default()
            });
        let outcome = match self
            .log()
            .append(
                StreamId::new("subject", subject)?,
                ExpectedVersion::Any,
                vec![event],
            )
            .await
        {
            Ok(o) => o.last_position,
            // Erased before: the key is gone already; the first record stands.
            Err(StoreError::DuplicateEventId { .. }) => self.log().head().await?,
            Err(e) => return Err(e.into()),
        };
        Ok(outcome)
    }
}

pub fn hash_access_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
