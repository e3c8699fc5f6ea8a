//! Service levels per comune × kind × month: cases opened, closed, closed within their term (with
//! suspensions), the median and 90th percentile of days to answer, and the cases now overdue.
//!
//! Computed from the inbox rows at query time (one pass, no extra projection to keep in step);
//! months are counted in Europe/Rome.

use crate::inbox::{Inbox, InboxRow};
use crate::model::{Filter, check_dimensions};
use crate::views::{Views, ViewsError};
use chrono::{DateTime, NaiveDate, Utc};
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

fn local(at: &str) -> Option<DateTime<chrono_tz::Tz>> {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc).with_timezone(&Rome))
}

fn month_of(at: &str) -> Option<String> {
    local(at).map(|t| t.format("%Y-%m").to_string())
}

#[derive(Default)]
struct Cell {
    opened: u64,
    closed: u64,
    within: u64,
    days: Vec<i64>,
    overdue: u64,
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64)
}

pub(crate) fn median(sorted: &[i64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2] as f64),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
    }
}

pub async fn query(
    views: &Views,
    q: &ServiceLevelQuery,
    today: NaiveDate,
) -> Result<ServiceLevelReport, ViewsError> {
    check_dimensions(&q.group_by, DIMENSIONS)?;
    let mut filter = Filter::new();
    filter.equal(&[("comune", &q.comune), ("kind", &q.kind)]);
    let rows = views
        .select::<Inbox>(&filter, "id", u32::MAX as u64, 0)
        .await?;
    let in_range = |month: &str| {
        q.from.as_deref().is_none_or(|f| month >= f) && q.to.as_deref().is_none_or(|t| month <= t)
    };
    let key_of = |row: &InboxRow, month: &str| -> Vec<String> {
        q.group_by
            .iter()
            .map(|d| match d.as_str() {
                "comune" => row.comune.clone(),
                "kind" => row.kind.clone(),
                _ => month.to_owned(),
            })
            .collect()
    };
    let mut cells: BTreeMap<Vec<String>, Cell> = BTreeMap::new();
    for row in &rows {
        let Some(received) = local(&row.received_at) else {
            continue;
        };
        let opened_month = received.format("%Y-%m").to_string();
        let due = NaiveDate::parse_from_str(&row.due_on, "%Y-%m-%d").ok();
        if in_range(&opened_month) {
            let cell = cells.entry(key_of(row, &opened_month)).or_default();
            cell.opened += 1;
            let open = !matches!(row.status.as_str(), "answered" | "closed");
            if open && due.is_some_and(|d| d < today) {
                cell.overdue += 1;
            }
        }
        if let Some((closed_at, Some(month))) = row
            .closed_at
            .as_deref()
            .and_then(|c| local(c).map(|t| (t, month_of(c))))
            && in_range(&month)
        {
            let cell = cells.entry(key_of(row, &month)).or_default();
            cell.closed += 1;
            if due.is_some_and(|d| closed_at.date_naive() <= d) {
                cell.within += 1;
            }
        }
        if let Some(answered) = row.answered_at.as_deref().and_then(local) {
            let month = answered.format("%Y-%m").to_string();
            if in_range(&month) {
                let days = (answered.date_naive() - received.date_naive()).num_days();
                cells
                    .entry(key_of(row, &month))
                    .or_default()
                    .days
                    .push(days);
            }
        }
    }
    let rows = cells
        .into_iter()
        .map(|(key, mut cell)| {
            cell.days.sort_unstable();
            ServiceLevelRow {
                keys: q.group_by.iter().cloned().zip(key).collect(),
                opened: cell.opened,
                closed: cell.closed,
                closed_within_term: cell.within,
                share_within_term: (cell.closed > 0)
                    .then(|| cell.within as f64 / cell.closed as f64),
                median_days_to_answer: median(&cell.days),
                p90_days_to_answer: percentile(&cell.days, 0.9),
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
}
