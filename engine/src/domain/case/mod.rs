//! A URP case (`case-<uuid>`): a citizen's contact from receipt to closing.
//!
//! Lifecycle: received → taken in charge by an office (with the latest expected completion date,
//! PNRR C.SE.1.10) → assigned to an operator → possibly transferred to another comune's URP (the
//! case keeps its code; the receiving comune now owns it and takes it in charge again) → possibly
//! suspended once waiting for documents (L. 241/1990 art. 2 c.7: the due date moves by the days
//! suspended) → answered → closed with an outcome; a closed case can be reopened with a reason, and
//! the citizen can withdraw an open case.

use super::{Aggregate, DomainError, RefusalKind};
use crate::vault::Sealed;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    Informazione,
    Segnalazione,
    Reclamo,
    Suggerimento,
    /// Access to administrative documents, L. 241/1990 art. 22 ff.
    AccessoAgliAtti,
    /// Civic access, d.lgs. 33/2013 art. 5.
    AccessoCivico,
}

impl CaseKind {
    pub const ALL: [CaseKind; 6] = [
        CaseKind::Informazione,
        CaseKind::Segnalazione,
        CaseKind::Reclamo,
        CaseKind::Suggerimento,
        CaseKind::AccessoAgliAtti,
        CaseKind::AccessoCivico,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sportello,
    Telefono,
    Email,
    Pec,
    Web,
    App,
    Posta,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Sportello,
        Channel::Telefono,
        Channel::Email,
        Channel::Pec,
        Channel::Web,
        Channel::App,
        Channel::Posta,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Accolta / risolta.
    Accolta,
    Respinta,
    NonDiCompetenza,
    Duplicata,
    /// Only through a withdrawal by the citizen.
    RitirataDalCittadino,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    New,
    Received,
    TakenInCharge,
    Assigned,
    Suspended,
    Answered,
    Closed,
}

impl CaseStatus {
    /// The name read models and answers use (`taken_in_charge`…); a case not yet opened reads
    /// as received.
    pub fn name(self) -> &'static str {
        match self {
            CaseStatus::New | CaseStatus::Received => "received",
            CaseStatus::TakenInCharge => "taken_in_charge",
            CaseStatus::Assigned => "assigned",
            CaseStatus::Suspended => "suspended",
            CaseStatus::Answered => "answered",
            CaseStatus::Closed => "closed",
        }
    }

    pub fn parse(name: &str) -> Option<CaseStatus> {
        [
            CaseStatus::Received,
            CaseStatus::TakenInCharge,
            CaseStatus::Assigned,
            CaseStatus::Suspended,
            CaseStatus::Answered,
            CaseStatus::Closed,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// Where a case stands in its life: the one state machine of a case. The aggregate, the staff's
/// inbox and the citizen's view each keep these four facts and move them with [`Lifecycle::evolve`],
/// so that all three always say the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub status: CaseStatus,
    /// The status a suspension returns to when the documents arrive.
    pub resume_to: CaseStatus,
    /// An office has the case in charge (none after a transfer, until the receiving one does).
    pub in_charge: bool,
    pub withdrawn: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            status: CaseStatus::New,
            resume_to: CaseStatus::Received,
            in_charge: false,
            withdrawn: false,
        }
    }
}

impl Lifecycle {
    pub fn evolve(self, event: &CaseEvent) -> Self {
        let mut next = self;
        match event {
            CaseEvent::CaseOpened { .. } => next.status = CaseStatus::Received,
            CaseEvent::CaseTakenInCharge { .. } => {
                next.status = CaseStatus::TakenInCharge;
                next.in_charge = true;
            }
            CaseEvent::CaseAssigned { .. } => next.status = CaseStatus::Assigned,
            // The receiving URP takes it in charge anew; a pending suspension ends with it.
            CaseEvent::CaseTransferred { .. } => {
                next.status = CaseStatus::Received;
                next.in_charge = false;
            }
            CaseEvent::DocumentsRequested { .. } => {
                next.resume_to = self.status;
                next.status = CaseStatus::Suspended;
            }
            CaseEvent::DocumentsReceived { .. } => next.status = self.resume_to,
            CaseEvent::CaseAnswered { .. } => next.status = CaseStatus::Answered,
            CaseEvent::CaseClosed { .. } => next.status = CaseStatus::Closed,
            CaseEvent::CaseReopened { .. } => {
                next.status = if self.in_charge {
                    CaseStatus::TakenInCharge
                } else {
                    CaseStatus::Received
                };
            }
            CaseEvent::CaseWithdrawn { .. } => {
                next.status = CaseStatus::Closed;
                next.withdrawn = true;
            }
            CaseEvent::NoticeSent { .. }
            | CaseEvent::OfficeReminded { .. }
            | CaseEvent::LegalHoldPlaced { .. }
            | CaseEvent::LegalHoldReleased { .. } => {}
        }
        next
    }

    /// What the citizen is told: the status's name, `withdrawn` for a case they withdrew.
    pub fn public_name(&self) -> &'static str {
        if self.withdrawn {
            "withdrawn"
        } else {
            self.status.name()
        }
    }
}

/// A file sent for a case: its content is kept sealed beside the data keys under the same
/// subject as its name ([`crate::vault::Vault::keep_document`]), gone with an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentFile {
    /// The kept content's id.
    pub id: Uuid,
    /// The file's name as sent (it may name the citizen).
    pub name: Sealed,
    pub media_type: String,
    pub bytes: u64,
    /// SHA-256 of the content, hex: what was received, provably.
    pub sha256: String,
}

/// The citizen behind a case; every field of theirs is sealed under their subject id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citizen {
    pub subject_id: Uuid,
    pub name: Option<Sealed>,
    pub email: Option<Sealed>,
    pub phone: Option<Sealed>,
    pub fiscal_code: Option<Sealed>,
}

// The opening carries the sealed texts; a case has one, so the size of the others matters little.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CaseEvent {
    CaseOpened {
        code: String,
        comune: String,
        kind: CaseKind,
        channel: Channel,
        service: Option<String>,
        /// Written by the citizen: sealed.
        subject: Sealed,
        description: Option<Sealed>,
        citizen: Option<Citizen>,
        received_at: DateTime<Utc>,
        term_days: u32,
        due_on: NaiveDate,
        /// SHA-256 (hex) of the access key given to the citizen to follow the case.
        access_key_hash: Option<String>,
    },
    CaseTakenInCharge {
        office: String,
        at: DateTime<Utc>,
        /// The latest expected completion date shown to the citizen (PNRR C.SE.1.10).
        expected_by: NaiveDate,
    },
    CaseAssigned {
        operator: String,
    },
    CaseTransferred {
        from_comune: String,
        to_comune: String,
        reason: String,
        at: DateTime<Utc>,
    },
    DocumentsRequested {
        documents: Vec<String>,
        at: DateTime<Utc>,
    },
    DocumentsReceived {
        at: DateTime<Utc>,
        suspended_days: u32,
        due_on: NaiveDate,
        /// The files that came with them (none when they came on paper or by PEC).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        documents: Vec<DocumentFile>,
    },
    CaseAnswered {
        text: String,
        at: DateTime<Utc>,
    },
    CaseClosed {
        outcome: Outcome,
        at: DateTime<Utc>,
    },
    CaseReopened {
        reason: String,
        at: DateTime<Utc>,
    },
    CaseWithdrawn {
        at: DateTime<Utc>,
    },
    /// The workers told the citizen (or the office) something, or found they could not. No
    /// address here: the log keeps what was done, not where it went.
    NoticeSent {
        kind: NoticeKind,
        channel: NoticeChannel,
        outcome: NoticeOutcome,
        /// The event that called for the notice: one notice per cause, so a redelivered job
        /// records nothing new.
        cause: Uuid,
        at: DateTime<Utc>,
    },
    /// The office responsible was reminded that the case's term is near or has passed. Once per
    /// threshold and due date: a term moved by a suspension is reminded of again.
    OfficeReminded {
        threshold: ReminderThreshold,
        due_on: NaiveDate,
        /// The office written to (the comune's URP when none has the case in charge).
        office: String,
        outcome: NoticeOutcome,
        at: DateTime<Utc>,
    },
    /// The case must be kept (a dispute, an inquiry, a request of the judicial authority): while
    /// held, retention erases none of its citizen's data.
    LegalHoldPlaced {
        reason: String,
        at: DateTime<Utc>,
    },
    LegalHoldReleased {
        reason: String,
        at: DateTime<Utc>,
    },
}

/// How close a case's term is, for the office's reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderThreshold {
    /// The term ends within the configured number of working days.
    DueSoon,
    /// The term has passed.
    Overdue,
}

impl ReminderThreshold {
    pub fn name(self) -> &'static str {
        match self {
            ReminderThreshold::DueSoon => "due_soon",
            ReminderThreshold::Overdue => "overdue",
        }
    }
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The receipt of a new contact (PNRR 1.4.1, C.SE.1.2).
    Receipt,
    TakenInCharge,
    DocumentsRequested,
    Answered,
}

impl NoticeKind {
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::Receipt => "receipt",
            NoticeKind::TakenInCharge => "taken_in_charge",
            NoticeKind::DocumentsRequested => "documents_requested",
            NoticeKind::Answered => "answered",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeChannel {
    Email,
    Pec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeOutcome {
    Sent,
    /// The citizen left no address to write to.
    SkippedNoAddress,
    /// The citizen's data were erased before the notice went out.
    SkippedErased,
    /// The relay refused it for good (a 5xx), or every retry failed.
    GivenUp,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseCommand {
    Open(OpenCase),
    TakeInCharge {
        office: String,
        at: DateTime<Utc>,
        expected_by: NaiveDate,
    },
    Assign {
        operator: String,
    },
    Transfer {
        to_comune: String,
        reason: String,
        at: DateTime<Utc>,
    },
    RequestDocuments {
        documents: Vec<String>,
        at: DateTime<Utc>,
    },
    /// `due_on` is the original due date moved by the days suspended, computed with the calendar.
    ReceiveDocuments {
        at: DateTime<Utc>,
        suspended_days: u32,
        due_on: NaiveDate,
        documents: Vec<DocumentFile>,
    },
    Answer {
        text: String,
        at: DateTime<Utc>,
    },
    Close {
        outcome: Outcome,
        at: DateTime<Utc>,
    },
    Reopen {
        reason: String,
        at: DateTime<Utc>,
    },
    Withdraw {
        at: DateTime<Utc>,
    },
    /// Records a notice; once a cause's notice is settled, another record for it is a no-op.
    RecordNotice {
        kind: NoticeKind,
        channel: NoticeChannel,
        outcome: NoticeOutcome,
        cause: Uuid,
        at: DateTime<Utc>,
    },
    /// Records a reminder to the office; a second one for the same threshold and due date is a
    /// no-op, unless the first was given up.
    RecordReminder {
        threshold: ReminderThreshold,
        due_on: NaiveDate,
        office: String,
        outcome: NoticeOutcome,
        at: DateTime<Utc>,
    },
    PlaceLegalHold {
        reason: String,
        at: DateTime<Utc>,
    },
    ReleaseLegalHold {
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCase {
    pub code: String,
    pub comune: String,
    pub kind: CaseKind,
    pub channel: Channel,
    pub service: Option<String>,
    pub subject: Sealed,
    pub description: Option<Sealed>,
    pub citizen: Option<Citizen>,
    pub received_at: DateTime<Utc>,
    pub term_days: u32,
    pub due_on: NaiveDate,
    pub access_key_hash: Option<String>,
}

/// Why a case refused a command. `code()` is stable; `message_it()` is for staff and citizens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("the case already exists")]
    AlreadyOpened,
    #[error("the case does not exist")]
    NotFound,
    #[error("the case is closed")]
    Closed,
    #[error("the citizen withdrew the case")]
    Withdrawn,
    #[error("the case has not been taken in charge yet")]
    NotTakenInCharge,
    #[error("the case is already in charge of {0}")]
    AlreadyInCharge(String),
    #[error("the case is suspended waiting for documents")]
    Suspended,
    #[error("documents were already requested once (L. 241/1990 art. 2 c.7)")]
    AlreadySuspendedOnce,
    #[error("the case is not waiting for documents")]
    NotSuspended,
    #[error("the case has not been answered")]
    NotAnswered,
    #[error("the case has already been answered")]
    AlreadyAnswered,
    #[error("the case already belongs to comune {0}")]
    SameComune(String),
    #[error("the outcome 'ritirata dal cittadino' comes only from a withdrawal")]
    WithdrawalOutcome,
    #[error("the case is not closed")]
    NotClosed,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("the term must be between 1 and 180 days, got {0}")]
    TermOutOfRange(u32),
    #[error("the case is already under a legal hold")]
    AlreadyHeld,
    #[error("the case is not under a legal hold")]
    NotHeld,
}

impl DomainError for CaseError {
    fn kind(&self) -> RefusalKind {
        match self {
            CaseError::NotFound => RefusalKind::NotFound,
            CaseError::Empty(_) | CaseError::TermOutOfRange(_) | CaseError::WithdrawalOutcome => {
                RefusalKind::Invalid
            }
            _ => RefusalKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CaseError::AlreadyOpened => "case_already_opened",
            CaseError::NotFound => "case_not_found",
            CaseError::Closed => "case_closed",
            CaseError::Withdrawn => "case_withdrawn",
            CaseError::NotTakenInCharge => "case_not_taken_in_charge",
            CaseError::AlreadyInCharge(_) => "case_already_in_charge",
            CaseError::Suspended => "case_suspended",
            CaseError::AlreadySuspendedOnce => "case_already_suspended_once",
            CaseError::NotSuspended => "case_not_suspended",
            CaseError::NotAnswered => "case_not_answered",
            CaseError::AlreadyAnswered => "case_already_answered",
            CaseError::SameComune(_) => "case_same_comune",
            CaseError::WithdrawalOutcome => "case_withdrawal_outcome",
            CaseError::NotClosed => "case_not_closed",
            CaseError::Empty(_) => "case_field_empty",
            CaseError::TermOutOfRange(_) => "case_term_out_of_range",
            CaseError::AlreadyHeld => "case_already_held",
            CaseError::NotHeld => "case_not_held",
        }
    }

    fn message_it(&self) -> String {
        match self {
            CaseError::AlreadyOpened => "La pratica esiste già.".into(),
            CaseError::NotFound => "La pratica non esiste.".into(),
            CaseError::Closed => "La pratica è chiusa.".into(),
            CaseError::Withdrawn => "La pratica è stata ritirata dal cittadino.".into(),
            CaseError::NotTakenInCharge => "La pratica non è ancora stata presa in carico.".into(),
            CaseError::AlreadyInCharge(office) => format!("La pratica è già in carico all'ufficio {office}."),
            CaseError::Suspended => "La pratica è sospesa in attesa di documenti.".into(),
            CaseError::AlreadySuspendedOnce => {
                "I documenti sono già stati richiesti una volta: la sospensione è ammessa una sola volta (L. 241/1990, art. 2 c. 7).".into()
            }
            CaseError::NotSuspended => "La pratica non è in attesa di documenti.".into(),
            CaseError::NotAnswered => "La pratica non ha ancora una risposta.".into(),
            CaseError::AlreadyAnswered => "La pratica ha già una risposta.".into(),
            CaseError::SameComune(c) => format!("La pratica appartiene già al comune {c}."),
            CaseError::WithdrawalOutcome => {
                "L'esito «ritirata dal cittadino» deriva solo dal ritiro da parte del cittadino.".into()
            }
            CaseError::NotClosed => "La pratica non è chiusa.".into(),
            CaseError::Empty(field) => format!("Il campo «{field}» è obbligatorio."),
            CaseError::TermOutOfRange(d) => {
                format!("Il termine deve essere tra 1 e 180 giorni (indicati {d}).")
            }
            CaseError::AlreadyHeld => {
                "La pratica è già sottoposta a vincolo di conservazione (blocco legale).".into()
            }
            CaseError::NotHeld => {
                "La pratica non è sottoposta a vincolo di conservazione (blocco legale).".into()
            }
        }
    }
}

/// The state of a case, as its events leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub status: CaseStatus,
    pub code: String,
    /// The comune that owns the case now (the receiving one after a transfer).
    pub comune: String,
    pub office: Option<String>,
    pub operator: Option<String>,
    pub due_on: Option<NaiveDate>,
    pub suspended_once: bool,
    pub outcome: Option<Outcome>,
    pub withdrawn: bool,
    pub kind: Option<CaseKind>,
    pub received_at: Option<DateTime<Utc>>,
    pub term_days: u32,
    /// When documents were requested, while the case waits for them.
    pub suspended_at: Option<DateTime<Utc>>,
    pub citizen_subject: Option<Uuid>,
    /// The causes whose notice is settled: sent, or skipped for good. A notice given up is not
    /// settled, so a job queued again can still send it.
    pub notices: std::collections::BTreeSet<Uuid>,
    /// The office reminders settled, by threshold and the due date they were about.
    pub reminders: std::collections::BTreeSet<(ReminderThreshold, NaiveDate)>,
    /// The reason of the legal hold in force, if any.
    pub legal_hold: Option<String>,
    /// The status before a suspension, to return to when documents arrive.
    resume_to: CaseStatus,
}

impl Default for Case {
    fn default() -> Self {
        Self {
            status: CaseStatus::New,
            code: String::new(),
            comune: String::new(),
            office: None,
            operator: None,
            due_on: None,
            suspended_once: false,
            outcome: None,
            withdrawn: false,
            kind: None,
            received_at: None,
            term_days: 0,
            suspended_at: None,
            citizen_subject: None,
            notices: Default::default(),
            reminders: Default::default(),
            legal_hold: None,
            resume_to: CaseStatus::TakenInCharge,
        }
    }
}

impl Case {
    /// Where the case stands, as the shared state machine sees it.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            status: self.status,
            resume_to: self.resume_to,
            in_charge: self.office.is_some(),
            withdrawn: self.withdrawn,
        }
    }

    /// Refuses anything on a case that is closed, withdrawn or not yet opened.
    fn ensure_open(&self) -> Result<(), CaseError> {
        match self.status {
            CaseStatus::New => Err(CaseError::NotFound),
            CaseStatus::Closed if self.withdrawn => Err(CaseError::Withdrawn),
            CaseStatus::Closed => Err(CaseError::Closed),
            _ => Ok(()),
        }
    }

    /// Work on the case needs an office in charge and no pending suspension.
    fn ensure_workable(&self) -> Result<(), CaseError> {
        self.ensure_open()?;
        match self.status {
            CaseStatus::Received => Err(CaseError::NotTakenInCharge),
            CaseStatus::Suspended => Err(CaseError::Suspended),
            _ => Ok(()),
        }
    }
}

fn not_empty(value: &str, field: &'static str) -> Result<(), CaseError> {
    if value.trim().is_empty() {
        Err(CaseError::Empty(field))
    } else {
        Ok(())
    }
}

impl Aggregate for Case {
    type Command = CaseCommand;
    type Event = CaseEvent;
    type Error = CaseError;
    const CATEGORY: &'static str = "case";

    fn decide(&self, command: &CaseCommand) -> Result<Vec<CaseEvent>, CaseError> {
        use CaseCommand as C;
        use CaseEvent as E;
        let event = match command {
            C::Open(open) => {
                if self.status != CaseStatus::New {
                    return Err(CaseError::AlreadyOpened);
                }
                not_empty(&open.code, "codice")?;
                not_empty(&open.comune, "comune")?;
                if !(1..=180).contains(&open.term_days) {
                    return Err(CaseError::TermOutOfRange(open.term_days));
                }
                E::CaseOpened {
                    code: open.code.clone(),
                    comune: open.comune.clone(),
                    kind: open.kind,
                    channel: open.channel,
                    service: open.service.clone(),
                    subject: open.subject.clone(),
                    description: open.description.clone(),
                    citizen: open.citizen.clone(),
                    received_at: open.received_at,
                    term_days: open.term_days,
                    due_on: open.due_on,
                    access_key_hash: open.access_key_hash.clone(),
                }
            }
            C::TakeInCharge {
                office,
                at,
                expected_by,
            } => {
                self.ensure_open()?;
                not_empty(office, "ufficio")?;
                if self.status != CaseStatus::Received {
                    return Err(CaseError::AlreadyInCharge(
                        self.office.clone().unwrap_or_default(),
                    ));
                }
                E::CaseTakenInCharge {
                    office: office.clone(),
                    at: *at,
                    expected_by: *expected_by,
                }
            }
            C::Assign { operator } => {
                self.ensure_workable()?;
                not_empty(operator, "operatore")?;
                if self.status == CaseStatus::Answered {
                    return Err(CaseError::AlreadyAnswered);
                }
                E::CaseAssigned {
                    operator: operator.clone(),
                }
            }
            C::Transfer {
                to_comune,
                reason,
                at,
            } => {
                self.ensure_open()?;
                not_empty(reason, "motivo")?;
                if *to_comune == self.comune {
                    return Err(CaseError::SameComune(self.comune.clone()));
                }
                E::CaseTransferred {
                    from_comune: self.comune.clone(),
                    to_comune: to_comune.clone(),
                    reason: reason.clone(),
                    at: *at,
                }
            }
            C::RequestDocuments { documents, at } => {
                self.ensure_workable()?;
                if self.suspended_once {
                    return Err(CaseError::AlreadySuspendedOnce);
                }
                if documents.is_empty() || documents.iter().any(|d| d.trim().is_empty()) {
                    return Err(CaseError::Empty("documenti"));
                }
                E::DocumentsRequested {
                    documents: documents.clone(),
                    at: *at,
                }
            }
            C::ReceiveDocuments {
                at,
                suspended_days,
                due_on,
                documents,
            } => {
                self.ensure_open()?;
                if self.status != CaseStatus::Suspended {
                    return Err(CaseError::NotSuspended);
                }
                E::DocumentsReceived {
                    at: *at,
                    suspended_days: *suspended_days,
                    due_on: *due_on,
                    documents: documents.clone(),
                }
            }
            C::Answer { text, at } => {
                self.ensure_workable()?;
                if self.status == CaseStatus::Answered {
                    return Err(CaseError::AlreadyAnswered);
                }
                not_empty(text, "risposta")?;
                E::CaseAnswered {
                    text: text.clone(),
                    at: *at,
                }
            }
            C::Close { outcome, at } => {
                self.ensure_open()?;
                match outcome {
                    Outcome::RitirataDalCittadino => return Err(CaseError::WithdrawalOutcome),
                    // Nothing to answer: a duplicate or a case for another administration.
                    Outcome::Duplicata | Outcome::NonDiCompetenza => {}
                    Outcome::Accolta | Outcome::Respinta => {
                        if self.status != CaseStatus::Answered {
                            return Err(CaseError::NotAnswered);
                        }
                    }
                }
                E::CaseClosed {
                    outcome: *outcome,
                    at: *at,
                }
            }
            C::Reopen { reason, at } => {
                if self.status != CaseStatus::Closed {
                    return Err(if self.status == CaseStatus::New {
                        CaseError::NotFound
                    } else {
                        CaseError::NotClosed
                    });
                }
                if self.withdrawn {
                    return Err(CaseError::Withdrawn);
                }
                not_empty(reason, "motivo")?;
                E::CaseReopened {
                    reason: reason.clone(),
                    at: *at,
                }
            }
            C::Withdraw { at } => {
                self.ensure_open()?;
                E::CaseWithdrawn { at: *at }
            }
            // A notice may follow a case after it closed (the answer's notice often does).
            C::RecordNotice {
                kind,
                channel,
                outcome,
                cause,
                at,
            } => {
                if self.status == CaseStatus::New {
                    return Err(CaseError::NotFound);
                }
                if self.notices.contains(cause) {
                    return Ok(vec![]);
                }
                E::NoticeSent {
                    kind: *kind,
                    channel: *channel,
                    outcome: *outcome,
                    cause: *cause,
                    at: *at,
                }
            }
            C::RecordReminder {
                threshold,
                due_on,
                office,
                outcome,
                at,
            } => {
                if self.status == CaseStatus::New {
                    return Err(CaseError::NotFound);
                }
                if self.reminders.contains(&(*threshold, *due_on)) {
                    return Ok(vec![]);
                }
                E::OfficeReminded {
                    threshold: *threshold,
                    due_on: *due_on,
                    office: office.clone(),
                    outcome: *outcome,
                    at: *at,
                }
            }
            // A hold matters most on a closed case: retention would otherwise erase it.
            C::PlaceLegalHold { reason, at } => {
                if self.status == CaseStatus::New {
                    return Err(CaseError::NotFound);
                }
                not_empty(reason, "motivo")?;
                if self.legal_hold.is_some() {
                    return Err(CaseError::AlreadyHeld);
                }
                E::LegalHoldPlaced {
                    reason: reason.trim().to_owned(),
                    at: *at,
                }
            }
            C::ReleaseLegalHold { reason, at } => {
                if self.status == CaseStatus::New {
                    return Err(CaseError::NotFound);
                }
                not_empty(reason, "motivo")?;
                if self.legal_hold.is_none() {
                    return Err(CaseError::NotHeld);
                }
                E::LegalHoldReleased {
                    reason: reason.trim().to_owned(),
                    at: *at,
                }
            }
        };
        Ok(vec![event])
    }

    fn evolve(mut self, event: &CaseEvent) -> Self {
        let lifecycle = self.lifecycle().evolve(event);
        self.status = lifecycle.status;
        self.resume_to = lifecycle.resume_to;
        self.withdrawn = lifecycle.withdrawn;
        match event {
            CaseEvent::CaseOpened {
                code,
                comune,
                due_on,
                kind,
                received_at,
                term_days,
                citizen,
                ..
            } => {
                self.code = code.clone();
                self.comune = comune.clone();
                self.due_on = Some(*due_on);
                self.kind = Some(*kind);
                self.received_at = Some(*received_at);
                self.term_days = *term_days;
                self.citizen_subject = citizen.as_ref().map(|c| c.subject_id);
            }
            CaseEvent::CaseTakenInCharge { office, .. } => self.office = Some(office.clone()),
            CaseEvent::CaseAssigned { operator } => self.operator = Some(operator.clone()),
            CaseEvent::CaseTransferred { to_comune, .. } => {
                self.suspended_at = None;
                self.comune = to_comune.clone();
                self.office = None;
                self.operator = None;
            }
            CaseEvent::DocumentsRequested { at, .. } => {
                self.suspended_at = Some(*at);
                self.suspended_once = true;
            }
            CaseEvent::DocumentsReceived { due_on, .. } => {
                self.suspended_at = None;
                self.due_on = Some(*due_on);
            }
            CaseEvent::CaseAnswered { .. } => {}
            CaseEvent::CaseClosed { outcome, .. } => self.outcome = Some(*outcome),
            CaseEvent::CaseReopened { .. } => self.outcome = None,
            CaseEvent::CaseWithdrawn { .. } => self.outcome = Some(Outcome::RitirataDalCittadino),
            CaseEvent::NoticeSent { cause, outcome, .. } => {
                if *outcome != NoticeOutcome::GivenUp {
                    self.notices.insert(*cause);
                }
            }
            CaseEvent::OfficeReminded {
                threshold,
                due_on,
                outcome,
                ..
            } => {
                if *outcome != NoticeOutcome::GivenUp {
                    self.reminders.insert((*threshold, *due_on));
                }
            }
            CaseEvent::LegalHoldPlaced { reason, .. } => self.legal_hold = Some(reason.clone()),
            CaseEvent::LegalHoldReleased { .. } => self.legal_hold = None,
        }
        self
    }

    fn event_type(event: &CaseEvent) -> &'static str {
        match event {
            CaseEvent::CaseOpened { .. } => "CaseOpened",
            CaseEvent::CaseTakenInCharge { .. } => "CaseTakenInCharge",
            CaseEvent::CaseAssigned { .. } => "CaseAssigned",
            CaseEvent::CaseTransferred { .. } => "CaseTransferred",
            CaseEvent::DocumentsRequested { .. } => "DocumentsRequested",
            CaseEvent::DocumentsReceived { .. } => "DocumentsReceived",
            CaseEvent::CaseAnswered { .. } => "CaseAnswered",
            CaseEvent::CaseClosed { .. } => "CaseClosed",
            CaseEvent::CaseReopened { .. } => "CaseReopened",
            CaseEvent::CaseWithdrawn { .. } => "CaseWithdrawn",
            CaseEvent::NoticeSent { .. } => "NoticeSent",
            CaseEvent::OfficeReminded { .. } => "OfficeReminded",
            CaseEvent::LegalHoldPlaced { .. } => "LegalHoldPlaced",
            CaseEvent::LegalHoldReleased { .. } => "LegalHoldReleased",
        }
    }
}

/// `MAS-2026-000123`: the comune's prefix, the year of receipt, a number progressive per comune
/// and year.
pub fn case_code(prefix: &str, year: i32, number: u64) -> String {
    format!("{prefix}-{year}-{number:06}")
}

#[cfg(test)]
mod tests;
