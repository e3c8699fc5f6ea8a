//! `sportello jobs`: the background jobs as the queues hold them (notices to citizens, and the
//! scheduled periods), and the periods each schedule has done.

use anyhow::{Context, bail};
use sportello_config::Settings;
use sportello_workers::queue::{Job, JobInfo, Queue, Queues, Retried, STATUSES};
use sportello_workers::schedule::{self, Schedule};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum JobsCommand {
    /// Jobs by status: queued and running first, then failed and dead (all when none is given).
    List {
        /// Pending, Queued, Running, Done, Failed or Killed (dead: given up, not retried).
        #[arg(long)]
        status: Option<String>,
        /// At most this many per status and queue.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One job, with what it carries.
    Show { id: String },
    /// Queue a failed or dead job's work again.
    Retry { id: String },
    /// The periods each schedule (reminders, retention, publication) has done, latest first.
    Schedules {
        /// At most this many per schedule.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

pub async fn run(settings: &Settings, command: JobsCommand) -> anyhow::Result<ExitCode> {
    if let JobsCommand::Schedules { limit } = command {
        return schedules(settings, limit).await;
    }
    let queues = Queues::connect(settings)
        .await
        .context("failed to open the job queues")?;
    let attempts = settings.workers.notice_attempts.max(1);
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
                    "{:<28} {:<20} {:<8} {:>8}  {:<20} {:<17} about",
                    "id", "queue", "status", "attempts", "kind", "run at"
                );
            }
            for status in statuses {
                list(&queues.notices, status, limit, json).await?;
                list(&queues.scheduled, status, limit, json).await?;
            }
        }
        JobsCommand::Show { id } => {
            if let Some(job) = queues.notices.find(&id).await? {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else if let Some(job) = queues.scheduled.find(&id).await? {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                eprintln!("sportello: no job {id}");
                return Ok(ExitCode::from(1));
            }
        }
        JobsCommand::Retry { id } => match queues.retry(&id, attempts).await? {
            Retried::Queued(new_id) => println!("sportello: job {id} queued again as {new_id}"),
            Retried::NotFailed(status) => {
                bail!("job {id} is {status}: only a failed or dead job is queued again")
            }
            Retried::Unreadable => bail!("job {id} carries nothing this program can read"),
            Retried::Missing => {
                eprintln!("sportello: no job {id}");
                return Ok(ExitCode::from(1));
            }
        },
        JobsCommand::Schedules { .. } => unreachable!("answered above"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn list<J: Job>(
    queue: &Queue<J>,
    status: &str,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    for job in queue.list(status, limit).await? {
        if json {
            println!("{}", serde_json::to_string(&job)?);
        } else {
            print_row(&job);
        }
    }
    Ok(())
}

fn print_row<J: Job>(job: &JobInfo<J>) {
    let run_at = job
        .run_at
        .and_then(|s| chrono::DateTime::from_timestamp(s as i64, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let (kind, about) = job
        .job
        .as_ref()
        .map(Job::describe)
        .unwrap_or(("?".into(), String::new()));
    println!(
        "{:<28} {:<20} {:<8} {:>8}  {:<20} {:<17} {about}",
        job.id, job.queue, job.status, job.attempts, kind, run_at
    );
}

async fn schedules(settings: &Settings, limit: usize) -> anyhow::Result<ExitCode> {
    let log = super::open_store(settings).await?;
    println!("{:<12} {:<8} periods done (latest first)", "schedule", "at");
    for s in Schedule::ALL {
        let mut done = schedule::done(&log, s).await?;
        done.sort_unstable_by(|a, b| b.cmp(a));
        let periods: Vec<String> = done.iter().take(limit).map(ToString::to_string).collect();
        println!(
            "{:<12} {:<8} {}",
            s.name(),
            s.time(&settings.schedules).to_string(),
            if periods.is_empty() {
                "none yet".to_owned()
            } else {
                periods.join(" ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
