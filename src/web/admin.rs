//! The administrators' page: the staff's accounts and the applications' tokens, the erasure of a
//! data subject (GDPR art. 17), the background jobs and the open-data publication. Admins only;
//! every change is a form with the session's token, and a secret made here (a password, a
//! token) is shown once, on the page that made it.

use super::session::SignedIn;
use super::staff::{Choice, choices, problem_text};
use super::{Layout, Section, comune_name, error_page, page, role_label};
use crate::api::Shared;
use crate::api::guard::Staff;
use crate::api::problem::{ApiError, OptionalBody, PathParams};
use crate::api::staff::{self as api, EraseRequest};
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sportello_engine::app::staff::{self as tokens, Role};
use sportello_engine::app::users;
use sportello_workers::queue::{Job, Queue, Retried};
use sportello_workers::schedule::{self, Schedule};

use super::citizen::datetime_it;

const ROLES: [Role; 4] = [Role::Operator, Role::Supervisor, Role::Analyst, Role::Admin];

pub struct UserRow {
    pub username: String,
    pub name: String,
    pub role: &'static str,
    pub comune: String,
    pub active: bool,
    pub since: String,
}

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub comune: String,
    pub issued: String,
    pub revoked: bool,
}

pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub about: String,
    pub attempts: usize,
    pub when: String,
}

#[derive(Template)]
#[template(path = "staff/admin.html")]
pub struct AdminPage {
    pub layout: Layout,
    pub users: Vec<UserRow>,
    pub tokens: Vec<TokenRow>,
    pub roles: Vec<Choice>,
    pub comuni: Vec<Choice>,
    /// (queue, state, count); none when this process runs no workers.
    pub depth: Option<Vec<(String, String, u64)>>,
    pub dead: Vec<JobRow>,
    /// Months published, latest first.
    pub published: Vec<String>,
    /// What was just done, and a secret to copy now (a password, a token).
    pub done: Option<String>,
    pub secret: Option<String>,
    /// A refusal, beside the form of the action: (action, message).
    pub refused: Option<(String, String)>,
}

impl AdminPage {
    pub fn refusal(&self, action: &str) -> Option<&String> {
        self.refused
            .as_ref()
            .filter(|(a, _)| a == action)
            .map(|(_, m)| m)
    }
}

fn admin(signed_in: &SignedIn) -> Result<(), ApiError> {
    Staff(signed_in.member().clone()).require(Role::Admin)
}

fn when(at: Option<u64>) -> String {
    at.and_then(|s| DateTime::<Utc>::from_timestamp(s as i64, 0))
        .map(datetime_it)
        .unwrap_or_default()
}

/// A queue and a state as the page says them (apalis names them in English).
fn job_words(queue: &str, state: &str) -> (String, String) {
    let queue = match queue {
        "notices" => "comunicazioni ai cittadini",
        "scheduled" => "lavori pianificati",
        other => other,
    };
    let state = match state.to_lowercase().as_str() {
        "pending" | "queued" => "in attesa",
        "running" => "in corso",
        "done" => "completati",
        "failed" => "falliti, da riprovare",
        "killed" => "abbandonati",
        other => return (queue.to_owned(), other.to_owned()),
    };
    (queue.to_owned(), state.to_owned())
}

fn queue_failed(e: sportello_workers::queue::QueueError) -> ApiError {
    ApiError::failed(true, "queue_unavailable", &e)
}

async fn dead_jobs<J: Job>(queue: &Queue<J>, rows: &mut Vec<JobRow>) -> Result<(), ApiError> {
    for status in ["Failed", "Killed"] {
        for job in queue.list(status, 20).await.map_err(queue_failed)? {
            let (kind, about) = job.job.as_ref().map(Job::describe).unwrap_or_default();
            rows.push(JobRow {
                id: job.id,
                queue: job.queue,
                kind,
                about,
                attempts: job.attempts,
                when: when(job.done_at.or(job.run_at)),
            });
        }
    }
    Ok(())
}

async fn admin_page(
    state: &Shared,
    signed_in: &SignedIn,
    done: Option<String>,
    secret: Option<String>,
    refused: Option<(&str, ApiError)>,
) -> Response {
    let log = state.urp.log();
    let (users, tokens, published) = match (
        users::list(log).await,
        tokens::list(log).await,
        schedule::done(log, Schedule::Publication).await,
    ) {
        (Ok(u), Ok(t), Ok(p)) => (u, t, p),
        (Err(e), ..) | (_, Err(e), _) => return error_page(state, e.into()),
        (.., Err(e)) => return error_page(state, ApiError::failed(true, "store_unavailable", &e)),
    };
    let (mut depth, mut dead) = (None, Vec::new());
    if let Some(queues) = &state.queue {
        let counted = queues.depth().await.map_err(queue_failed);
        let listed = async {
            dead_jobs(&queues.notices, &mut dead).await?;
            dead_jobs(&queues.scheduled, &mut dead).await
        }
        .await;
        match (counted, listed) {
            (Ok(counted), Ok(())) => {
                depth = Some(
                    counted
                        .into_iter()
                        .filter(|(_, _, n)| *n > 0.0)
                        .map(|(q, s, n)| {
                            let (q, s) = job_words(q, &s);
                            (q, s, n as u64)
                        })
                        .collect(),
                )
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(detail = %e.detail, "jobs not listed"),
        }
    }
    let mut published: Vec<String> = published.iter().map(ToString::to_string).collect();
    published.sort_unstable_by(|a, b| b.cmp(a));
    published.truncate(12);
    let status = refused.as_ref().map_or(StatusCode::OK, |(_, e)| e.status);
    page(
        status,
        &AdminPage {
            layout: Layout::staff(state, "Amministrazione", Section::Admin, Some(signed_in)),
            users: users
                .into_iter()
                .map(|u| UserRow {
                    comune: comune_name(state, &u.comune),
                    role: role_label(u.role),
                    since: datetime_it(u.created_at),
                    username: u.username,
                    name: u.name,
                    active: u.active,
                })
                .collect(),
            tokens: tokens
                .into_iter()
                .rev()
                .map(|t| TokenRow {
                    id: t.token_id.to_string(),
                    comune: comune_name(state, &t.comune),
                    role: role_label(t.role),
                    issued: datetime_it(t.issued_at),
                    name: t.name,
                    revoked: t.revoked,
                })
                .collect(),
            roles: choices(
                ROLES
                    .iter()
                    .map(|r| (r.as_str().to_owned(), role_label(*r))),
            ),
            comuni: choices(
                state
                    .settings
                    .comuni
                    .iter()
                    .map(|c| (c.istat.to_string(), c.name.as_str())),
            ),
            depth,
            dead,
            published,
            done,
            secret,
            refused: refused.map(|(action, e)| (action.to_owned(), problem_text(&e))),
        },
    )
}

pub async fn overview(State(state): State<Shared>, signed_in: SignedIn) -> Response {
    if let Err(e) = admin(&signed_in) {
        return error_page(&state, e);
    }
    admin_page(&state, &signed_in, None, None, None).await
}

/// What the page's forms post; each action reads the fields it needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AdminForm {
    pub csrf: String,
    pub username: String,
    pub name: String,
    pub role: String,
    pub comune: String,
    pub id: String,
    pub subject: String,
    pub reason: String,
    pub confirm: Option<String>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::invalid(field, "invalid", message)
}

fn configured(state: &Shared, comune: &str) -> Result<(), ApiError> {
    state
        .urp
        .check_comune(comune)
        .map_err(|_| invalid("comune", "Scegli un comune di questa installazione."))
}

fn role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| invalid("role", "Scegli un ruolo dall'elenco."))
}

fn user_refused(e: users::UserError) -> ApiError {
    match e {
        users::UserError::Store(e) => e.into(),
        other => ApiError::invalid(
            "username",
            "user_refused",
            match other {
                users::UserError::BadUsername => "Il nome utente deve avere da 3 a 64 caratteri: lettere minuscole, cifre, punti, trattini o trattini bassi.".to_owned(),
                users::UserError::Exists(u) => format!("Il nome utente «{u}» esiste già."),
                users::UserError::Unknown(u) => format!("Nessun utente attivo «{u}»."),
                other => other.to_string(),
            },
        ),
    }
}

/// Carries out one action; returns what the page says and the secret to show, if any.
async fn perform(
    state: &Shared,
    signed_in: &SignedIn,
    action: &str,
    form: AdminForm,
) -> Result<(String, Option<String>), ApiError> {
    let log = state.urp.log();
    let name = form.name.trim();
    match action {
        "crea-utente" => {
            let role = role(&form.role)?;
            configured(state, &form.comune)?;
            if name.is_empty() {
                return Err(invalid("name", "Scrivi il nome della persona."));
            }
            let password = users::generated_password();
            users::create(
                log,
                &form.username,
                name,
                role,
                &form.comune,
                password.clone(),
            )
            .await
            .map_err(user_refused)?;
            Ok((
                format!(
                    "Utente «{}» creato. Consegna la password alla persona: non sarà più mostrata.",
                    form.username.trim().to_lowercase()
                ),
                Some(password),
            ))
        }
        "disattiva-utente" => {
            let id = users::disable(log, &form.username)
                .await
                .map_err(user_refused)?;
            state.views.close_sessions_of(id).await?;
            Ok((format!("Utente «{}» disattivato.", form.username), None))
        }
        "crea-token" => {
            let role = role(&form.role)?;
            configured(state, &form.comune)?;
            if name.is_empty() {
                return Err(invalid("name", "Scrivi chi userà il token."));
            }
            let issued = tokens::issue(log, name, role, &form.comune).await?;
            Ok((
                "Token creato. Copialo ora nell'applicazione: non sarà più mostrato.".into(),
                Some(issued.token),
            ))
        }
        "revoca-token" => {
            let id = form
                .id
                .parse()
                .map_err(|_| invalid("id", "Token sconosciuto."))?;
            if tokens::revoke(log, id).await? {
                Ok((
                    "Token revocato: smette di funzionare entro 30 secondi.".into(),
                    None,
                ))
            } else {
                Err(invalid("id", "Il token non esiste o è già revocato."))
            }
        }
        "cancella-interessato" => {
            if form.confirm.is_none() {
                return Err(invalid(
                    "confirm",
                    "Conferma la cancellazione: i dati personali non si potranno più leggere.",
                ));
            }
            let reason = Some(form.reason.trim().to_owned()).filter(|r| !r.is_empty());
            let erased = api::erase_subject(
                State(state.clone()),
                Staff(signed_in.member().clone()),
                PathParams(form.subject.trim().to_owned()),
                OptionalBody(EraseRequest { reason }),
            )
            .await?
            .0;
            Ok((
                format!(
                    "I dati personali dell'interessato {} sono stati cancellati{}.",
                    erased.subject_id,
                    if erased.search_scrubbed {
                        ""
                    } else {
                        " (la ricerca per oggetto li toglierà appena aggiornata)"
                    }
                ),
                None,
            ))
        }
        "riprova-lavoro" => {
            let queues = state.queue.as_ref().ok_or_else(|| {
                invalid(
                    "id",
                    "I lavori girano in un altro processo: usa sportello jobs retry.",
                )
            })?;
            let attempts = state.settings.workers.notice_attempts.max(1);
            match queues
                .retry(form.id.trim(), attempts)
                .await
                .map_err(queue_failed)?
            {
                Retried::Queued(new_id) => {
                    Ok((format!("Lavoro rimesso in coda come {new_id}."), None))
                }
                Retried::NotFailed(_) => Err(invalid("id", "Si riprova solo un lavoro fallito.")),
                Retried::Unreadable => Err(invalid("id", "Il lavoro non contiene dati leggibili.")),
                Retried::Missing => Err(invalid("id", "Il lavoro non esiste.")),
            }
        }
        _ => Err(ApiError::not_found(
            "not_found",
            "La risorsa richiesta non esiste.",
        )),
    }
}

pub async fn act(
    State(state): State<Shared>,
    signed_in: SignedIn,
    PathParams(action): PathParams<String>,
    Form(form): Form<AdminForm>,
) -> Response {
    if let Err(e) = admin(&signed_in).and_then(|()| signed_in.check(&form.csrf)) {
        return error_page(&state, e);
    }
    match perform(&state, &signed_in, &action, form).await {
        Ok((done, secret)) => admin_page(&state, &signed_in, Some(done), secret, None).await,
        Err(e)
            if e.status.is_client_error() && e.status != StatusCode::NOT_FOUND
                || e.code == "subject_not_found" =>
        {
            admin_page(&state, &signed_in, None, None, Some((&action, e))).await
        }
        Err(e) => error_page(&state, e),
    }
}
