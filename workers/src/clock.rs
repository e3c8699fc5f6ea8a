//! The workers' idea of now: the system's, or (for tests and rehearsals) the system's shifted so
//! that it reads `SPORTELLO_CLOCK` at start-up and runs on at the same speed. Schedules, reminders
//! and retention all read it, so a whole day's work can be run as it would run on that day.

use chrono::{DateTime, Utc};

/// The variable that sets the clock, an RFC 3339 instant.
pub const CLOCK_VAR: &str = "SPORTELLO_CLOCK";

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset: chrono::Duration,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `at` now.
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self {
            offset: at - Utc::now(),
        }
    }

    /// `SPORTELLO_CLOCK` if set, else the system's.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var(CLOCK_VAR) {
            Ok(text) if !text.trim().is_empty() => {
                let at = DateTime::parse_from_rfc3339(text.trim()).map_err(|e| {
                    anyhow::anyhow!("{CLOCK_VAR}='{text}' is not an RFC 3339 instant: {e}")
                })?;
                tracing::warn!(clock = %at, "the workers' clock is set by {CLOCK_VAR}");
                Ok(Self::starting_at(at.with_timezone(&Utc)))
            }
            _ => Ok(Self::system()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// The real instant at which this clock reads `at`.
    pub fn real(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at - self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_starts_where_it_was_set_and_runs_on() {
        let at = DateTime::parse_from_rfc3339("2027-03-01T02:00:00+01:00")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::starting_at(at);
        let first = clock.now();
        assert!((first - at).num_seconds().abs() < 2, "{first} vs {at}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(clock.now() > first);
    }
}
