//! The daily retention sweep (GDPR art. 5(1)(e)): a data subject none of whose cases is open,
//! held or still within its retention (per kind of case, `[retention]` in config) is erased by
//! destroying their key, the same crypto-shredding as an erasure on request, with the reason
//! recorded in `SubjectErased`.
//!
//! The retention read model finds the candidates; each one's cases are read again from the log
//! before erasing, so a case reopened or held a moment ago stops it.

use crate::schedule::{Duties, DutyError};
use chrono::{Days, NaiveDate};
use sportello_engine::app::Actor;
use sportello_engine::domain::case::CaseStatus;
use sportello_projections::retention::{Retention, RetentionRow, candidates, cases_of};
use uuid::Uuid;

const PAGE: u64 = 500;

/// Why a subject may be erased on `day`: the case whose retention ended last, or `None` while
/// one of their cases is open, held, of a kind without a retention, or within its retention.
pub fn erasable(
    rows: &[RetentionRow],
    days: impl Fn(&str) -> Option<u64>,
    day: NaiveDate,
) -> Option<(RetentionRow, u64)> {
    let mut last: Option<(NaiveDate, RetentionRow, u64)> = None;
    for row in rows {
        let closed: NaiveDate = row.closed_on.as_deref()?.parse().ok()?;
        let keep = days(&row.kind)?;
        let ends = closed.checked_add_days(Days::new(keep))?;
        if row.held || ends > day {
            return None;
        }
        if last.as_ref().is_none_or(|(end, ..)| ends > *end) {
            last = Some((ends, row.clone(), keep));
        }
    }
    last.map(|(_, row, keep)| (row, keep))
}

/// Erases the subjects whose retention ended by `day`; returns what it did.
pub async fn sweep(duties: &Duties, day: NaiveDate) -> Result<serde_json::Value, DutyError> {
    duties.caught_up::<Retention>().await?;
    let retention = &duties.settings.retention;
    let days = |kind: &str| retention.days(kind);
    let (mut erased, mut kept) = (0u64, 0u64);
    let mut after: Option<String> = None;
    loop {
        let page = candidates(&duties.views, days, day, after.as_deref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        for subject in &page {
            let rows = cases_of(&duties.views, subject).await?;
            let Some((last_case, keep)) = erasable(&rows, days, day) else {
                kept += 1;
                continue;
            };
            if !still_closed_and_unheld(duties, &rows).await? {
                kept += 1;
                continue;
            }
            let Ok(subject_id) = subject.parse::<Uuid>() else {
                continue;
            };
            let reason = format!(
                "conservazione scaduta (GDPR art. 5 par. 1 lett. e): {} pratiche chiuse, l'ultima \
                 ({}) il {}, conservazione {keep} giorni",
                rows.len(),
                last_case.kind.replace('_', " "),
                last_case.closed_on.as_deref().unwrap_or_default()
            );
            let actor = Actor {
                name: "system:retention".into(),
                at: Some(duties.clock.now()),
                ..Actor::default()
            };
            duties
                .urp
                .erase_subject(&actor, subject_id, &reason)
                .await?;
            erased += 1;
        }
        // A page holds each subject once, so it may be short and still not the last.
    }
    if erased > 0 {
        tracing::info!(erased, %day, "retention: data subjects erased");
    }
    Ok(serde_json::json!({ "subjects_erased": erased, "subjects_kept": kept }))
}

/// The log's word on the subject's cases: every one closed and none held.
async fn still_closed_and_unheld(
    duties: &Duties,
    rows: &[RetentionRow],
) -> Result<bool, DutyError> {
    for row in rows {
        let Ok(case_id) = row.id.parse::<Uuid>() else {
            return Ok(false);
        };
        let (case, _) = duties.urp.case(case_id).await?;
        if case.status != CaseStatus::Closed || case.legal_hold.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, closed_on: Option<&str>, held: bool) -> RetentionRow {
        RetentionRow {
            id: Uuid::now_v7().to_string(),
            subject: "s".into(),
            kind: kind.into(),
            closed_on: closed_on.map(str::to_owned),
            held,
            erased: false,
        }
    }

    fn days(kind: &str) -> Option<u64> {
        match kind {
            "informazione" => Some(365),
            "reclamo" => Some(1825),
            _ => None,
        }
    }

    fn on(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_subject_is_erasable_once_every_case_has_closed_and_run_out() {
        let info = row("informazione", Some("2025-03-01"), false);
        assert!(erasable(std::slice::from_ref(&info), days, on("2026-02-28")).is_none());
        let (last, keep) = erasable(std::slice::from_ref(&info), days, on("2026-03-01")).unwrap();
        assert_eq!((last.kind.as_str(), keep), ("informazione", 365));
        // A complaint closed the same day keeps the subject for five years.
        let complaint = row("reclamo", Some("2025-03-01"), false);
        assert!(erasable(&[info.clone(), complaint.clone()], days, on("2026-03-01")).is_none());
        let (last, _) = erasable(&[info, complaint], days, on("2030-03-01")).unwrap();
        assert_eq!(last.kind, "reclamo");
    }

    #[test]
    fn an_open_held_or_unknown_case_keeps_the_subject() {
        let old = row("informazione", Some("2020-01-01"), false);
        let today = on("2026-12-02");
        assert!(
            erasable(
                &[old.clone(), row("informazione", None, false)],
                days,
                today
            )
            .is_none()
        );
        assert!(
            erasable(
                &[old.clone(), row("informazione", Some("2020-01-01"), true)],
                days,
                today
            )
            .is_none()
        );
        assert!(
            erasable(
                &[old.clone(), row("segnalazione", Some("2020-01-01"), false)],
                days,
                today
            )
            .is_none()
        );
        assert!(erasable(&[old], days, today).is_some());
    }
}
