use super::open_store;
use sportello_config::Settings;
use std::process::ExitCode;

pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let log = open_store(settings).await?;
    let report = log.verify().await?;
    match report.first_break {
        None => {
            println!(
                "ok: {} events in {} streams, every hash chain intact",
                report.events, report.streams
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(broken) => {
            println!(
                "broken: stream {} at version {}: {} ({} streams checked before it)",
                broken.stream,
                broken.version,
                broken.reason,
                report.streams.saturating_sub(1)
            );
            Ok(ExitCode::from(1))
        }
    }
}
