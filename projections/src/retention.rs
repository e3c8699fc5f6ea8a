//! What the retention job needs to know: for every case, the data subject its texts are sealed
//! under, its kind, the day it closed (none while open) and whether it is under a legal hold;
//! and, in rows of their own keyed by the subject, the subjects already erased.
//!
//! The job erases a subject once every case of theirs has closed, none is held, and each one's
//! retention (per kind, in config) has run out. It checks each candidate against the log before
//! erasing: this model only finds them.

use crate::model::{Column, Filter, IndexDef, Projection, SqlType, SqlValue, name_of};
use crate::views::{Views, ViewsError};
use chrono::{Days, NaiveDate};
use chrono_tz::Europe::Rome;
use sportello_engine::domain::case::CaseEvent;
use sportello_engine::{ReadAll, RecordedEvent};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRow {
    /// The case's id, or for an erasure the subject's.
    pub id: String,
    pub subject: String,
    /// The case's kind (`reclamo`…); empty on an erasure's row.
    pub kind: String,
    /// The day (Europe/Rome) the case closed or was withdrawn; none while it is open.
    pub closed_on: Option<String>,
    pub held: bool,
    /// A row that records the subject's erasure.
    pub erased: bool,
}

const fn col(name: &'static str, sql_type: SqlType, indexed: bool) -> Column {
    Column {
        name,
        sql_type,
        indexed,
    }
}

const COLUMNS: &[Column] = &[
    col("id", SqlType::Text, false),
    col("subject", SqlType::Text, true),
    col("kind", SqlType::Text, false),
    col("closed_on", SqlType::Text, false),
    col("held", SqlType::Integer, false),
    col("erased", SqlType::Integer, false),
];

const INDEXES: &[IndexDef] = &[IndexDef {
    name: "closed_unheld",
    columns: "subject, closed_on",
    partial: Some("held = 0 AND erased = 0 AND closed_on IS NOT NULL"),
}];

pub struct Retention;

impl Projection for Retention {
    type Row = RetentionRow;
    const NAME: &'static str = "retention";
    const VERSION: u32 = 1;

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn indexes() -> &'static [IndexDef] {
        INDEXES
    }

    fn filter() -> ReadAll {
        ReadAll {
            categories: vec!["case".into(), "subject".into()],
            event_types: [
                "CaseOpened",
                "CaseClosed",
                "CaseWithdrawn",
                "CaseReopened",
                "LegalHoldPlaced",
                "LegalHoldReleased",
                "SubjectErased",
            ]
            .map(String::from)
            .to_vec(),
            ..ReadAll::default()
        }
    }

    /// The case's event; `None` for a subject's erasure.
    type Event = Option<CaseEvent>;

    fn decode(event: &RecordedEvent) -> Option<(String, Option<CaseEvent>)> {
        let key = event.stream.id().to_owned();
        if event.event_type == "SubjectErased" {
            return Some((key, None));
        }
        Some((key, Some(event.decode::<CaseEvent>().ok()?)))
    }

    fn apply(
        row: Option<RetentionRow>,
        key: &str,
        case_event: Option<CaseEvent>,
    ) -> Option<RetentionRow> {
        let Some(case_event) = case_event else {
            return Some(RetentionRow {
                id: key.to_owned(),
                subject: key.to_owned(),
                kind: String::new(),
                closed_on: None,
                held: false,
                erased: true,
            });
        };
        let day = |at: chrono::DateTime<chrono::Utc>| at.with_timezone(&Rome).date_naive();
        match case_event {
            CaseEvent::CaseOpened { kind, subject, .. } => Some(RetentionRow {
                id: key.to_owned(),
                subject: subject.subject.to_string(),
                kind: name_of(&kind),
                closed_on: None,
                held: false,
                erased: false,
            }),
            CaseEvent::CaseClosed { at, .. } | CaseEvent::CaseWithdrawn { at } => {
                Some(RetentionRow {
                    closed_on: Some(day(at).to_string()),
                    ..row?
                })
            }
            CaseEvent::CaseReopened { .. } => Some(RetentionRow {
                closed_on: None,
                ..row?
            }),
            CaseEvent::LegalHoldPlaced { .. } => Some(RetentionRow { held: true, ..row? }),
            CaseEvent::LegalHoldReleased { .. } => Some(RetentionRow {
                held: false,
                ..row?
            }),
            _ => row,
        }
    }

    fn to_values(r: &RetentionRow) -> Vec<SqlValue> {
        vec![
            SqlValue::Text(r.id.clone()),
            SqlValue::Text(r.subject.clone()),
            SqlValue::Text(r.kind.clone()),
            SqlValue::text(r.closed_on.clone()),
            SqlValue::Int(r.held.into()),
            SqlValue::Int(r.erased.into()),
        ]
    }

    fn from_values(values: Vec<SqlValue>) -> Option<RetentionRow> {
        let text = |i: usize| values.get(i).and_then(|v| v.as_text()).map(str::to_owned);
        let flag = |i: usize| values.get(i).and_then(SqlValue::as_int) == Some(1);
        Some(RetentionRow {
            id: text(0)?,
            subject: text(1)?,
            kind: text(2)?,
            closed_on: text(3),
            held: flag(4),
            erased: flag(5),
        })
    }
}

/// Up to `limit` subjects after `after` (in id order) with a closed, unheld case whose retention
/// ended by `today`, not erased yet. `days(kind)` is the retention of a kind; a kind it does not
/// know is never erased. The caller checks the subject's other cases.
pub async fn candidates(
    views: &Views,
    days: impl Fn(&str) -> Option<u64>,
    today: NaiveDate,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<String>, ViewsError> {
    let mut ended = Vec::new();
    let mut values = Vec::new();
    for kind in sportello_engine::domain::case::CaseKind::ALL.map(|k| name_of(&k)) {
        let Some(cutoff) = days(&kind).and_then(|d| today.checked_sub_days(Days::new(d))) else {
            continue;
        };
        ended.push("(kind = ? AND closed_on <= ?)");
        values.push(SqlValue::Text(kind));
        values.push(SqlValue::Text(cutoff.to_string()));
    }
    if ended.is_empty() {
        return Ok(Vec::new());
    }
    let mut filter = Filter::new();
    filter
        .and("held = ?", SqlValue::Int(0))
        .and("erased = ?", SqlValue::Int(0))
        .and_each(&format!("({})", ended.join(" OR ")), values)
        .and_each(
            &format!(
                "subject NOT IN (SELECT subject FROM {} WHERE erased = 1)",
                Retention::table()
            ),
            vec![],
        );
    filter.and_some("subject > ?", after);
    // Several cases of one subject may fill a page: keep each subject once.
    let mut subjects: Vec<String> = views
        .select::<Retention>(&filter, "subject", limit, 0)
        .await?
        .into_iter()
        .map(|r| r.subject)
        .collect();
    subjects.dedup();
    Ok(subjects)
}

/// Every case of `subject`.
pub async fn cases_of(views: &Views, subject: &str) -> Result<Vec<RetentionRow>, ViewsError> {
    let mut filter = Filter::new();
    filter
        .and("subject = ?", SqlValue::Text(subject.to_owned()))
        .and("erased = ?", SqlValue::Int(0));
    views.select::<Retention>(&filter, "id", 10_000, 0).await
}
