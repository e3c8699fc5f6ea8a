use super::*;
use crate::domain::harness::given;

fn at(day: u32) -> DateTime<Utc> {
    chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, day, 10, 0, 0).unwrap()
}

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 4, day).unwrap()
}

fn sealed(text: &str) -> Sealed {
    Sealed {
        subject: Uuid::nil(),
        nonce: "bm9uY2U=".into(),
        ciphertext: text.into(),
    }
}

fn opened() -> CaseEvent {
    CaseEvent::CaseOpened {
        code: "MAS-2026-000001".into(),
        comune: "073015".into(),
        kind: CaseKind::Segnalazione,
        channel: Channel::Web,
        service: None,
        subject: sealed("buca"),
        description: None,
        citizen: None,
        received_at: at(2),
        term_days: 30,
        due_on: date(1),
        access_key_hash: None,
    }
}

fn open_command() -> CaseCommand {
    match opened() {
        CaseEvent::CaseOpened {
            code,
            comune,
            kind,
            channel,
            service,
            subject,
            description,
            citizen,
            received_at,
            term_days,
            due_on,
            access_key_hash,
        } => CaseCommand::Open(OpenCase {
            code,
            comune,
            kind,
            channel,
            service,
            subject,
            description,
            citizen,
            received_at,
            term_days,
            due_on,
            access_key_hash,
        }),
        _ => unreachable!(),
    }
}

fn taken() -> CaseEvent {
    CaseEvent::CaseTakenInCharge {
        office: "URP".into(),
        at: at(3),
        expected_by: date(1),
    }
}

fn answered() -> CaseEvent {
    CaseEvent::CaseAnswered {
        text: "Intervento programmato".into(),
        at: at(10),
    }
}

fn closed(outcome: Outcome) -> CaseEvent {
    CaseEvent::CaseClosed {
        outcome,
        at: at(11),
    }
}

fn requested() -> CaseEvent {
    CaseEvent::DocumentsRequested {
        documents: vec!["planimetria".into()],
        at: at(4),
    }
}

#[test]
fn opening_a_case_records_it_as_received() {
    given::<Case>(&[]).when(&open_command()).then(&[opened()]);
}

#[test]
fn it_rejects_opening_a_case_twice() {
    given::<Case>(&[opened()])
        .when(&open_command())
        .then_refused(CaseError::AlreadyOpened);
}

#[test]
fn it_rejects_a_term_beyond_180_days() {
    let CaseCommand::Open(mut open) = open_command() else {
        unreachable!()
    };
    open.term_days = 181;
    given::<Case>(&[])
        .when(&CaseCommand::Open(open))
        .then_refused(CaseError::TermOutOfRange(181));
}

#[test]
fn an_office_takes_a_received_case_in_charge_with_its_expected_date() {
    given::<Case>(&[opened()])
        .when(&CaseCommand::TakeInCharge {
            office: "URP".into(),
            at: at(3),
            expected_by: date(1),
        })
        .then(&[taken()]);
}

#[test]
fn it_rejects_taking_in_charge_twice() {
    given::<Case>(&[opened(), taken()])
        .when(&CaseCommand::TakeInCharge {
            office: "Tributi".into(),
            at: at(4),
            expected_by: date(1),
        })
        .then_refused(CaseError::AlreadyInCharge("URP".into()));
}

#[test]
fn it_rejects_assigning_before_taking_in_charge() {
    given::<Case>(&[opened()])
        .when(&CaseCommand::Assign {
            operator: "rossi".into(),
        })
        .then_refused(CaseError::NotTakenInCharge);
}

#[test]
fn a_case_in_charge_is_assigned_and_reassigned() {
    let first = CaseEvent::CaseAssigned {
        operator: "rossi".into(),
    };
    given::<Case>(&[opened(), taken(), first])
        .when(&CaseCommand::Assign {
            operator: "bianchi".into(),
        })
        .then(&[CaseEvent::CaseAssigned {
            operator: "bianchi".into(),
        }]);
}

#[test]
fn a_transfer_hands_the_case_to_the_other_comune_which_takes_it_in_charge_again() {
    let transferred = CaseEvent::CaseTransferred {
        from_comune: "073015".into(),
        to_comune: "073029".into(),
        reason: "Competenza territoriale".into(),
        at: at(5),
    };
    given::<Case>(&[opened(), taken()])
        .when(&CaseCommand::Transfer {
            to_comune: "073029".into(),
            reason: "Competenza territoriale".into(),
            at: at(5),
        })
        .then(std::slice::from_ref(&transferred));
    let state: Case = crate::domain::fold(&[opened(), taken(), transferred.clone()]);
    assert_eq!(
        (state.comune.as_str(), state.status, state.code.as_str()),
        ("073029", CaseStatus::Received, "MAS-2026-000001")
    );
    given::<Case>(&[opened(), taken(), transferred])
        .when(&CaseCommand::TakeInCharge {
            office: "URP Statte".into(),
            at: at(6),
            expected_by: date(1),
        })
        .then(&[CaseEvent::CaseTakenInCharge {
            office: "URP Statte".into(),
            at: at(6),
            expected_by: date(1),
        }]);
}

#[test]
fn it_rejects_a_transfer_to_the_comune_that_already_owns_it() {
    given::<Case>(&[opened()])
        .when(&CaseCommand::Transfer {
            to_comune: "073015".into(),
            reason: "x".into(),
            at: at(5),
        })
        .then_refused(CaseError::SameComune("073015".into()));
}

#[test]
fn documents_suspend_the_case_and_their_arrival_moves_the_due_date() {
    given::<Case>(&[opened(), taken()])
        .when(&CaseCommand::RequestDocuments {
            documents: vec!["planimetria".into()],
            at: at(4),
        })
        .then(&[requested()]);
    let plan = DocumentFile {
        id: Uuid::from_u128(7),
        name: sealed("planimetria.pdf"),
        media_type: "application/pdf".into(),
        bytes: 48_213,
        sha256: "ab".repeat(32),
    };
    let received = CaseEvent::DocumentsReceived {
        at: at(14),
        suspended_days: 10,
        due_on: date(13),
        documents: vec![plan.clone()],
    };
    given::<Case>(&[opened(), taken(), requested()])
        .when(&CaseCommand::ReceiveDocuments {
            at: at(14),
            suspended_days: 10,
            due_on: date(13),
            documents: vec![plan],
        })
        .then(std::slice::from_ref(&received));
    let state: Case = crate::domain::fold(&[opened(), taken(), requested(), received]);
    assert_eq!(
        (state.status, state.due_on),
        (CaseStatus::TakenInCharge, Some(date(13)))
    );
}

#[test]
fn it_rejects_a_second_suspension() {
    let received = CaseEvent::DocumentsReceived {
        at: at(14),
        suspended_days: 10,
        due_on: date(13),
        documents: Vec::new(),
    };
    given::<Case>(&[opened(), taken(), requested(), received])
        .when(&CaseCommand::RequestDocuments {
            documents: vec!["altro".into()],
            at: at(15),
        })
        .then_refused(CaseError::AlreadySuspendedOnce);
}

#[test]
fn it_rejects_answering_a_suspended_case() {
    given::<Case>(&[opened(), taken(), requested()])
        .when(&CaseCommand::Answer {
            text: "x".into(),
            at: at(5),
        })
        .then_refused(CaseError::Suspended);
}

#[test]
fn it_rejects_documents_that_were_not_requested() {
    given::<Case>(&[opened(), taken()])
        .when(&CaseCommand::ReceiveDocuments {
            at: at(5),
            suspended_days: 1,
            due_on: date(2),
            documents: Vec::new(),
        })
        .then_refused(CaseError::NotSuspended);
}

#[test]
fn documents_received_before_files_were_kept_still_read() {
    let old: CaseEvent = serde_json::from_value(serde_json::json!({
        "type": "DocumentsReceived",
        "at": "2026-03-14T09:00:00Z",
        "suspended_days": 10,
        "due_on": "2026-04-13"
    }))
    .unwrap();
    assert!(matches!(old, CaseEvent::DocumentsReceived { documents, .. } if documents.is_empty()));
}

#[test]
fn an_answered_case_closes_with_its_outcome() {
    given::<Case>(&[opened(), taken(), answered()])
        .when(&CaseCommand::Close {
            outcome: Outcome::Accolta,
            at: at(11),
        })
        .then(&[closed(Outcome::Accolta)]);
}

#[test]
fn it_rejects_closing_as_accolta_before_an_answer() {
    given::<Case>(&[opened(), taken()])
        .when(&CaseCommand::Close {
            outcome: Outcome::Accolta,
            at: at(11),
        })
        .then_refused(CaseError::NotAnswered);
}

#[test]
fn a_duplicate_closes_without_an_answer() {
    given::<Case>(&[opened()])
        .when(&CaseCommand::Close {
            outcome: Outcome::Duplicata,
            at: at(11),
        })
        .then(&[closed(Outcome::Duplicata)]);
}

#[test]
fn it_rejects_a_second_closing() {
    given::<Case>(&[opened(), taken(), answered(), closed(Outcome::Accolta)])
        .when(&CaseCommand::Close {
            outcome: Outcome::Respinta,
            at: at(12),
        })
        .then_refused(CaseError::Closed);
}

#[test]
fn it_rejects_the_withdrawal_outcome_from_staff() {
    given::<Case>(&[opened(), taken(), answered()])
        .when(&CaseCommand::Close {
            outcome: Outcome::RitirataDalCittadino,
            at: at(12),
        })
        .then_refused(CaseError::WithdrawalOutcome);
}

#[test]
fn a_closed_case_reopens_with_a_reason() {
    let reopened = CaseEvent::CaseReopened {
        reason: "Il problema persiste".into(),
        at: at(20),
    };
    given::<Case>(&[opened(), taken(), answered(), closed(Outcome::Accolta)])
        .when(&CaseCommand::Reopen {
            reason: "Il problema persiste".into(),
            at: at(20),
        })
        .then(std::slice::from_ref(&reopened));
    let state: Case = crate::domain::fold(&[
        opened(),
        taken(),
        answered(),
        closed(Outcome::Accolta),
        reopened,
    ]);
    assert_eq!(
        (state.status, state.outcome),
        (CaseStatus::TakenInCharge, None)
    );
}

#[test]
fn it_rejects_reopening_without_a_reason_or_an_open_case() {
    given::<Case>(&[opened(), taken(), answered(), closed(Outcome::Accolta)])
        .when(&CaseCommand::Reopen {
            reason: " ".into(),
            at: at(20),
        })
        .then_refused(CaseError::Empty("motivo"));
    given::<Case>(&[opened()])
        .when(&CaseCommand::Reopen {
            reason: "x".into(),
            at: at(20),
        })
        .then_refused(CaseError::NotClosed);
}

#[test]
fn the_citizen_withdraws_an_open_case() {
    given::<Case>(&[opened(), taken()])
        .when(&CaseCommand::Withdraw { at: at(6) })
        .then(&[CaseEvent::CaseWithdrawn { at: at(6) }]);
}

#[test]
fn it_rejects_answering_a_withdrawn_case() {
    given::<Case>(&[opened(), taken(), CaseEvent::CaseWithdrawn { at: at(6) }])
        .when(&CaseCommand::Answer {
            text: "x".into(),
            at: at(7),
        })
        .then_refused(CaseError::Withdrawn);
    given::<Case>(&[opened(), CaseEvent::CaseWithdrawn { at: at(6) }])
        .when(&CaseCommand::Reopen {
            reason: "x".into(),
            at: at(7),
        })
        .then_refused(CaseError::Withdrawn);
}

#[test]
fn it_rejects_anything_on_a_case_that_does_not_exist() {
    given::<Case>(&[])
        .when(&CaseCommand::Answer {
            text: "x".into(),
            at: at(7),
        })
        .then_refused(CaseError::NotFound);
}

#[test]
fn it_rejects_answering_twice() {
    given::<Case>(&[opened(), taken(), answered()])
        .when(&CaseCommand::Answer {
            text: "ancora".into(),
            at: at(12),
        })
        .then_refused(CaseError::AlreadyAnswered);
}

#[test]
fn every_refusal_has_a_code_and_an_italian_message() {
    let e = CaseError::AlreadySuspendedOnce;
    assert_eq!(e.code(), "case_already_suspended_once");
    assert!(e.message_it().contains("una sola volta"));
}

#[test]
fn case_codes_carry_prefix_year_and_a_six_digit_number() {
    assert_eq!(case_code("MAS", 2026, 123), "MAS-2026-000123");
}

#[test]
fn events_round_trip_through_json_with_their_type() {
    let json = serde_json::to_value(opened()).unwrap();
    assert_eq!(json["type"], "CaseOpened");
    assert_eq!(serde_json::from_value::<CaseEvent>(json).unwrap(), opened());
    assert_eq!(Case::event_type(&opened()), "CaseOpened");
}

mod notices {
    use super::*;
    use crate::domain::case::{NoticeChannel, NoticeKind, NoticeOutcome};

    fn record(outcome: NoticeOutcome, cause: Uuid) -> CaseCommand {
        CaseCommand::RecordNotice {
            kind: NoticeKind::Receipt,
            channel: NoticeChannel::Email,
            outcome,
            cause,
            at: at(2),
        }
    }

    fn recorded(outcome: NoticeOutcome, cause: Uuid) -> CaseEvent {
        CaseEvent::NoticeSent {
            kind: NoticeKind::Receipt,
            channel: NoticeChannel::Email,
            outcome,
            cause,
            at: at(2),
        }
    }

    #[test]
    fn a_notice_is_recorded_once_per_cause() {
        let cause = Uuid::from_u128(7);
        given::<Case>(&[opened()])
            .when(&record(NoticeOutcome::Sent, cause))
            .then(&[recorded(NoticeOutcome::Sent, cause)]);
        given::<Case>(&[opened(), recorded(NoticeOutcome::Sent, cause)])
            .when(&record(NoticeOutcome::Sent, cause))
            .then(&[]);
    }

    #[test]
    fn a_notice_given_up_can_still_be_sent_and_closing_does_not_stop_it() {
        let cause = Uuid::from_u128(7);
        given::<Case>(&[opened(), recorded(NoticeOutcome::GivenUp, cause)])
            .when(&record(NoticeOutcome::Sent, cause))
            .then(&[recorded(NoticeOutcome::Sent, cause)]);
        given::<Case>(&[opened(), CaseEvent::CaseWithdrawn { at: at(1) }])
            .when(&record(NoticeOutcome::SkippedErased, cause))
            .then(&[recorded(NoticeOutcome::SkippedErased, cause)]);
    }

    #[test]
    fn a_notice_needs_a_case_and_changes_no_status() {
        given::<Case>(&[])
            .when(&record(NoticeOutcome::Sent, Uuid::from_u128(7)))
            .then_refused(CaseError::NotFound);
        let before = Lifecycle::default().evolve(&opened());
        assert_eq!(
            before.evolve(&recorded(NoticeOutcome::Sent, Uuid::nil())),
            before
        );
    }
}

mod reminders {
    use super::*;
    use crate::domain::case::{NoticeOutcome, ReminderThreshold};

    fn remind(threshold: ReminderThreshold, outcome: NoticeOutcome) -> CaseCommand {
        CaseCommand::RecordReminder {
            threshold,
            due_on: date(1),
            office: "URP".into(),
            outcome,
            at: at(28),
        }
    }

    fn reminded(threshold: ReminderThreshold, outcome: NoticeOutcome) -> CaseEvent {
        CaseEvent::OfficeReminded {
            threshold,
            due_on: date(1),
            office: "URP".into(),
            outcome,
            at: at(28),
        }
    }

    #[test]
    fn an_office_is_reminded_once_per_threshold_and_due_date() {
        use NoticeOutcome::Sent;
        use ReminderThreshold::{DueSoon, Overdue};
        given::<Case>(&[opened()])
            .when(&remind(DueSoon, Sent))
            .then(&[reminded(DueSoon, Sent)]);
        given::<Case>(&[opened(), reminded(DueSoon, Sent)])
            .when(&remind(DueSoon, Sent))
            .then(&[]);
        given::<Case>(&[opened(), reminded(DueSoon, Sent)])
            .when(&remind(Overdue, Sent))
            .then(&[reminded(Overdue, Sent)]);
        // A term moved by a suspension is a new term to remind of.
        let moved = CaseCommand::RecordReminder {
            threshold: DueSoon,
            due_on: date(20),
            office: "URP".into(),
            outcome: Sent,
            at: at(28),
        };
        assert_eq!(
            given::<Case>(&[opened(), reminded(DueSoon, Sent)])
                .state()
                .decide(&moved)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_reminder_given_up_is_tried_again() {
        use NoticeOutcome::{GivenUp, Sent};
        given::<Case>(&[opened(), reminded(ReminderThreshold::Overdue, GivenUp)])
            .when(&remind(ReminderThreshold::Overdue, Sent))
            .then(&[reminded(ReminderThreshold::Overdue, Sent)]);
    }
}

mod legal_hold {
    use super::*;

    fn place(reason: &str) -> CaseCommand {
        CaseCommand::PlaceLegalHold {
            reason: reason.into(),
            at: at(20),
        }
    }

    fn placed() -> CaseEvent {
        CaseEvent::LegalHoldPlaced {
            reason: "Ricorso al TAR n. 123/2026".into(),
            at: at(20),
        }
    }

    fn release() -> CaseCommand {
        CaseCommand::ReleaseLegalHold {
            reason: "Sentenza passata in giudicato".into(),
            at: at(25),
        }
    }

    #[test]
    fn a_closed_case_is_held_and_released_with_reasons() {
        let closed = CaseEvent::CaseClosed {
            outcome: Outcome::Duplicata,
            at: at(10),
        };
        given::<Case>(&[opened(), closed.clone()])
            .when(&place(" Ricorso al TAR n. 123/2026 "))
            .then(&[placed()]);
        given::<Case>(&[opened(), closed, placed()])
            .when(&release())
            .then(&[CaseEvent::LegalHoldReleased {
                reason: "Sentenza passata in giudicato".into(),
                at: at(25),
            }]);
    }

    #[test]
    fn it_rejects_a_second_hold_a_release_without_one_and_a_hold_without_a_reason() {
        given::<Case>(&[opened(), placed()])
            .when(&place("ancora"))
            .then_refused(CaseError::AlreadyHeld);
        given::<Case>(&[opened()])
            .when(&release())
            .then_refused(CaseError::NotHeld);
        given::<Case>(&[opened()])
            .when(&place("  "))
            .then_refused(CaseError::Empty("motivo"));
        given::<Case>(&[])
            .when(&place("x"))
            .then_refused(CaseError::NotFound);
    }

    #[test]
    fn a_hold_changes_no_status_and_shows_on_the_case() {
        let held = given::<Case>(&[opened(), placed()]).state();
        assert_eq!(held.status, CaseStatus::Received);
        assert_eq!(
            held.legal_hold.as_deref(),
            Some("Ricorso al TAR n. 123/2026")
        );
    }
}
