use anyhow::bail;
use chrono::NaiveDate;
use sportello_config::{IstatCode, Settings};
use sportello_engine::calendar::LegalCalendar;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum CalendarCommand {
    /// The last day of a procedure term (ISO date).
    Due {
        /// Day the request was received (YYYY-MM-DD); the term counts from the day after.
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: NaiveDate,
        /// Length of the term in calendar days (30 by default under L. 241/1990).
        #[arg(long, value_name = "N")]
        days: u32,
        /// ISTAT code of the comune, for its patron's feast.
        #[arg(long, value_name = "ISTAT")]
        comune: Option<IstatCode>,
        /// Days the term was suspended waiting for documents (L. 241/1990 art. 2 c.7).
        #[arg(long, value_name = "S", default_value_t = 0)]
        suspended_days: u32,
    },
    /// The holidays of a year, one `YYYY-MM-DD name` a line.
    Holidays {
        #[arg(long, value_name = "Y")]
        year: i32,
        #[arg(long, value_name = "ISTAT")]
        comune: Option<IstatCode>,
    },
}

pub fn run(settings: &Settings, command: CalendarCommand) -> anyhow::Result<ExitCode> {
    let calendar = LegalCalendar::from_settings(settings);
    let known = |comune: &Option<IstatCode>| -> anyhow::Result<()> {
        match comune {
            Some(c) if settings.comune(c).is_none() => {
                let configured: Vec<String> = settings
                    .comuni
                    .iter()
                    .map(|c| format!("{} {}", c.istat, c.name))
                    .collect();
                bail!(
                    "comune {c} is not configured (configured: {})",
                    configured.join(", ")
                )
            }
            _ => Ok(()),
        }
    };
    match command {
        CalendarCommand::Due {
            from,
            days,
            comune,
            suspended_days,
        } => {
            known(&comune)?;
            println!(
                "{}",
                calendar.due_date(from, days, suspended_days, comune.as_ref())
            );
        }
        CalendarCommand::Holidays { year, comune } => {
            known(&comune)?;
            if !(1583..=9999).contains(&year) {
                bail!("--year must be a Gregorian year between 1583 and 9999");
            }
            for holiday in calendar.holidays(year, comune.as_ref()) {
                println!("{} {}", holiday.date, holiday.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
