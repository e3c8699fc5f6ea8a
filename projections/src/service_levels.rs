//! Service levels per comune × kind × month: cases opened, closed, closed within their term (with
//! suspensions), the median and 90th percentile of days to answer, and the cases now overdue.
//!
//! Read from counters the inbox keeps beside its rows ([`tallies`]), in the same transaction:
//! a query reads a few hundred counters per comune and year, never the cases (a million cases
//! cost what a thousand do). Months and days are counted in Europe/Rome.

use crate::Projection;
use crate::inbox::{Inbox, InboxRow};
use crate::model::{Filter, check_dimensions};
use crate::views::{Views, ViewsError};
use chrono::{DateTime, Datelike, NaiveDate};
use chrono_tz::Europe::Rome;
use serde::Serialize;
use std::collections::BTreeMap;

pub const DIMENSIONS: &[&str] = &["comune", "kind", "month"];

#[derive(Debug, Clone, Default)]
pub struct ServiceLevelQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub comune: Option<String>,
    pub kind: Option<String>,
    pub group_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceLevelRow {
    #[serde(flatten)]
    pub keys: BTreeMap<String, String>,
    pub opened: u64,
    pub closed: u64,
    pub closed_within_term: u64,
    pub share_within_term: Option<f64>,
    pub median_days_to_answer: Option<f64>,
    pub p90_days_to_answer: Option<f64>,
    /// Cases of the group still open past their due date on the day of the query.
    pub currently_overdue: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceLevelReport {
    pub rows: Vec<ServiceLevelRow>,
}

/// The inbox's counter dimensions: where (comune, kind, month) and what (measure, bucket).
pub(crate) const TALLY_DIMENSIONS: &[&str] = &["comune", "kind", "month", "measure", "bucket"];

// Measures: a case counts once in each that applies to it now, in the month named.
/// Received in the month.
const OPENED: &str = "opened";
/// Received in the month, still open, bucketed by due date (overdue depends on the day asked).
const OPEN_DUE: &str = "open_due";
const CLOSED: &str = "closed";
/// Closed on or before its due date.
const CLOSED_WITHIN: &str = "closed_within";
/// Answered in the month, bucketed by the days from receipt.
const ANSWER_DAYS: &str = "answer_days";

fn rome_day(at: &str) -> Option<NaiveDate> {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Rome).date_naive())
}

/// The counters an inbox row counts in.
pub(crate) fn tallies(row: &InboxRow) -> Vec<Vec<String>> {
    let Some(received) = rome_day(&row.received_at) else {
        return Vec::new();
    };
    let cell = |day: NaiveDate, measure: &str, bucket: String| {
        vec![
            row.comune.clone(),
            row.kind.clone(),
            format!("{:04}-{:02}", day.year(), day.month()),
            measure.to_owned(),
            bucket,
        ]
    };
    let mut cells = vec![cell(received, OPENED, String::new())];
    if row.is_open() {
        cells.push(cell(received, OPEN_DUE, row.due_on.clone()));
    }
    if let Some(closed) = row.closed_at.as_deref().and_then(rome_day) {
        cells.push(cell(closed, CLOSED, String::new()));
        if row
            .due_on
            .parse::<NaiveDate>()
            .is_ok_and(|due| closed <= due)
        {
            cells.push(cell(closed, CLOSED_WITHIN, String::new()));
        }
    }
    if let Some(answered) = row.answered_at.as_deref().and_then(rome_day) {
        let days = (answered - received).num_days();
        cells.push(cell(answered, ANSWER_DAYS, days.to_string()));
    }
    cells
}

#[derive(Default)]
struct Cell {
    opened: u64,
    closed: u64,
    within: u64,
    /// Days to answer → cases.
    days: BTreeMap<i64, u64>,
    overdue: u64,
}

/// Nearest-rank percentile of `n` values, given the k-th smallest (from 0).
fn percentile_of(n: u64, p: f64, nth: impl Fn(u64) -> Option<i64>) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as u64).clamp(1, n);
    nth(rank - 1).map(|v| v as f64)
}

/// Median of `n` values (the middle pair averaged), given the k-th smallest (from 0).
fn median_of(n: u64, nth: impl Fn(u64) -> Option<i64>) -> Option<f64> {
    match n {
        0 => None,
        n if n % 2 == 1 => nth(n / 2).map(|v| v as f64),
        n => Some((nth(n / 2 - 1)? + nth(n / 2)?) as f64 / 2.0),
    }
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    percentile_of(sorted.len() as u64, p, |k| sorted.get(k as usize).copied())
}

pub(crate) fn median(sorted: &[i64]) -> Option<f64> {
    median_of(sorted.len() as u64, |k| sorted.get(k as usize).copied())
}

/// The k-th smallest value (from 0) of a histogram.
fn nth_of(histogram: &BTreeMap<i64, u64>, k: u64) -> Option<i64> {
    let mut seen = 0;
    histogram.iter().find_map(|(&value, &n)| {
        seen += n;
        (k < seen).then_some(value)
    })
}

pub async fn query(
    views: &Views,
    q: &ServiceLevelQuery,
    today: NaiveDate,
) -> Result<ServiceLevelReport, ViewsError> {
    check_dimensions(&q.group_by, DIMENSIONS)?;
    let mut filter = Filter::new();
    filter
        .equal(&[("comune", &q.comune), ("kind", &q.kind)])
        .and_some("month >= ?", q.from.as_deref())
        .and_some("month <= ?", q.to.as_deref());
    let sql = format!(
        "SELECT comune, kind, month, measure, bucket, n FROM {} WHERE {}",
        Inbox::tallies_table(),
        filter.sql()
    );
    let counters = views.fetch(sql, filter.params().to_vec(), 6).await?;
    let today = today.to_string();
    let mut cells: BTreeMap<Vec<String>, Cell> = BTreeMap::new();
    for counter in &counters {
        let text = |i: usize| counter[i].as_text().unwrap_or_default();
        let n = counter[5].as_int().unwrap_or_default().max(0) as u64;
        let key = q
            .group_by
            .iter()
            .map(|d| match d.as_str() {
                "comune" => text(0),
                "kind" => text(1),
                _ => text(2),
            })
            .map(str::to_owned)
            .collect();
        let cell = cells.entry(key).or_default();
        match text(3) {
            OPENED => cell.opened += n,
            // Due dates are ISO days: text order is date order.
            OPEN_DUE if text(4) < today.as_str() => cell.overdue += n,
            CLOSED => cell.closed += n,
            CLOSED_WITHIN => cell.within += n,
            ANSWER_DAYS => {
                if let Ok(days) = text(4).parse() {
                    *cell.days.entry(days).or_default() += n;
                }
            }
            _ => {}
        }
    }
    let rows = cells
        .into_iter()
        .map(|(key, cell)| {
            let answered = cell.days.values().sum();
            let nth = |k| nth_of(&cell.days, k);
            ServiceLevelRow {
                keys: q.group_by.iter().cloned().zip(key).collect(),
                opened: cell.opened,
                closed: cell.closed,
                closed_within_term: cell.within,
                share_within_term: (cell.closed > 0)
                    .then(|| cell.within as f64 / cell.closed as f64),
                median_days_to_answer: median_of(answered, nth),
                p90_days_to_answer: percentile_of(answered, 0.9, nth),
                currently_overdue: cell.overdue,
            }
        })
        .collect();
    Ok(ServiceLevelReport { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank_and_the_median_averages_the_middle_pair() {
        let days = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(percentile(&days, 0.9), Some(9.0));
        assert_eq!(median(&days), Some(5.5));
        assert_eq!(median(&[4, 8, 30]), Some(8.0));
        assert_eq!(percentile(&[], 0.9), None);
    }

    #[test]
    fn a_histogram_gives_the_same_median_and_percentile_as_the_values_it_counts() {
        let values = [0, 2, 2, 2, 5, 7, 7, 30];
        let mut histogram = BTreeMap::new();
        for v in values {
            *histogram.entry(v).or_insert(0u64) += 1;
        }
        let nth = |k| nth_of(&histogram, k);
        assert_eq!(median_of(8, nth), median(&values));
        assert_eq!(median_of(8, nth), Some(3.5));
        assert_eq!(percentile_of(8, 0.9, nth), percentile(&values, 0.9));
        assert_eq!(percentile_of(8, 0.9, nth), Some(30.0));
        assert_eq!(nth_of(&histogram, 8), None);
    }
}
