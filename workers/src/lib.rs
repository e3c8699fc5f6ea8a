//! The background side of sportello: what must happen after an event is stored.
//!
//! - [`reactor`]: a checkpointed consumer of the log, run by the projections' runner, that turns
//!   events into jobs (a receipt for every case opened, a notice when it is taken in charge, when
//!   documents are asked for, when it is answered).
//! - [`queue`]: the job queues on apalis (SQLite in a file of its own, or Redis); [`liveness`]:
//!   which workers of the SQLite queue are alive, told by lock files rather than heartbeats.
//! - [`notices`]: the job that writes to the citizen and records it on the case.
//! - [`mail`]: SMTP through lettre, or `.eml` files in an outbox.
//! - [`schedule`]: apalis-cron ticks, jobs keyed by their period, missed periods caught up, each
//!   period recorded in the log once done; [`reminders`], [`retention`] and [`publication`] are
//!   the scheduled jobs, [`clock`] the time they read.
//! - [`run`]: the workers of one process, started and stopped together.
//!
//! The engine knows nothing of this crate: it only reads the log and acts through the
//! application service, like any other client.

pub mod clock;
pub mod liveness;
pub mod mail;
pub mod notices;
pub mod publication;
pub mod queue;
pub mod reactor;
pub mod reminders;
pub mod retention;
pub mod run;
pub mod schedule;
