//! The notice job: tells the citizen what happened to their case, and records on the case that
//! it did (or why it could not). The record is what makes a redelivered job a no-op: a job whose
//! cause already has a record does nothing.
//!
//! The address is unsealed only here, only to send, and never logged or stored elsewhere.

use crate::mail::{Mailer, Outgoing, SendError};
use crate::queue::NoticeJob;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Europe::Rome;
use sportello_engine::app::{Actor, AppError, Urp};
use sportello_engine::domain::Aggregate;
use sportello_engine::domain::case::{
    Case, CaseCommand, CaseEvent, Channel, NoticeChannel, NoticeKind, NoticeOutcome,
};
use sportello_engine::vault::Unsealed;

/// What a notice job needs, shared by every job of a worker.
pub struct NoticeContext {
    pub urp: Urp,
    pub mailer: Mailer,
    /// Where citizens follow their case.
    pub public_url: String,
    /// The try after which a temporary failure is given up.
    pub attempts: usize,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Recorded with this outcome.
    Recorded(NoticeOutcome),
    /// The notice was already recorded (a redelivery, a second push): nothing done.
    AlreadyRecorded,
}

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// Recorded as given up; the job must not be retried.
    #[error("notice given up: {0}")]
    GivenUp(String),
    /// Try again later (temporary SMTP refusal, store or relay unavailable).
    #[error("{0}")]
    Retry(String),
}

/// The facts of a case a notice tells.
#[derive(Debug, Default)]
struct Facts {
    code: String,
    channel: Option<Channel>,
    email: Option<sportello_engine::vault::Sealed>,
    received_on: Option<NaiveDate>,
    due_on: Option<NaiveDate>,
    taken_in_charge_on: Option<NaiveDate>,
    office: Option<String>,
    expected_by: Option<NaiveDate>,
    documents: Vec<String>,
    answer: Option<String>,
}

fn day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Rome).date_naive()
}

fn it_date(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

impl Facts {
    /// The case as it stood when `cause` happened (a later transfer must not change what an
    /// earlier notice says).
    fn up_to(events: &[(uuid::Uuid, CaseEvent)], cause: uuid::Uuid) -> Facts {
        let mut facts = Facts::default();
        for (id, event) in events {
            match event {
                CaseEvent::CaseOpened {
                    code,
                    channel,
                    citizen,
                    received_at,
                    due_on,
                    ..
                } => {
                    facts.code = code.clone();
                    facts.channel = Some(*channel);
                    facts.email = citizen.as_ref().and_then(|c| c.email.clone());
                    facts.received_on = Some(day(*received_at));
                    facts.due_on = Some(*due_on);
                    facts.expected_by = Some(*due_on);
                }
                CaseEvent::CaseTakenInCharge {
                    office,
                    at,
                    expected_by,
                } => {
                    facts.office = Some(office.clone());
                    facts.taken_in_charge_on = Some(day(*at));
                    facts.expected_by = Some(*expected_by);
                }
                CaseEvent::DocumentsRequested { documents, .. } => {
                    facts.documents = documents.clone();
                }
                CaseEvent::DocumentsReceived { due_on, .. } => {
                    facts.due_on = Some(*due_on);
                    facts.expected_by = Some(*due_on);
                }
                CaseEvent::CaseAnswered { text, .. } => facts.answer = Some(text.clone()),
                _ => {}
            }
            if *id == cause {
                break;
            }
        }
        facts
    }
}

/// The Italian text of a notice: subject and body.
fn compose(kind: NoticeKind, facts: &Facts, follow_url: &str) -> (String, String) {
    let code = &facts.code;
    let mut lines = Vec::new();
    let subject = match kind {
        NoticeKind::Receipt => {
            lines.push(format!(
                "abbiamo ricevuto la sua richiesta{}. Il codice della pratica è {code}.",
                facts
                    .received_on
                    .map(|d| format!(" del {}", it_date(d)))
                    .unwrap_or_default()
            ));
            if let Some(due) = facts.due_on {
                lines.push(format!(
                    "Il termine per la conclusione è il {} (L. 241/1990).",
                    it_date(due)
                ));
            }
            format!("Ricevuta della richiesta {code}")
        }
        NoticeKind::TakenInCharge => {
            lines.push(format!(
                "la pratica {code} è stata presa in carico{}{}.",
                facts
                    .office
                    .as_ref()
                    .map(|o| format!(" dall'ufficio {o}"))
                    .unwrap_or_default(),
                facts
                    .taken_in_charge_on
                    .map(|d| format!(" il {}", it_date(d)))
                    .unwrap_or_default()
            ));
            format!("Pratica {code} presa in carico")
        }
        NoticeKind::DocumentsRequested => {
            lines.push(format!(
                "per proseguire la pratica {code} servono i seguenti documenti:"
            ));
            lines.extend(facts.documents.iter().map(|d| format!("  - {d}")));
            lines.push(
                "I termini sono sospesi fino al loro arrivo (L. 241/1990, art. 2 c. 7). Può \
                 inviarli dalla pagina della pratica."
                    .into(),
            );
            format!("Pratica {code}: documenti da integrare")
        }
        NoticeKind::Answered => {
            lines.push(format!("la pratica {code} ha ricevuto una risposta:"));
            if let Some(answer) = &facts.answer {
                lines.push(String::new());
                lines.push(answer.clone());
                lines.push(String::new());
            }
            format!("Risposta alla pratica {code}")
        }
    };
    if kind != NoticeKind::Answered
        && let Some(date) = facts.expected_by
    {
        if kind != NoticeKind::TakenInCharge
            && let Some(taken) = facts.taken_in_charge_on
        {
            lines.push(format!("Presa in carico il {}.", it_date(taken)));
        }
        lines.push(format!(
            "Data massima prevista per la conclusione: {}.",
            it_date(date)
        ));
    }
    let body = format!(
        "Gentile cittadina, gentile cittadino,\n\n{}\n\nPuò seguire la pratica qui: {follow_url}\n\
         con il codice {code} e la chiave di accesso ricevuta al momento della richiesta.\n\n\
         Questo messaggio è inviato automaticamente: non risponda a questo indirizzo.\n\
         Ufficio Relazioni con il Pubblico\n",
        lines.join("\n")
    );
    (subject, body)
}

/// Carries out one notice job; `attempt` counts from 1.
pub async fn deliver(
    ctx: &NoticeContext,
    job: &NoticeJob,
    attempt: usize,
) -> Result<Delivered, NoticeError> {
    let retry = |e: &dyn std::fmt::Display| NoticeError::Retry(e.to_string());
    let recorded = match ctx.urp.case_events(job.case_id).await {
        Ok(events) => events,
        // Jobs come only from events of this log: a job whose case is missing was queued by
        // another installation sharing the queue.
        Err(AppError::Refused(_)) => {
            return Err(NoticeError::GivenUp(format!(
                "case {} is not in this store: is the job queue shared with another installation?",
                job.case_id
            )));
        }
        Err(e) => return Err(retry(&e)),
    };
    let mut case = Case::default();
    let mut events = Vec::with_capacity(recorded.len());
    for event in &recorded {
        let decoded: CaseEvent = event.decode().map_err(|e| retry(&e))?;
        case = case.evolve(&decoded);
        events.push((event.id, decoded));
    }
    if case.notices.contains(&job.cause) {
        return Ok(Delivered::AlreadyRecorded);
    }
    let facts = Facts::up_to(&events, job.cause);
    let channel = match facts.channel {
        Some(Channel::Pec) => NoticeChannel::Pec,
        _ => NoticeChannel::Email,
    };
    let record = |outcome| record(ctx, job, channel, outcome);
    let Some(sealed) = &facts.email else {
        return record(NoticeOutcome::SkippedNoAddress).await;
    };
    let address = match ctx.urp.vault().unseal(sealed).await {
        Ok(Unsealed::Clear(address)) => address,
        Ok(Unsealed::Erased) => return record(NoticeOutcome::SkippedErased).await,
        Err(e) => return Err(retry(&e)),
    };
    let follow_url = format!(
        "{}/cases/{}",
        ctx.public_url.trim_end_matches('/'),
        facts.code
    );
    let (subject, body) = compose(job.kind, &facts, &follow_url);
    let outgoing = Outgoing {
        to: address,
        subject,
        body,
        message_id: format!("<{}.{}@sportello>", job.cause, job.kind.name()),
        file_name: format!("{}-{}-{}.eml", facts.code, job.kind.name(), job.cause),
    };
    match ctx.mailer.send(&outgoing).await {
        Ok(()) => record(NoticeOutcome::Sent).await,
        Err(SendError::Permanent(reason)) => {
            record(NoticeOutcome::GivenUp).await?;
            Err(NoticeError::GivenUp(reason))
        }
        Err(SendError::Temporary(reason)) if attempt >= ctx.attempts => {
            record(NoticeOutcome::GivenUp).await?;
            Err(NoticeError::GivenUp(format!(
                "{reason} (after {attempt} tries)"
            )))
        }
        Err(SendError::Temporary(reason)) => Err(NoticeError::Retry(reason)),
    }
}

async fn record(
    ctx: &NoticeContext,
    job: &NoticeJob,
    channel: NoticeChannel,
    outcome: NoticeOutcome,
) -> Result<Delivered, NoticeError> {
    let actor = Actor {
        name: "system:notices".into(),
        ..Actor::default()
    };
    let command = CaseCommand::RecordNotice {
        kind: job.kind,
        channel,
        outcome,
        cause: job.cause,
        at: Utc::now(),
    };
    // From the cause and the outcome: a retried record is the same command, while a notice sent
    // after an earlier one was given up is a new one.
    let command_id = uuid::Uuid::new_v5(&job.cause, format!("notice:{outcome:?}").as_bytes());
    ctx.urp
        .act(&actor, job.case_id, command_id, command)
        .await
        .map_err(|e| NoticeError::Retry(e.to_string()))?;
    tracing::info!(case = %job.case_id, kind = job.kind.name(), ?outcome, "notice recorded");
    Ok(Delivered::Recorded(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            code: "MAS-2026-000042".into(),
            received_on: NaiveDate::from_ymd_opt(2026, 3, 2),
            due_on: NaiveDate::from_ymd_opt(2026, 4, 1),
            expected_by: NaiveDate::from_ymd_opt(2026, 3, 20),
            taken_in_charge_on: NaiveDate::from_ymd_opt(2026, 3, 3),
            office: Some("Tributi".into()),
            documents: vec!["Copia del documento d'identità".into()],
            answer: Some("La TARI è stata ricalcolata.".into()),
            ..Facts::default()
        }
    }

    #[test]
    fn a_receipt_names_the_code_the_term_and_the_link() {
        let (subject, body) = compose(
            NoticeKind::Receipt,
            &facts(),
            "https://urp.example/cases/MAS-2026-000042",
        );
        assert_eq!(subject, "Ricevuta della richiesta MAS-2026-000042");
        assert!(body.contains("del 02/03/2026"), "{body}");
        assert!(body.contains("01/04/2026"), "{body}");
        assert!(
            body.contains("https://urp.example/cases/MAS-2026-000042"),
            "{body}"
        );
    }

    #[test]
    fn taking_in_charge_tells_when_and_the_latest_expected_date() {
        let (_, body) = compose(NoticeKind::TakenInCharge, &facts(), "u");
        assert!(
            body.contains("dall'ufficio Tributi il 03/03/2026"),
            "{body}"
        );
        assert!(
            body.contains("Data massima prevista per la conclusione: 20/03/2026"),
            "{body}"
        );
    }

    #[test]
    fn a_request_lists_the_documents_and_the_answer_carries_its_text() {
        let (_, body) = compose(NoticeKind::DocumentsRequested, &facts(), "u");
        assert!(
            body.contains("  - Copia del documento d'identità"),
            "{body}"
        );
        let (_, body) = compose(NoticeKind::Answered, &facts(), "u");
        assert!(body.contains("La TARI è stata ricalcolata."), "{body}");
    }
}
