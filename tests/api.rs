//! The HTTP API end to end: the `sportello serve` binary on SQLite and on PostgreSQL, driven over
//! loopback as a citizen's browser, an operator's desk and an analyst's script would drive it.
//!
//! PostgreSQL tests create a uniquely named database on `SPORTELLO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drop it; they fail, never skip, without one.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
use support::{Server, Store, run, token, with_scratch_postgres};

const MASSAFRA: &str = "073015";
const STATTE: &str = "073029";

fn new_case(comune: &str, name: &str) -> Value {
    json!({
        "comune": comune, "kind": "segnalazione", "channel": "web", "service": null,
        "subject": "Buca pericolosa in via Roma", "description": "Davanti al civico 12",
        "citizen": {"name": name, "email": "cittadino@example.it"},
        "privacy_consent": true
    })
}

/// Values that satisfy a published form, whatever its fields.
fn fill(form: &Value) -> (Value, Vec<String>) {
    let documents: Vec<String> = form["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    let mut values = serde_json::Map::new();
    for field in form["fields"].as_array().unwrap() {
        let value = match field["kind"].as_str().unwrap() {
            "text" => json!("Testo di prova"),
            "email" => json!("cittadino@example.it"),
            "phone" => json!("0998801234"),
            "date" => json!("2026-03-02"),
            "number" => json!(field["min"].as_f64().unwrap_or(1.0).max(1.0)),
            "choice" => field["options"][0].clone(),
            "boolean" => json!(true),
            "attachment" => json!(documents.first().cloned().unwrap_or_default()),
            other => panic!("unknown field kind {other}"),
        };
        values.insert(field["name"].as_str().unwrap().to_owned(), value);
    }
    (Value::Object(values), documents)
}

/// Everything a URP office does in a day, through HTTP, on one store.
fn a_day_at_the_urp(store: &Store) {
    // History first (services, forms, cases), then tokens: all in the log.
    run(store, &["demo", "--cases", "40", "--seed", "7"]);
    let operator = token(store, "operator", MASSAFRA, "Maria Rossi");
    let statte = token(store, "operator", STATTE, "Luca Bianchi");
    let analyst = token(store, "analyst", MASSAFRA, "Anna Neri");
    let admin = token(store, "admin", MASSAFRA, "Paolo Gialli");
    // Without workers: the notices they record would move the head this test watches for
    // requests that must store nothing (`tests/workers.rs` tests the workers).
    let server = Server::start(
        store,
        &[
            ("SPORTELLO__API__PUBLIC_BURST", "1000"),
            ("SPORTELLO__WORKERS__IN_SERVE", "false"),
        ],
    );

    assert_eq!(server.get("/healthz", None).0, 200);
    let (_, openapi) = server.get("/api/openapi.json", None);
    for path in [
        "/api/v1/cases",
        "/api/v1/cases/{code}",
        "/api/v1/feedback",
        "/api/v1/staff/cases/{id}/take-in-charge",
        "/api/v1/staff/cases/{id}/close",
        "/api/v1/staff/stats/satisfaction",
        "/api/v1/staff/subjects/{subject_id}/erase",
        "/readyz",
    ] {
        assert!(openapi["paths"][path].is_object(), "openapi lacks {path}");
    }
    assert!(openapi["components"]["schemas"]["NewCaseRequest"].is_object());

    // A citizen opens a contact; a retry with the same key gets the same answer.
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("Giuseppina Verdastri {marker}");
    let subject_text = format!("Buca pericolosa in via Roma {marker}");
    let mut first = new_case(MASSAFRA, &name);
    first["subject"] = json!(subject_text);
    let body = first.to_string();
    let key_header = [("Idempotency-Key", "web-form-1")];
    let (status, opened) = server.post_with(
        "/api/v1/cases",
        None,
        &key_header,
        "application/json",
        body.clone(),
    );
    assert_eq!(status, 201, "{opened}");
    for field in [
        "id",
        "code",
        "access_key",
        "status",
        "received_at",
        "expected_by",
        "position",
    ] {
        assert!(!opened[field].is_null(), "{field} missing in {opened}");
    }
    assert_eq!(opened["status"], "received");
    let code = opened["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("MAS-2026-"), "{code}");
    let (status, again) =
        server.post_with("/api/v1/cases", None, &key_header, "application/json", body);
    assert_eq!(status, 201);
    assert_eq!(
        (&again["id"], &again["code"], &again["access_key"]),
        (&opened["id"], &opened["code"], &opened["access_key"])
    );
    let (status, reused) = server.post_with(
        "/api/v1/cases",
        None,
        &key_header,
        "application/json",
        new_case(MASSAFRA, "Altro Nome").to_string(),
    );
    assert_eq!(
        (status, reused["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let case_id = opened["id"].as_str().unwrap().to_owned();
    let access_key = opened["access_key"].as_str().unwrap().to_owned();
    let position = opened["position"].as_u64().unwrap();

    // Bad input: clear problems, nothing stored.
    let head_before = server.get("/readyz", None).1["head"].as_u64().unwrap();
    let mut no_consent = new_case(MASSAFRA, "X");
    no_consent["privacy_consent"] = json!(false);
    let (status, problem) = server.post("/api/v1/cases", None, &no_consent);
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("privacy_consent"))
    );
    let mut bad_kind = new_case(MASSAFRA, "X");
    bad_kind["kind"] = json!("lamentela");
    let (status, problem) = server.post("/api/v1/cases", None, &bad_kind);
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("kind"))
    );
    let (status, problem) = server.post("/api/v1/cases", None, &new_case("099999", "X"));
    assert_eq!(
        (status, problem["errors"][0]["code"].as_str()),
        (422, Some("comune_unknown"))
    );
    let (status, _) = server.post_with(
        "/api/v1/cases",
        None,
        &[],
        "application/json",
        "{\"comune\":".into(),
    );
    assert_eq!(status, 400);
    let (status, _) = server.post_with("/api/v1/cases", None, &[], "text/plain", "ciao".into());
    assert_eq!(status, 415);
    let mut huge = new_case(MASSAFRA, "X");
    huge["description"] = json!("a".repeat(100_000));
    assert_eq!(server.post("/api/v1/cases", None, &huge).0, 413);
    assert_eq!(
        server.get("/readyz", None).1["head"].as_u64().unwrap(),
        head_before
    );

    // The citizen follows the case with the key (read your own writes via min_position).
    let (status, seen) = server.get(
        &format!("/api/v1/cases/{code}?key={access_key}&min_position={position}"),
        None,
    );
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        (
            seen["status"].as_str(),
            seen["milestones"].as_array().unwrap().len()
        ),
        (Some("received"), 1)
    );
    assert!(
        !seen.to_string().contains(&name),
        "personal data in the public view"
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/cases/{code}?key=sbagliata"), None)
            .0,
        404
    );

    // Staff: tokens, roles, comune scoping.
    assert_eq!(server.get("/api/v1/staff/cases", None).0, 401);
    assert_eq!(server.get("/api/v1/staff/cases", Some("spt_x_y")).0, 401);
    assert_eq!(server.get("/api/v1/staff/cases", Some(&analyst)).0, 403);
    let (status, inbox) = server.get(
        &format!("/api/v1/staff/cases?code={code}&min_position={position}"),
        Some(&operator),
    );
    assert_eq!((status, inbox["total"].as_u64()), (200, Some(1)), "{inbox}");
    let (_, all) = server.get("/api/v1/staff/cases?limit=1000", Some(&operator));
    assert!(
        all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["comune"] == MASSAFRA)
    );
    let dues: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["due_on"].as_str().unwrap())
        .collect();
    assert!(
        dues.windows(2).all(|w| w[0] <= w[1]),
        "inbox not sorted by due date"
    );
    let (_, theirs) = server.get(&format!("/api/v1/staff/cases?code={code}"), Some(&statte));
    assert_eq!(theirs["total"], 0);
    assert_eq!(
        server
            .get(&format!("/api/v1/staff/cases/{case_id}"), Some(&statte))
            .0,
        404
    );
    assert_eq!(
        server
            .post(
                &format!("/api/v1/staff/cases/{case_id}/take-in-charge"),
                Some(&statte),
                &json!({"office": "X"})
            )
            .0,
        404
    );
    let (status, detail) = server.get(&format!("/api/v1/staff/cases/{case_id}"), Some(&operator));
    assert_eq!(status, 200);
    assert_eq!(detail["citizen"]["name"], name.as_str());
    assert_eq!(detail["subject"], subject_text.as_str());
    // The subject search: words or their beginnings, in any order, case and accents aside.
    let (status, found) = server.get(
        &format!("/api/v1/staff/cases?text=BUCA%20{marker}&min_position={position}"),
        Some(&operator),
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entries"][0]["id"], case_id.as_str());
    let (_, found) = server.get(
        &format!("/api/v1/staff/cases?text={}%20PER%C3%8CCOL,", &marker[..8]),
        Some(&operator),
    );
    assert_eq!(found["total"], 1, "{found}");
    let (_, none) = server.get(
        &format!("/api/v1/staff/cases?text=uca%20{marker}"),
        Some(&operator),
    );
    assert_eq!(
        none["total"], 0,
        "a word's middle is not its beginning: {none}"
    );
    assert!(detail["citizen"]["subject_id"].is_string());

    // The case's life, with the citizen sending the documents asked for.
    let act = |action: &str, body: Value| {
        server.post(
            &format!("/api/v1/staff/cases/{case_id}/{action}"),
            Some(&operator),
            &body,
        )
    };
    assert_eq!(
        act("answer", json!({"text": "Fatto"})).1["code"],
        "case_not_taken_in_charge"
    );
    assert_eq!(act("take-in-charge", json!({})).0, 422);
    assert_eq!(
        act("take-in-charge", json!({"office": "Lavori pubblici"})).0,
        200
    );
    assert_eq!(act("assign", json!({"operator": "Maria Rossi"})).0, 200);
    let (status, suspended) = act(
        "request-documents",
        json!({"documents": ["Fotografia della buca"]}),
    );
    assert_eq!(
        (status, suspended["status"].as_str()),
        (200, Some("suspended"))
    );
    assert_eq!(
        act("request-documents", json!({"documents": ["Altro"]})).0,
        409
    );
    let (status, resumed) = server.post(
        &format!("/api/v1/cases/{code}/documents?key={access_key}"),
        None,
        &json!({"documents": ["Fotografia della buca"]}),
    );
    assert_eq!(
        (status, resumed["status"].as_str()),
        (200, Some("assigned")),
        "{resumed}"
    );
    assert_eq!(
        act("answer", json!({"text": "La buca è stata riparata."})).0,
        200
    );
    // Only a withdrawal gives that outcome: the request must change, so 422.
    assert_eq!(
        act("close", json!({"outcome": "ritirata_dal_cittadino"})).0,
        422
    );
    assert_eq!(act("close", json!({"outcome": "inventato"})).0, 422);
    let (status, closed) = act("close", json!({"outcome": "accolta"}));
    assert_eq!((status, closed["status"].as_str()), (200, Some("closed")));
    let (_, seen) = server.get(
        &format!(
            "/api/v1/cases/{code}?key={access_key}&min_position={}",
            closed["position"]
        ),
        None,
    );
    let kinds: Vec<&str> = seen["milestones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "received",
            "taken_in_charge",
            "documents_requested",
            "documents_received",
            "answered",
            "closed"
        ]
    );
    assert_eq!(
        (seen["status"].as_str(), seen["outcome"].as_str()),
        (Some("closed"), Some("accolta"))
    );
    assert!(
        seen["taken_in_charge_at"].is_string()
            && seen["answered_at"].is_string()
            && seen["closed_at"].is_string()
    );

    // A counter contact, transferred to Statte: it leaves Massafra's inbox for Statte's.
    let mut counter = new_case(MASSAFRA, "Mario Bianchi");
    counter["channel"] = json!("sportello");
    let (status, other) = server.post("/api/v1/staff/cases", Some(&operator), &counter);
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_str().unwrap();
    let (status, moved) = server.post(
        &format!("/api/v1/staff/cases/{other_id}/transfer"),
        Some(&operator),
        &json!({"to_comune": STATTE, "reason": "Strada di competenza di Statte"}),
    );
    assert_eq!(status, 200, "{moved}");
    let (_, theirs) = server.get(
        &format!(
            "/api/v1/staff/cases?transferred_from={MASSAFRA}&min_position={}",
            moved["position"]
        ),
        Some(&statte),
    );
    assert!(
        theirs["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == other_id),
        "{theirs}"
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/staff/cases/{other_id}"), Some(&operator))
            .0,
        404
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/staff/cases/{other_id}"), Some(&statte))
            .0,
        200
    );
    let mut web_only = new_case(MASSAFRA, "X");
    web_only["channel"] = json!("sportello");
    assert_eq!(server.post("/api/v1/cases", None, &web_only).0, 422);
    assert_eq!(
        server
            .post(
                "/api/v1/staff/cases",
                Some(&operator),
                &new_case(STATTE, "X")
            )
            .0,
        403
    );

    // The catalogue, a form, a submission.
    let (status, services) = server.get("/api/v1/services", None);
    assert_eq!(status, 200);
    let with_form = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            !s["forms"].as_array().unwrap().is_empty()
                && s["comuni"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c == MASSAFRA)
        })
        .expect("the demo publishes a service with a form for Massafra")
        .clone();
    let service_code = with_form["code"].as_str().unwrap();
    assert_eq!(
        server
            .get(&format!("/api/v1/services/{service_code}"), None)
            .1["code"],
        service_code
    );
    assert_eq!(server.get("/api/v1/services/non-esiste", None).0, 404);
    let form_id = with_form["forms"][0]["id"].as_str().unwrap();
    let (status, form) = server.get(&format!("/api/v1/forms/{form_id}"), None);
    assert_eq!(status, 200, "{form}");
    let (values, documents) = fill(&form["form"]);
    let submission = json!({
        "form_id": form_id, "form_version": form["version"], "comune": MASSAFRA,
        "values": values, "documents": documents,
        "citizen": {"name": "Rosa Celeste", "email": "rosa@example.it"}, "privacy_consent": true
    });
    let (status, submitted) = server.post("/api/v1/submissions", None, &submission);
    assert_eq!(status, 201, "{submitted}");
    assert!(submitted["registration_number"].as_u64().unwrap() >= 1);
    assert!(submitted["case"]["access_key"].is_string());
    let mut unknown_field = submission.clone();
    unknown_field["values"]["campo_inventato"] = json!("x");
    let (status, problem) = server.post("/api/v1/submissions", None, &unknown_field);
    assert_eq!(status, 422);
    assert!(
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "campo_inventato"),
        "{problem}"
    );

    // Ratings: the closed case once, a service page; then the statistics.
    let rating = json!({
        "target": {"type": "case", "id": code}, "comune": MASSAFRA, "channel": "web",
        "scale": "stars", "score": 5, "reasons": [], "comment": "Molto gentili", "access_key": access_key
    });
    let (status, rated) = server.post("/api/v1/feedback", None, &rating);
    assert_eq!(status, 201, "{rated}");
    assert_eq!(
        server.post("/api/v1/feedback", None, &rating).1["code"],
        "feedback_already_given"
    );
    let mut wrong_key = rating.clone();
    wrong_key["access_key"] = json!("nope");
    assert_eq!(server.post("/api/v1/feedback", None, &wrong_key).0, 404);
    let faces = json!({
        "target": {"type": "service", "id": service_code}, "comune": MASSAFRA, "channel": "web",
        "scale": "faces", "score": 4, "reasons": []
    });
    assert_eq!(
        server.post("/api/v1/feedback", None, &faces).1["code"],
        "feedback_score_out_of_range"
    );
    let mut faces = faces;
    faces["score"] = json!(3);
    let (status, face) = server.post("/api/v1/feedback", None, &faces);
    assert_eq!(status, 201, "{face}");
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let (status, stats) = server.get(
        &format!(
            "/api/v1/staff/stats/satisfaction?from={month}&to={month}&group_by=comune,target_type,scale&comune={MASSAFRA}&min_position={}",
            face["position"]
        ),
        Some(&analyst),
    );
    assert_eq!(status, 200, "{stats}");
    let case_stars = stats["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target_type"] == "case" && r["scale"] == "stars")
        .unwrap_or_else(|| panic!("no case ratings in {stats}"));
    assert!(case_stars["count"].as_i64().unwrap() >= 1);
    assert!(case_stars["distribution"]["5"].as_i64().unwrap() >= 1);
    assert!(case_stars["mean"].is_number() && case_stars["reasons"].is_object());
    let service_faces = stats["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target_type"] == "service" && r["scale"] == "faces")
        .unwrap();
    assert!(
        service_faces["mean"].is_null() && service_faces["share_positive"].as_f64().unwrap() > 0.0
    );
    assert_eq!(
        server
            .get(
                "/api/v1/staff/stats/satisfaction?group_by=colore",
                Some(&analyst)
            )
            .1["errors"][0]["field"],
        "group_by"
    );
    let (status, levels) = server.get(
        "/api/v1/staff/stats/service-levels?group_by=comune,kind",
        Some(&analyst),
    );
    assert_eq!(status, 200);
    assert!(
        levels["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["comune"] == MASSAFRA && r["kind"] == "segnalazione")
    );

    // GDPR erasure: admins only, their comune's citizens; the name is gone for good.
    let subject = detail["citizen"]["subject_id"].as_str().unwrap();
    let erase = format!("/api/v1/staff/subjects/{subject}/erase");
    assert_eq!(server.post(&erase, Some(&operator), &json!({})).0, 403);
    let statte_admin = token(store, "admin", STATTE, "Admin Statte");
    assert_eq!(server.post(&erase, Some(&statte_admin), &json!({})).0, 404);
    let (status, erased) = server.post(&erase, Some(&admin), &json!({"reason": "prot. 1234/2026"}));
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["search_scrubbed"], true, "{erased}");
    let (_, after) = server.get(&format!("/api/v1/staff/cases/{case_id}"), Some(&operator));
    assert_eq!(after["citizen"]["erased"], true, "{after}");
    assert!(after["citizen"]["name"].is_null() && after["subject"].is_null());
    assert_eq!(after["personal_data_erased"], true);
    assert!(!after.to_string().contains(&name));
    let (_, gone) = server.get(
        &format!(
            "/api/v1/staff/cases?text={marker}&min_position={}",
            erased["position"]
        ),
        Some(&operator),
    );
    assert_eq!(
        gone["total"], 0,
        "the erased subject is still searchable: {gone}"
    );
    // The public view and the statistics still work.
    assert_eq!(
        server
            .get(&format!("/api/v1/cases/{code}?key={access_key}"), None)
            .0,
        200
    );
    drop(server);
    // The full-text index keeps words apart, each after the shared start of the one before.
    assert_gone(
        store,
        &[
            &name,
            &subject_text,
            &subject_text.to_lowercase(),
            &marker[2..],
        ],
    );
}

/// No byte of the store (log, keys, read models) holds any of `texts`.
fn assert_gone(store: &Store, texts: &[&str]) {
    match &store.dir {
        Some(dir) => {
            let mut scanned = 0;
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                // The runners' lock files are empty, in a folder of their own.
                if path.is_dir() {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                scanned += 1;
                for text in texts {
                    assert!(
                        !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
                        "{} holds {text:?}",
                        path.display()
                    );
                }
            }
            assert!(
                scanned >= 3,
                "expected the store, its keys and its read models"
            );
        }
        None => {
            let dump = Command::new("pg_dump")
                .args(["--data-only", &store.url])
                .output()
                .expect("pg_dump runs (postgresql-client)");
            assert!(
                dump.status.success(),
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            let text = String::from_utf8_lossy(&dump.stdout);
            assert!(
                text.contains("SubjectErased"),
                "the dump is not of the store"
            );
            for t in texts {
                assert!(!text.contains(t), "the database holds {t:?}");
            }
        }
    }
}

#[test]
fn a_day_at_the_urp_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let store = Store {
        url: format!("sqlite://{}", data.join("urp.db").display()),
        dir: Some(data),
    };
    a_day_at_the_urp(&store);
}

#[test]
fn a_day_at_the_urp_on_postgres() {
    with_scratch_postgres("sportello_api", |url| {
        a_day_at_the_urp(&Store {
            url: url.to_owned(),
            dir: None,
        });
    });
}

#[test]
fn public_writes_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store {
        url: format!("sqlite://{}", dir.path().join("urp.db").display()),
        dir: None,
    };
    let server = Server::start(
        &store,
        &[
            ("SPORTELLO__API__PUBLIC_BURST", "2"),
            ("SPORTELLO__API__PUBLIC_POSTS_PER_MINUTE", "1"),
        ],
    );
    let body = new_case(MASSAFRA, "Ugo Foscolo");
    assert_eq!(server.post("/api/v1/cases", None, &body).0, 201);
    assert_eq!(server.post("/api/v1/cases", None, &body).0, 201);
    let (status, problem) = server.post("/api/v1/cases", None, &body);
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // Reads are not limited.
    assert_eq!(server.get("/api/v1/services", None).0, 200);
}

/// SIGKILL during a stream of writes: every acknowledged write is in the log after a restart,
/// and every projection equals a fresh rebuild.
fn killed_mid_stream(store: &Store) {
    let server = Server::start(store, &[("SPORTELLO__API__PUBLIC_BURST", "100000")]);
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (base, stop, acknowledged) = (base.clone(), stop.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let agent = Server::agent();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let comune = [MASSAFRA, STATTE][n % 2];
                    let result = agent
                        .post(format!("{base}/api/v1/cases"))
                        .header("Content-Type", "application/json")
                        .send(new_case(comune, &format!("Scrittore {w}-{n}")).to_string());
                    let Ok(mut response) = result else { break };
                    if response.status() == 201 {
                        let v: Value = response.body_mut().read_json().unwrap();
                        acknowledged.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                    }
                    if n % 10 == 0 {
                        let _ = agent
                            .post(format!("{base}/api/v1/feedback"))
                            .header("Content-Type", "application/json")
                            .send(json!({"target": {"type": "page", "id": "/servizi"}, "comune": comune,
                                "channel": "web", "scale": "stars", "score": 1 + (n % 5), "reasons": []}).to_string());
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 150 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 150,
        "only {} writes acknowledged",
        acknowledged.len()
    );

    assert_registers_accounted(store);
    let logged: HashSet<String> = run(
        store,
        &["replay", "--category", "case", "--type", "CaseOpened"],
    )
    .lines()
    .map(|l| {
        serde_json::from_str::<Value>(l).unwrap()["stream"]
            .as_str()
            .unwrap()
            .trim_start_matches("case-")
            .to_owned()
    })
    .collect();
    for id in &acknowledged {
        assert!(
            logged.contains(id),
            "acknowledged case {id} is not in the log"
        );
    }

    // Restarted, the projections catch up; they must equal a rebuild from nothing.
    let server = Server::start(store, &[]);
    let started = Instant::now();
    loop {
        let (_, ready) = server.get("/readyz", None);
        if ready["projections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["lag"] == 0)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never caught up: {ready}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    let live = snapshot(store);
    run(store, &["rebuild"]);
    let rebuilt = snapshot(store);
    assert_eq!(live.len(), rebuilt.len());
    for (what, value) in &live {
        assert_eq!(value, &rebuilt[what], "{what} differs from a fresh rebuild");
    }
    assert!(live["cases"].matches("\"code\"").count() >= acknowledged.len());
}

/// Every projection, read through the CLI on a fixed day.
fn snapshot(store: &Store) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    out.insert(
        "cases",
        run(
            store,
            &[
                "query",
                "cases",
                "--limit",
                "100000",
                "--today",
                "2026-12-01",
                "--format",
                "json",
            ],
        ),
    );
    out.insert(
        "satisfaction",
        run(
            store,
            &[
                "query",
                "satisfaction",
                "--group-by",
                "comune,target_type,target,channel,month,scale",
                "--format",
                "json",
            ],
        ),
    );
    out.insert(
        "service-levels",
        run(
            store,
            &[
                "query",
                "service-levels",
                "--group-by",
                "comune,kind,month",
                "--today",
                "2026-12-01",
                "--format",
                "json",
            ],
        ),
    );
    out.insert(
        "catalogue",
        run(store, &["query", "catalogue", "--format", "json"]),
    );
    out
}

#[test]
fn sigkill_loses_no_acknowledged_write_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_stream(&Store {
        url: format!("sqlite://{}", dir.path().join("urp.db").display()),
        dir: None,
    });
}

#[test]
fn sigkill_loses_no_acknowledged_write_on_postgres() {
    with_scratch_postgres("sportello_kill", |url| {
        killed_mid_stream(&Store {
            url: url.to_owned(),
            dir: None,
        });
    });
}

/// Every number of every register is held by exactly one case or submission, and a case's code
/// carries the number its register gave it: no number handed out unused, none twice.
fn assert_registers_accounted(store: &Store) {
    let lines = |args: &[&str]| -> Vec<Value> {
        run(store, args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut holders: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for assigned in lines(&["replay", "--category", "registry"]) {
        let register = assigned["stream"].as_str().unwrap().to_owned();
        let version = assigned["version"].as_u64().unwrap();
        let holder = assigned["data"]["holder"].as_str().unwrap().to_owned();
        versions.entry(register.clone()).or_default().push(version);
        assert!(
            holders
                .insert(holder.clone(), (register, version))
                .is_none(),
            "{holder} holds two numbers"
        );
    }
    for (register, numbers) in &versions {
        let dense: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, &dense, "{register} has gaps");
    }
    let mut held = 0;
    for opened in lines(&["replay", "--category", "case", "--type", "CaseOpened"]) {
        let id = opened["stream"]
            .as_str()
            .unwrap()
            .trim_start_matches("case-");
        let code = opened["data"]["code"].as_str().unwrap();
        let (register, number) = &holders[id];
        assert!(register.starts_with("registry-cases."), "{register}");
        assert!(
            code.ends_with(&format!("-{number:06}")),
            "{code} is not number {number}"
        );
        held += 1;
    }
    for accepted in lines(&[
        "replay",
        "--category",
        "submission",
        "--type",
        "SubmissionAccepted",
    ]) {
        let id = accepted["stream"]
            .as_str()
            .unwrap()
            .trim_start_matches("submission-");
        assert!(holders[id].0.starts_with("registry-submissions."));
        held += 1;
    }
    assert_eq!(
        held,
        holders.len(),
        "a number was handed out without its case or submission"
    );
}

/// The disk fills during intakes (every file of the server is limited in size): the citizens
/// get 503 and an invitation to retry, never a 500; nothing acknowledged is lost; and once there
/// is room again the codes go on from where they stopped, every number held by its case.
#[test]
fn a_full_disk_is_a_503_and_leaves_no_number_without_its_case() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store {
        url: format!("sqlite://{}", dir.path().join("urp.db").display()),
        dir: Some(dir.path().to_owned()),
    };
    let env = [
        ("SPORTELLO__API__PUBLIC_BURST", "100000"),
        ("SPORTELLO_LOG", "error"),
    ];
    // Enough for the read models to be created (their WAL takes about 1.6 MB), not for 3,000 cases.
    let server = Server::start_with_file_limit(&store, &env, 2560);
    let (mut acknowledged, mut unavailable) = (Vec::new(), 0);
    for n in 0..3000 {
        let (status, body) = server.post(
            "/api/v1/cases",
            None,
            &new_case([MASSAFRA, STATTE][n % 2], &format!("Cittadino {n}")),
        );
        match status {
            201 => acknowledged.push(body["id"].as_str().unwrap().to_owned()),
            503 => {
                assert_eq!(body["code"], "temporarily_unavailable", "{body}");
                unavailable += 1;
                if unavailable >= 20 {
                    break;
                }
            }
            other => panic!("a full disk answered {other}: {body}"),
        }
    }
    assert!(
        unavailable >= 20,
        "the disk never filled ({} cases)",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= 10,
        "only {} cases before it filled",
        acknowledged.len()
    );
    drop(server);

    let server = Server::start(&store, &env);
    let (status, body) = server.post("/api/v1/cases", None, &new_case(MASSAFRA, "Dopo"));
    assert_eq!(status, 201, "{body}");
    drop(server);
    let logged = run(
        &store,
        &["replay", "--category", "case", "--type", "CaseOpened"],
    );
    for id in &acknowledged {
        assert!(
            logged.contains(id.as_str()),
            "acknowledged case {id} was lost"
        );
    }
    assert_registers_accounted(&store);
    // Every stream's hash chain is intact (verify exits 1 otherwise, and `run` fails).
    run(&store, &["verify"]);
}
