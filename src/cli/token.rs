//! `sportello token create|revoke`: the staff's access tokens.

use super::open_store;
use anyhow::bail;
use sportello_config::Settings;
use sportello_engine::app::staff::{self, Role};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token; it is printed once, as the last line (only its hash is stored).
    Create {
        /// operator, supervisor, analyst or admin.
        #[arg(long)]
        role: String,
        /// ISTAT code of the comune whose cases the holder works on.
        #[arg(long)]
        comune: String,
        /// Who holds it (recorded as the actor of what they do).
        #[arg(long)]
        name: String,
    },
    /// Revoke a token by its id (effective within 30 seconds on running servers).
    Revoke { id: uuid::Uuid },
}

/// Refuses a comune this installation does not serve, naming those it does.
pub(super) fn configured_comune(settings: &Settings, comune: &str) -> anyhow::Result<()> {
    if settings
        .comuni
        .iter()
        .any(|c| c.istat.to_string() == comune)
    {
        return Ok(());
    }
    bail!(
        "comune {comune} is not configured (known: {})",
        settings
            .comuni
            .iter()
            .map(|c| format!("{} {}", c.istat, c.name))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

pub async fn run(settings: &Settings, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let log = open_store(settings).await?;
    match command {
        TokenCommand::Create { role, comune, name } => {
            let Some(role) = Role::parse(&role) else {
                bail!("unknown role '{role}' (operator, supervisor, analyst, admin)");
            };
            configured_comune(settings, &comune)?;
            if name.trim().is_empty() {
                bail!("the holder's name must not be empty");
            }
            let issued = staff::issue(&log, name.trim(), role, &comune).await?;
            println!(
                "token {} for {} ({}, comune {comune}); it is shown only now:",
                issued.token_id,
                name.trim(),
                role.as_str()
            );
            println!("{}", issued.token);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id } => {
            if staff::revoke(&log, id).await? {
                println!("token {id} revoked");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no live token {id}");
                Ok(ExitCode::from(1))
            }
        }
    }
}
