pub mod bench;
mod bench_peer;
mod bench_queries;
pub mod bench_workers;
mod bench_writes;
pub mod calendar;
pub mod demo;
pub mod export;
pub mod jobs;
pub mod memory;
pub mod replay;
pub mod serve;
pub mod telemetry;
pub mod token;
pub mod user;
pub mod verify;
pub mod views;

use anyhow::{Context, bail};
use sportello_config::Settings;
use sportello_engine::EventLog;
use sportello_engine::app::Urp;
use sportello_engine::vault::{KeyStore, MasterKey, PostgresKeyStore, SqliteKeyStore, Vault};
use std::path::Path;
use std::sync::Arc;

/// Opens the configured store (creating a SQLite file and its folder if needed).
pub async fn open_store(settings: &Settings) -> anyhow::Result<EventLog> {
    sportello_engine::store::open(settings.store.url.expose())
        .await
        .with_context(|| format!("failed to open the event store at {}", settings.store.url))
}

/// The store, the vault beside it, and the application service on both.
pub async fn open_urp(settings: &Settings) -> anyhow::Result<Urp> {
    let log = open_store(settings).await?;
    let url = settings.data_url().expose();
    let sqlite_path = url.strip_prefix("sqlite://").map(Path::new);
    let master = match (&settings.vault.master_key, sqlite_path) {
        (Some(key), _) => MasterKey::from_base64(key.expose()).context(
            "SPORTELLO__VAULT__MASTER_KEY (vault.master_key) must be 32 bytes in base64",
        )?,
        (None, Some(db)) => embedded_master_key(db)?,
        (None, None) => bail!(
            "a PostgreSQL store needs a master key for personal data: set SPORTELLO__VAULT__MASTER_KEY \
             to 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"
        ),
    };
    let keys: Arc<dyn KeyStore> = match sqlite_path {
        Some(db) => Arc::new(SqliteKeyStore::open(db).context("failed to open the key store")?),
        None => {
            let pool = sportello_engine::store::postgres::pool(url, 8)
                .await
                .context("failed to connect the key store")?;
            Arc::new(
                PostgresKeyStore::connect(pool)
                    .await
                    .context("failed to open the key store")?,
            )
        }
    };
    Ok(Urp::new(log, Vault::new(&master, keys), settings))
}

/// The embedded default keeps its master key in `master.key` beside the database, created on
/// first use (readable by the owner only). Back it up apart from the database.
fn embedded_master_key(db: &Path) -> anyhow::Result<MasterKey> {
    let folder = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let file = folder.join("master.key");
    if let Ok(text) = std::fs::read_to_string(&file) {
        return MasterKey::from_base64(&text)
            .with_context(|| format!("{} is not a valid master key", file.display()));
    }
    // Several processes may start on a fresh folder at once: write the key aside, then link it
    // into place, which fails if another process got there first; then everyone reads the winner's.
    let key = MasterKey::generate();
    let draft = folder.join(format!(".master.key.{}", uuid::Uuid::new_v4().simple()));
    write_private(&draft, &key.to_base64())
        .with_context(|| format!("cannot write {}", draft.display()))?;
    let linked = std::fs::hard_link(&draft, &file);
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => {
            tracing::warn!(path = %file.display(), "generated the vault's master key; back it up apart from the database");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            MasterKey::from_base64(&text)
                .with_context(|| format!("{} is not a valid master key", file.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", file.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}
