pub mod bench;
pub mod calendar;
pub mod replay;
pub mod telemetry;
pub mod verify;

use anyhow::Context;
use sportello_config::Settings;
use sportello_engine::EventLog;

/// Opens the configured store (creating a SQLite file and its folder if needed).
pub async fn open_store(settings: &Settings) -> anyhow::Result<EventLog> {
    sportello_engine::store::open(settings.store.url.expose())
        .await
        .with_context(|| format!("failed to open the event store at {}", settings.store.url))
}
