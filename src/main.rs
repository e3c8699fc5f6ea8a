//! `sportello`: the command line of the engine. Each subcommand lives in `cli/`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sportello::cli;
use sportello_config::Settings;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sportello",
    version,
    about = "Event-sourced case handling for the URP offices of Italian comuni"
)]
struct Cli {
    /// Overlay configuration file, applied over config/default.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Event store URL (sqlite://PATH or postgres://…); overrides SPORTELLO__STORE__URL and files.
    ///
    /// A build with `--features kurrentdb` also opens kurrentdb://HOST:2113?… (with
    /// SPORTELLO__STORE__DATA_URL for the read models and keys). That backend has NOT run against a
    /// KurrentDB server in this project's CI; run its conformance suite against yours first:
    /// SPORTELLO_TEST_KURRENTDB_URL=kurrentdb://127.0.0.1:2113?tls=false cargo test -p
    /// sportello-engine --features kurrentdb --test conformance kurrentdb::
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write events of the log to stdout as JSON Lines, in global order.
    Replay(cli::replay::ReplayArgs),
    /// Check every stream's hash chain; exit 1 naming the first broken stream and version.
    Verify,
    /// Measure the event store (see the README for the targets).
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Build a projection again from the first event (all of them when no name is given).
    Rebuild(cli::views::RebuildArgs),
    /// Read a projection: `query cases` is the staff's inbox.
    #[command(subcommand)]
    Query(cli::views::QueryCommand),
    /// Write the open-data datasets of a month (or a range) into data/opendata/, as the monthly
    /// job does: CSV, JSON, datapackage.json, manifest.json; a new version only where data changed.
    Export(cli::export::ExportArgs),
    /// Fill the configured store with a realistic synthetic history.
    Demo(cli::demo::DemoArgs),
    /// Serve the HTTP API, following the projections in the same process.
    Serve(cli::serve::ServeArgs),
    /// Follow the log with every projection, without serving HTTP.
    Project(cli::serve::ProjectArgs),
    /// Run the projections, the reactor and the job workers, without serving HTTP.
    Worker(cli::serve::WorkerArgs),
    /// The background jobs: list them, show one, re-queue a dead one.
    #[command(subcommand)]
    Jobs(cli::jobs::JobsCommand),
    /// Staff access tokens.
    #[command(subcommand)]
    Token(cli::token::TokenCommand),
    /// Staff accounts for the pages (username and password).
    #[command(subcommand)]
    User(cli::user::UserCommand),
    /// Procedure terms: due dates and holidays (L. 241/1990).
    #[command(subcommand)]
    Calendar(cli::calendar::CalendarCommand),
}

impl Command {
    /// Runs until stopped (and so must keep its memory flat), rather than doing a job and ending.
    fn runs_until_stopped(&self) -> bool {
        use cli::bench::BenchCommand;
        matches!(
            self,
            Command::Serve(_)
                | Command::Project(_)
                | Command::Worker(_)
                | Command::Bench(
                    BenchCommand::Receipts(_)
                        | BenchCommand::ReactorLag(_)
                        | BenchCommand::Writes(_)
                )
        )
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.runs_until_stopped() {
        cli::memory::limit_arenas();
    }
    cli::telemetry::init();
    #[cfg(feature = "kurrentdb")]
    sportello_engine::store::kurrentdb::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sportello: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `--store` is the last layer, checked with the others (a KurrentDB log needs a data_url).
    let store = cli
        .store
        .map(|url| ("SPORTELLO__STORE__URL".to_owned(), url));
    let settings = Settings::load_from(
        std::path::Path::new("."),
        cli.config.as_deref(),
        std::env::vars().chain(store),
    )
    .context("failed to load the configuration")?;
    match cli.command {
        Command::Replay(args) => cli::replay::run(&settings, args).await,
        Command::Verify => cli::verify::run(&settings).await,
        Command::Bench(command) => cli::bench::run(&settings, command).await,
        Command::Calendar(command) => cli::calendar::run(&settings, command),
        Command::Export(args) => cli::export::run(&settings, args).await,
        Command::Demo(args) => cli::demo::run(&settings, args).await,
        Command::Rebuild(args) => cli::views::run_rebuild(&settings, args).await,
        Command::Query(command) => cli::views::run_query(&settings, command).await,
        Command::Serve(args) => cli::serve::run_serve(&settings, args).await,
        Command::Project(args) => cli::serve::run_project(&settings, args).await,
        Command::Worker(args) => cli::serve::run_worker(&settings, args).await,
        Command::Jobs(command) => cli::jobs::run(&settings, command).await,
        Command::Token(command) => cli::token::run(&settings, command).await,
        Command::User(command) => cli::user::run(&settings, command).await,
    }
}
