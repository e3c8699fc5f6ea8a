//! `sportello user create|password|disable`: the staff's accounts for the pages.

use super::open_store;
use super::token::configured_comune;
use anyhow::{Context, bail};
use sportello_config::Settings;
use sportello_engine::app::staff::Role;
use sportello_engine::app::users::{self, UserError};
use sportello_projections::Views;
use std::io::BufRead;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create an account. Without --password-stdin a password is generated and printed once,
    /// as the last line.
    Create {
        /// 3 to 64 lowercase letters, digits, dots, dashes or underscores (e.g. mario.rossi).
        #[arg(long)]
        username: String,
        /// The person's name, recorded as the actor of what they do.
        #[arg(long)]
        name: String,
        /// operator, supervisor, analyst or admin.
        #[arg(long)]
        role: String,
        /// ISTAT code of the comune whose cases the user works on.
        #[arg(long)]
        comune: String,
        /// Read the password from the first line of standard input (12 characters or more).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (generated and printed unless --password-stdin); the user's open
    /// sessions end.
    Password {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account for good; its open sessions end at once.
    Disable {
        #[arg(long)]
        username: String,
    },
}

/// The password from stdin, or a generated one (and whether to print it).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false));
    }
    Ok((users::generated_password(), true))
}

fn refused(e: UserError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn run(settings: &Settings, command: UserCommand) -> anyhow::Result<ExitCode> {
    let log = open_store(settings).await?;
    match command {
        UserCommand::Create {
            username,
            name,
            role,
            comune,
            password_stdin,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("unknown role '{role}' (operator, supervisor, analyst, admin)");
            };
            configured_comune(settings, &comune)?;
            if name.trim().is_empty() {
                bail!("the user's name must not be empty");
            }
            let (password, generated) = password(password_stdin)?;
            let id = users::create(&log, &username, &name, role, &comune, password.clone())
                .await
                .map_err(refused)?;
            println!(
                "user {} ({id}): {}, {}, comune {comune}",
                username.trim().to_lowercase(),
                name.trim(),
                role.as_str()
            );
            if generated {
                println!("password, shown only now:");
                println!("{password}");
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Password {
            username,
            password_stdin,
        } => {
            let (password, generated) = password(password_stdin)?;
            users::set_password(&log, &username, password.clone())
                .await
                .map_err(refused)?;
            end_sessions(settings, users::user_id(&username)).await?;
            println!("password of {username} changed; its open sessions ended");
            if generated {
                println!("new password, shown only now:");
                println!("{password}");
            }
            Ok(ExitCode::SUCCESS)
        }
        UserCommand::Disable { username } => {
            let id = users::disable(&log, &username).await.map_err(refused)?;
            end_sessions(settings, id).await?;
            println!("user {username} disabled; its open sessions ended");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn end_sessions(settings: &Settings, user: uuid::Uuid) -> anyhow::Result<()> {
    let views = Views::open(settings.data_url().expose())
        .await
        .context("failed to open the read models, where the sessions are")?;
    views.close_sessions_of(user).await?;
    Ok(())
}
