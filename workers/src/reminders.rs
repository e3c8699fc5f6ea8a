//! The daily reminders to the offices (L. 241/1990 art. 2): for every case whose term ends within
//! `reminders.working_days` working days, or has passed, the office that has it in charge (the
//! comune's URP when none has, or when the office is not in config) gets one message listing its
//! cases; each case records the reminder (`OfficeReminded`), once per threshold and due date.
//!
//! The inbox finds the cases; each is read again from the log before it is reminded of, so a
//! case answered a moment ago is not.

use crate::mail::{Outgoing, SendError};
use crate::schedule::{Duties, DutyError};
use chrono::{Datelike, Days, NaiveDate, Weekday};
use sportello_config::IstatCode;
use sportello_engine::app::Actor;
use sportello_engine::domain::case::{
    Case, CaseCommand, CaseStatus, NoticeOutcome, ReminderThreshold,
};
use sportello_projections::inbox::{Inbox, InboxRow};
use sportello_projections::{Filter, SqlValue};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The URP of each comune: reminded of what no listed office has in charge.
pub const URP: &str = "URP";
const PAGE: u64 = 500;

/// A case to remind of.
#[derive(Debug, Clone)]
struct Due {
    case_id: Uuid,
    code: String,
    kind: String,
    due_on: NaiveDate,
    threshold: ReminderThreshold,
}

/// The last day of the window: `days` working days (Monday to Friday, no holiday) after `from`.
pub fn working_days_after(
    duties: &Duties,
    from: NaiveDate,
    days: u64,
    comune: Option<&IstatCode>,
) -> NaiveDate {
    let calendar = duties.urp.calendar();
    let mut day = from;
    let mut counted = 0;
    while counted < days {
        day = day + Days::new(1);
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        if !weekend && !calendar.is_closed(day, comune) {
            counted += 1;
        }
    }
    day
}

/// Sends the reminders of `day`; returns what it did, for the run's record.
pub async fn remind(duties: &Duties, day: NaiveDate) -> Result<serde_json::Value, DutyError> {
    duties.caught_up::<Inbox>().await?;
    let settings = &duties.settings;
    let window = settings.reminders.working_days;
    // The widest window over the comuni (their patrons differ); each case is checked with its own.
    let widest = settings
        .comuni
        .iter()
        .map(|c| working_days_after(duties, day, window, Some(&c.istat)))
        .max()
        .unwrap_or(day);
    let mut offices: BTreeMap<(String, String), Vec<Due>> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut filter = Filter::new();
        filter
            .and_each(
                "status IN (?, ?, ?)",
                ["received", "taken_in_charge", "assigned"]
                    .map(|s| SqlValue::Text(s.into()))
                    .to_vec(),
            )
            .and("due_on <= ?", SqlValue::Text(widest.to_string()))
            .and_some("id > ?", after.as_deref());
        let rows: Vec<InboxRow> = duties.views.select::<Inbox>(&filter, "id", PAGE, 0).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id.clone());
        for row in &rows {
            if let Some((office, due)) = due(duties, row, day, window).await? {
                offices
                    .entry((row.comune.clone(), office))
                    .or_default()
                    .push(due);
            }
        }
        if (rows.len() as u64) < PAGE {
            break;
        }
    }
    let (mut sent, mut given_up, mut no_address, mut cases) = (0, 0, 0, 0);
    for ((comune, office), mut dues) in offices {
        dues.sort_by_key(|d| (d.threshold == ReminderThreshold::DueSoon, d.due_on));
        cases += dues.len();
        let outcome = match address(duties, &comune, &office) {
            None => {
                tracing::warn!(%comune, %office, "no address for the office nor for the comune's URP: reminders not sent");
                no_address += 1;
                NoticeOutcome::SkippedNoAddress
            }
            Some((to, office_written)) => {
                let message = compose(duties, day, &comune, &office_written, &dues, to);
                match duties.mailer.send(&message).await {
                    Ok(()) => {
                        sent += 1;
                        NoticeOutcome::Sent
                    }
                    Err(SendError::Permanent(reason)) => {
                        tracing::warn!(%comune, office = %office_written, %reason, "reminder refused for good");
                        given_up += 1;
                        NoticeOutcome::GivenUp
                    }
                    // The job is tried again; the offices already reminded are recorded and
                    // skipped then.
                    Err(SendError::Temporary(reason)) => return Err(DutyError::Retry(reason)),
                }
            }
        };
        for due in &dues {
            record(duties, due, &office, outcome).await?;
        }
    }
    Ok(serde_json::json!({
        "cases": cases, "messages_sent": sent, "messages_given_up": given_up,
        "offices_without_address": no_address, "window_working_days": window,
    }))
}

/// The office to remind and what to remind it of, if the case calls for a reminder on `day`.
async fn due(
    duties: &Duties,
    row: &InboxRow,
    day: NaiveDate,
    window: u64,
) -> Result<Option<(String, Due)>, DutyError> {
    let Ok(case_id) = row.id.parse::<Uuid>() else {
        return Ok(None);
    };
    let (case, _) = duties.urp.case(case_id).await?;
    let open = matches!(
        case.status,
        CaseStatus::Received | CaseStatus::TakenInCharge | CaseStatus::Assigned
    );
    let Some(due_on) = case.due_on.filter(|_| open) else {
        return Ok(None);
    };
    let comune = IstatCode::parse(&case.comune).ok();
    let threshold = if due_on < day {
        ReminderThreshold::Overdue
    } else if due_on <= working_days_after(duties, day, window, comune.as_ref()) {
        ReminderThreshold::DueSoon
    } else {
        return Ok(None);
    };
    if case.reminders.contains(&(threshold, due_on)) {
        return Ok(None);
    }
    Ok(Some((
        office_of(duties, &case),
        Due {
            case_id,
            code: case.code.clone(),
            kind: row.kind.replace('_', " "),
            due_on,
            threshold,
        },
    )))
}

/// The office in charge if config lists it for the case's comune, else the comune's URP.
fn office_of(duties: &Duties, case: &Case) -> String {
    case.office
        .as_deref()
        .filter(|office| {
            duties
                .settings
                .offices
                .iter()
                .any(|o| o.comune.as_str() == case.comune && o.name.eq_ignore_ascii_case(office))
        })
        .unwrap_or(URP)
        .to_owned()
}

/// The office's address and name as config writes them, or its comune's URP's.
fn address(duties: &Duties, comune: &str, office: &str) -> Option<(String, String)> {
    let find = |name: &str| {
        duties
            .settings
            .offices
            .iter()
            .find(|o| o.comune.as_str() == comune && o.name.eq_ignore_ascii_case(name))
            .map(|o| (o.email.clone(), o.name.clone()))
    };
    find(office).or_else(|| find(URP))
}

fn it_date(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

fn compose(
    duties: &Duties,
    day: NaiveDate,
    comune: &str,
    office: &str,
    dues: &[Due],
    to: String,
) -> Outgoing {
    let comune_name = IstatCode::parse(comune)
        .ok()
        .and_then(|c| duties.settings.comune(&c).map(|c| c.name.clone()))
        .unwrap_or_else(|| comune.to_owned());
    let overdue = dues
        .iter()
        .filter(|d| d.threshold == ReminderThreshold::Overdue)
        .count();
    let mut lines = vec![format!(
        "Ufficio {office} del Comune di {comune_name}: {} pratiche richiedono attenzione al {}.",
        dues.len(),
        it_date(day)
    )];
    if overdue > 0 {
        lines.push(String::new());
        lines.push(format!("Termine scaduto ({overdue}):"));
    }
    let mut heading_soon = false;
    for d in dues {
        if d.threshold == ReminderThreshold::DueSoon && !heading_soon {
            heading_soon = true;
            lines.push(String::new());
            lines.push(format!(
                "In scadenza entro {} giorni lavorativi ({}):",
                duties.settings.reminders.working_days,
                dues.len() - overdue
            ));
        }
        let when = match d.threshold {
            ReminderThreshold::Overdue => format!(
                "scaduta il {} ({} giorni fa)",
                it_date(d.due_on),
                (day - d.due_on).num_days()
            ),
            ReminderThreshold::DueSoon if d.due_on == day => "scade oggi".to_owned(),
            ReminderThreshold::DueSoon => format!("scade il {}", it_date(d.due_on)),
        };
        lines.push(format!("  - {} ({}): {when}", d.code, d.kind));
    }
    let body = format!(
        "{}\n\nI termini sono quelli della L. 241/1990, art. 2; le pratiche sono nella casella \
         dell'ufficio.\n\nMessaggio automatico di sportello: non rispondere a questo indirizzo.\n",
        lines.join("\n")
    );
    let slug: String = office
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    Outgoing {
        to,
        subject: format!(
            "Promemoria termini: {} pratiche ({} scadute) - {office}, Comune di {comune_name}",
            dues.len(),
            overdue
        ),
        body,
        message_id: format!("<reminder.{day}.{comune}.{slug}@sportello>"),
        file_name: format!("promemoria-{day}-{comune}-{slug}.eml"),
    }
}

async fn record(
    duties: &Duties,
    due: &Due,
    office: &str,
    outcome: NoticeOutcome,
) -> Result<(), DutyError> {
    let actor = Actor {
        name: "system:reminders".into(),
        ..Actor::default()
    };
    let command = CaseCommand::RecordReminder {
        threshold: due.threshold,
        due_on: due.due_on,
        office: office.to_owned(),
        outcome,
        at: duties.clock.now(),
    };
    let command_id = Uuid::new_v5(
        &due.case_id,
        format!(
            "reminder:{}:{}:{outcome:?}",
            due.threshold.name(),
            due.due_on
        )
        .as_bytes(),
    );
    duties
        .urp
        .act(&actor, due.case_id, command_id, command)
        .await?;
    Ok(())
}
