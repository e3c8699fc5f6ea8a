//! The URP application service: what a citizen, an operator or the demo asks for, carried out
//! through the command handler, with the vault, the calendar, the registers and the catalogue
//! looked up first. The rules that need those (a service active in the comune, lengths, the
//! default term) are checked here, so no caller can go around them.

use super::error::{AppError, Refusal};
use super::handler::{CommandError, CommandHandler, Decision, Handled, decide};
use super::register::{Register, Registers};
use crate::calendar::LegalCalendar;
use crate::domain::Aggregate;
use crate::domain::case::{
    Case, CaseCommand, CaseError, CaseKind, Channel, Citizen, OpenCase, case_code,
};
use crate::domain::feedback::{
    Feedback, FeedbackError, GiveFeedback, SealedComment, TargetType, feedback_id_for_case,
};
use crate::domain::service::{Form, FormCommand, FormDef, Service, ServiceCard, ServiceCommand};
use crate::domain::submission::{AcceptSubmission, Submission};
use crate::store::{EventLog, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use crate::vault::{Sealed, Vault};
use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Europe::Rome;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sportello_config::{IstatCode, Settings};
use std::collections::{BTreeMap, HashMap};
use subtle::ConstantTimeEq;
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

/// Longest subject and description of a contact, and longest personal field, in characters.
pub const MAX_SUBJECT: usize = 200;
pub const MAX_DESCRIPTION: usize = 4000;
pub const MAX_PERSONAL_FIELD: usize = 200;

impl CitizenInput {
    /// The e-mail must look like one; no field may be longer than [`MAX_PERSONAL_FIELD`].
    pub fn check(&self) -> Result<(), Refusal> {
        if let Some(email) = self.email.as_deref()
            && !is_email(email)
        {
            return Err(Refusal::field(
                "citizen.email",
                "email_invalid",
                "L'indirizzo e-mail non è valido.",
            ));
        }
        for (field, value) in [
            ("citizen.name", &self.name),
            ("citizen.phone", &self.phone),
            ("citizen.fiscal_code", &self.fiscal_code),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| v.chars().count() > MAX_PERSONAL_FIELD)
            {
                return Err(Refusal::field(
                    field,
                    "too_long",
                    format!("Il valore supera i {MAX_PERSONAL_FIELD} caratteri."),
                ));
            }
        }
        Ok(())
    }
}

/// `local@domain`: one `@` between two non-empty parts, no white space, at most 254 bytes (the
/// pattern the OpenAPI document publishes).
pub fn is_email(text: &str) -> bool {
    text.len() <= 254
        && !text.chars().any(char::is_whitespace)
        && text.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
}

/// Personal data are recorded only once the citizen has read the privacy notice (GDPR art. 13).
fn privacy_consent(given: bool) -> Result<(), Refusal> {
    if given {
        Ok(())
    } else {
        Err(Refusal::field(
            "privacy_consent",
            "privacy_consent_required",
            "Per inviare la richiesta occorre prendere visione dell'informativa sul trattamento dei dati personali.",
        ))
    }
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
    /// The citizen has read the privacy notice (GDPR art. 13).
    pub privacy_consent: bool,
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
    pub privacy_consent: bool,
}

#[derive(Debug, Clone)]
pub struct Submitted {
    pub submission_id: Uuid,
    pub registration_number: u64,
    pub case: OpenedCase,
}

#[derive(Clone)]
pub struct Urp {
    handler: CommandHandler,
    vault: Vault,
    calendar: LegalCalendar,
    /// ISTAT code → case-code prefix.
    prefixes: HashMap<String, String>,
    /// The term of a contact about no service with a term of its own.
    default_term_days: u32,
    registers: Registers,
}

/// How many times a number is taken again after other processes took the one seen.
const MAX_TURNS: usize = 50;

/// The id of a command derived from what it is about, for commands that happen once per thing.
fn once(id: Uuid, what: &str) -> Uuid {
    Uuid::new_v5(&id, what.as_bytes())
}

/// The data subject a case without a citizen seals its texts (and files) under.
pub(crate) fn case_text_subject(case_id: Uuid) -> Uuid {
    once(case_id, "text")
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
            default_term_days: u32::try_from(settings.calendar.default_term_days).unwrap_or(30),
            registers: Registers::default(),
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

    /// The comune's case-code prefix; refuses a comune that is not part of this installation.
    fn prefix(&self, comune: &str) -> Result<&str, Refusal> {
        self.prefixes
            .get(comune)
            .map(String::as_str)
            .ok_or_else(|| {
                Refusal::field(
                    "comune",
                    "comune_unknown",
                    format!("Il comune {comune} non fa parte di questa installazione."),
                )
            })
    }

    /// Refuses a comune that is not part of this installation.
    pub fn check_comune(&self, comune: &str) -> Result<(), Refusal> {
        self.prefix(comune).map(drop)
    }

    /// The card of a service that is active and offered in `comune`, or a refusal naming `field`.
    async fn active_service(
        &self,
        field: &'static str,
        code: &str,
        comune: Option<&str>,
    ) -> Result<ServiceCard, AppError> {
        let unknown = || {
            Refusal::unknown(
                field,
                "service_unknown",
                format!("Il servizio «{code}» non esiste o non è attivo in questo comune."),
            )
        };
        let service = match self.service(code).await {
            Ok(service) => service,
            Err(AppError::Refused(_)) => return Err(unknown().into()),
            Err(e) => return Err(e),
        };
        service
            .card
            .filter(|card| {
                service.active && comune.is_none_or(|c| card.comuni.iter().any(|x| x == c))
            })
            .ok_or_else(|| unknown().into())
    }

    /// Checks a contact against the rules that hold whoever records it; returns its term.
    async fn check_contact(&self, contact: &NewContact) -> Result<u32, AppError> {
        self.check_comune(&contact.comune)?;
        privacy_consent(contact.privacy_consent)?;
        if contact.subject.trim().is_empty() {
            return Err(Refusal::field("subject", "required", "L'oggetto è obbligatorio.").into());
        }
        if contact.subject.chars().count() > MAX_SUBJECT {
            return Err(Refusal::field(
                "subject",
                "too_long",
                format!("L'oggetto può avere al massimo {MAX_SUBJECT} caratteri."),
            )
            .into());
        }
        if contact
            .description
            .as_deref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            return Err(Refusal::field(
                "description",
                "too_long",
                format!("La descrizione può avere al massimo {MAX_DESCRIPTION} caratteri."),
            )
            .into());
        }
        if let Some(citizen) = &contact.citizen {
            citizen.check()?;
        }
        match contact.service.as_deref() {
            None => Ok(self.default_term_days),
            Some(code) => Ok(self
                .active_service("service", code, Some(&contact.comune))
                .await?
                .term_days),
        }
    }

    /// Opens a case: takes the next code of the comune's register, seals what the citizen wrote,
    /// computes the due date and records `CaseOpened`.
    pub async fn open_case(
        &self,
        actor: &Actor,
        contact: NewContact,
    ) -> Result<OpenedCase, AppError> {
        let mut contact = contact;
        contact.service = contact.service.filter(|s| !s.trim().is_empty());
        let prefix = self.prefix(&contact.comune)?.to_owned();
        // A repeated request: the case is there (and its citizen may since have been erased).
        // What is read here is what the opening decides on, unless the case changes meanwhile.
        let stream = StreamId::new(Case::CATEGORY, contact.case_id)?;
        let loaded = self.handler.load::<Case>(&stream).await?;
        if loaded.1 > 0 {
            return Ok(self.opened(contact.case_id, &loaded.0));
        }
        let term_days = self.check_contact(&contact).await?;
        contact.subject = contact.subject.trim().to_owned();
        let local = contact.received_at.with_timezone(&Rome);
        let year = local.year();
        let given_subject = contact.citizen.as_ref().and_then(|c| c.subject_id);
        let subject_id = contact
            .citizen
            .as_ref()
            .map(|c| c.subject_id.unwrap_or_else(Uuid::now_v7));
        // Without a citizen, the text is still sealed, under a subject of its own.
        let text_subject = subject_id.unwrap_or_else(|| case_text_subject(contact.case_id));
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
        let comune_code = IstatCode::parse(&contact.comune).ok();
        let due_on = self
            .calendar
            .due_date(local.date_naive(), term_days, 0, comune_code.as_ref());
        let access_key = self.vault.access_key(contact.case_id);
        let open = OpenCase {
            code: String::new(),
            comune: contact.comune.clone(),
            kind: contact.kind,
            channel: contact.channel,
            service: contact.service.clone(),
            subject,
            description,
            citizen,
            received_at: contact.received_at,
            term_days,
            due_on,
            access_key_hash: Some(hash_access_key(&access_key)),
        };
        // The code's number and the opening are one commit: no number without its case.
        let register = Register::Cases.stream(&contact.comune, year)?;
        let mut command = CaseCommand::Open(open);
        let opened = self
            .handle_numbered::<Case>(
                register,
                &contact.comune,
                contact.case_id,
                once(contact.case_id, "open"),
                actor,
                Some(loaded),
                &mut command,
                |command, number| {
                    if let CaseCommand::Open(open) = command {
                        open.code = case_code(&prefix, year, number);
                    }
                },
            )
            .await;
        let done = match opened {
            Ok(done) => done,
            // The same request, retried while this one ran, opened it first.
            Err(CommandError::Refused(CaseError::AlreadyOpened)) => {
                let (case, _) = self.case(contact.case_id).await?;
                return Ok(self.opened(contact.case_id, &case));
            }
            Err(e) => return Err(e.into()),
        };
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

    /// Handles `command` on the stream of `holder` together with the next number of `register`,
    /// in one commit (ADR 0007); `number` writes the number into the command. The turn on the
    /// register is held only to number, decide and queue the commit, so the holders of one
    /// register share commits; when the commit fails (another process took the number, or one
    /// queued before it failed and this one expected its version), the next number is taken.
    /// `loaded`: the holder's stream as the caller just read it, for the first attempt.
    #[allow(clippy::too_many_arguments)]
    async fn handle_numbered<A: Aggregate>(
        &self,
        register: StreamId,
        comune: &str,
        holder: Uuid,
        command_id: Uuid,
        actor: &Actor,
        mut loaded: Option<(A, u64, Vec<Uuid>)>,
        command: &mut A::Command,
        number: impl Fn(&mut A::Command, u64),
    ) -> Result<Handled<A>, CommandError<A::Error>> {
        let stream = StreamId::new(A::CATEGORY, holder).map_err(StoreError::from)?;
        let metadata = actor.metadata(comune);
        let mut attempts = 0;
        loop {
            let loaded = match loaded.take() {
                Some(loaded) => loaded,
                None => self.handler.load::<A>(&stream).await?,
            };
            let turn = self.registers.turn(self.log(), register.clone()).await?;
            number(command, turn.next());
            let (append, decided) =
                match decide(&stream, loaded, command_id, &metadata, actor.at, command)? {
                    Decision::Done(handled) => return Ok(handled),
                    Decision::Append { append, decided } => (append, decided),
                };
            let queued = self
                .log()
                .queue_all(vec![append, turn.entry(comune, holder)?])?;
            let number = turn.queued();
            let outcome = queued.await;
            number.settled(outcome.is_ok()).await;
            match outcome {
                Ok(mut outcomes) => return Ok(decided.appended(outcomes.remove(0))),
                Err(StoreError::Conflict { stream: s, .. })
                    if (s == register || s == stream) && attempts < MAX_TURNS =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
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
        // Compare digests in constant time, so the time taken says nothing about the key.
        expected.as_bytes().ct_eq(given.as_bytes()).into()
    }

    /// Every event of a case, in order (the timeline).
    pub async fn case_events(&self, case_id: Uuid) -> Result<Vec<crate::RecordedEvent>, AppError> {
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
    ) -> Result<Handled<Case>, AppError> {
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
            CaseCommand::ReceiveDocuments { at, documents, .. } => {
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
                    documents,
                }
            }
            other => other,
        }
    }

    /// The current state of a case and its version; `CaseError::NotFound` when it does not exist.
    pub async fn case(&self, case_id: Uuid) -> Result<(Case, u64), AppError> {
        let stream = StreamId::new(Case::CATEGORY, case_id)?;
        let (case, version, _) = self.handler.load::<Case>(&stream).await?;
        if version == 0 {
            return Err(CaseError::NotFound.into());
        }
        Ok((case, version))
    }

    pub async fn publish_service(&self, actor: &Actor, card: ServiceCard) -> Result<(), AppError> {
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

    /// A service (never published, and so inactive, when it does not exist).
    pub async fn service(&self, code: &str) -> Result<Service, AppError> {
        // A code that cannot name a stream names no service.
        let Ok(stream) = StreamId::new(Service::CATEGORY, code) else {
            return Ok(Service::default());
        };
        Ok(self.handler.load::<Service>(&stream).await?.0)
    }

    /// A form with its published versions (empty when it does not exist).
    pub async fn form(&self, form_id: &str) -> Result<Form, AppError> {
        let Ok(stream) = StreamId::new(Form::CATEGORY, form_id) else {
            return Ok(Form::default());
        };
        Ok(self.handler.load::<Form>(&stream).await?.0)
    }

    /// Publishes the next version of a form; its documents must be on the service card.
    pub async fn publish_form(
        &self,
        actor: &Actor,
        form_id: &str,
        form: FormDef,
        command_id: Uuid,
    ) -> Result<u32, AppError> {
        let card = self.active_service("service", &form.service, None).await?;
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
    ) -> Result<Submitted, AppError> {
        let NewSubmission {
            submission_id,
            form_id,
            form_version,
            values,
            documents,
            comune,
            citizen,
            submitted_at,
            privacy_consent: consent,
        } = submission;
        let (form_id, comune) = (form_id.as_str(), comune.as_str());
        self.prefix(comune)?;
        privacy_consent(consent)?;
        citizen.check()?;
        let submission_stream = StreamId::new(Submission::CATEGORY, submission_id)?;
        if let (
            Submission {
                accepted: Some((number, case_id)),
            },
            _,
            _,
        ) = self.handler.load::<Submission>(&submission_stream).await?
            && let Ok((case, _)) = self.case(case_id).await
        {
            return Ok(Submitted {
                submission_id,
                registration_number: number,
                case: self.opened(case_id, &case),
            });
        }
        // Not accepted yet, or accepted but its case not opened (the process stopped between
        // the two commits): the steps below are each done once, so going through them again
        // opens the case with the number the submission already has.
        let form_state = self.form(form_id).await?;
        if form_state.versions.is_empty() {
            return Err(Refusal::unknown(
                "form_id",
                "form_not_found",
                "Il modulo indicato non esiste.",
            )
            .into());
        }
        let form = form_state.usable(form_version).cloned();
        let card = match &form {
            Ok(def) => Some(
                self.active_service("form_id", &def.service, Some(comune))
                    .await?,
            ),
            Err(_) => None,
        };
        // Check before taking a number, so that a refused submission leaves no gap. The subject
        // derives from the submission, so a retry seals under the same one.
        let subject = citizen
            .subject_id
            .unwrap_or_else(|| once(submission_id, "subject"));
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
        let card = card.expect("a usable form has a service card");
        // The registration number and the acceptance are one commit: no number without its
        // submission.
        let register = Register::Submissions.stream(comune, command.registration_year)?;
        let done: Handled<Submission> = self
            .handle_numbered(
                register,
                comune,
                submission_id,
                once(submission_id, "accept"),
                actor,
                None,
                &mut command,
                |command: &mut AcceptSubmission, number| command.registration_number = number,
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
                    privacy_consent: consent,
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
    ) -> Result<(Uuid, u64), AppError> {
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
        if let Some(raw) = comment.as_deref()
            && !raw.trim().is_empty()
        {
            // The length is the one sent, as the published schema counts it.
            let chars = raw.chars().count();
            let text = raw.trim();
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
    ) -> Result<u64, AppError> {
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
