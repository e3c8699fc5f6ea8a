//! The read side: projections of the log into tables that staff queries read.
//!
//! ## Layout
//! - [`Projection`]: a read model as a pure function from (its row, an event) to its row, with
//!   the columns it keeps; the same code serves SQLite and PostgreSQL.
//! - [`Views`]: the database the read models live in (the store's own), with each projection's
//!   checkpoint kept in the same transaction as its rows, and one runner per projection at a time.
//! - [`runner`]: the [`Consumer`] of the log (a projection, or a reactor whose effect is
//!   elsewhere) and its runner: catch up from the checkpoint, then follow live appends; rebuild
//!   from zero; build as of a past point. One runner per consumer at a time, fenced.
//! - [`registry`]: the one list of read models that `serve`, `rebuild`, `query --as-of` and
//!   `/readyz` use.
//! - [`inbox`]: the URP staff's case inbox.
//! - [`satisfaction`]: ratings per comune, target, channel, month and scale, with closures for the
//!   participation rate.
//! - [`catalogue`]: the public catalogue of active services and their usable forms.
//! - [`search`]: a read model's text searched by words (FTS5 on SQLite, trigrams on PostgreSQL).
//! - [`subject_texts`]: the unsealed subjects staff search the inbox by, gone with an erasure.
//! - [`retention`]: each case's subject, kind, closing day and legal hold, for the retention job.
//! - [`opendata`]: the open-data datasets of a month, with small counts suppressed.
//! - [`service_levels`]: opened, closed, within term, days to answer, overdue, from the inbox.
//! - [`sessions`]: the staff's sessions on the pages (kept beside the read models, not in the log).

pub mod catalogue;
pub mod inbox;
mod model;
pub mod opendata;
pub mod registry;
pub mod retention;
pub mod runner;
pub mod satisfaction;
pub mod search;
pub mod service_levels;
pub mod sessions;
pub mod subject_texts;
mod views;

pub use model::{Column, ConsumerId, Filter, IndexDef, Projection, SqlType, SqlValue, name_of};
pub use registry::{Registry, read_models};
pub use runner::{Consumer, read_model};
pub use views::{LEASE, RunnerGuard, SearchPlan, Views, ViewsError, sqlite_views_path};

/// [`sqlite_views_path`] of a store file given as text.
pub fn views_path_of(store_file: &str) -> String {
    sqlite_views_path(std::path::Path::new(store_file))
        .to_string_lossy()
        .into_owned()
}
