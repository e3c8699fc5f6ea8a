//! `sportello jobs`: the background jobs as the queue holds them.

use anyhow::{Context, bail};
use sportello_config::Settings;
use sportello_workers::queue::{JobInfo, Queue, STATUSES};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// Jobs by status: queued and running first, then failed and dead (all when none is given).
    List {
        /// Pending, Queued, Running, Done, Failed or Killed (dead: given up, not retried).
        #[arg(long)]
        status: Option<String>,
        /// At most this many per status.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job, with the notice it carries.
    Show { id: String },
    /// Queue a failed or dead job's work again.
    Retry { id: String },
}

pub async fn run(settings: &Settings, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let queue = Queue::connect(settings)
        .await
        .context("failed to open the job queue")?;
    match command {
        JobsCommand::List {
            status,
            limit,
            json,
        } => {
            let statuses: Vec<&str> = match status.as_deref() {
                Some(s) => vec![s],
                None => STATUSES.to_vec(),
            };
            if !json {
                println!(
                    "{:<28} {:<18} {:<8} {:>8}  {:<20} {:<17} case",
                    "id", "queue", "status", "attempts", "kind", "run at"
                );
            }
            for status in statuses {
                for job in queue.list(status, limit).await? {
                    if json {
                        println!("{}", serde_json::to_string(&job)?);
                    } else {
                        print_row(&job);
                    }
                }
            }
        }
        JobsCommand::Show { id } => match queue.find(&id).await? {
            Some(job) => println!("{}", serde_json::to_string_pretty(&job)?),
            None => {
                eprintln!("sportello: no job {id}");
                return Ok(ExitCode::from(1));
            }
        },
        JobsCommand::Retry { id } => {
            let Some(job) = queue.find(&id).await? else {
                eprintln!("sportello: no job {id}");
                return Ok(ExitCode::from(1));
            };
            if !matches!(job.status.as_str(), "Failed" | "Killed") {
                bail!(
                    "job {id} is {}: only a failed or dead job is queued again",
                    job.status
                );
            }
            let Some(notice) = job.job else {
                bail!("job {id} carries no notice this program can read");
            };
            let new_id = queue
                .requeue(&notice, settings.workers.notice_attempts.max(1))
                .await?;
            println!("sportello: job {id} queued again as {new_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_row(job: &JobInfo) {
    let run_at = job
        .run_at
        .and_then(|s| chrono::DateTime::from_timestamp(s as i64, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let (kind, case) = job
        .job
        .as_ref()
        .map(|j| (j.kind.name(), j.case_id.to_string()))
        .unwrap_or(("?", String::new()));
    println!(
        "{:<28} {:<18} {:<8} {:>8}  {:<20} {:<17} {case}",
        job.id, job.queue, job.status, job.attempts, kind, run_at
    );
}
