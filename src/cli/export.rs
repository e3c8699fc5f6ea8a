//! `sportello export`: the open-data datasets of one month or a range of months, written as the
//! monthly job writes them (a new version only where the data changed).

use anyhow::{Context, bail};
use sportello_config::Settings;
use sportello_projections::opendata::{Dataset, Month};
use sportello_projections::runner::catch_up;
use sportello_projections::{Views, read_models};
use sportello_workers::publication::Publication;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ExportArgs {
    /// contatti-urp, soddisfazione-utenti, tempi-di-risposta, procedimenti-e-moduli, or all.
    #[arg(long, default_value = "all")]
    dataset: String,
    /// The month, YYYY-MM (the first of a range with --to).
    #[arg(long, value_name = "YYYY-MM")]
    period: String,
    /// The last month of a range, YYYY-MM (inclusive).
    #[arg(long, value_name = "YYYY-MM")]
    to: Option<String>,
    /// Where to write (default: `opendata.dir`, i.e. data/opendata/).
    #[arg(long, value_name = "DIR")]
    out: Option<std::path::PathBuf>,
}

fn month(text: &str) -> anyhow::Result<Month> {
    Month::parse(text).with_context(|| format!("'{text}' is not a month: write it YYYY-MM"))
}

pub async fn run(settings: &Settings, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let datasets: Vec<Dataset> = match args.dataset.as_str() {
        "all" => Dataset::ALL.to_vec(),
        name => vec![Dataset::parse(name).with_context(|| {
            let names: Vec<_> = Dataset::ALL.iter().map(|d| d.name()).collect();
            format!("no dataset '{name}': {} or all", names.join(", "))
        })?],
    };
    let first = month(&args.period)?;
    let last = args.to.as_deref().map(month).transpose()?.unwrap_or(first);
    if last < first {
        bail!("--to {last} comes before --period {first}");
    }
    let mut months = vec![first];
    while *months.last().expect("one") < last {
        months.push(months.last().expect("one").next());
    }

    let log = super::open_store(settings).await?;
    let url = settings.data_url().expose();
    let views = Views::open(url)
        .await
        .context("failed to open the read models")?;
    // Brings the read models up to the log's head, unless a running `serve` does it already.
    let head = log.head().await?;
    let sources = read_models()
        .only(&["inbox", "ratings", "closures"])
        .map_err(anyhow::Error::msg)?;
    let owner = format!("export-{}", uuid::Uuid::now_v7());
    for &consumer in sources.all() {
        consumer.ensure(&views).await?;
        if let Some(guard) = views.try_acquire(url, consumer.id(), &owner).await? {
            catch_up(&log, &views, consumer, &guard, |_, _| {}).await?;
            views.release(&guard).await?;
        }
    }
    let mut settings = settings.clone();
    if let Some(out) = args.out {
        settings.opendata.dir = Some(out);
    }
    let publication = Publication::new(&settings, views, log);
    publication.wait_for(head, Duration::from_secs(120)).await?;

    let total = datasets.len() * months.len();
    let mut done = 0;
    for &month in &months {
        let source = publication.source(head, month).await?;
        for &dataset in &datasets {
            let exported = publication.export(dataset, month, source).await?;
            done += 1;
            let filled = done * 20 / total;
            eprint!(
                "\r[{:<20}] {done}/{total} {} {month}          ",
                "#".repeat(filled),
                dataset.name()
            );
            let _ = std::io::stderr().flush();
            println!(
                "{}\t{month}\tv{}\t{}",
                dataset.name(),
                exported.version,
                if exported.written {
                    "written"
                } else {
                    "unchanged"
                }
            );
        }
    }
    eprintln!();
    publication.write_index()?;
    println!("published in {}", publication.out.display());
    Ok(ExitCode::SUCCESS)
}
