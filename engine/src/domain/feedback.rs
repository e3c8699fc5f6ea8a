//! A citizen's rating (`feedback-<uuid>`) of a service, a page or a closed case (CAD art. 7 c.3).
//!
//! Two scales: the three faces of "Mettiamoci la faccia" (1 dissatisfied, 2 neutral, 3 satisfied;
//! after a dissatisfied face, a choice among reasons) and the Designers Italia 1–5 stars (≤ 3 asks
//! where the difficulties were, ≥ 4 what worked well), then an optional comment of at most 200
//! characters, sealed like every text a citizen writes. A closed case takes one feedback: its
//! feedback stream id is derived from the case id, so a second one finds the stream taken.

use super::case::{CaseKind, Channel};
use super::{Aggregate, DomainError, RefusalKind};
use crate::vault::Sealed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const MAX_COMMENT_CHARS: usize = 200;

/// Reasons after a dissatisfied face (Mettiamoci la faccia).
pub const FACES_REASONS: &[(&str, &str)] = &[
    ("tempi_di_attesa", "Tempi di attesa"),
    ("cortesia", "Cortesia e disponibilità del personale"),
    ("chiarezza", "Chiarezza delle informazioni"),
    ("competenza", "Competenza del personale"),
    ("esito", "Esito del servizio"),
    ("altro", "Altro"),
];

/// "Dove hai incontrato le maggiori difficoltà?" (stars 1–3, Designers Italia).
pub const STARS_DIFFICULTIES: &[(&str, &str)] = &[
    (
        "indicazioni_non_chiare",
        "A volte le indicazioni non erano chiare",
    ),
    (
        "indicazioni_non_complete",
        "A volte le indicazioni non erano complete",
    ),
    (
        "procedura_incerta",
        "A volte non capivo se stavo procedendo correttamente",
    ),
    ("problemi_tecnici", "Ho avuto problemi tecnici"),
    ("altro", "Altro"),
];

/// "Quali sono stati gli aspetti che hai preferito?" (stars 4–5, Designers Italia).
pub const STARS_STRENGTHS: &[(&str, &str)] = &[
    ("indicazioni_chiare", "Le indicazioni erano chiare"),
    ("indicazioni_complete", "Le indicazioni erano complete"),
    (
        "procedura_chiara",
        "Capivo sempre che stavo procedendo correttamente",
    ),
    ("nessun_problema_tecnico", "Non ho avuto problemi tecnici"),
    ("altro", "Altro"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    Service,
    Page,
    Case,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub target_type: TargetType,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Faces,
    Stars,
}

/// A comment as the command carries it: sealed, with the length of its clear text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedComment {
    pub sealed: Sealed,
    pub chars: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FeedbackEvent {
    FeedbackGiven {
        target: Target,
        comune: String,
        channel: Channel,
        scale: Scale,
        score: u8,
        reasons: Vec<String>,
        comment: Option<Sealed>,
        given_at: DateTime<Utc>,
        /// For a case target: the kind of the case, so statistics can group by it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        case_kind: Option<CaseKind>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveFeedback {
    pub target: Target,
    pub comune: String,
    pub channel: Channel,
    pub scale: Scale,
    pub score: u8,
    pub reasons: Vec<String>,
    pub comment: Option<SealedComment>,
    pub given_at: DateTime<Utc>,
    /// For a case target: whether the case is closed (looked up before deciding).
    pub case_closed: Option<bool>,
    /// For a case target: its kind (looked up before deciding).
    pub case_kind: Option<CaseKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    #[error("feedback was already given")]
    AlreadyGiven,
    #[error("score {score} is outside the {scale:?} scale")]
    ScoreOutOfRange { scale: Scale, score: u8 },
    #[error("reason '{0}' is not one of the choices offered for this score")]
    UnknownReason(String),
    #[error("reasons are asked only after a dissatisfied face")]
    ReasonsNotAsked,
    #[error("the comment has {0} characters, more than 200")]
    CommentTooLong(usize),
    #[error("only a closed case can be rated")]
    CaseNotClosed,
    #[error("the target id is empty")]
    EmptyTarget,
}

impl DomainError for FeedbackError {
    fn kind(&self) -> RefusalKind {
        match self {
            FeedbackError::AlreadyGiven | FeedbackError::CaseNotClosed => RefusalKind::Conflict,
            _ => RefusalKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            FeedbackError::AlreadyGiven => "feedback_already_given",
            FeedbackError::ScoreOutOfRange { .. } => "feedback_score_out_of_range",
            FeedbackError::UnknownReason(_) => "feedback_unknown_reason",
            FeedbackError::ReasonsNotAsked => "feedback_reasons_not_asked",
            FeedbackError::CommentTooLong(_) => "feedback_comment_too_long",
            FeedbackError::CaseNotClosed => "feedback_case_not_closed",
            FeedbackError::EmptyTarget => "feedback_target_empty",
        }
    }

    fn message_it(&self) -> String {
        match self {
            FeedbackError::AlreadyGiven => {
                "Hai già espresso una valutazione per questa pratica.".into()
            }
            FeedbackError::ScoreOutOfRange {
                scale: Scale::Faces,
                ..
            } => "Il giudizio deve essere 1 (insoddisfatto), 2 (neutro) o 3 (soddisfatto).".into(),
            FeedbackError::ScoreOutOfRange {
                scale: Scale::Stars,
                ..
            } => "La valutazione deve essere da 1 a 5 stelle.".into(),
            FeedbackError::UnknownReason(r) => {
                format!("La motivazione «{r}» non è tra quelle proposte.")
            }
            FeedbackError::ReasonsNotAsked => {
                "Le motivazioni si indicano solo dopo un giudizio negativo.".into()
            }
            FeedbackError::CommentTooLong(n) => {
                format!("Il commento può avere al massimo 200 caratteri (ne ha {n}).")
            }
            FeedbackError::CaseNotClosed => "Si può valutare solo una pratica chiusa.".into(),
            FeedbackError::EmptyTarget => "Indica che cosa stai valutando.".into(),
        }
    }
}

/// The reasons a score may carry, by scale.
pub fn reasons_for(scale: Scale, score: u8) -> &'static [(&'static str, &'static str)] {
    match (scale, score) {
        (Scale::Faces, 1) => FACES_REASONS,
        (Scale::Faces, _) => &[],
        (Scale::Stars, 1..=3) => STARS_DIFFICULTIES,
        (Scale::Stars, _) => STARS_STRENGTHS,
    }
}

/// The stream id of the one feedback a closed case may receive.
pub fn feedback_id_for_case(case_id: Uuid) -> Uuid {
    Uuid::new_v5(&case_id, b"feedback")
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feedback {
    pub given: bool,
}

impl Aggregate for Feedback {
    type Command = GiveFeedback;
    type Event = FeedbackEvent;
    type Error = FeedbackError;
    const CATEGORY: &'static str = "feedback";

    fn decide(&self, c: &GiveFeedback) -> Result<Vec<FeedbackEvent>, FeedbackError> {
        if self.given {
            return Err(FeedbackError::AlreadyGiven);
        }
        if c.target.id.trim().is_empty() {
            return Err(FeedbackError::EmptyTarget);
        }
        let range = match c.scale {
            Scale::Faces => 1..=3,
            Scale::Stars => 1..=5,
        };
        if !range.contains(&c.score) {
            return Err(FeedbackError::ScoreOutOfRange {
                scale: c.scale,
                score: c.score,
            });
        }
        let allowed = reasons_for(c.scale, c.score);
        if allowed.is_empty() && !c.reasons.is_empty() {
            return Err(FeedbackError::ReasonsNotAsked);
        }
        if let Some(unknown) = c
            .reasons
            .iter()
            .find(|r| !allowed.iter().any(|(code, _)| code == r))
        {
            return Err(FeedbackError::UnknownReason(unknown.clone()));
        }
        if let Some(comment) = &c.comment
            && comment.chars > MAX_COMMENT_CHARS
        {
            return Err(FeedbackError::CommentTooLong(comment.chars));
        }
        if c.target.target_type == TargetType::Case && c.case_closed != Some(true) {
            return Err(FeedbackError::CaseNotClosed);
        }
        let mut reasons = c.reasons.clone();
        reasons.sort();
        reasons.dedup();
        Ok(vec![FeedbackEvent::FeedbackGiven {
            target: c.target.clone(),
            comune: c.comune.clone(),
            channel: c.channel,
            scale: c.scale,
            score: c.score,
            reasons,
            comment: c.comment.as_ref().map(|s| s.sealed.clone()),
            given_at: c.given_at,
            case_kind: c
                .case_kind
                .filter(|_| c.target.target_type == TargetType::Case),
        }])
    }

    fn evolve(mut self, _event: &FeedbackEvent) -> Self {
        self.given = true;
        self
    }

    fn event_type(_event: &FeedbackEvent) -> &'static str {
        "FeedbackGiven"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::harness::given;
    use chrono::TimeZone;

    fn give(scale: Scale, score: u8, reasons: &[&str]) -> GiveFeedback {
        GiveFeedback {
            target: Target {
                target_type: TargetType::Service,
                id: "anagrafe.residenza".into(),
            },
            comune: "073004".into(),
            channel: Channel::Web,
            scale,
            score,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            comment: None,
            given_at: Utc.with_ymd_and_hms(2026, 5, 4, 11, 0, 0).unwrap(),
            case_closed: None,
            case_kind: None,
        }
    }

    fn given_event(c: &GiveFeedback) -> FeedbackEvent {
        FeedbackEvent::FeedbackGiven {
            target: c.target.clone(),
            comune: c.comune.clone(),
            channel: c.channel,
            scale: c.scale,
            score: c.score,
            reasons: c.reasons.clone(),
            comment: None,
            given_at: c.given_at,
            case_kind: c.case_kind,
        }
    }

    #[test]
    fn a_dissatisfied_face_records_its_reasons() {
        let c = give(Scale::Faces, 1, &["cortesia", "tempi_di_attesa"]);
        let mut expected = c.clone();
        expected.reasons = vec!["cortesia".into(), "tempi_di_attesa".into()];
        given::<Feedback>(&[])
            .when(&c)
            .then(&[given_event(&expected)]);
    }

    #[test]
    fn it_rejects_reasons_after_a_satisfied_face() {
        given::<Feedback>(&[])
            .when(&give(Scale::Faces, 3, &["cortesia"]))
            .then_refused(FeedbackError::ReasonsNotAsked);
    }

    #[test]
    fn it_rejects_a_fourth_face_and_a_sixth_star() {
        given::<Feedback>(&[])
            .when(&give(Scale::Faces, 4, &[]))
            .then_refused(FeedbackError::ScoreOutOfRange {
                scale: Scale::Faces,
                score: 4,
            });
        given::<Feedback>(&[])
            .when(&give(Scale::Stars, 6, &[]))
            .then_refused(FeedbackError::ScoreOutOfRange {
                scale: Scale::Stars,
                score: 6,
            });
        given::<Feedback>(&[])
            .when(&give(Scale::Stars, 0, &[]))
            .then_refused(FeedbackError::ScoreOutOfRange {
                scale: Scale::Stars,
                score: 0,
            });
    }

    #[test]
    fn low_stars_ask_for_difficulties_and_high_stars_for_strengths() {
        let low = give(Scale::Stars, 2, &["problemi_tecnici"]);
        given::<Feedback>(&[]).when(&low).then(&[given_event(&low)]);
        given::<Feedback>(&[])
            .when(&give(Scale::Stars, 5, &["problemi_tecnici"]))
            .then_refused(FeedbackError::UnknownReason("problemi_tecnici".into()));
        let high = give(Scale::Stars, 4, &["indicazioni_chiare"]);
        given::<Feedback>(&[])
            .when(&high)
            .then(&[given_event(&high)]);
    }

    #[test]
    fn it_rejects_a_comment_over_200_characters() {
        let mut c = give(Scale::Stars, 4, &[]);
        c.comment = Some(SealedComment {
            sealed: Sealed {
                subject: Uuid::nil(),
                nonce: String::new(),
                ciphertext: String::new(),
            },
            chars: 201,
        });
        given::<Feedback>(&[])
            .when(&c)
            .then_refused(FeedbackError::CommentTooLong(201));
    }

    #[test]
    fn a_case_is_rated_once_and_only_when_closed() {
        let mut c = give(Scale::Faces, 3, &[]);
        c.target = Target {
            target_type: TargetType::Case,
            id: Uuid::nil().to_string(),
        };
        c.case_closed = Some(false);
        given::<Feedback>(&[])
            .when(&c)
            .then_refused(FeedbackError::CaseNotClosed);
        c.case_closed = Some(true);
        given::<Feedback>(&[]).when(&c).then(&[given_event(&c)]);
        given::<Feedback>(&[given_event(&c)])
            .when(&c)
            .then_refused(FeedbackError::AlreadyGiven);
        assert_eq!(
            feedback_id_for_case(Uuid::nil()),
            feedback_id_for_case(Uuid::nil())
        );
    }
}
