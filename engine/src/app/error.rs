//! The two layers of what can go wrong with a request: the domain refused it ([`Refusal`], the
//! caller's to fix, with a kind, a stable code and an Italian message), or the infrastructure
//! failed ([`Failure`], ours; [`Failure::is_transient`] says whether the same request may succeed
//! later). An HTTP layer maps the first by [`RefusalKind`] and the second by transience; it never
//! reads codes.

use crate::domain::case::CaseError;
use crate::domain::feedback::FeedbackError;
use crate::domain::service::{CatalogueError, FieldError};
use crate::domain::submission::SubmissionError;
use crate::domain::{DomainError, RefusalKind};
use crate::store::{InvalidInput, StoreError, StreamId};
use crate::vault::VaultError;

use super::handler::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Failed(#[from] Failure),
}

/// The request cannot be carried out as it stands.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Case(#[from] CaseError),
    #[error(transparent)]
    Feedback(#[from] FeedbackError),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Submission(#[from] SubmissionError),
    /// One field of the request breaks a rule (too long: `Invalid`) or names something that
    /// does not exist (`NotFound`).
    #[error("{field}: {message}")]
    Field {
        kind: RefusalKind,
        field: &'static str,
        code: &'static str,
        message: String,
    },
    /// The subject was erased: nothing may be recorded for them again.
    #[error("the data subject was erased")]
    SubjectErased,
    /// A value the store cannot take (an identifier with spaces, a payload too large).
    #[error(transparent)]
    Input(#[from] InvalidInput),
    /// An id is already stored with other content: the same request key, a different request.
    #[error("the request's id is already used by a different request")]
    IdReused,
}

impl Refusal {
    /// A field whose value breaks a rule.
    pub fn field(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Refusal::Field {
            kind: RefusalKind::Invalid,
            field,
            code,
            message: message.into(),
        }
    }

    /// A field that names something that does not exist (a service, a form).
    pub fn unknown(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Refusal::Field {
            kind: RefusalKind::NotFound,
            field,
            code,
            message: message.into(),
        }
    }

    /// The fields at fault, for a form to mark (empty when the refusal is about the whole).
    pub fn fields(&self) -> Vec<FieldError> {
        match self {
            Refusal::Submission(SubmissionError::Invalid(errors)) => errors.clone(),
            Refusal::Field {
                field,
                code,
                message,
                ..
            } => vec![FieldError {
                field: (*field).to_owned(),
                code,
                message: message.clone(),
            }],
            _ => Vec::new(),
        }
    }

    /// The domain error inside, when there is one.
    fn domain(&self) -> Option<&dyn DomainError> {
        match self {
            Refusal::Case(e) => Some(e),
            Refusal::Feedback(e) => Some(e),
            Refusal::Catalogue(e) => Some(e),
            Refusal::Submission(e) => Some(e),
            _ => None,
        }
    }
}

impl DomainError for Refusal {
    fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Field { kind, .. } => *kind,
            Refusal::Input(_) => RefusalKind::Invalid,
            Refusal::SubjectErased | Refusal::IdReused => RefusalKind::Conflict,
            other => other
                .domain()
                .map_or(RefusalKind::Invalid, DomainError::kind),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Refusal::Field { code, .. } => code,
            Refusal::SubjectErased => "subject_erased",
            Refusal::Input(e) => e.code(),
            Refusal::IdReused => "request_id_reused",
            other => other.domain().map_or("refused", DomainError::code),
        }
    }

    fn message_it(&self) -> String {
        match self {
            Refusal::Field { message, .. } => message.clone(),
            Refusal::SubjectErased => "I dati personali di questa persona sono stati cancellati su sua richiesta: non possono essere registrati di nuovo con lo stesso profilo.".into(),
            Refusal::Input(_) => "La richiesta contiene un valore non accettabile (per esempio un codice con spazi o caratteri non ammessi).".into(),
            Refusal::IdReused => "Questa richiesta risulta già registrata con dati diversi.".into(),
            other => other.domain().map(DomainError::message_it).unwrap_or_default(),
        }
    }
}

/// Something of ours failed; the request may or may not have taken effect.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Vault(VaultError),
    /// Every attempt met a concurrent change of the same record.
    #[error("the stream {0} kept changing under the command")]
    Contention(StreamId),
    /// A stored event this program cannot read (newer schema, altered bytes).
    #[error("a stored event cannot be read: {0}")]
    Undecodable(String),
}

impl Failure {
    /// True when the same request, tried again later, may succeed: a database restarting or out
    /// of reach, a busy file, a full disk, a record under contention. A failure that is not
    /// transient is a bug or damage, and retrying will not mend it.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Store(e) => e.is_transient(),
            Failure::Vault(e) => matches!(e, VaultError::KeyStoreUnavailable(_)),
            Failure::Contention(_) => true,
            Failure::Undecodable(_) => false,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Failure::Store(e) => e.code(),
            Failure::Vault(VaultError::KeyStoreUnavailable(_)) => "key_store_unavailable",
            Failure::Vault(_) => "vault_failure",
            Failure::Contention(_) => "contention",
            Failure::Undecodable(_) => "stored_event_corrupt",
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(e) => Refusal::Input(e).into(),
            StoreError::DuplicateEventId { .. } => Refusal::IdReused.into(),
            StoreError::Conflict { stream, .. } => Failure::Contention(stream).into(),
            other => Failure::Store(other).into(),
        }
    }
}

impl From<InvalidInput> for AppError {
    fn from(e: InvalidInput) -> Self {
        Refusal::Input(e).into()
    }
}

impl From<VaultError> for AppError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::SubjectErased(_) => Refusal::SubjectErased.into(),
            other => Failure::Vault(other).into(),
        }
    }
}

macro_rules! refusals {
    ($($error:ty),*) => {$(
        impl From<$error> for AppError {
            fn from(e: $error) -> Self {
                AppError::Refused(e.into())
            }
        }
    )*};
}
refusals!(CaseError, FeedbackError, CatalogueError, SubmissionError);

impl<E: Into<Refusal> + DomainError> From<CommandError<E>> for AppError {
    fn from(e: CommandError<E>) -> Self {
        match e {
            CommandError::Refused(e) => AppError::Refused(e.into()),
            CommandError::TooMuchContention(stream) => Failure::Contention(stream).into(),
            CommandError::Store(e) => e.into(),
            e @ CommandError::Undecodable { .. } => Failure::Undecodable(e.to_string()).into(),
        }
    }
}

impl AppError {
    /// The refusal's code, or the failure's.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Refused(r) => r.code(),
            AppError::Failed(f) => f.code(),
        }
    }

    /// What to tell the citizen or operator, in Italian.
    pub fn message_it(&self) -> String {
        match self {
            AppError::Refused(r) => r.message_it(),
            AppError::Failed(f) if f.is_transient() => {
                "Il servizio non è momentaneamente disponibile: riprova tra qualche secondo.".into()
            }
            AppError::Failed(_) => "Si è verificato un errore interno: riprova più tardi.".into(),
        }
    }

    /// The refusal, if the domain refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            AppError::Refused(r) => Some(r),
            AppError::Failed(_) => None,
        }
    }
}
