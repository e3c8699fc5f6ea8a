//! The URP domain as pure decide/evolve code over events.
//!
//! Each aggregate is a state built by folding its stream's events with `evolve`, and a `decide`
//! function that turns a command into new events or refuses it with a domain error. Both are pure
//! and synchronous: whatever they need from outside (today's date, a due date from the calendar,
//! a sealed value from the vault) is looked up first and put into the command.
//!
//! Naming: events are facts in the past tense (`CaseOpened`), commands imperatives (`OpenCase`).

pub mod case;
pub mod feedback;
mod handler;
pub mod registry;
pub mod service;
pub mod submission;

pub use handler::{CommandError, CommandHandler, Handled};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A stream's state machine.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    type Command: Send + Sync;
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + PartialEq;
    type Error: std::error::Error + Send + Sync + 'static;
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
