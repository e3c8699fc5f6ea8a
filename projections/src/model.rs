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

/// A consumer of the log at a version: names its checkpoint, its runner's lease and, for a
/// projection, its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerId {
    pub name: &'static str,
    pub version: u32,
}

impl ConsumerId {
    pub fn table(&self) -> String {
        format!("rm_{}_v{}", self.name, self.version)
    }

    /// The full-text index of its searched column ([`Projection::SEARCHED`]), on SQLite.
    pub fn search_table(&self) -> String {
        format!("{}_search", self.table())
    }

    /// Drops every table of this version: rows, counters, full-text index.
    pub(crate) fn drop_sql(&self) -> String {
        format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
            self.search_table(),
            self.table(),
            self.tallies_table()
        )
    }

    /// The table of its counters ([`Projection::TALLY_DIMENSIONS`]).
    pub fn tallies_table(&self) -> String {
        format!("{}_tallies", self.table())
    }
}

/// The WHERE clause of a read-model query: conditions written with one `?` for their value,
/// joined with AND (no condition: every row).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    clauses: Vec<String>,
    params: Vec<SqlValue>,
}

impl Filter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `clause`, whose `?` stands for `value`.
    pub fn and(&mut self, clause: &str, value: SqlValue) -> &mut Self {
        self.params.push(value);
        // `$n` on both databases (SQLite numbers `$`-parameters in order of first appearance).
        self.clauses
            .push(clause.replace('?', &format!("${}", self.params.len())));
        self
    }

    /// Adds `clause`, whose `?`s stand for `values` in order.
    pub fn and_each(&mut self, clause: &str, values: Vec<SqlValue>) -> &mut Self {
        let mut parts = clause.split('?');
        let mut sql = parts.next().unwrap_or_default().to_owned();
        for (part, value) in parts.zip(values) {
            self.params.push(value);
            sql.push_str(&format!("${}{part}", self.params.len()));
        }
        self.clauses.push(sql);
        self
    }

    /// Adds `clause` when `value` is given.
    pub fn and_some(&mut self, clause: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.and(clause, SqlValue::Text(v.to_owned()));
        }
        self
    }

    /// Adds `column = ?` for each column whose value is given.
    pub fn equal(&mut self, pairs: &[(&str, &Option<String>)]) -> &mut Self {
        for (column, value) in pairs {
            self.and_some(&format!("{column} = ?"), value.as_deref());
        }
        self
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    pub fn params(&self) -> &[SqlValue] {
        &self.params
    }
}

/// Refuses a grouping by a dimension the statistic does not have.
pub(crate) fn check_dimensions(
    group_by: &[String],
    allowed: &[&str],
) -> Result<(), crate::ViewsError> {
    match group_by.iter().find(|d| !allowed.contains(&d.as_str())) {
        None => Ok(()),
        Some(bad) => Err(crate::ViewsError::Invalid {
            field: "group_by",
            message: format!(
                "Non si può raggruppare per «{bad}»: dimensioni possibili {}.",
                allowed.join(", ")
            ),
        }),
    }
}

/// A read model: rows keyed by id, each folded from the events that concern it.
pub trait Projection: Send + Sync + 'static {
    type Row: Clone + Send + Sync + 'static;
    /// Stable name, e.g. `inbox`.
    const NAME: &'static str;
    /// Bumped when the columns or the meaning of the rows change: a new version is built beside
    /// the old one.
    const VERSION: u32;
    /// True when it unseals personal data in `prepare` (its views need the vault).
    const UNSEALS: bool = false;

    fn columns() -> &'static [Column];
    /// The events it reads.
    fn filter() -> ReadAll;
    /// What the fold needs of an event, read from its payload once.
    type Event: Send + 'static;
    /// The row `event` concerns and what the fold needs of it; `None` when it concerns none (or
    /// cannot be read). Runs ahead of the batch's transaction, off the database's thread.
    fn decode(event: &RecordedEvent) -> Option<(String, Self::Event)>;
    /// The row `key` after the event (pure).
    fn apply(row: Option<Self::Row>, key: &str, decoded: Self::Event) -> Option<Self::Row>;
    /// [`Projection::apply`] of one event as it comes from the log, unchanged when the event
    /// concerns no row (a fold in memory, as the open data's and the tests' are).
    fn apply_event(row: Option<Self::Row>, event: &RecordedEvent) -> Option<Self::Row> {
        match Self::decode(event) {
            Some((key, decoded)) => Self::apply(row, &key, decoded),
            None => row,
        }
    }
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

    /// Dimensions of counters kept beside the rows (none by default): a statistic over every row
    /// then reads a few counters instead of the rows.
    const TALLY_DIMENSIONS: &'static [&'static str] = &[];

    /// The counters a row counts in, one value per dimension each. Kept in the same transaction
    /// as the rows: a row's change takes its old counts off and adds its new ones.
    fn tallies(_row: &Self::Row) -> Vec<Vec<String>> {
        Vec::new()
    }

    /// A text column searched by words ([`crate::search`]), its values [`crate::search::normalize`]d:
    /// it gets a full-text index.
    const SEARCHED: Option<&'static str> = None;

    /// Indexes beyond the single-column ones of `indexed` columns.
    fn indexes() -> &'static [IndexDef] {
        &[]
    }

    fn id() -> ConsumerId {
        ConsumerId {
            name: Self::NAME,
            version: Self::VERSION,
        }
    }

    fn table() -> String {
        Self::id().table()
    }

    fn tallies_table() -> String {
        Self::id().tallies_table()
    }
}
