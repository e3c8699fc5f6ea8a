//! What a projection is, independent of the database.

use serde::Serialize;
use sportello_engine::{ReadAll, RecordedEvent};

/// The serde name of a unit variant (`CaseKind::AccessoCivico` → `accesso_civico`): how enum
/// values are written in read models and answers.
pub fn name_of<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl SqlValue {
    pub fn text(value: Option<impl Into<String>>) -> Self {
        value.map_or(SqlValue::Null, |v| SqlValue::Text(v.into()))
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            SqlValue::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            SqlValue::Int(i) => Some(*i),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Text,
    Integer,
    Real,
}

/// A column of a read-model table; the first column of every table is its key, `id`.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub sql_type: SqlType,
    /// Filters and sorts use it: it gets an index.
    pub indexed: bool,
}

/// An index over several columns, possibly partial (only the rows `partial` selects), for the
/// queries a read model must answer fast.
#[derive(Debug, Clone, Copy)]
pub struct IndexDef {
    pub name: &'static str,
    pub columns: &'static str,
    pub partial: Option<&'static str>,
}

/// A read model: rows keyed by id, each folded from the events that concern it.
pub trait Projection: Send + Sync + 'static {
    type Row: Clone + Send + Sync + 'static;
    /// Stable name, e.g. `inbox`.
    const NAME: &'static str;
    /// Bumped when the columns or the meaning of the rows change: a new version is built beside
    /// the old one.
    const VERSION: u32;

    fn columns() -> &'static [Column];
    /// The events it reads.
    fn filter() -> ReadAll;
    /// The row an event concerns, if any.
    fn key(event: &RecordedEvent) -> Option<String>;
    /// The row after the event (pure).
    fn apply(row: Option<Self::Row>, event: &RecordedEvent) -> Option<Self::Row>;
    fn to_values(row: &Self::Row) -> Vec<SqlValue>;
    fn from_values(values: Vec<SqlValue>) -> Option<Self::Row>;

    /// Completes a batch before it is applied, with what a pure fold cannot know (the subject
    /// search unseals texts here). Most projections need nothing.
    fn prepare(
        _views: &crate::Views,
        _events: &mut [RecordedEvent],
    ) -> impl std::future::Future<Output = Result<(), crate::ViewsError>> + Send {
        async { Ok(()) }
    }

    /// True when, after this batch, deleted rows must be scrubbed from the database files (the
    /// projection held personal data that an erasure removed).
    fn scrub_after(_events: &[RecordedEvent]) -> bool {
        false
    }

    /// Indexes beyond the single-column ones of `indexed` columns.
    fn indexes() -> &'static [IndexDef] {
        &[]
    }

    fn table() -> String {
        format!("rm_{}_v{}", Self::NAME, Self::VERSION)
    }
}
