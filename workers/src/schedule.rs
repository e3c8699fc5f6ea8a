//! The schedules: the daily reminders and retention sweep, and the monthly open-data publication.
//!
//! apalis-cron ticks in Europe/Rome at the configured times, but a tick only says "look now":
//! what runs is decided from the log. A scheduled job is keyed by its period (a day, a month), so
//! that every replica's tick, and every restart, queues the same job once; each period done is
//! recorded in the log (`schedule-<name>`, `ScheduledRunDone`), so that a period is done once;
//! and every tick, and every start, queues each period that should have run since the last one
//! recorded (a worker down over the 1st still publishes the month when it comes back).

use crate::clock::Clock;
use crate::mail::Mailer;
use crate::queue::{Job, Queue, QueueError, SCHEDULED};
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, Utc};
use chrono_tz::Europe::Rome;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sportello_config::{ScheduleSettings, Settings, TimeOfDay};
use sportello_engine::EventLog;
use sportello_engine::app::{AppError, Urp};
use sportello_engine::store::{ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};
use sportello_projections::{Views, ViewsError};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// A scheduler that finds more periods missed than this queues only the latest ones.
const MAX_CATCH_UP: usize = 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Every day: reminders to the offices of the terms running out.
    Reminders,
    /// Every day: erasure of the data subjects whose retention ended.
    Retention,
    /// The 1st of every month: the open-data publication of the month before.
    Publication,
}

impl Schedule {
    pub const ALL: [Schedule; 3] = [
        Schedule::Retention,
        Schedule::Reminders,
        Schedule::Publication,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Reminders => "reminders",
            Schedule::Retention => "retention",
            Schedule::Publication => "publication",
        }
    }

    fn monthly(self) -> bool {
        self == Schedule::Publication
    }

    pub fn time(self, settings: &ScheduleSettings) -> TimeOfDay {
        match self {
            Schedule::Reminders => settings.reminders_at,
            Schedule::Retention => settings.retention_at,
            Schedule::Publication => settings.publication_at,
        }
    }

    /// Its ticks as apalis-cron reads them (seconds first), in Europe/Rome.
    pub fn cron(self, settings: &ScheduleSettings) -> String {
        let t = self.time(settings);
        let day = if self.monthly() { "1" } else { "*" };
        format!("0 {} {} {day} * *", t.minute, t.hour)
    }

    /// The latest period whose time has come at `now`: a day runs at `at` on that day; a month
    /// runs at `at` on the 1st of the month after.
    pub fn latest_due(self, at: TimeOfDay, now: DateTime<Utc>) -> Period {
        let local = now.with_timezone(&Rome).naive_local();
        let time = NaiveTime::from_hms_opt(at.hour, at.minute, 0).expect("a checked time");
        let started = local.time() >= time;
        let today = local.date();
        if self.monthly() {
            let this_month = today.with_day(1).expect("day 1 exists");
            let back = if today.day() == 1 && !started { 2 } else { 1 };
            Period::Month(this_month - Months::new(back))
        } else if started {
            Period::Day(today)
        } else {
            Period::Day(today - Days::new(1))
        }
    }

    fn stream(self) -> StreamId {
        StreamId::new("schedule", self.name()).expect("a valid stream name")
    }
}

/// What a scheduled job covers: a day, or a month (kept as its first day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Day(NaiveDate),
    Month(NaiveDate),
}

impl Period {
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Period> {
        if text.len() == 7 {
            NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
                .ok()
                .map(Period::Month)
        } else {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .filter(|_| text.len() == 10)
                .map(Period::Day)
        }
    }

    pub fn next(self) -> Period {
        match self {
            Period::Day(d) => Period::Day(d + Days::new(1)),
            Period::Month(m) => Period::Month(m + Months::new(1)),
        }
    }

    /// The day a daily period is about (a month's first day).
    pub fn day(self) -> NaiveDate {
        match self {
            Period::Day(d) | Period::Month(d) => d,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Period::Month(m) => write!(f, "{}", m.format("%Y-%m")),
        }
    }
}

/// The periods to queue: those after `last_done` up to `latest`, oldest first (the latest
/// [`MAX_CATCH_UP`] of them); `latest` alone when nothing was ever done.
pub fn due_periods(last_done: Option<Period>, latest: Period) -> Vec<Period> {
    let Some(last) = last_done else {
        return vec![latest];
    };
    let mut periods = Vec::new();
    let mut next = last.next();
    while next <= latest {
        periods.push(next);
        next = next.next();
    }
    let skip = periods.len().saturating_sub(MAX_CATCH_UP);
    if skip > 0 {
        tracing::warn!(
            skipped = skip,
            "more periods were missed than are caught up; the oldest are not run"
        );
    }
    periods.split_off(skip)
}

/// One period of one schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledJob {
    pub schedule: Schedule,
    pub period: String,
}

impl Job for ScheduledJob {
    const QUEUE: &'static str = SCHEDULED;

    fn idempotency_key(&self) -> String {
        format!("schedule:{}:{}", self.schedule.name(), self.period)
    }

    fn describe(&self) -> (String, String) {
        (self.schedule.name().to_owned(), self.period.clone())
    }
}

impl ScheduledJob {
    /// The id of the `ScheduledRunDone` that records it: a second record is refused as a
    /// duplicate.
    fn record_id(&self) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, self.idempotency_key().as_bytes())
    }
}

/// What the log says of a period done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDone {
    pub period: String,
    /// What the run did (counts, the log position it read up to): no personal data.
    pub summary: serde_json::Value,
}

const RUN_DONE: &str = "ScheduledRunDone";

/// The periods of `schedule` done, as recorded.
pub async fn done(log: &EventLog, schedule: Schedule) -> Result<Vec<Period>, StoreError> {
    let events: Vec<_> = log.read_stream(schedule.stream(), 1).try_collect().await?;
    Ok(events
        .iter()
        .filter(|e| e.event_type == RUN_DONE)
        .filter_map(|e| e.decode::<RunDone>().ok())
        .filter_map(|r| Period::parse(&r.period))
        .collect())
}

/// Records `job` done; a second record of the same period is a no-op.
pub async fn record_done(
    log: &EventLog,
    job: &ScheduledJob,
    summary: serde_json::Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let event = NewEvent::new(
        RUN_DONE,
        &RunDone {
            period: job.period.clone(),
            summary,
        },
    )?
    .with_id(job.record_id())
    .occurred_at(at)
    .with_metadata(Metadata {
        actor: Some(format!("system:{}", job.schedule.name())),
        ..Metadata::default()
    });
    match log
        .append(job.schedule.stream(), ExpectedVersion::Any, vec![event])
        .await
    {
        Ok(_) | Err(StoreError::DuplicateEventId { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Decides which periods are due and queues them.
pub struct Scheduler {
    pub log: EventLog,
    pub queue: Queue<ScheduledJob>,
    pub settings: ScheduleSettings,
    pub clock: Clock,
    pub attempts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Scheduler {
    /// Queues, for every schedule, each period that should have run by now and is not recorded
    /// as done. Returns what it queued (a job already queued is not queued again).
    pub async fn enqueue_due(&self) -> Result<Vec<ScheduledJob>, ScheduleError> {
        let now = self.clock.now();
        let mut jobs = Vec::new();
        for schedule in Schedule::ALL {
            let latest = schedule.latest_due(schedule.time(&self.settings), now);
            let last = done(&self.log, schedule).await?.into_iter().max();
            jobs.extend(
                due_periods(last, latest)
                    .into_iter()
                    .map(|period| ScheduledJob {
                        schedule,
                        period: period.to_string(),
                    }),
            );
        }
        if !jobs.is_empty() {
            self.queue.push(jobs.clone(), self.attempts).await?;
            tracing::debug!(jobs = jobs.len(), "scheduled periods queued");
        }
        Ok(jobs)
    }
}

/// apalis-cron's ticks of one schedule, at the instants the workers' [`Clock`] reads the
/// schedule's times (the system's, unless the clock was set).
pub struct Ticks {
    cron: cron::Schedule,
    clock: Clock,
    /// Where the first tick is looked for: the instant before the start-up catch-up, not the
    /// first poll, which may come after a time that the catch-up was too early for.
    since: Option<DateTime<Utc>>,
}

impl Ticks {
    pub fn new(
        schedule: Schedule,
        settings: &ScheduleSettings,
        clock: Clock,
        since: DateTime<Utc>,
    ) -> Self {
        let cron = schedule
            .cron(settings)
            .parse()
            .expect("a cron expression built from a checked time");
        Self {
            cron,
            clock,
            since: Some(since),
        }
    }
}

impl apalis_cron::Schedule<chrono_tz::Tz> for Ticks {
    fn next_tick(&mut self, tz: &chrono_tz::Tz) -> Option<apalis_cron::Tick<chrono_tz::Tz>> {
        let now = self.clock.now();
        let from = self.since.take().map_or(now, |since| since.min(now));
        let next = self.cron.after(&from.with_timezone(tz)).next()?;
        // A tick already passed fires at once (apalis-cron refuses a tick in the past); the
        // queueing it starts is idempotent, so one the catch-up also covered costs nothing.
        let real = self.clock.real(next.with_timezone(&Utc).max(now));
        // Rounded up: a tick a moment early would find its period not yet due.
        let seconds = real.timestamp() + i64::from(real.timestamp_subsec_nanos() > 0);
        Some(apalis_cron::Tick::new(u64::try_from(seconds).ok()?))
    }
}

/// What the scheduled jobs work with.
pub struct Duties {
    pub urp: Urp,
    pub views: Views,
    pub mailer: Mailer,
    pub settings: Arc<Settings>,
    pub clock: Clock,
}

/// Why a scheduled job did not finish. Every failure is worth another try: the work done so far
/// is recorded (on the cases, in the log), so the next try does only what is left.
#[derive(Debug, thiserror::Error)]
pub enum DutyError {
    #[error("{0}")]
    Retry(String),
    /// The job cannot be done (it names no period this program knows).
    #[error("{0}")]
    GivenUp(String),
}

impl From<AppError> for DutyError {
    fn from(e: AppError) -> Self {
        DutyError::Retry(e.to_string())
    }
}

impl From<ViewsError> for DutyError {
    fn from(e: ViewsError) -> Self {
        DutyError::Retry(e.to_string())
    }
}

impl From<StoreError> for DutyError {
    fn from(e: StoreError) -> Self {
        DutyError::Retry(e.to_string())
    }
}

impl Duties {
    /// Waits (a minute at most) until `P` has read the log up to where it is now: a job must not
    /// act on a read model that has not seen the latest cases.
    pub async fn caught_up<P: sportello_projections::Projection>(&self) -> Result<(), DutyError> {
        let log = self.urp.log();
        let head = log.head().await?;
        let consumer = sportello_projections::read_model::<P>();
        let patience = std::time::Duration::from_secs(60);
        let behind = sportello_projections::runner::wait_until_reached(
            log,
            &self.views,
            &[consumer],
            head,
            patience,
        )
        .await?;
        match behind {
            Some(_) => Err(DutyError::Retry(format!(
                "the read model {} is behind the log (is a runner running?)",
                P::NAME
            ))),
            None => Ok(()),
        }
    }
}

/// How a scheduled job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Performed {
    Done(serde_json::Value),
    /// The period was recorded as done before (a second replica's job, a redelivery).
    AlreadyDone,
}

/// Does one period of one schedule, unless it is recorded as done, and records it.
pub async fn perform(duties: &Duties, job: &ScheduledJob) -> Result<Performed, DutyError> {
    let period = Period::parse(&job.period)
        .filter(|p| matches!(p, Period::Month(_)) == job.schedule.monthly())
        .ok_or_else(|| {
            DutyError::GivenUp(format!(
                "'{}' is not a period of the {} schedule",
                job.period,
                job.schedule.name()
            ))
        })?;
    let log = duties.urp.log();
    if done(log, job.schedule).await?.contains(&period) {
        return Ok(Performed::AlreadyDone);
    }
    let summary = match job.schedule {
        Schedule::Reminders => crate::reminders::remind(duties, period.day()).await?,
        Schedule::Retention => crate::retention::sweep(duties, period.day()).await?,
        Schedule::Publication => crate::publication::publish(duties, period).await?,
    };
    record_done(log, job, summary.clone(), duties.clock.now()).await?;
    tracing::info!(schedule = job.schedule.name(), period = %job.period, %summary, "scheduled job done");
    Ok(Performed::Done(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rome(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(hour: u32, minute: u32) -> TimeOfDay {
        TimeOfDay { hour, minute }
    }

    fn day(text: &str) -> Period {
        Period::parse(text).unwrap()
    }

    #[test]
    fn a_daily_job_is_due_from_its_time_in_rome() {
        let seven = at(7, 0);
        let r = Schedule::Reminders;
        // 06:59 in Rome is still yesterday's period; 07:00 today's.
        assert_eq!(
            r.latest_due(seven, rome("2026-12-02T06:59:00+01:00")),
            day("2026-12-01")
        );
        assert_eq!(
            r.latest_due(seven, rome("2026-12-02T07:00:00+01:00")),
            day("2026-12-02")
        );
        // Summer time: 07:00 in Rome is 05:00 UTC.
        assert_eq!(
            r.latest_due(seven, rome("2026-07-10T05:00:00Z")),
            day("2026-07-10")
        );
    }

    #[test]
    fn the_publication_is_due_on_the_first_at_two_for_the_month_before() {
        let two = at(2, 0);
        let p = Schedule::Publication;
        assert_eq!(
            p.latest_due(two, rome("2026-04-01T01:59:59+02:00")),
            day("2026-02")
        );
        assert_eq!(
            p.latest_due(two, rome("2026-04-01T02:00:00+02:00")),
            day("2026-03")
        );
        assert_eq!(
            p.latest_due(two, rome("2026-04-30T23:00:00+02:00")),
            day("2026-03")
        );
        // January's run publishes December of the year before.
        assert_eq!(
            p.latest_due(two, rome("2027-01-01T03:00:00+01:00")),
            day("2026-12")
        );
        assert_eq!(p.cron(&ScheduleSettings::default()), "0 0 2 1 * *");
        assert_eq!(
            Schedule::Retention.cron(&ScheduleSettings::default()),
            "0 30 3 * * *"
        );
    }

    #[test]
    fn missed_periods_are_caught_up_in_order_and_done_ones_are_not_again() {
        assert_eq!(
            due_periods(Some(day("2026-01")), day("2026-04")),
            vec![day("2026-02"), day("2026-03"), day("2026-04")]
        );
        assert_eq!(
            due_periods(Some(day("2026-12-30")), day("2027-01-01")),
            vec![day("2026-12-31"), day("2027-01-01")]
        );
        assert!(due_periods(Some(day("2026-04")), day("2026-04")).is_empty());
        // Nothing on record: only the latest, not every month since the epoch.
        assert_eq!(due_periods(None, day("2026-04")), vec![day("2026-04")]);
        let long = due_periods(Some(day("2025-01-01")), day("2026-01-01"));
        assert_eq!(long.len(), MAX_CATCH_UP);
        assert_eq!(long.last(), Some(&day("2026-01-01")));
    }

    #[test]
    fn a_period_keys_its_job_and_its_record() {
        let job = |period: &str| ScheduledJob {
            schedule: Schedule::Publication,
            period: period.into(),
        };
        assert_eq!(
            job("2026-03").idempotency_key(),
            "schedule:publication:2026-03"
        );
        assert_eq!(job("2026-03").task_id(), job("2026-03").task_id());
        assert_ne!(job("2026-03").record_id(), job("2026-04").record_id());
        assert_eq!(Period::parse("2026-3"), None);
        assert_eq!(Period::parse("2026-02-30"), None);
        assert_eq!(day("2026-03").to_string(), "2026-03");
    }

    /// How many seconds from now the first tick of a worker started at `since` comes, when its
    /// first poll is at `clock`'s now.
    fn first_tick_in(clock: Clock, since: DateTime<Utc>) -> i64 {
        use apalis_cron::Schedule as _;
        let settings = ScheduleSettings::default();
        let mut ticks = Ticks::new(Schedule::Reminders, &settings, clock, since);
        let tick = ticks.next_tick(&Rome).unwrap();
        tick.get_timestamp() as i64 - Utc::now().timestamp()
    }

    #[test]
    fn ticks_come_when_a_set_clock_reads_the_schedule_time() {
        let clock = Clock::starting_at(rome("2027-01-15T06:59:50+01:00"));
        let wait = first_tick_in(clock, clock.now());
        assert!((9..=11).contains(&wait), "the 07:00 tick is {wait} s away");
    }

    #[test]
    fn a_tick_passed_between_the_start_and_the_first_poll_fires_at_once() {
        // The start-up catch-up looked at 06:59:55, too early; the first poll is at 07:00:05.
        let clock = Clock::starting_at(rome("2027-01-15T07:00:05+01:00"));
        let wait = first_tick_in(clock, rome("2027-01-15T06:59:55+01:00"));
        assert!(
            (0..=1).contains(&wait),
            "today's 07:00 tick is {wait} s away"
        );
        // Started after 07:00 (the catch-up covered today): tomorrow's.
        let wait = first_tick_in(clock, clock.now());
        assert!(
            (86_394..=86_396).contains(&wait),
            "the next tick is {wait} s away"
        );
    }
}
