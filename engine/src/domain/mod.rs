//! The URP domain as pure decide/evolve code over events.
//!
//! Each aggregate is a state built by folding its stream's events with `evolve`, and a `decide`
//! function that turns a command into new events or refuses it with a domain error. Both are pure
//! and synchronous: whatever they need from outside (today's date, a due date from the calendar,
//! a sealed value from the vault) is looked up first and put into the command.
//!
//! Naming: events are facts in the past tense (`CaseOpened`), commands imperatives (`OpenCase`).
//! Nothing here does I/O: loading, deciding and appending is [`crate::app`]'s work.

pub mod case;
pub mod feedback;
pub mod service;
pub mod submission;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What sort of refusal a domain error is. Callers choose how to answer from it (an HTTP status,
/// a page's wording), never from the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// What the request names does not exist.
    NotFound,
    /// The request's data break a rule: the caller must change them.
    Invalid,
    /// The thing's present state does not allow it (already closed, already rated…).
    Conflict,
    /// The one asking may not do it.
    Forbidden,
}

/// A refusal of the domain: its kind, a stable machine-readable code and an Italian message for
/// the citizen or operator who reads it.
pub trait DomainError: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> RefusalKind;
    fn code(&self) -> &'static str;
    fn message_it(&self) -> String;
}

/// A stream's state machine.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    type Command: Send + Sync;
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    type Error: DomainError;
    /// The stream category, e.g. `case`.
    const CATEGORY: &'static str;

    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    fn evolve(self, event: &Self::Event) -> Self;
    /// The event's type name as stored, e.g. `CaseOpened`.
    fn event_type(event: &Self::Event) -> &'static str;
}

/// Replays events into a state.
pub fn fold<A: Aggregate>(events: &[A::Event]) -> A {
    events.iter().fold(A::default(), |state, e| state.evolve(e))
}

/// given / when / then for aggregates: `given(&[…]).when(&command).then(&[…])`.
#[cfg(test)]
pub(crate) mod harness {
    use super::Aggregate;

    pub struct Given<A: Aggregate>(A);

    pub fn given<A: Aggregate>(events: &[A::Event]) -> Given<A> {
        Given(super::fold(events))
    }

    impl<A: Aggregate> Given<A> {
        pub fn when(self, command: &A::Command) -> When<A> {
            When(self.0.decide(command))
        }

        /// The state the events leave.
        pub fn state(self) -> A {
            self.0
        }
    }

    pub struct When<A: Aggregate>(Result<Vec<A::Event>, A::Error>);

    impl<A: Aggregate> When<A>
    where
        A::Error: PartialEq,
    {
        #[track_caller]
        pub fn then(self, expected: &[A::Event]) {
            match self.0 {
                Ok(events) => assert_eq!(events, expected),
                Err(e) => panic!("expected events, the command was refused: {e}"),
            }
        }

        #[track_caller]
        pub fn then_refused(self, expected: A::Error) {
            match self.0 {
                Ok(events) => panic!("expected a refusal, got {events:?}"),
                Err(e) => assert_eq!(e, expected),
            }
        }
    }
}
