//! Typed, layered settings.
//!
//! Layers, each overriding the one before: `config/default.toml` (embedded in the binary, so a
//! fresh machine needs no file; a `config/default.toml` in the working directory replaces it), an
//! optional overlay file (`--config FILE`), then environment variables `SPORTELLO__SECTION__KEY`.
//! Every value is checked at start-up and an error names the key and the layer it came from.
//!
//! ## Layout
//! - [`Settings`], [`UnionSettings`], [`ComuneSettings`], [`StoreSettings`]: what the files hold.
//! - [`IstatCode`], [`CadastralCode`]: codes that can only be built by parsing.
//! - [`SecretUrl`]: a URL whose password never reaches a log.

mod codes;
mod secret;

pub use codes::{CadastralCode, IstatCode, MonthDay, TimeOfDay};
pub use secret::{SecretString, SecretUrl};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The default configuration, as shipped in `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");
const DEFAULT_FILE: &str = "config/default.toml";
const ENV_PREFIX: &str = "SPORTELLO__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub union: UnionSettings,
    pub comuni: Vec<ComuneSettings>,
    pub store: StoreSettings,
    pub calendar: CalendarSettings,
    #[serde(default)]
    pub vault: VaultSettings,
    #[serde(default)]
    pub api: ApiSettings,
    #[serde(default)]
    pub workers: WorkersSettings,
    #[serde(default)]
    pub mail: MailSettings,
    /// The offices the reminders write to.
    #[serde(default)]
    pub offices: Vec<OfficeSettings>,
    #[serde(default)]
    pub reminders: ReminderSettings,
    pub retention: RetentionSettings,
    #[serde(default)]
    pub schedules: ScheduleSettings,
    #[serde(default)]
    pub opendata: OpenDataSettings,
}

/// The open-data publication (CAD art. 52): where the files go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenDataSettings {
    /// Unset: `opendata/` beside an SQLite store (`data/opendata/`), else `data/opendata/`.
    pub dir: Option<PathBuf>,
    /// Where that folder is served, for the catalogue's links (unset: `mail.public_url` +
    /// `/opendata/`).
    pub base_url: Option<String>,
    /// An address for questions about the data, on the catalogue's contact point.
    pub contact_email: Option<String>,
}

/// An office of a comune that cases are taken in charge by, and where its reminders go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeSettings {
    pub comune: IstatCode,
    /// As staff write it when taking a case in charge (`Tributi`); `URP` is the comune's URP,
    /// which is also reminded of the cases no office has in charge.
    pub name: String,
    pub email: String,
}

/// Reminders to the offices before a term runs out (L. 241/1990 art. 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReminderSettings {
    /// An office is reminded of a case whose term ends within this many working days (Monday to
    /// Friday, holidays excluded), and again once the term has passed.
    #[serde(deserialize_with = "number")]
    pub working_days: u64,
}

impl Default for ReminderSettings {
    fn default() -> Self {
        Self { working_days: 3 }
    }
}

/// How long a citizen's personal data are kept after their last case closed, per kind of case,
/// in days. The legal bases are in `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    #[serde(deserialize_with = "number")]
    pub informazione: u64,
    #[serde(deserialize_with = "number")]
    pub segnalazione: u64,
    #[serde(deserialize_with = "number")]
    pub reclamo: u64,
    #[serde(deserialize_with = "number")]
    pub suggerimento: u64,
    #[serde(deserialize_with = "number")]
    pub accesso_agli_atti: u64,
    #[serde(deserialize_with = "number")]
    pub accesso_civico: u64,
}

impl RetentionSettings {
    /// The days for a kind named as the events name it (`accesso_civico`).
    pub fn days(&self, kind: &str) -> Option<u64> {
        Some(match kind {
            "informazione" => self.informazione,
            "segnalazione" => self.segnalazione,
            "reclamo" => self.reclamo,
            "suggerimento" => self.suggerimento,
            "accesso_agli_atti" => self.accesso_agli_atti,
            "accesso_civico" => self.accesso_civico,
            _ => return None,
        })
    }
}

/// When the scheduled jobs run, in Europe/Rome.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// Every day: reminders to the offices.
    pub reminders_at: TimeOfDay,
    /// Every day: erasure of the personal data whose retention ended.
    pub retention_at: TimeOfDay,
    /// On the 1st of every month: the open-data publication of the month before.
    pub publication_at: TimeOfDay,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            reminders_at: TimeOfDay { hour: 7, minute: 0 },
            retention_at: TimeOfDay {
                hour: 3,
                minute: 30,
            },
            publication_at: TimeOfDay { hour: 2, minute: 0 },
        }
    }
}

/// The background workers (`sportello worker`, or inside `sportello serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersSettings {
    /// Run the reactor and the job workers inside `sportello serve` (`--no-workers` also turns
    /// them off there); `sportello worker` always runs them.
    #[serde(deserialize_with = "flag")]
    pub in_serve: bool,
    /// Where jobs wait: `sqlite://PATH` or `redis://HOST:PORT[/DB]`. Unset: `jobs.db` beside an
    /// SQLite store (a file of its own, never the event store's).
    pub queue_url: Option<SecretUrl>,
    /// Prefix of every queue's name (`sportello-notices`): installations sharing a Redis keep
    /// apart by it.
    pub namespace: String,
    /// Jobs a worker runs at once, per queue.
    #[serde(deserialize_with = "number")]
    pub concurrency: u64,
    /// Tries of a notice before it is given up (a temporary SMTP refusal, a relay down).
    #[serde(deserialize_with = "number")]
    pub notice_attempts: u64,
    /// Jobs a queue may hold waiting before the reactor stops queueing more until the workers
    /// catch up: a backlog (a relay down for hours, a rebuild) stays in the log, where it costs
    /// nothing, rather than in the queue's memory.
    #[serde(deserialize_with = "number")]
    pub max_waiting_jobs: u64,
    /// How long a Redis command may take before the connection counts as broken, in
    /// milliseconds (the client's default, 500 ms, is too short for a loaded Redis).
    #[serde(deserialize_with = "number")]
    pub redis_response_timeout_ms: u64,
}

impl Default for WorkersSettings {
    fn default() -> Self {
        Self {
            in_serve: true,
            queue_url: None,
            namespace: "sportello".into(),
            concurrency: 8,
            notice_attempts: 6,
            max_waiting_jobs: 10_000,
            redis_response_timeout_ms: 5000,
        }
    }
}

/// How notices reach citizens and offices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// `outbox` (the embedded default: RFC 5322 `.eml` files in `outbox_dir`) or `smtp`.
    pub transport: MailTransport,
    /// Unset: `outbox/` beside an SQLite store (`data/outbox/`), else `data/outbox/`.
    pub outbox_dir: Option<PathBuf>,
    /// The relay (an ordinary SMTP server or the comune's PEC provider, configured the same way).
    pub host: String,
    #[serde(deserialize_with = "number")]
    pub port: u64,
    /// `none`, `starttls` (upgrade on the submission port) or `tls` (implicit TLS, port 465).
    pub security: MailSecurity,
    /// Credentials: give them through `SPORTELLO__MAIL__USERNAME` and `SPORTELLO__MAIL__PASSWORD`.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The sender, e.g. `URP Unione Terra delle Gravine <urp@example.it>`.
    pub from: String,
    /// The public address of the citizens' pages, for the link to follow a case.
    pub public_url: String,
    /// How long one SMTP exchange may take, in seconds.
    #[serde(deserialize_with = "number")]
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTransport {
    Outbox,
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailSecurity {
    None,
    Starttls,
    Tls,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            transport: MailTransport::Outbox,
            outbox_dir: None,
            host: "127.0.0.1".into(),
            port: 25,
            security: MailSecurity::Starttls,
            username: None,
            password: None,
            from: "URP <urp@localhost>".into(),
            public_url: "http://127.0.0.1:8080".into(),
            timeout_secs: 30,
        }
    }
}

/// The HTTP API (`sportello serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Where `sportello serve` listens when `--bind` is not given.
    pub bind: String,
    /// Largest request body accepted, in bytes (413 beyond it).
    #[serde(deserialize_with = "number")]
    pub max_body_bytes: u64,
    /// Public POSTs (new cases, submissions, feedback) allowed per client address and minute.
    #[serde(deserialize_with = "number")]
    pub public_posts_per_minute: u64,
    /// How many of them may come at once before the per-minute rate applies.
    #[serde(deserialize_with = "number")]
    pub public_burst: u64,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy that sets it).
    #[serde(deserialize_with = "flag")]
    pub trust_forwarded_for: bool,
    /// How long a query given `min_position` waits for its projection, in milliseconds.
    #[serde(deserialize_with = "number")]
    pub consistency_wait_ms: u64,
    /// How long a staff member stays signed in to the pages, however active (a working day).
    #[serde(deserialize_with = "number")]
    pub session_hours: u64,
    /// How long a session stays open without a page being asked for.
    #[serde(deserialize_with = "number")]
    pub session_idle_minutes: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            public_posts_per_minute: 30,
            public_burst: 10,
            trust_forwarded_for: false,
            consistency_wait_ms: 5000,
            session_hours: 10,
            session_idle_minutes: 60,
        }
    }
}

/// A number written as such in a file or as text in an environment variable.
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("'{t}' is not a whole number"))),
    }
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Flag(b) => Ok(b),
        Raw::Text(t) => match t.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "'{t}' is not true or false"
            ))),
        },
    }
}

/// Sealed personal data.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// 32 bytes in base64 wrapping every data subject's key; give it through
    /// `SPORTELLO__VAULT__MASTER_KEY`. Without it, an embedded (SQLite) store keeps a generated key
    /// in `master.key` beside the database file; a PostgreSQL store requires it.
    pub master_key: Option<SecretString>,
}

/// Days on which a procedure term cannot end (besides Sundays).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettings {
    pub national: Vec<HolidaySettings>,
    /// The term of a contact that concerns no service with a term of its own (L. 241/1990
    /// art. 2 c.2: 30 days where no rule sets another).
    #[serde(default = "thirty", deserialize_with = "number")]
    pub default_term_days: u64,
}

fn thirty() -> u64 {
    30
}

/// A holiday on the same day every year, `MM-DD`, optionally only from or until a year.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidaySettings {
    pub date: MonthDay,
    pub name: String,
    /// First year it applies (e.g. 2026 for 4 October).
    pub since: Option<i32>,
    /// Last year it applies.
    pub until: Option<i32>,
    /// Where the date comes from (a law, the comune's statute or website).
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnionSettings {
    pub name: String,
    /// ISTAT code of the comune hosting the union's seat; must be one of `comuni`.
    pub seat: IstatCode,
    /// The union's own code in the Indice delle Pubbliche Amministrazioni, when it has one: the
    /// publisher of the open data. Without it, the seat comune publishes.
    #[serde(default)]
    pub ipa: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComuneSettings {
    pub name: String,
    pub istat: IstatCode,
    pub cadastral: CadastralCode,
    /// Code in the Indice delle Pubbliche Amministrazioni, used in open-data metadata.
    pub ipa: String,
    /// The patron saint's feast: a holiday for this comune's offices.
    pub patron: Option<HolidaySettings>,
    /// How citizens reach this comune's URP, shown on the public pages.
    #[serde(default)]
    pub urp: UrpContacts,
    /// The comune rates its closed cases with the three faces of "Mettiamoci la faccia" rather
    /// than Designers Italia's five stars.
    #[serde(default)]
    pub mettiamoci_la_faccia: bool,
}

/// The URP's contacts as the comune publishes them; each is shown only when set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrpContacts {
    pub address: Option<String>,
    /// Opening hours as citizens read them, e.g. "lunedì–venerdì 9:00–12:00".
    pub hours: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub pec: Option<String>,
    /// The comune's institutional site.
    pub website: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The event log: `sqlite://PATH`, `postgres://…`, or `kurrentdb://HOST:2113?…` (a build with
    /// the `kurrentdb` feature).
    pub url: SecretUrl,
    /// Where the read models, their checkpoints, the sessions and the personal-data keys live
    /// when the log is on KurrentDB (`sqlite://PATH` or `postgres://…`); with an SQLite or
    /// PostgreSQL log they live in its database, and this stays unset.
    #[serde(default)]
    pub data_url: Option<SecretUrl>,
    /// A PostgreSQL replica of `url`'s database, for the queries of `serve` (its writes and
    /// the projections stay on `url`); unset: queries on `url`.
    #[serde(default)]
    pub read_url: Option<SecretUrl>,
}

/// Start-up configuration failure; the message names the key and where its value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// True for the KurrentDB client's URL schemes (`kurrentdb://`, `esdb://`, `…+discover://`).
pub fn is_kurrentdb_url(url: &str) -> bool {
    let (scheme, _) = url.split_once("://").unwrap_or(("", ""));
    let base = scheme.strip_suffix("+discover").unwrap_or(scheme);
    matches!(base, "kurrentdb" | "kurrent" | "kdb" | "esdb")
}

fn is_database_url(url: &str) -> bool {
    url.starts_with("sqlite://")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
}

impl Settings {
    /// The database of everything but the log (read models, checkpoints, sessions, keys, the
    /// default job queue's folder): `store.data_url` beside a KurrentDB log, else the log's own.
    pub fn data_url(&self) -> &SecretUrl {
        self.store.data_url.as_ref().unwrap_or(&self.store.url)
    }

    /// A folder of the embedded default's data: `name/` beside an SQLite database (`data/name/`),
    /// else `data/name/`.
    pub fn beside_store(&self, name: &str) -> PathBuf {
        match self.data_url().expose().strip_prefix("sqlite://") {
            Some(db) => Path::new(db).parent().unwrap_or(Path::new(".")).join(name),
            None => Path::new("data").join(name),
        }
    }

    /// Where the open data is published.
    pub fn opendata_dir(&self) -> PathBuf {
        self.opendata
            .dir
            .clone()
            .unwrap_or_else(|| self.beside_store("opendata"))
    }

    /// The address `/opendata/` is served at, ending in `/`.
    pub fn opendata_base_url(&self) -> String {
        let base =
            self.opendata.base_url.clone().unwrap_or_else(|| {
                format!("{}/opendata/", self.mail.public_url.trim_end_matches('/'))
            });
        if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        }
    }

    /// Loads the layers described in the crate docs. `overlay` is the `--config FILE` argument.
    pub fn load(overlay: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(Path::new("."), overlay, std::env::vars())
    }

    /// As [`Settings::load`], with the working directory and the environment given (for tests).
    pub fn load_from(
        workdir: &Path,
        overlay: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let default_file = workdir.join(DEFAULT_FILE);
        let mut figment = if default_file.is_file() {
            Figment::from(Toml::file_exact(&default_file))
        } else {
            Figment::from(Toml::string(DEFAULT_TOML))
        };
        if let Some(path) = overlay {
            if !path.is_file() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        figment = figment.merge(EnvLayer { vars: env });
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe_figment_error(e)))?;
        settings.validate(&figment)?;
        Ok(settings)
    }

    /// The prefix of the comune's case codes: the first three letters of its name (`MAS`).
    pub fn code_prefix(comune: &ComuneSettings) -> String {
        comune
            .name
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .take(3)
            .collect::<String>()
            .to_ascii_uppercase()
    }

    /// The comune with this ISTAT code, if it is part of the configuration.
    pub fn comune(&self, istat: &IstatCode) -> Option<&ComuneSettings> {
        self.comuni.iter().find(|c| &c.istat == istat)
    }

    fn validate(&self, figment: &Figment) -> Result<(), ConfigError> {
        let origin = |key: &str| {
            figment
                .find_metadata(key)
                .map(|m| match &m.source {
                    Some(source) => source.to_string(),
                    None => m.name.to_string(),
                })
                .unwrap_or_else(|| "unknown source".into())
        };
        let fail = |key: &str, what: String| {
            Err(ConfigError::Invalid(format!(
                "key `{key}` (from {}): {what}",
                origin(key.split(['[', '.']).next().unwrap_or(key))
            )))
        };
        if self.comuni.is_empty() {
            return fail("comuni", "at least one comune is required".into());
        }
        for (i, comune) in self.comuni.iter().enumerate() {
            if comune.name.trim().is_empty() {
                return fail(&format!("comuni[{i}].name"), "must not be empty".into());
            }
            let expected_ipa = format!("c_{}", comune.cadastral.as_str().to_ascii_lowercase());
            if comune.ipa != expected_ipa {
                return fail(
                    &format!("comuni[{i}].ipa"),
                    format!(
                        "'{}' does not match the cadastral code {} (expected '{expected_ipa}')",
                        comune.ipa, comune.cadastral
                    ),
                );
            }
            if self.comuni[..i].iter().any(|c| c.istat == comune.istat) {
                return fail(
                    &format!("comuni[{i}].istat"),
                    format!("{} appears twice", comune.istat),
                );
            }
        }
        for (i, office) in self.offices.iter().enumerate() {
            if self.comune(&office.comune).is_none() {
                return fail(
                    &format!("offices[{i}].comune"),
                    format!("{} is not one of the configured comuni", office.comune),
                );
            }
            if office.name.trim().is_empty() {
                return fail(&format!("offices[{i}].name"), "must not be empty".into());
            }
            let at = office.email.find('@').unwrap_or(0);
            if at == 0 || at + 1 >= office.email.len() || office.email.contains(char::is_whitespace)
            {
                return fail(
                    &format!("offices[{i}].email"),
                    format!("'{}' is not an e-mail address", office.email),
                );
            }
        }
        if self.comune(&self.union.seat).is_none() {
            return fail(
                "union.seat",
                format!("{} is not one of the configured comuni", self.union.seat),
            );
        }
        let url = self.store.url.expose();
        let kurrentdb = is_kurrentdb_url(url);
        if !(is_database_url(url) || kurrentdb) {
            return fail(
                "store.url",
                format!(
                    "'{}' is not a store URL: use sqlite://PATH, postgres://USER@HOST/DATABASE or kurrentdb://HOST:2113",
                    self.store.url
                ),
            );
        }
        match (&self.store.data_url, kurrentdb) {
            (None, true) => {
                return fail(
                    "store.data_url",
                    "a KurrentDB log needs a database for the read models and the keys: set \
                     store.data_url (SPORTELLO__STORE__DATA_URL) to sqlite://PATH or postgres://…"
                        .into(),
                );
            }
            (Some(data_url), true) if !is_database_url(data_url.expose()) => {
                return fail(
                    "store.data_url",
                    format!("'{data_url}' is not sqlite://PATH or postgres://USER@HOST/DATABASE"),
                );
            }
            (Some(_), false) => {
                return fail(
                    "store.data_url",
                    "only a KurrentDB log keeps its read models elsewhere: with an SQLite or \
                     PostgreSQL store.url, leave store.data_url unset"
                        .into(),
                );
            }
            _ => {}
        }
        if let Some(read_url) = &self.store.read_url
            && !read_url.expose().starts_with("postgres")
        {
            return fail(
                "store.read_url",
                format!(
                    "'{read_url}' is not a PostgreSQL replica's URL (postgres://USER@HOST/DATABASE)"
                ),
            );
        }
        Ok(())
    }
}

/// Figment's own messages already name the key and the file or variable; keep them whole.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `SPORTELLO__SECTION__KEY` layer, read from a given environment (tests pass their own) rather
/// than figment's `Env`, which reads the live process and would turn "073015" into a number.
struct EnvLayer {
    vars: Vec<(String, String)>,
}

impl figment::Provider for EnvLayer {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("the environment").interpolater(|_, keys| {
            format!(
                "{} (variable {ENV_PREFIX}{})",
                keys.join("."),
                keys.join("__").to_ascii_uppercase()
            )
        })
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (key, value) in &self.vars {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                continue;
            }
            let nested = path.iter().rev().fold(
                figment::value::Value::from(value.clone()),
                |acc, segment| {
                    let mut d = figment::value::Dict::new();
                    d.insert(segment.clone(), acc);
                    figment::value::Value::from(d)
                },
            );
            if let figment::value::Value::Dict(_, d) = nested {
                for (k, v) in d {
                    merge_into(&mut dict, k, v);
                }
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn merge_into(dict: &mut figment::value::Dict, key: String, value: figment::value::Value) {
    use figment::value::Value;
    match (dict.get_mut(&key), value) {
        (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
            for (k, v) in incoming {
                merge_into(existing, k, v);
            }
        }
        (_, value) => {
            dict.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests;
