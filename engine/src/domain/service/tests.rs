use super::*;
use crate::domain::harness::given;
use serde_json::json;

fn card() -> ServiceCard {
    ServiceCard {
        code: "occupazione-suolo".into(),
        title: "Occupazione di suolo pubblico".into(),
        comuni: vec!["073015".into()],
        category: "Urbanistica".into(),
        description: "Autorizzazione a occupare temporaneamente il suolo pubblico".into(),
        audience: "Cittadini e imprese".into(),
        documents: vec!["planimetria".into(), "documento di identità".into()],
        term_days: 30,
    }
}

fn form() -> FormDef {
    FormDef {
        service: "occupazione-suolo".into(),
        title: "Domanda di occupazione".into(),
        fields: vec![
            FieldDef {
                name: "nome".into(),
                label: "Nome e cognome".into(),
                kind: FieldKind::Text { max_length: 80 },
                required: true,
            },
            FieldDef {
                name: "email".into(),
                label: "Email".into(),
                kind: FieldKind::Email,
                required: true,
            },
            FieldDef {
                name: "telefono".into(),
                label: "Telefono".into(),
                kind: FieldKind::Phone,
                required: false,
            },
            FieldDef {
                name: "dal".into(),
                label: "Dal giorno".into(),
                kind: FieldKind::Date,
                required: true,
            },
            FieldDef {
                name: "mq".into(),
                label: "Metri quadri".into(),
                kind: FieldKind::Number {
                    min: Some(1.0),
                    max: Some(200.0),
                },
                required: true,
            },
            FieldDef {
                name: "uso".into(),
                label: "Uso".into(),
                kind: FieldKind::Choice {
                    options: vec!["cantiere".into(), "dehors".into()],
                },
                required: true,
            },
            FieldDef {
                name: "privacy".into(),
                label: "Consenso".into(),
                kind: FieldKind::Boolean,
                required: true,
            },
            FieldDef {
                name: "pianta".into(),
                label: "Planimetria".into(),
                kind: FieldKind::Attachment,
                required: true,
            },
        ],
        documents: vec!["planimetria".into()],
    }
}

fn published() -> FormEvent {
    FormEvent::FormVersionPublished {
        version: 1,
        form: form(),
    }
}

fn good_values() -> BTreeMap<String, Value> {
    serde_json::from_value(json!({
        "nome": "Maria Rossi", "email": "maria.rossi@example.it", "telefono": "+39 099 880 1234",
        "dal": "2026-06-01", "mq": 12, "uso": "dehors", "privacy": true, "pianta": "planimetria"
    }))
    .unwrap()
}

#[test]
fn a_service_card_is_published_revised_and_withdrawn() {
    given::<Service>(&[])
        .when(&ServiceCommand::Publish(card()))
        .then(&[ServiceEvent::ServicePublished { card: card() }]);
    let mut revised = card();
    revised.term_days = 60;
    given::<Service>(&[ServiceEvent::ServicePublished { card: card() }])
        .when(&ServiceCommand::Revise(revised.clone()))
        .then(&[ServiceEvent::ServiceRevised { card: revised }]);
    given::<Service>(&[ServiceEvent::ServicePublished { card: card() }])
        .when(&ServiceCommand::Withdraw {
            reason: "Servizio trasferito".into(),
        })
        .then(&[ServiceEvent::ServiceWithdrawn {
            reason: "Servizio trasferito".into(),
        }]);
}

#[test]
fn it_rejects_a_term_beyond_180_days_and_a_revision_of_a_withdrawn_service() {
    let mut long = card();
    long.term_days = 365;
    given::<Service>(&[])
        .when(&ServiceCommand::Publish(long))
        .then_refused(CatalogueError::TermOutOfRange(365));
    given::<Service>(&[
        ServiceEvent::ServicePublished { card: card() },
        ServiceEvent::ServiceWithdrawn { reason: "x".into() },
    ])
    .when(&ServiceCommand::Revise(card()))
    .then_refused(CatalogueError::Withdrawn);
}

#[test]
fn a_form_version_may_only_ask_for_documents_the_service_card_publishes() {
    let mut asks_more = form();
    asks_more.documents.push("certificato antimafia".into());
    given::<Form>(&[])
        .when(&FormCommand::Publish {
            form: asks_more,
            service_documents: card().documents,
        })
        .then_refused(CatalogueError::UnpublishedDocument(
            "certificato antimafia".into(),
        ));
    given::<Form>(&[])
        .when(&FormCommand::Publish {
            form: form(),
            service_documents: card().documents,
        })
        .then(&[published()]);
}

#[test]
fn versions_are_numbered_and_a_withdrawn_one_cannot_be_used() {
    given::<Form>(&[published()])
        .when(&FormCommand::Publish {
            form: form(),
            service_documents: card().documents,
        })
        .then(&[FormEvent::FormVersionPublished {
            version: 2,
            form: form(),
        }]);
    let state: Form =
        crate::domain::fold(&[published(), FormEvent::FormVersionWithdrawn { version: 1 }]);
    assert_eq!(
        state.usable(1).unwrap_err(),
        CatalogueError::VersionWithdrawn(1)
    );
    assert_eq!(
        state.usable(2).unwrap_err(),
        CatalogueError::VersionNotPublished(2)
    );
    assert!(state.latest_usable().is_none());
}

#[test]
fn a_complete_submission_passes() {
    assert_eq!(
        validate_submission(&form(), &good_values(), &["planimetria".into()]),
        Ok(())
    );
}

#[test]
fn every_wrong_field_gets_its_own_message() {
    let mut values = good_values();
    values.remove("nome");
    values.insert("email".into(), json!("maria.rossi@"));
    values.insert("telefono".into(), json!("chiamatemi"));
    values.insert("dal".into(), json!("1 giugno"));
    values.insert("mq".into(), json!(500));
    values.insert("uso".into(), json!("mercatino"));
    values.insert("privacy".into(), json!("sì"));
    values.insert("codice_fiscale".into(), json!("RSSMRA80A41L049X"));
    let errors = validate_submission(&form(), &values, &[]).unwrap_err();
    let codes: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
    assert_eq!(
        codes,
        [
            ("codice_fiscale", "field_unknown"),
            ("nome", "field_required"),
            ("email", "field_not_email"),
            ("telefono", "field_not_phone"),
            ("dal", "field_not_date"),
            ("mq", "field_out_of_range"),
            ("uso", "field_not_an_option"),
            ("privacy", "field_not_boolean"),
            ("pianta", "field_attachment_missing"),
            ("planimetria", "document_missing"),
        ]
    );
    assert!(
        errors[1].message.contains("Nome e cognome") && errors[1].message.contains("obbligatorio")
    );
    assert!(errors[5].message.contains("tra 1 e 200"));
}

#[test]
fn an_optional_field_may_be_left_out_but_not_overlong() {
    let mut values = good_values();
    values.remove("telefono");
    assert_eq!(
        validate_submission(&form(), &values, &["planimetria".into()]),
        Ok(())
    );
    values.insert("nome".into(), json!("x".repeat(81)));
    let errors = validate_submission(&form(), &values, &["planimetria".into()]).unwrap_err();
    assert_eq!(errors[0].code, "field_too_long");
}
