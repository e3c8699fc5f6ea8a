use super::open_store;
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use sportello_config::Settings;
use sportello_engine::{ReadAll, StreamId};
use std::io::{BufWriter, ErrorKind, Write};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// First global position to print (positions start at 1).
    #[arg(long, value_name = "POS", default_value_t = 1)]
    from: u64,
    /// Only streams of this category (repeatable), e.g. `case`.
    #[arg(long = "category", value_name = "C")]
    categories: Vec<String>,
    /// Only events of this type (repeatable), e.g. `CaseOpened`.
    #[arg(long = "type", value_name = "T")]
    types: Vec<String>,
    /// Only events that occurred at or after T (RFC 3339, or YYYY-MM-DD meaning 00:00 UTC).
    #[arg(long, value_name = "T", value_parser = parse_instant)]
    since: Option<DateTime<Utc>>,
    /// Only events that occurred before T.
    #[arg(long, value_name = "T", value_parser = parse_instant)]
    until: Option<DateTime<Utc>>,
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Keep following new events until --limit is reached or the process is interrupted.
    #[arg(long)]
    follow: bool,
}

fn parse_instant(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| {
            format!("'{raw}' is neither RFC 3339 (2026-03-01T09:00:00Z) nor a date (2026-03-01)")
        })
}

pub async fn run(settings: &Settings, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    for category in &args.categories {
        if let Err(reason) = StreamId::check_category(category) {
            bail!("--category {category}: {reason}");
        }
    }
    let query = ReadAll {
        from: args.from,
        categories: args.categories,
        event_types: args.types,
        occurred_since: args.since,
        occurred_until: args.until,
        limit: args.limit,
    };
    let log = open_store(settings).await?;
    let mut events = if args.follow {
        log.subscribe(query)
    } else {
        log.read_all(query)
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = &mut interrupted => None,
        };
        let Some(event) = next else { break };
        let event = event.context("failed to read the log")?;
        let written = writeln!(out, "{}", event.to_json_line()).and_then(|()| {
            // A follower's reader wants each event as it comes, not when a buffer fills.
            if args.follow { out.flush() } else { Ok(()) }
        });
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e).context("failed to write to stdout"),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e).context("failed to write to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}
