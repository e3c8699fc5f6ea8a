//! `sportello rebuild` and `sportello query`: the read models from the command line.

use super::open_store;
use anyhow::{Context, bail};
use chrono::NaiveDate;
use sportello_config::Settings;
use sportello_engine::EventLog;
use sportello_projections::catalogue::{self, Catalogue};
use sportello_projections::inbox::{Inbox, InboxPage, InboxQuery, query};
use sportello_projections::runner::{AsOf, acquire, build_as_of, rebuild};
use sportello_projections::satisfaction::{self, Closures, Ratings, SatisfactionQuery};
use sportello_projections::service_levels::{self, ServiceLevelQuery};
use sportello_projections::subject_texts::SubjectTexts;
use sportello_projections::{Consumer, Registry, Views, read_models};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct RebuildArgs {
    /// The read model to rebuild (all when omitted): inbox, ratings, closures, catalogue,
    /// subject_texts.
    name: Option<String>,
}

/// The registry's read models named (all when none is), with views that can unseal when one of
/// them needs it, and the log.
async fn open_for(
    settings: &Settings,
    views: Views,
    names: &[&str],
) -> anyhow::Result<(Registry, Views, EventLog)> {
    let registry = read_models().only(names).map_err(anyhow::Error::msg)?;
    // Only the subject search unseals: only it needs the vault (and, on PostgreSQL, the master key).
    if registry.unseals() {
        let urp = super::open_urp(settings).await?;
        Ok((
            registry,
            views.with_vault(urp.vault().clone()),
            urp.log().clone(),
        ))
    } else {
        Ok((registry, views, open_store(settings).await?))
    }
}

pub async fn run_rebuild(settings: &Settings, args: RebuildArgs) -> anyhow::Result<ExitCode> {
    let url = settings.data_url().expose();
    let views = Views::open(url)
        .await
        .context("failed to open the read models")?;
    let names: Vec<&str> = args.name.as_deref().into_iter().collect();
    let (registry, views, log) = open_for(settings, views, &names).await?;
    let owner = format!("rebuild-{}", uuid::Uuid::now_v7());
    super::memory::trim_periodically(super::memory::REBUILD_TRIM);
    for &consumer in registry.all() {
        rebuild_one(&log, &views, url, consumer, &owner).await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn rebuild_one(
    log: &EventLog,
    views: &Views,
    url: &str,
    consumer: &dyn Consumer,
    owner: &str,
) -> anyhow::Result<()> {
    let name = consumer.id().name;
    let started = Instant::now();
    let guard = acquire(views, url, consumer, owner).await?;
    let mut last_print = Instant::now();
    let checkpoint = rebuild(log, views, consumer, &guard, |checkpoint, head| {
        if last_print.elapsed().as_millis() >= 200 {
            last_print = Instant::now();
            let percent = if head == 0 {
                100.0
            } else {
                checkpoint as f64 * 100.0 / head as f64
            };
            let filled = (percent / 5.0) as usize;
            eprint!(
                "\r{name:<8} [{:<20}] {percent:5.1}% position {checkpoint}/{head}",
                "#".repeat(filled.min(20))
            );
            let _ = std::io::stderr().flush();
        }
    })
    .await?;
    views.release(&guard).await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "\r{name:<8} [{}] 100.0% position {checkpoint}",
        "#".repeat(20)
    );
    println!("rebuilt {name} up to position {checkpoint} in {seconds:.2} s");
    Ok(())
}

/// `--as-of` / `--as-of-position`, shared by every query.
#[derive(clap::Args)]
pub struct AsOfArgs {
    /// Compute it as the log stood at the end of this day (Europe/Rome), from a scratch build
    /// that leaves the live projections untouched.
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "as_of_position")]
    as_of: Option<NaiveDate>,
    /// Compute it as the log stood at this global position.
    #[arg(long, value_name = "POS")]
    as_of_position: Option<u64>,
}

impl AsOfArgs {
    fn point(&self) -> Option<AsOf> {
        as_of(self.as_of, self.as_of_position)
    }
}

/// `--from` / `--to`, in months.
#[derive(clap::Args)]
pub struct MonthRange {
    /// First month, YYYY-MM.
    #[arg(long)]
    from: Option<String>,
    /// Last month, YYYY-MM (inclusive).
    #[arg(long)]
    to: Option<String>,
}

impl MonthRange {
    fn check(&self) -> anyhow::Result<()> {
        for month in [&self.from, &self.to].into_iter().flatten() {
            if chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").is_err() {
                bail!("'{month}' is not a month: write it YYYY-MM");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(clap::Subcommand)]
pub enum QueryCommand {
    /// The case inbox, sorted by due date.
    Cases(CasesArgs),
    /// Satisfaction statistics (CAD art. 7 c.3), grouped and filtered by any dimension.
    Satisfaction(SatisfactionArgs),
    /// Service levels per comune, kind and month (from the inbox).
    ServiceLevels(ServiceLevelArgs),
    /// The public catalogue: active services with their requirements and usable forms.
    Catalogue(CatalogueArgs),
}

#[derive(clap::Args)]
pub struct CatalogueArgs {
    /// Only the services of this comune (ISTAT code).
    #[arg(long)]
    comune: Option<String>,
    #[command(flatten)]
    when: AsOfArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
pub struct ServiceLevelArgs {
    #[command(flatten)]
    when: AsOfArgs,
    #[command(flatten)]
    months: MonthRange,
    /// Comma-separated: comune, kind, month.
    #[arg(long, value_delimiter = ',')]
    group_by: Vec<String>,
    #[arg(long)]
    comune: Option<String>,
    #[arg(long)]
    kind: Option<String>,
    /// The day "currently overdue" is counted on (default: today).
    #[arg(long, value_name = "YYYY-MM-DD")]
    today: Option<NaiveDate>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
pub struct SatisfactionArgs {
    #[command(flatten)]
    when: AsOfArgs,
    #[command(flatten)]
    months: MonthRange,
    /// Comma-separated: comune, target_type, target, channel, month, scale.
    #[arg(long, value_delimiter = ',')]
    group_by: Vec<String>,
    #[arg(long)]
    comune: Option<String>,
    /// service, page or case.
    #[arg(long)]
    target_type: Option<String>,
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    /// faces or stars.
    #[arg(long)]
    scale: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
pub struct CasesArgs {
    #[command(flatten)]
    when: AsOfArgs,
    /// ISTAT code of the comune that owns the cases.
    #[arg(long)]
    comune: Option<String>,
    #[arg(long)]
    office: Option<String>,
    #[arg(long)]
    operator: Option<String>,
    /// informazione, segnalazione, reclamo, suggerimento, accesso_agli_atti, accesso_civico.
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    service: Option<String>,
    /// received, taken_in_charge, assigned, suspended, answered, closed.
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    code: Option<String>,
    #[arg(long)]
    transferred_from: Option<String>,
    /// Only open cases past their due date.
    #[arg(long)]
    overdue: bool,
    #[arg(long, value_name = "YYYY-MM-DD")]
    received_from: Option<NaiveDate>,
    #[arg(long, value_name = "YYYY-MM-DD")]
    received_until: Option<NaiveDate>,
    /// Words the subject has, or their beginnings, in any order (case and accents ignored);
    /// reads the subject search.
    #[arg(long)]
    text: Option<String>,
    /// The day that "days left" and "overdue" are counted from (default: today).
    #[arg(long, value_name = "YYYY-MM-DD")]
    today: Option<NaiveDate>,
    #[arg(long, default_value_t = 50)]
    limit: u64,
    #[arg(long, default_value_t = 0)]
    offset: u64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run_query(settings: &Settings, command: QueryCommand) -> anyhow::Result<ExitCode> {
    let args = match command {
        QueryCommand::Cases(args) => args,
        QueryCommand::Satisfaction(args) => return run_satisfaction(settings, args).await,
        QueryCommand::ServiceLevels(args) => return run_service_levels(settings, args).await,
        QueryCommand::Catalogue(args) => return run_catalogue(settings, args).await,
    };
    let build: &[&str] = if args.text.is_some() {
        &["inbox", "subject_texts"]
    } else {
        &["inbox"]
    };
    let (views, _scratch) = views_for(settings, args.when.point(), build).await?;
    views.ensure::<Inbox>().await?;
    views.ensure::<SubjectTexts>().await?;
    // Days left and lateness count from the as-of day when there is one.
    let today = args
        .today
        .or(args.when.as_of)
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let q = InboxQuery {
        comune: args.comune,
        office: args.office,
        operator: args.operator,
        kind: args.kind,
        channel: args.channel,
        service: args.service,
        status: args.status,
        code: args.code,
        transferred_from: args.transferred_from,
        overdue: args.overdue.then_some(true),
        received_from: args.received_from,
        received_until: args.received_until,
        text: args.text,
        limit: args.limit,
        offset: args.offset,
        after: None,
    };
    let page = query(&views, &q, today).await?;
    print_page(&page, args.format)?;
    Ok(ExitCode::SUCCESS)
}

fn print_page(page: &InboxPage, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(page)?)?,
        Format::Csv => {
            let header = [
                "codice",
                "comune",
                "tipo",
                "canale",
                "stato",
                "ufficio",
                "operatore",
                "ricevuta",
                "scadenza",
                "giorni_residui",
                "in_ritardo",
                "trasferita_da",
            ];
            let rows = page.entries.iter().map(|e| {
                let r = &e.row;
                vec![
                    r.code.clone(),
                    r.comune.clone(),
                    r.kind.clone(),
                    r.channel.clone(),
                    r.status.clone(),
                    r.office.clone().unwrap_or_default(),
                    r.operator.clone().unwrap_or_default(),
                    r.received_at.clone(),
                    r.due_on.clone(),
                    e.days_left.map(|d| d.to_string()).unwrap_or_default(),
                    if e.overdue { "si" } else { "no" }.to_owned(),
                    r.transferred_from.clone().unwrap_or_default(),
                ]
            });
            write_rows(out, format, header.map(String::from).to_vec(), rows)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<16} {:<7} {:<18} {:<10} {:<16} {:<10} {:>6} ufficio",
                "codice", "comune", "tipo", "canale", "stato", "scadenza", "giorni"
            )?;
            for e in &page.entries {
                let r = &e.row;
                let days = e
                    .days_left
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into());
                let late = if e.overdue { " IN RITARDO" } else { "" };
                writeln!(
                    out,
                    "{:<16} {:<7} {:<18} {:<10} {:<16} {:<10} {:>6} {}{late}",
                    r.code,
                    r.comune,
                    r.kind,
                    r.channel,
                    r.status,
                    r.due_on,
                    days,
                    r.office.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(out, "{} di {} pratiche", page.entries.len(), page.total)?;
        }
    }
    Ok(())
}

async fn run_service_levels(
    settings: &Settings,
    args: ServiceLevelArgs,
) -> anyhow::Result<ExitCode> {
    args.months.check()?;
    let (views, _scratch) = views_for(settings, args.when.point(), &["inbox"]).await?;
    views.ensure::<Inbox>().await?;
    // Days left and lateness count from the as-of day when there is one.
    let today = args
        .today
        .or(args.when.as_of)
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let q = ServiceLevelQuery {
        from: args.months.from,
        to: args.months.to,
        comune: args.comune,
        kind: args.kind,
        group_by: args.group_by,
    };
    let report = service_levels::query(&views, &q, today).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Csv | Format::Table => {
            let mut header: Vec<String> = q.group_by.clone();
            header.extend(
                [
                    "aperte",
                    "chiuse",
                    "chiuse_nei_termini",
                    "quota_nei_termini",
                    "giorni_risposta_mediana",
                    "giorni_risposta_p90",
                    "in_ritardo",
                ]
                .map(String::from),
            );
            let number = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_default();
            let rows = report.rows.iter().map(|r| {
                let mut fields: Vec<String> = r.keys.values().cloned().collect();
                fields.extend([
                    r.opened.to_string(),
                    r.closed.to_string(),
                    r.closed_within_term.to_string(),
                    number(r.share_within_term),
                    number(r.median_days_to_answer),
                    number(r.p90_days_to_answer),
                    r.currently_overdue.to_string(),
                ]);
                fields
            });
            write_rows(out, args.format, header, rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_satisfaction(settings: &Settings, args: SatisfactionArgs) -> anyhow::Result<ExitCode> {
    args.months.check()?;
    let (views, _scratch) =
        views_for(settings, args.when.point(), &["ratings", "closures"]).await?;
    views.ensure::<Ratings>().await?;
    views.ensure::<Closures>().await?;
    let q = SatisfactionQuery {
        from: args.months.from,
        to: args.months.to,
        comune: args.comune,
        target_type: args.target_type,
        target: args.target,
        channel: args.channel,
        scale: args.scale,
        group_by: args.group_by,
    };
    let report = satisfaction::query(&views, &q).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Csv | Format::Table => {
            let dims: Vec<String> = report
                .rows
                .first()
                .map(|r| r.keys.keys().cloned().collect())
                .unwrap_or_default();
            let mut header = dims;
            header.extend(
                [
                    "valutazioni",
                    "quota_positive",
                    "media",
                    "tasso_partecipazione",
                ]
                .map(String::from),
            );
            let rows = report.rows.iter().map(|r| {
                let mut fields: Vec<String> = r.keys.values().cloned().collect();
                fields.push(r.count.to_string());
                fields.push(format!("{:.3}", r.share_positive));
                fields.push(r.mean.map(|m| format!("{m:.2}")).unwrap_or_default());
                fields.push(
                    r.participation_rate
                        .map(|p| format!("{p:.3}"))
                        .unwrap_or_default(),
                );
                fields
            });
            write_rows(out, args.format, header, rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A scratch read-model database for "as of" queries: a temporary SQLite file, removed on drop.
struct Scratch {
    path: std::path::PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let views = sportello_projections::sqlite_views_path(&self.path);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            let _ = std::fs::remove_file(format!("{}{suffix}", views.display()));
        }
    }
}

fn as_of(date: Option<NaiveDate>, position: Option<u64>) -> Option<AsOf> {
    use chrono::TimeZone;
    match (date, position) {
        (_, Some(p)) => Some(AsOf::Position(p)),
        (Some(d), None) => {
            let next = d
                .succ_opt()
                .unwrap_or(d)
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists");
            let end = chrono_tz::Europe::Rome
                .from_local_datetime(&next)
                .earliest()
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(|| next.and_utc());
            Some(AsOf::Instant(end))
        }
        (None, None) => None,
    }
}

/// The views to query: the live ones, or a scratch build of `P…` as of a past point.
async fn views_for(
    settings: &Settings,
    point: Option<AsOf>,
    build: &[&str],
) -> anyhow::Result<(Views, Option<Scratch>)> {
    let Some(point) = point else {
        let views = Views::open(settings.data_url().expose())
            .await
            .context("failed to open the read models")?;
        return Ok((views, None));
    };
    let path = std::env::temp_dir().join(format!(
        "sportello-as-of-{}.db",
        uuid::Uuid::now_v7().simple()
    ));
    let views = Views::open(&format!("sqlite://{}", path.display()))
        .await
        .context("failed to create a scratch database")?;
    let scratch = Scratch { path };
    let (registry, views, log) = open_for(settings, views, build).await?;
    for &consumer in registry.all() {
        build_as_of(&log, &views, consumer, point).await?;
    }
    Ok((views, Some(scratch)))
}

async fn run_catalogue(settings: &Settings, args: CatalogueArgs) -> anyhow::Result<ExitCode> {
    let (views, _scratch) = views_for(settings, args.when.point(), &["catalogue"]).await?;
    views.ensure::<Catalogue>().await?;
    let entries = catalogue::query(&views, args.comune.as_deref()).await?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?,
        Format::Csv | Format::Table => {
            let header = [
                "servizio",
                "titolo",
                "termine_giorni",
                "documenti",
                "moduli",
            ];
            let rows = entries.iter().map(|e| {
                let field = |k: &str| {
                    e.card
                        .get(k)
                        .map(|v| {
                            v.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .unwrap_or_default()
                };
                let documents: Vec<String> = e.card["documents"]
                    .as_array()
                    .map(|d| {
                        d.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let forms: Vec<String> = e
                    .forms
                    .iter()
                    .map(|f| format!("{} v{}", f.id, f.version))
                    .collect();
                vec![
                    field("code"),
                    field("title"),
                    field("term_days"),
                    documents.join("; "),
                    forms.join("; "),
                ]
            });
            write_rows(out, args.format, header.map(String::from).to_vec(), rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A header and rows: CSV (RFC 4180 quoting, by the `csv` crate) or, for a terminal, columns
/// separated by tabs.
fn write_rows(
    out: impl Write,
    format: Format,
    header: Vec<String>,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> anyhow::Result<()> {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(if format == Format::Csv { b',' } else { b'\t' })
        .quote_style(if format == Format::Csv {
            csv::QuoteStyle::Necessary
        } else {
            csv::QuoteStyle::Never
        })
        .from_writer(out);
    writer.write_record(&header)?;
    for row in rows {
        writer.write_record(&row)?;
    }
    writer.flush()?;
    Ok(())
}
