//! Rating a service page or a closed case (CAD art. 7 c. 3): the Designers Italia component —
//! stars, then the question that depends on the score, then a comment of at most 200 characters
//! — or, for a comune that uses it, the three faces of "Mettiamoci la faccia" (reasons after a
//! dissatisfied face). Without JavaScript it takes two steps: the score, then the follow-up. The
//! rating goes through the API's own handler (`POST /api/v1/feedback`).

use super::{Layout, Section, error_page, page};
use crate::api::Shared;
use crate::api::guard::ClientAddr;
use crate::api::problem::{ApiError, Body};
use crate::api::public::{FeedbackRequest, FeedbackTarget, feedback};
use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use sportello_engine::domain::case::Channel;
use sportello_engine::domain::feedback::{MAX_COMMENT_CHARS, Scale, TargetType, reasons_for};
use std::collections::BTreeMap;
use uuid::Uuid;

/// What a page needs to offer its rating box.
pub struct RatingBox {
    /// `service` or `case`.
    pub target_type: &'static str,
    pub target_id: String,
    pub comune: String,
    pub faces: bool,
    /// A case's access key (it proves the rating is the citizen's); empty otherwise.
    pub key: String,
    /// The page to go back to.
    pub back: String,
    pub question: &'static str,
}

impl RatingBox {
    /// The box of a service page.
    pub fn service(code: &str, comune: String) -> Self {
        Self {
            target_type: "service",
            target_id: code.to_owned(),
            comune,
            faces: false,
            key: String::new(),
            back: format!("/servizi/{code}"),
            question: "Quanto sono chiare le informazioni su questa pagina?",
        }
    }

    /// The box of a closed case, on its comune's scale.
    pub fn case(state: &Shared, code: &str, key: &str, comune: &str) -> Self {
        let faces = state
            .settings
            .comuni
            .iter()
            .any(|c| c.istat.to_string() == comune && c.mettiamoci_la_faccia);
        Self {
            target_type: "case",
            target_id: code.to_owned(),
            comune: comune.to_owned(),
            faces,
            key: key.to_owned(),
            back: "/pratiche".into(),
            question: if faces {
                "Come giudichi il servizio che hai ricevuto?"
            } else {
                "Quanto sei soddisfatto di come è stata gestita la tua richiesta?"
            },
        }
    }

    /// The scores offered in the order the box shows them (Bootstrap Italia's stars go from 5
    /// down, drawn right to left): (value, what a screen reader says, the face shown).
    pub fn scores(&self) -> Vec<(u8, &'static str, &'static str)> {
        if self.faces {
            vec![
                (1, "Insoddisfatto", "☹"),
                (2, "Né soddisfatto né insoddisfatto", "😐"),
                (3, "Soddisfatto", "☺"),
            ]
        } else {
            vec![
                (5, "Valuta 5 stelle su 5", ""),
                (4, "Valuta 4 stelle su 5", ""),
                (3, "Valuta 3 stelle su 5", ""),
                (2, "Valuta 2 stelle su 5", ""),
                (1, "Valuta 1 stella su 5", ""),
            ]
        }
    }
}

/// Both steps post every field of the box; the second adds the reasons and the comment.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct RatingForm {
    target_type: String,
    target_id: String,
    comune: String,
    scale: String,
    key: String,
    back: String,
    score: String,
    /// Set on the second step.
    step: String,
    comment: String,
    token: String,
}

#[derive(Template)]
#[template(path = "rating_step.html")]
struct StepPage {
    layout: Layout,
    form: RatingForm,
    question: &'static str,
    reasons: Vec<(&'static str, &'static str)>,
    chosen: Vec<String>,
    max_comment: usize,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "rating_done.html")]
struct DonePage {
    layout: Layout,
    back: String,
}

fn scale_of(form: &RatingForm) -> Option<Scale> {
    match form.scale.as_str() {
        "stars" => Some(Scale::Stars),
        "faces" => Some(Scale::Faces),
        _ => None,
    }
}

/// Back only to this site's own pages.
fn back(path: &str) -> String {
    if path.starts_with('/') && !path.starts_with("//") {
        path.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-/_.".contains(*c))
            .collect()
    } else {
        "/".into()
    }
}

/// `POST /valutazione`: the score (first step) or the follow-up (second).
pub async fn rate(
    State(state): State<Shared>,
    ClientAddr(address): ClientAddr,
    Form(fields): Form<BTreeMap<String, String>>,
) -> Response {
    // Each reason is a checkbox of its own (`reason_<code>`): a form without repeated names.
    let chosen: Vec<String> = fields
        .keys()
        .filter_map(|k| k.strip_prefix("reason_").map(str::to_owned))
        .collect();
    let form: RatingForm = serde_json::to_value(&fields)
        .and_then(serde_json::from_value)
        .unwrap_or_default();
    let back = back(&form.back);
    let (Some(scale), Ok(score)) = (scale_of(&form), form.score.parse::<u8>()) else {
        return error_page(
            &state,
            ApiError::invalid(
                "score",
                "score_required",
                "Scegli una valutazione prima di inviarla.",
            ),
        );
    };
    let reasons = reasons_for(scale, score);
    let question = match (scale, score) {
        (Scale::Faces, 1) => "Che cosa non ha funzionato?",
        (Scale::Faces, _) => "Vuoi aggiungere qualcosa?",
        (Scale::Stars, 1..=3) => "Dove hai incontrato le maggiori difficoltà?",
        (Scale::Stars, _) => "Quali sono stati gli aspetti che hai preferito?",
    };
    let step = |form: RatingForm, chosen: Vec<String>, status, problem| {
        page(
            status,
            &StepPage {
                layout: Layout::new(&state, "Valutazione", Section::Other),
                form,
                question,
                reasons: reasons.to_vec(),
                chosen,
                max_comment: MAX_COMMENT_CHARS,
                problem,
            },
        )
    };
    if form.step.is_empty() {
        let form = RatingForm {
            token: Uuid::new_v4().to_string(),
            back,
            ..form
        };
        return step(form, Vec::new(), StatusCode::OK, None);
    }
    if let Err(e) = state.limiter.check(address) {
        return error_page(&state, e);
    }
    let target_type = match form.target_type.as_str() {
        "case" => TargetType::Case,
        "service" => TargetType::Service,
        _ => TargetType::Page,
    };
    let comment = Some(form.comment.trim().to_owned()).filter(|c| !c.is_empty());
    let request = FeedbackRequest {
        target: FeedbackTarget {
            target_type,
            id: form.target_id.clone(),
        },
        comune: form.comune.clone(),
        channel: Channel::Web,
        scale,
        score,
        reasons: chosen.clone(),
        comment,
        access_key: Some(form.key.clone()).filter(|k| !k.is_empty()),
    };
    // The second step posted twice (a double click) is one rating.
    let mut headers = HeaderMap::new();
    let fingerprint = format!(
        "{}|{}|{}|{}|{}|{:?}|{}",
        form.target_type, form.target_id, form.comune, form.scale, score, chosen, form.comment
    );
    if let Ok(token) = Uuid::parse_str(&form.token)
        && let Ok(value) = HeaderValue::from_str(&format!("rating-{token}"))
    {
        headers.insert("idempotency-key", value);
    }
    match feedback(
        State(state.clone()),
        ClientAddr(address),
        headers,
        Body(request, fingerprint),
    )
    .await
    {
        Ok(_) => page(
            StatusCode::OK,
            &DonePage {
                layout: Layout::new(&state, "Grazie per la tua valutazione", Section::Other),
                back,
            },
        ),
        Err(e) if e.status.is_client_error() && e.status != StatusCode::TOO_MANY_REQUESTS => {
            let problem = super::staff::problem_text(&e);
            step(RatingForm { back, ..form }, chosen, e.status, Some(problem))
        }
        Err(e) => error_page(&state, e),
    }
}
