//! How a notice leaves: through an SMTP relay (lettre), or as an RFC 5322 `.eml` file in the
//! outbox folder (the embedded default: nothing to configure, and a person can open the file).

use lettre::message::{Mailbox, Message, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sportello_config::{MailSecurity, MailSettings, MailTransport, Settings};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a message did not leave.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The relay refused it for good (an SMTP 5xx): trying again changes nothing.
    #[error("refused for good: {0}")]
    Permanent(String),
    /// A 4xx, a relay down or slow, a full disk: worth another try later.
    #[error("temporary failure: {0}")]
    Temporary(String),
}

/// One outgoing message, already in Italian.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Stable for one notice, so a message sent twice (a crash between sending and recording) is
    /// recognisable as one, and its outbox file is the same file.
    pub message_id: String,
    /// The outbox file's name (no personal data in it).
    pub file_name: String,
}

#[derive(Clone)]
pub enum Mailer {
    Outbox {
        dir: PathBuf,
        from: Mailbox,
    },
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl Mailer {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let mail = &settings.mail;
        let from: Mailbox = mail
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("mail.from '{}' is not an address: {e}", mail.from))?;
        Ok(match mail.transport {
            MailTransport::Outbox => Mailer::Outbox {
                dir: outbox_dir(settings),
                from,
            },
            MailTransport::Smtp => Mailer::Smtp {
                transport: smtp_transport(mail)?,
                from,
            },
        })
    }

    pub async fn send(&self, outgoing: &Outgoing) -> Result<(), SendError> {
        let from = match self {
            Mailer::Outbox { from, .. } | Mailer::Smtp { from, .. } => from.clone(),
        };
        let to: Mailbox = outgoing
            .to
            .parse()
            .map_err(|e| SendError::Permanent(format!("the recipient is not an address: {e}")))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(outgoing.subject.clone())
            .message_id(Some(outgoing.message_id.clone()))
            .header(ContentType::TEXT_PLAIN)
            .body(outgoing.body.clone())
            .map_err(|e| SendError::Permanent(format!("the message cannot be built: {e}")))?;
        match self {
            Mailer::Outbox { dir, .. } => write_eml(dir, &outgoing.file_name, &message.formatted())
                .await
                .map_err(|e| SendError::Temporary(format!("outbox {}: {e}", dir.display()))),
            Mailer::Smtp { transport, .. } => match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Temporary(e.to_string())),
            },
        }
    }
}

/// `mail.outbox_dir`, or `outbox/` beside an SQLite store.
pub fn outbox_dir(settings: &Settings) -> PathBuf {
    settings
        .mail
        .outbox_dir
        .clone()
        .unwrap_or_else(|| settings.beside_store("outbox"))
}

fn smtp_transport(mail: &MailSettings) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let builder = match mail.security {
        MailSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&mail.host),
        MailSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&mail.host)?,
        MailSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&mail.host)?,
    };
    let port = u16::try_from(mail.port)
        .map_err(|_| anyhow::anyhow!("mail.port {} is not a port", mail.port))?;
    let mut builder = builder
        .port(port)
        .timeout(Some(Duration::from_secs(mail.timeout_secs.max(1))));
    if let (Some(user), Some(password)) = (&mail.username, &mail.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

/// Writes beside and renames into place, so a reader never sees half a message.
async fn write_eml(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::File::open(&tmp).await?.sync_all().await?;
    tokio::fs::rename(&tmp, dir.join(name)).await
}
