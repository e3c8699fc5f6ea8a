//! aiosmtpd, a real SMTP server, for the workers' tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// aiosmtpd on a free port, storing what it accepts in a folder; stopped when dropped.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
}

impl SmtpServer {
    pub fn start(maildir: &Path) -> SmtpServer {
        let python = super::python_tools("the SMTP test server needs aiosmtpd");
        let mut child = Command::new(python)
            .arg("tests/smtp/server.py")
            .arg(maildir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the SMTP test server starts");
        let line = super::first_line(&mut child);
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line of the SMTP server: {line:?}"));
        SmtpServer {
            child,
            port,
            maildir: maildir.to_owned(),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("SPORTELLO__MAIL__TRANSPORT", "smtp".to_owned()),
            ("SPORTELLO__MAIL__HOST", "127.0.0.1".to_owned()),
            ("SPORTELLO__MAIL__PORT", self.port.to_string()),
            ("SPORTELLO__MAIL__SECURITY", "none".to_owned()),
            ("SPORTELLO__MAIL__TIMEOUT_SECS", "10".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }

    /// Where it stores what it accepts, one `.eml` file a message.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The messages accepted so far: (recipient, subject, message id).
    pub fn messages(&self) -> Vec<(String, String, String)> {
        read_messages(&self.maildir)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each `.eml` in `dir` as (To, Subject, Message-ID).
pub fn read_messages(dir: &Path) -> Vec<(String, String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut messages = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".eml") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        messages.push((header("To:"), header("Subject:"), header("Message-ID:")));
    }
    messages
}
