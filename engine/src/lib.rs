//! The write side of sportello: the event log everything else is derived from.
//!
//! ## Layout
//! - [`store`]: the [`EventStore`] trait every backend implements, its types (stream ids, expected
//!   versions, the event envelope, filters) and errors, the shared append logic with the per-stream
//!   hash chain, and [`EventLog`], the handle the rest of the program uses to read, follow and verify
//!   the log.
//! - `store::sqlite`: the embedded default backend (one file, WAL, group commit).
//! - `store::postgres`: the backend for deployments that outgrow one machine (gap-safe global order).
//! - [`domain`]: the URP domain as pure decide/evolve aggregates (cases, services and forms,
//!   submissions, feedback) and the kinds of refusal.
//! - [`app`]: the application service that loads, decides and appends (with the command handler,
//!   the gap-free registers, staff tokens) and its two error layers, refusal and failure.
//! - [`calendar`]: the legal calendar of procedure terms (holidays, due dates).
//! - [`vault`]: sealed personal data, per-subject keys, erasure by key destruction.

pub mod app;
pub mod calendar;
pub mod domain;
pub mod store;
pub mod vault;

pub use store::{
    AppendOutcome, EventLog, EventStore, ExpectedVersion, InvalidInput, Metadata, NewEvent,
    ReadAll, RecordedEvent, StoreError, StreamId, VerifyReport,
};
