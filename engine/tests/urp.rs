//! The URP application service end to end on the embedded store: cases through their life,
//! forms and submissions, feedback, erasure.

use chrono::{NaiveDate, TimeZone, Utc};
use futures::TryStreamExt;
use serde_json::json;
use sportello_config::Settings;
use sportello_engine::app::{
    Actor, AppError, CitizenInput, NewContact, NewSubmission, Refusal, Urp,
};
use sportello_engine::domain::case::{
    CaseCommand, CaseError, CaseEvent, CaseKind, CaseStatus, Channel, Outcome,
};
use sportello_engine::domain::feedback::{FeedbackError, GiveFeedback, Scale, Target, TargetType};
use sportello_engine::domain::service::{FieldDef, FieldKind, FormDef, ServiceCard};
use sportello_engine::domain::submission::SubmissionError;
use sportello_engine::store::sqlite::SqliteStore;
use sportello_engine::vault::{MasterKey, SqliteKeyStore, Unsealed, Vault};
use sportello_engine::{EventLog, ReadAll};
use std::sync::Arc;
use uuid::Uuid;

struct App {
    urp: Urp,
    dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("urp.db");
    let log = EventLog::new(Arc::new(SqliteStore::open(&db).await.unwrap()));
    let vault = Vault::new(
        &MasterKey::generate(),
        Arc::new(SqliteKeyStore::open(&db).unwrap()),
    );
    let settings = Settings::load_from(dir.path(), None, Vec::new()).unwrap();
    App {
        urp: Urp::new(log, vault, &settings),
        dir,
    }
}

fn staff() -> Actor {
    Actor {
        name: "staff:semeraro".into(),
        channel: Some("sportello".into()),
        correlation_id: None,
        at: None,
    }
}

fn contact(comune: &str, received: chrono::DateTime<Utc>) -> NewContact {
    NewContact {
        case_id: Uuid::now_v7(),
        comune: comune.into(),
        kind: CaseKind::Segnalazione,
        channel: Channel::Sportello,
        service: None,
        subject: "Buca in via Roma".into(),
        description: Some("Profonda, davanti al civico 12".into()),
        citizen: Some(CitizenInput {
            name: Some("Cosima Lenti".into()),
            email: Some("cosima@example.it".into()),
            ..CitizenInput::default()
        }),
        received_at: received,
        privacy_consent: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_goes_from_receipt_to_closing_with_a_suspension_that_moves_its_due_date() {
    let App { urp, dir: _dir } = app().await;
    let received = Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).unwrap();
    let opened = urp
        .open_case(&staff(), contact("073015", received))
        .await
        .unwrap();
    assert_eq!(opened.code, "MAS-2026-000001");
    assert_eq!(opened.due_on, NaiveDate::from_ymd_opt(2026, 4, 1).unwrap());
    assert_eq!(opened.access_key.as_ref().map(String::len), Some(24));
    let repeated = urp
        .open_case(
            &staff(),
            NewContact {
                case_id: opened.case_id,
                ..contact("073015", received)
            },
        )
        .await
        .unwrap();
    // A retry gets the same code and the same key back, and the key opens only this case.
    assert_eq!(repeated.code, "MAS-2026-000001");
    assert_eq!(repeated.access_key, opened.access_key);
    let key = opened.access_key.clone().unwrap();
    assert!(urp.access_key_matches(opened.case_id, &key));
    assert!(!urp.access_key_matches(opened.case_id, "AAAAAAAAAAAAAAAAAAAAAAAA"));
    let second = urp
        .open_case(&staff(), contact("073015", received))
        .await
        .unwrap();
    assert_eq!(second.code, "MAS-2026-000002");
    assert!(!urp.access_key_matches(second.case_id, &key));
    assert_eq!(
        urp.open_case(&staff(), contact("073029", received))
            .await
            .unwrap()
            .code,
        "STA-2026-000001"
    );

    let id = opened.case_id;
    let at = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 10, 0, 0).unwrap();
    let actor = staff();
    let act = |command| urp.act(&actor, id, Uuid::now_v7(), command);
    let taken = act(CaseCommand::TakeInCharge {
        office: "URP".into(),
        at: at(3),
        expected_by: NaiveDate::MIN,
    })
    .await
    .unwrap();
    assert!(
        matches!(&taken.events[0], CaseEvent::CaseTakenInCharge { expected_by, .. } if *expected_by == opened.due_on)
    );
    act(CaseCommand::RequestDocuments {
        documents: vec!["fotografia".into()],
        at: at(4),
    })
    .await
    .unwrap();
    let back = act(CaseCommand::ReceiveDocuments {
        at: at(16),
        suspended_days: 0,
        due_on: NaiveDate::MIN,
        documents: Vec::new(),
    })
    .await
    .unwrap();
    // 12 days suspended: 2 March + 30 + 12 = Monday 13 April.
    assert!(
        matches!(&back.events[0], CaseEvent::DocumentsReceived { suspended_days: 12, due_on, .. } if *due_on == NaiveDate::from_ymd_opt(2026, 4, 13).unwrap())
    );
    let second_request = act(CaseCommand::RequestDocuments {
        documents: vec!["altro".into()],
        at: at(17),
    })
    .await
    .unwrap_err();
    assert!(matches!(
        second_request,
        AppError::Refused(Refusal::Case(CaseError::AlreadySuspendedOnce))
    ));
    assert!(second_request.message_it().contains("una sola volta"));
    act(CaseCommand::Answer {
        text: "Intervento eseguito".into(),
        at: at(20),
    })
    .await
    .unwrap();
    let closed = act(CaseCommand::Close {
        outcome: Outcome::Accolta,
        at: at(21),
    })
    .await
    .unwrap();
    assert_eq!(closed.state.status, CaseStatus::Closed);
}

fn rating(case_id: Uuid, score: u8) -> GiveFeedback {
    GiveFeedback {
        target: Target {
            target_type: TargetType::Case,
            id: case_id.to_string(),
        },
        comune: "073004".into(),
        channel: Channel::Web,
        scale: Scale::Stars,
        score,
        reasons: vec![],
        comment: None,
        given_at: Utc.with_ymd_and_hms(2026, 4, 2, 9, 0, 0).unwrap(),
        case_closed: None,
        case_kind: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_case_takes_one_rating_with_a_sealed_comment() {
    let App { urp, dir: _dir } = app().await;
    let opened = urp
        .open_case(
            &staff(),
            contact("073004", Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()),
        )
        .await
        .unwrap();
    let citizen = Actor {
        name: "citizen".into(),
        channel: Some("web".into()),
        correlation_id: None,
        at: None,
    };
    let early = urp
        .give_feedback(
            &citizen,
            rating(opened.case_id, 5),
            None,
            opened.subject_id,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        early,
        AppError::Refused(Refusal::Feedback(FeedbackError::CaseNotClosed))
    ));
    urp.act(
        &staff(),
        opened.case_id,
        Uuid::now_v7(),
        CaseCommand::Close {
            outcome: Outcome::Duplicata,
            at: Utc::now(),
        },
    )
    .await
    .unwrap();
    urp.give_feedback(
        &citizen,
        rating(opened.case_id, 5),
        Some("Gentilissimi".into()),
        opened.subject_id,
        None,
    )
    .await
    .unwrap();
    let again = urp
        .give_feedback(
            &citizen,
            rating(opened.case_id, 1),
            None,
            opened.subject_id,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        again,
        AppError::Refused(Refusal::Feedback(FeedbackError::AlreadyGiven))
    ));
    let long = urp
        .give_feedback(
            &citizen,
            GiveFeedback {
                target: Target {
                    target_type: TargetType::Service,
                    id: "x".into(),
                },
                ..rating(opened.case_id, 4)
            },
            Some("a".repeat(201)),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        long,
        AppError::Refused(Refusal::Feedback(FeedbackError::CommentTooLong(201)))
    ));
}

fn submission(
    form_version: u32,
    values: std::collections::BTreeMap<String, serde_json::Value>,
    documents: Vec<String>,
    citizen: CitizenInput,
    submitted_at: chrono::DateTime<Utc>,
) -> NewSubmission {
    NewSubmission {
        submission_id: Uuid::now_v7(),
        form_id: "passo-carrabile".into(),
        form_version,
        values,
        documents,
        comune: "073015".into(),
        citizen,
        submitted_at,
        privacy_consent: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_is_checked_against_the_published_form_then_numbered_and_opens_a_case() {
    let App { urp, dir: _dir } = app().await;
    let card = ServiceCard {
        code: "passi-carrabili".into(),
        title: "Passo carrabile".into(),
        comuni: vec!["073015".into()],
        category: "Mobilità".into(),
        description: "Autorizzazione al passo carrabile".into(),
        audience: "Proprietari di immobili".into(),
        documents: vec!["planimetria".into()],
        term_days: 60,
    };
    urp.publish_service(&staff(), card).await.unwrap();
    let form = FormDef {
        service: "passi-carrabili".into(),
        title: "Richiesta di passo carrabile".into(),
        fields: vec![FieldDef {
            name: "indirizzo".into(),
            label: "Indirizzo".into(),
            kind: FieldKind::Text { max_length: 120 },
            required: true,
        }],
        documents: vec!["planimetria".into()],
    };
    assert_eq!(
        urp.publish_form(&staff(), "passo-carrabile", form, Uuid::now_v7())
            .await
            .unwrap(),
        1
    );
    let citizen = Actor {
        name: "citizen".into(),
        channel: Some("web".into()),
        correlation_id: None,
        at: None,
    };
    let when = Utc.with_ymd_and_hms(2026, 5, 4, 18, 0, 0).unwrap();
    let person = || CitizenInput {
        name: Some("Vito Carrieri".into()),
        ..CitizenInput::default()
    };

    let refused = urp
        .submit(
            &citizen,
            submission(1, Default::default(), vec![], person(), when),
        )
        .await
        .unwrap_err();
    let AppError::Refused(Refusal::Submission(SubmissionError::Invalid(errors))) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(
        errors.iter().map(|e| e.code).collect::<Vec<_>>(),
        ["field_required", "document_missing"]
    );
    let unpublished = urp
        .submit(
            &citizen,
            submission(2, Default::default(), vec![], person(), when),
        )
        .await
        .unwrap_err();
    assert_eq!(unpublished.code(), "form_version_not_published");

    let values = serde_json::from_value(json!({ "indirizzo": "via Roma 12" })).unwrap();
    let done = urp
        .submit(
            &citizen,
            submission(1, values, vec!["planimetria".into()], person(), when),
        )
        .await
        .unwrap();
    assert_eq!(
        done.registration_number, 1,
        "refused submissions consumed no number"
    );
    assert_eq!(done.case.code, "MAS-2026-000001");
    // The service's 60-day term: 4 May + 60 = Friday 3 July 2026.
    assert_eq!(
        done.case.due_on,
        NaiveDate::from_ymd_opt(2026, 7, 3).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_citizen_leaves_an_erased_marker_and_no_clear_byte_in_the_store() {
    let App { urp, dir } = app().await;
    let opened = urp
        .open_case(&staff(), contact("073015", Utc::now()))
        .await
        .unwrap();
    let subject = opened.subject_id.unwrap();
    let events: Vec<_> = urp
        .log()
        .read_all(ReadAll::default())
        .try_collect()
        .await
        .unwrap();
    let case_opened = events
        .iter()
        .find(|e| e.event_type == "CaseOpened")
        .unwrap();
    let CaseEvent::CaseOpened {
        citizen: Some(c), ..
    } = case_opened.decode::<CaseEvent>().unwrap()
    else {
        panic!()
    };
    assert_eq!(
        urp.vault()
            .unseal(c.name.as_ref().unwrap())
            .await
            .unwrap()
            .clear(),
        Some("Cosima Lenti")
    );

    urp.erase_subject(
        &Actor {
            name: "staff:admin".into(),
            ..Actor::default()
        },
        subject,
        "art. 17 GDPR",
    )
    .await
    .unwrap();
    assert_eq!(
        urp.vault().unseal(c.name.as_ref().unwrap()).await.unwrap(),
        Unsealed::Erased
    );
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for clear in ["Cosima Lenti", "cosima@example.it", "Buca in via Roma"] {
        assert!(
            !bytes.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "{clear} found in the store"
        );
    }
    let erased: Vec<_> = urp
        .log()
        .read_all(ReadAll {
            categories: vec!["subject".into()],
            ..ReadAll::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(erased[0].event_type, "SubjectErased");
}
