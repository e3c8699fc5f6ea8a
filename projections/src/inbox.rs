//! The URP staff's inbox: one row per case, filtered and sorted by due date.

use crate::model::{Column, Filter, IndexDef, Projection, SqlType, SqlValue, name_of};
use crate::search::Words;
use crate::service_levels;
use crate::subject_texts::SubjectTexts;
use crate::views::{SearchPlan, Views, ViewsError};
use chrono::NaiveDate;
use serde::Serialize;
use sportello_engine::domain::case::{CaseEvent, CaseStatus, Lifecycle};
use sportello_engine::store::rfc3339;
use sportello_engine::{ReadAll, RecordedEvent};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboxRow {
    pub id: String,
    pub code: String,
    /// The comune that owns the case now.
    pub comune: String,
    pub office: Option<String>,
    pub operator: Option<String>,
    pub kind: String,
    pub channel: String,
    pub service: Option<String>,
    pub status: String,
    pub received_at: String,
    pub taken_in_charge_at: Option<String>,
    pub answered_at: Option<String>,
    pub closed_at: Option<String>,
    /// Latest due date, moved by any suspension.
    pub due_on: String,
    pub outcome: Option<String>,
    /// The comune it was transferred from, if any (the last one).
    pub transferred_from: Option<String>,
    pub citizen_subject: Option<String>,
    /// The data subject the case's texts are sealed under (the citizen, or the case's own):
    /// the key into the subject search.
    pub text_subject: Option<String>,
    /// While suspended: the status the case returns to when the documents arrive.
    #[serde(skip)]
    pub resumes_to: Option<String>,
}

impl InboxRow {
    /// Not yet answered or closed: it can be late.
    pub fn is_open(&self) -> bool {
        !matches!(self.status.as_str(), "answered" | "closed")
    }

    /// The status a citizen is told ([`Lifecycle::public_name`]): `withdrawn` for a case they
    /// withdrew.
    pub fn public_status(&self) -> &'static str {
        self.lifecycle().public_name()
    }

    /// The case's place in the shared state machine, as this row keeps it.
    fn lifecycle(&self) -> Lifecycle {
        let parse = |s: Option<&str>| s.and_then(CaseStatus::parse);
        Lifecycle {
            status: parse(Some(&self.status)).unwrap_or(CaseStatus::Received),
            resume_to: parse(self.resumes_to.as_deref()).unwrap_or(CaseStatus::Received),
            in_charge: self.office.is_some(),
            withdrawn: self.outcome.as_deref() == Some(WITHDRAWN),
        }
    }
}

/// The outcome of a case the citizen withdrew.
const WITHDRAWN: &str = "ritirata_dal_cittadino";

const fn col(name: &'static str, indexed: bool) -> Column {
    Column {
        name,
        sql_type: SqlType::Text,
        indexed,
    }
}

// Filters and sorts are served by the comune-prefixed indexes below (every staff query is scoped
// to a comune); only the lookups across comuni (a citizen's code, erasure) index a column alone.
const COLUMNS: &[Column] = &[
    col("id", false),
    col("code", true),
    col("comune", false),
    col("office", false),
    col("operator", false),
    col("kind", false),
    col("channel", false),
    col("service", false),
    col("status", false),
    col("received_at", false),
    col("taken_in_charge_at", false),
    col("answered_at", false),
    col("closed_at", false),
    col("due_on", false),
    col("outcome", false),
    col("transferred_from", false),
    col("citizen_subject", true),
    col("text_subject", false),
    col("resumes_to", false),
];

/// The open cases: what the partial index below and the overdue filter share, word for word
/// (a planner uses a partial index only when the query repeats its condition).
const OPEN: &str = "status NOT IN ('answered', 'closed')";

/// The inbox's pages, sorted by due date within a comune, with or without a status, and the
/// open cases alone (for "overdue").
const INDEXES: &[IndexDef] = &[
    IndexDef {
        name: "by_text_subject",
        // The subject search's matches, counted and filtered by comune without reading rows.
        columns: "text_subject, comune, due_on, code",
        partial: None,
    },
    IndexDef {
        name: "by_comune_due",
        // With the searched texts' key: a subject search walking a comune's inbox tests each
        // case before reading its row.
        columns: "comune, due_on, code, text_subject",
        partial: None,
    },
    IndexDef {
        name: "open_by_comune_due",
        columns: "comune, due_on, code",
        partial: Some(OPEN),
    },
    IndexDef {
        name: "by_comune_status",
        columns: "comune, status, due_on, code",
        partial: None,
    },
    IndexDef {
        name: "by_comune_kind",
        columns: "comune, kind, due_on",
        partial: None,
    },
    IndexDef {
        name: "by_comune_channel",
        columns: "comune, channel, due_on",
        partial: None,
    },
    IndexDef {
        name: "by_comune_office",
        columns: "comune, office, due_on",
        partial: None,
    },
    IndexDef {
        name: "by_comune_operator",
        columns: "comune, operator, due_on",
        partial: None,
    },
    IndexDef {
        name: "by_comune_received",
        // With the sort columns and the id, a page of a date range is read from the index alone.
        columns: "comune, received_at, due_on, code, id",
        partial: None,
    },
    IndexDef {
        name: "by_comune_received_on",
        // The day received (as `RECEIVED_ON`), then the inbox's order: a range of days is read
        // day by day in due-date order and merged, so a month's second page reads two pages,
        // not the month.
        columns: "comune, substr(received_at, 1, 10), due_on, code, id",
        partial: None,
    },
];

/// The day a case was received, as the index above has it (word for word, for the planner).
const RECEIVED_ON: &str = "substr(received_at, 1, 10)";

/// The longest range of days read day by day and merged; a longer one is read as one range and
/// sorted (a compound statement has at most 500 arms on SQLite).
pub const MERGED_DAYS: i64 = 92;

/// Totals are counted up to this many rows; past it the page says "at least".
pub const COUNT_CAP: u64 = 10_000;
/// A count that needs longer than this (a combination of filters no index serves, over a large
/// comune) stops and reports what it has counted as a lower bound; after a subject search that
/// walked the inbox for its page, a quarter of this. A page that runs out needs no count.
pub const COUNT_BUDGET: std::time::Duration = std::time::Duration::from_millis(4);

pub struct Inbox;

impl Projection for Inbox {
    type Row = InboxRow;
    const NAME: &'static str = "inbox";
    /// 2: `text_subject`, for the subject search. 3: `resumes_to`, so that the status after a
    /// suspension comes from the case's own state machine. 4: the service levels' counters.
    /// 5: indexes for the subject search (`text_subject` in the comune's due-date index, and
    /// `text_subject` with the comune, the due date and the code). 6: the day received, in
    /// `by_comune_received_on`.
    const VERSION: u32 = 6;
    const TALLY_DIMENSIONS: &'static [&'static str] = service_levels::TALLY_DIMENSIONS;

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn indexes() -> &'static [IndexDef] {
        INDEXES
    }

    fn tallies(row: &InboxRow) -> Vec<Vec<String>> {
        service_levels::tallies(row)
    }

    fn filter() -> ReadAll {
        ReadAll {
            categories: vec!["case".into()],
            ..ReadAll::default()
        }
    }

    type Event = CaseEvent;

    fn decode(event: &RecordedEvent) -> Option<(String, CaseEvent)> {
        let Ok(case_event) = event.decode::<CaseEvent>() else {
            tracing::warn!(
                position = event.position,
                "inbox: undecodable case event skipped"
            );
            return None;
        };
        Some((event.stream.id().to_owned(), case_event))
    }

    fn apply(row: Option<InboxRow>, key: &str, case_event: CaseEvent) -> Option<InboxRow> {
        if let CaseEvent::CaseOpened {
            code,
            comune,
            kind,
            channel,
            service,
            citizen,
            received_at,
            due_on,
            subject,
            ..
        } = &case_event
        {
            return Some(InboxRow {
                id: key.to_owned(),
                code: code.clone(),
                comune: comune.clone(),
                office: None,
                operator: None,
                kind: name_of(kind),
                channel: name_of(channel),
                service: service.clone(),
                status: Lifecycle::default()
                    .evolve(&case_event)
                    .status
                    .name()
                    .into(),
                received_at: rfc3339(*received_at),
                taken_in_charge_at: None,
                answered_at: None,
                closed_at: None,
                due_on: due_on.to_string(),
                outcome: None,
                transferred_from: None,
                citizen_subject: citizen.as_ref().map(|c| c.subject_id.to_string()),
                text_subject: Some(subject.subject.to_string()),
                resumes_to: None,
            });
        }
        let mut row = row?;
        let lifecycle = row.lifecycle().evolve(&case_event);
        match case_event {
            CaseEvent::CaseOpened { .. }
            | CaseEvent::DocumentsRequested { .. }
            | CaseEvent::NoticeSent { .. }
            | CaseEvent::OfficeReminded { .. }
            | CaseEvent::LegalHoldPlaced { .. }
            | CaseEvent::LegalHoldReleased { .. } => {}
            CaseEvent::CaseTakenInCharge { office, at, .. } => {
                row.office = Some(office);
                row.taken_in_charge_at = Some(rfc3339(at));
            }
            CaseEvent::CaseAssigned { operator } => row.operator = Some(operator),
            CaseEvent::CaseTransferred {
                from_comune,
                to_comune,
                ..
            } => {
                row.transferred_from = Some(from_comune);
                row.comune = to_comune;
                row.office = None;
                row.operator = None;
            }
            CaseEvent::DocumentsReceived { due_on, .. } => row.due_on = due_on.to_string(),
            CaseEvent::CaseAnswered { at, .. } => row.answered_at = Some(rfc3339(at)),
            CaseEvent::CaseClosed { outcome, at } => {
                row.closed_at = Some(rfc3339(at));
                row.outcome = Some(name_of(&outcome));
            }
            CaseEvent::CaseReopened { .. } => {
                row.closed_at = None;
                row.answered_at = None;
                row.outcome = None;
            }
            CaseEvent::CaseWithdrawn { at } => {
                row.closed_at = Some(rfc3339(at));
                row.outcome = Some(WITHDRAWN.into());
            }
        }
        row.status = lifecycle.status.name().into();
        row.resumes_to = (lifecycle.status == CaseStatus::Suspended)
            .then(|| lifecycle.resume_to.name().to_owned());
        Some(row)
    }

    fn to_values(r: &InboxRow) -> Vec<SqlValue> {
        let t = |s: &String| SqlValue::Text(s.clone());
        let o = |s: &Option<String>| SqlValue::text(s.clone());
        vec![
            t(&r.id),
            t(&r.code),
            t(&r.comune),
            o(&r.office),
            o(&r.operator),
            t(&r.kind),
            t(&r.channel),
            o(&r.service),
            t(&r.status),
            t(&r.received_at),
            o(&r.taken_in_charge_at),
            o(&r.answered_at),
            o(&r.closed_at),
            t(&r.due_on),
            o(&r.outcome),
            o(&r.transferred_from),
            o(&r.citizen_subject),
            o(&r.text_subject),
            o(&r.resumes_to),
        ]
    }

    fn from_values(values: Vec<SqlValue>) -> Option<InboxRow> {
        let mut v = values.into_iter().map(|v| v.as_text().map(str::to_owned));
        let mut next = || v.next().flatten();
        Some(InboxRow {
            id: next()?,
            code: next()?,
            comune: next()?,
            office: next(),
            operator: next(),
            kind: next()?,
            channel: next()?,
            service: next(),
            status: next()?,
            received_at: next()?,
            taken_in_charge_at: next(),
            answered_at: next(),
            closed_at: next(),
            due_on: next()?,
            outcome: next(),
            transferred_from: next(),
            citizen_subject: next(),
            text_subject: next(),
            resumes_to: next(),
        })
    }
}

/// Filters of the inbox; every one is optional.
/// (due date, code) of the last case of a page: where the next one starts.
pub type Cursor = (String, String);

#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    pub comune: Option<String>,
    pub office: Option<String>,
    pub operator: Option<String>,
    pub kind: Option<String>,
    pub channel: Option<String>,
    pub service: Option<String>,
    pub status: Option<String>,
    pub code: Option<String>,
    pub transferred_from: Option<String>,
    /// Only cases still open past their due date (or only those not).
    pub overdue: Option<bool>,
    pub received_from: Option<NaiveDate>,
    /// Exclusive.
    pub received_until: Option<NaiveDate>,
    /// Words the subject has a word beginning with, in any order; case and accents do not count
    /// ([`crate::search`]). Nothing but punctuation: no filter.
    pub text: Option<String>,
    pub limit: u64,
    pub offset: u64,
    /// Keyset paging: only the cases after this one, in the inbox's order. A page far down
    /// costs what the first one does, where an offset walks every row before it.
    pub after: Option<Cursor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxEntry {
    #[serde(flatten)]
    pub row: InboxRow,
    /// Days from `today` to the due date (negative when late); none once answered or closed.
    pub days_left: Option<i64>,
    pub overdue: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxPage {
    /// Matching cases, counted up to [`COUNT_CAP`] and within [`COUNT_BUDGET`].
    pub total: u64,
    /// False when `total` is a lower bound (the count stopped at the cap or the time budget).
    pub total_exact: bool,
    pub entries: Vec<InboxEntry>,
}

/// Reads the inbox as of `today` (for days left and lateness), sorted by due date.
pub async fn query(
    views: &Views,
    q: &InboxQuery,
    today: NaiveDate,
) -> Result<InboxPage, ViewsError> {
    let mut filter = Filter::new();
    filter.equal(&[
        ("comune", &q.comune),
        ("office", &q.office),
        ("operator", &q.operator),
        ("kind", &q.kind),
        ("channel", &q.channel),
        ("service", &q.service),
        ("status", &q.status),
        ("code", &q.code),
        ("transferred_from", &q.transferred_from),
    ]);
    let today_text = SqlValue::Text(today.to_string());
    match q.overdue {
        Some(true) => filter.and(&format!("{OPEN} AND due_on < ?"), today_text),
        Some(false) => filter.and(&format!("NOT ({OPEN} AND due_on < ?)"), today_text),
        None => &mut filter,
    };
    let search = match q.text.as_deref().and_then(Words::parse) {
        Some(words) => Some(
            views
                .text_match::<SubjectTexts>(&mut filter, "text_subject", &words)
                .await?,
        ),
        None => None,
    };
    let limit = if q.limit == 0 { 50 } else { q.limit.min(1000) };
    let mut page = filter.clone();
    if let Some((due_on, code)) = &q.after {
        page.and_each(
            "(due_on, code) > (?, ?)",
            vec![SqlValue::Text(due_on.clone()), SqlValue::Text(code.clone())],
        );
    }
    let received = |filter: &mut Filter| {
        for (clause, day) in [
            ("received_at >= ?", q.received_from),
            ("received_at < ?", q.received_until),
        ] {
            if let Some(day) = day {
                filter.and(clause, SqlValue::Text(day.to_string()));
            }
        }
    };
    received(&mut filter);
    let days = match (q.received_from, q.received_until) {
        (Some(from), Some(until)) if q.comune.is_some() => from
            .iter_days()
            .take_while(|d| *d < until)
            .take(MERGED_DAYS as usize + 1)
            .map(|d| SqlValue::Text(d.to_string()))
            .collect(),
        _ => Vec::new(),
    };
    let rows = if !days.is_empty() && days.len() <= MERGED_DAYS as usize {
        views
            .select_page_merged::<Inbox>(
                &page,
                &format!("{RECEIVED_ON} = ?"),
                days,
                "due_on, code",
                limit,
                q.offset,
            )
            .await?
    } else {
        received(&mut page);
        // With a long date range, the range index is the way in and the page is sorted
        // afterwards; an expression keeps a planner from walking the due-date index instead,
        // row by row, as SQLite's sampled statistics sometimes suggest for a range.
        let order = if q.received_from.is_some() || q.received_until.is_some() {
            "due_on || '', code"
        } else {
            "due_on, code"
        };
        views
            .select_page::<Inbox>(&page, order, limit, q.offset)
            .await?
    };
    let shown = rows.len() as u64;
    let (counted, complete) = if q.after.is_none() && shown < limit && (shown > 0 || q.offset == 0)
    {
        // The page ran out: it and the pages before it are all there is.
        (q.offset + shown, true)
    } else {
        // A search that walks the inbox has spent its time on the page already.
        let budget = match search {
            Some(SearchPlan::Walk) => COUNT_BUDGET / 4,
            _ => COUNT_BUDGET,
        };
        let (counted, complete) = views.count::<Inbox>(&filter, COUNT_CAP + 1, budget).await?;
        // A count cut short may not have reached the rows the page shows.
        let at_least = if complete { 0 } else { q.offset + shown };
        (counted.max(at_least), complete)
    };
    let entries = rows
        .into_iter()
        .map(|row| {
            let due = NaiveDate::parse_from_str(&row.due_on, "%Y-%m-%d").ok();
            let days_left = due
                .filter(|_| row.is_open())
                .map(|d| (d - today).num_days());
            InboxEntry {
                overdue: days_left.is_some_and(|d| d < 0),
                days_left,
                row,
            }
        })
        .collect();
    Ok(InboxPage {
        total: counted.min(COUNT_CAP),
        total_exact: complete && counted <= COUNT_CAP,
        entries,
    })
}

/// Cases listed by when they were received, newest first: the public list of reports (Open311).
#[derive(Debug, Clone, Default)]
pub struct ReceivedQuery {
    pub comune: String,
    pub kind: String,
    /// Any of these services; every one when empty. `None` in it stands for no service.
    pub services: Vec<Option<String>>,
    /// Only the open cases (true) or only those answered or closed (false).
    pub open: Option<bool>,
    /// Received at or after.
    pub from: chrono::DateTime<chrono::Utc>,
    /// Received before.
    pub until: chrono::DateTime<chrono::Utc>,
    pub limit: u64,
}

pub async fn received(views: &Views, q: &ReceivedQuery) -> Result<Vec<InboxRow>, ViewsError> {
    let mut filter = Filter::new();
    filter
        .and("comune = ?", SqlValue::Text(q.comune.clone()))
        .and("kind = ?", SqlValue::Text(q.kind.clone()))
        .and("received_at >= ?", SqlValue::Text(rfc3339(q.from)))
        .and("received_at < ?", SqlValue::Text(rfc3339(q.until)));
    if !q.services.is_empty() {
        let named: Vec<SqlValue> = q
            .services
            .iter()
            .flatten()
            .cloned()
            .map(SqlValue::Text)
            .collect();
        let mut any = Vec::new();
        if !named.is_empty() {
            any.push(format!(
                "service IN ({})",
                vec!["?"; named.len()].join(", ")
            ));
        }
        if q.services.iter().any(Option::is_none) {
            any.push("service IS NULL".to_owned());
        }
        filter.and_each(&format!("({})", any.join(" OR ")), named);
    }
    match q.open {
        Some(true) => filter.and_each(OPEN, Vec::new()),
        Some(false) => filter.and_each(&format!("NOT ({OPEN})"), Vec::new()),
        None => &mut filter,
    };
    views
        .select_page::<Inbox>(&filter, "received_at DESC, code", q.limit, 0)
        .await
}
