//! The legal calendar of procedure terms (L. 241/1990 art. 2).
//!
//! A term of N days counts calendar days from the day after receipt, so it ends N days after the
//! receipt date; days of suspension for missing documents (art. 2 c.7) move the end by as many
//! days; an end that falls on a Sunday or a holiday (national, Easter Monday, or the comune's
//! patron) moves to the next day that is neither.

use chrono::{Datelike, Days, NaiveDate, Weekday};
use sportello_config::{HolidaySettings, IstatCode, Settings};
use std::collections::HashMap;

/// A holiday on a given date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct LegalCalendar {
    national: Vec<HolidaySettings>,
    patrons: HashMap<IstatCode, HolidaySettings>,
}

impl LegalCalendar {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            national: settings.calendar.national.clone(),
            patrons: settings
                .comuni
                .iter()
                .filter_map(|c| c.patron.clone().map(|p| (c.istat.clone(), p)))
                .collect(),
        }
    }

    /// The holidays of `year`, for `comune` if given (its patron included), in date order.
    pub fn holidays(&self, year: i32, comune: Option<&IstatCode>) -> Vec<Holiday> {
        let mut days: Vec<Holiday> = self
            .national
            .iter()
            .chain(comune.and_then(|c| self.patrons.get(c)))
            .filter(|h| h.since.is_none_or(|y| year >= y) && h.until.is_none_or(|y| year <= y))
            .filter_map(|h| {
                NaiveDate::from_ymd_opt(year, h.date.month, h.date.day).map(|date| Holiday {
                    date,
                    name: h.name.clone(),
                })
            })
            .collect();
        let easter = easter_sunday(year);
        days.push(Holiday {
            date: easter,
            name: "Pasqua".into(),
        });
        days.push(Holiday {
            date: easter + Days::new(1),
            name: "Lunedì dell'Angelo".into(),
        });
        days.sort_by_key(|h| h.date);
        days
    }

    /// True when no term may end on `date` in `comune`: a Sunday or a holiday.
    pub fn is_closed(&self, date: NaiveDate, comune: Option<&IstatCode>) -> bool {
        date.weekday() == Weekday::Sun
            || self
                .holidays(date.year(), comune)
                .iter()
                .any(|h| h.date == date)
    }

    /// The last day of a term of `days` days for a request received on `received`.
    pub fn due_date(
        &self,
        received: NaiveDate,
        days: u32,
        suspended_days: u32,
        comune: Option<&IstatCode>,
    ) -> NaiveDate {
        let mut due = received + Days::new(u64::from(days) + u64::from(suspended_days));
        while self.is_closed(due, comune) {
            due = due + Days::new(1);
        }
        due
    }
}

/// Easter Sunday in the Gregorian calendar (the anonymous algorithm of Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("Easter is a valid date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> LegalCalendar {
        let dir = tempfile::tempdir().unwrap();
        LegalCalendar::from_settings(&Settings::load_from(dir.path(), None, Vec::new()).unwrap())
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn istat(code: &str) -> IstatCode {
        IstatCode::parse(code).unwrap()
    }

    #[test]
    fn easter_falls_on_the_known_sundays() {
        for (year, expected) in [
            (2024, "2024-03-31"),
            (2025, "2025-04-20"),
            (2026, "2026-04-05"),
            (2027, "2027-03-28"),
            (2038, "2038-04-25"),
        ] {
            assert_eq!(easter_sunday(year), date(expected), "{year}");
        }
    }

    #[test]
    fn a_term_counts_from_the_day_after_receipt() {
        // Received Monday 2 March 2026: 30 days end on Wednesday 1 April.
        assert_eq!(
            calendar().due_date(date("2026-03-02"), 30, 0, None),
            date("2026-04-01")
        );
    }

    #[test]
    fn a_term_ending_on_a_sunday_moves_to_monday() {
        // 2026-02-27 + 30 = Sunday 29 March → Monday 30.
        assert_eq!(
            calendar().due_date(date("2026-02-27"), 30, 0, None),
            date("2026-03-30")
        );
    }

    #[test]
    fn a_term_ending_on_easter_sunday_skips_easter_monday_too() {
        // 2026-03-06 + 30 = Sunday 5 April 2026 (Easter) → Monday 6 is Easter Monday → Tuesday 7.
        assert_eq!(
            calendar().due_date(date("2026-03-06"), 30, 0, None),
            date("2026-04-07")
        );
    }

    #[test]
    fn a_term_ending_at_the_year_end_skips_the_christmas_holidays_and_new_year() {
        // 2026-11-25 + 30 = Friday 25 December → Saturday 26 (Santo Stefano) → Sunday 27 → Monday 28.
        assert_eq!(
            calendar().due_date(date("2026-11-25"), 30, 0, None),
            date("2026-12-28")
        );
        // 2027-12-02 + 30 = Saturday 1 January 2028 → Sunday 2 → Monday 3.
        assert_eq!(
            calendar().due_date(date("2027-12-02"), 30, 0, None),
            date("2028-01-03")
        );
    }

    #[test]
    fn the_patron_feast_counts_only_in_its_own_comune() {
        // 2026-07-06 + 30 = Wednesday 5 August: Madonna della Neve in Crispiano only.
        let c = calendar();
        assert_eq!(
            c.due_date(date("2026-07-06"), 30, 0, Some(&istat("073004"))),
            date("2026-08-06")
        );
        assert_eq!(
            c.due_date(date("2026-07-06"), 30, 0, Some(&istat("073015"))),
            date("2026-08-05")
        );
        // Statte, Madonna del Rosario on Wednesday 7 October 2026.
        assert_eq!(
            c.due_date(date("2026-09-07"), 30, 0, Some(&istat("073029"))),
            date("2026-10-08")
        );
    }

    #[test]
    fn suspended_days_move_the_end() {
        // 30 days + 12 suspended from 2 March 2026 = Monday 13 April.
        assert_eq!(
            calendar().due_date(date("2026-03-02"), 30, 12, None),
            date("2026-04-13")
        );
    }

    #[test]
    fn saint_francis_is_a_national_holiday_from_2026_only() {
        let c = calendar();
        assert!(
            !c.holidays(2025, None)
                .iter()
                .any(|h| h.date == date("2025-10-04"))
        );
        assert!(
            c.holidays(2027, None)
                .iter()
                .any(|h| h.date == date("2027-10-04"))
        );
        // Monday 4 October 2027: a 30-day term from 4 September ends on Tuesday 5 October.
        assert_eq!(
            c.due_date(date("2027-09-04"), 30, 0, None),
            date("2027-10-05")
        );
    }

    #[test]
    fn a_year_lists_the_national_days_easter_and_the_patron_in_order() {
        let days = calendar().holidays(2026, Some(&istat("073015")));
        let dates: Vec<String> = days.iter().map(|h| h.date.to_string()).collect();
        assert_eq!(
            dates,
            [
                "2026-01-01",
                "2026-01-06",
                "2026-02-20",
                "2026-04-05",
                "2026-04-06",
                "2026-04-25",
                "2026-05-01",
                "2026-06-02",
                "2026-08-15",
                "2026-10-04",
                "2026-11-01",
                "2026-12-08",
                "2026-12-25",
                "2026-12-26"
            ]
        );
        assert_eq!(days[2].name, "Patrocinio della Madonna della Scala");
    }
}
