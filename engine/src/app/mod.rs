//! The application service: what a citizen, an operator, the demo or a worker asks for, carried
//! out against the log. It looks up what the pure domain needs (the vault, the calendar, the
//! registers, the catalogue), checks the rules that need that outside data, runs the command
//! handler, and answers [`AppError`]: the domain refused, or the infrastructure failed.
//!
//! ## Layout
//! - [`urp`]: [`Urp`], the service itself (open a case, act on it, publish and submit forms,
//!   rate, erase).
//! - [`documents`]: files a citizen sends for a case, checked and kept sealed beside the keys.
//! - [`handler`]: load a stream, decide, append with the expected version; retry on conflict.
//! - [`register`]: gap-free progressive numbers per comune and year (case codes, submissions).
//! - [`staff`]: staff access tokens (role, comune), stored hashed in the log.
//! - [`users`]: staff accounts for the pages (username, argon2id hash of the password), in the log.
//! - [`error`]: [`AppError`] = [`Refusal`] (the caller's to fix) or [`Failure`] (ours, and maybe
//!   transient).

pub mod documents;
pub mod error;
pub mod handler;
pub mod register;
pub mod staff;
pub mod urp;
pub mod users;

pub use error::{AppError, Failure, Refusal};
pub use handler::{CommandError, CommandHandler, Handled};
pub use urp::{
    Actor, CitizenInput, NewContact, NewSubmission, OpenedCase, Submitted, Urp, hash_access_key,
};
