//! Open311 GeoReport v2 end to end: a reporting app built on a real client from PyPI (`georeport`,
//! installed by `scripts/python-tools.sh`) against `sportello serve` on SQLite; then what anyone
//! can read of the report (nothing personal), what the URP sees of it, and what bad requests get.

use serde_json::Value;
use std::process::Command;

mod support;
use support::{Server, Store, run, token, with_scratch_postgres};

const MASSAFRA: &str = "073015";
const STATTE: &str = "073029";

fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    Store {
        url: format!("sqlite://{}", dir.path().join("log.db").display()),
        dir: Some(dir.path().to_owned()),
    }
}

/// The body, the status and the content type of a GET, whatever the status.
fn fetch(server: &Server, path: &str) -> (u16, String, String) {
    let mut response = Server::agent()
        .get(format!("{}{path}", server.base))
        .call()
        .expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        response.body_mut().read_to_string().unwrap(),
        content_type,
    )
}

fn post_form(server: &Server, path: &str, form: &str) -> (u16, String) {
    let mut response = Server::agent()
        .post(format!("{}{path}", server.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form.to_owned())
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

fn head(server: &Server) -> u64 {
    server.get("/readyz", None).1["head"].as_u64().unwrap()
}

/// An Open311 error: the spec's `code` (the status) and `description`, and this API's code.
fn assert_open311_error(status: u16, body: &str, expected: u16, error_code: &str) {
    assert_eq!(status, expected, "{body}");
    if body.starts_with("<?xml") {
        for part in [
            "<errors><error>".to_owned(),
            format!("<code>{expected}</code>"),
            format!("<error_code>{error_code}</error_code>"),
            "<description>".to_owned(),
        ] {
            assert!(body.contains(&part), "{part} missing in {body}");
        }
        return;
    }
    let errors: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    assert_eq!(errors[0]["code"], expected, "{body}");
    assert_eq!(errors[0]["error_code"], error_code, "{body}");
    assert!(
        errors[0]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[test]
fn a_reporting_app_opens_and_follows_a_report_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_reporting_app_opens_and_follows_a_report(&sqlite_store(&dir));
}

#[test]
fn a_reporting_app_opens_and_follows_a_report_on_postgres() {
    with_scratch_postgres("open311", |url| {
        a_reporting_app_opens_and_follows_a_report(&Store {
            url: url.to_owned(),
            dir: None,
        })
    });
}

/// The app's run, then what the public, the URP and bad requests get: nothing personal in public.
fn a_reporting_app_opens_and_follows_a_report(store: &Store) {
    // The catalogue (services with forms) and some history.
    run(store, &["demo", "--cases", "30", "--seed", "11"]);
    let operator = token(store, "operator", MASSAFRA, "Maria Rossi");
    let server = Server::start(
        store,
        &[
            ("SPORTELLO__API__PUBLIC_BURST", "1000"),
            ("SPORTELLO__WORKERS__IN_SERVE", "false"),
        ],
    );
    let python = support::python_tools("the Open311 test needs the georeport client");
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let out = Command::new(&python)
        .arg("tests/open311/client.py")
        .args([&server.base, MASSAFRA, &marker])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the Open311 client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let opened: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let code = opened["service_request_id"].as_str().unwrap().to_owned();
    let case_id = opened["token"].as_str().unwrap().to_owned();
    assert!(code.starts_with("MAS-"), "{code}");

    // Anyone: every answer, in both formats, without what the citizen wrote or where they are.
    let query = format!("jurisdiction_id={MASSAFRA}");
    for path in [
        "services.json",
        "services.xml",
        "services/occupazione-suolo-pubblico.xml",
        "requests.json",
        "requests.xml",
        &format!("requests/{code}.json"),
        &format!("requests/{code}.xml"),
        &format!("requests.json?service_request_id={code}&x=1"),
    ] {
        let separator = if path.contains('?') { '&' } else { '?' };
        let (status, body, content_type) =
            fetch(&server, &format!("/open311/v2/{path}{separator}{query}"));
        assert_eq!(status, 200, "{path}: {body}");
        let expected = if path.contains(".xml") {
            "text/xml"
        } else {
            "application/json"
        };
        assert!(content_type.starts_with(expected), "{path}: {content_type}");
        for secret in [
            marker.as_str(),
            "Lentini",
            "rosaria",
            "40.5903",
            "Vittorio Veneto",
        ] {
            assert!(!body.contains(secret), "{path} shows {secret}: {body}");
        }
    }
    let (_, listed, _) = fetch(&server, &format!("/open311/v2/requests.json?{query}"));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let ours = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["service_request_id"] == code.as_str())
        .expect("the new report is listed");
    assert_eq!(ours["status_notes"], "Ricevuta");
    assert_eq!(ours["agency_responsible"], "URP del Comune di Massafra");
    // Only reports are listed, newest first.
    let dates: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requested_datetime"].as_str().unwrap())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{dates:?}");

    // The URP: a case of kind segnalazione from the app, with everything sealed in it.
    let (status, inbox) = server.get(&format!("/api/v1/staff/cases?code={code}"), Some(&operator));
    assert_eq!(status, 200, "{inbox}");
    let entry = &inbox["entries"][0];
    assert_eq!(entry["kind"], "segnalazione");
    assert_eq!(entry["channel"], "app");
    assert_eq!(entry["service"], "occupazione-suolo-pubblico");
    let (status, detail) = server.get(&format!("/api/v1/staff/cases/{case_id}"), Some(&operator));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(
        detail["subject"],
        format!("Tavolini sul marciapiede {marker}")
    );
    let description = detail["description"].as_str().unwrap();
    for part in [
        "Da due settimane.",
        "Posizione: 40.5903, 17.1127",
        &format!("Indirizzo: Via Vittorio Veneto 12 {marker}"),
        "Metri quadri: 12.5",
        "Dal giorno: 2026-12-01",
        "Email: rosaria.lentini@example.it",
    ] {
        assert!(
            description.contains(part),
            "{part} missing in {description}"
        );
    }
    assert_eq!(
        detail["citizen"]["name"],
        format!("Rosaria Lentini {marker}")
    );

    // Where to find it all: Open311's discovery document, in both formats.
    let (status, discovery, _) = fetch(&server, "/open311/discovery.json");
    assert_eq!(status, 200, "{discovery}");
    let discovery: Value = serde_json::from_str(&discovery).unwrap();
    let endpoint = &discovery["endpoints"][0];
    assert_eq!(
        endpoint["specification"],
        "http://wiki.open311.org/GeoReport_v2"
    );
    assert!(
        endpoint["url"].as_str().unwrap().ends_with("/open311/v2"),
        "{discovery}"
    );
    let (status, xml, _) = fetch(&server, "/open311/discovery.xml");
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(
            "<formats><format>application/json</format><format>text/xml</format></formats>"
        ),
        "{xml}"
    );

    // Another comune does not have it.
    let (status, body, _) = fetch(
        &server,
        &format!("/open311/v2/requests/{code}.json?jurisdiction_id={STATTE}"),
    );
    assert_open311_error(status, &body, 404, "request_not_found");

    // Bad requests: the spec's errors, in the format asked for; nothing stored.
    let before = head(&server);
    let report = |extra: &str| {
        format!(
            "jurisdiction_id={MASSAFRA}&service_code=segnalazione&lat=40.59&long=17.11\
             &description=Lampione+spento&privacy_consent=true{extra}"
        )
    };
    for (path, form, status, error_code) in [
        (
            "requests.json",
            "service_code=segnalazione&lat=1&long=1".to_owned(),
            400,
            "jurisdiction_id_required",
        ),
        (
            "requests.xml",
            "jurisdiction_id=999999&service_code=segnalazione".to_owned(),
            404,
            "jurisdiction_not_found",
        ),
        (
            "requests.json",
            format!("jurisdiction_id={MASSAFRA}&lat=1&long=1"),
            400,
            "service_code_required",
        ),
        (
            "requests.json",
            report("&service_code=fontana-magica"),
            404,
            "service_not_found",
        ),
        (
            "requests.xml",
            format!("jurisdiction_id={MASSAFRA}&service_code=segnalazione&privacy_consent=true"),
            400,
            "location_required",
        ),
        (
            "requests.json",
            report("&long=200"),
            400,
            "coordinate_invalid",
        ),
        (
            "requests.json",
            report("&privacy_consent=false"),
            400,
            "privacy_consent_required",
        ),
        (
            "requests.json",
            report("&email=non-una-mail"),
            400,
            "email_invalid",
        ),
        (
            "requests.json",
            report("&media_url=javascript:alert(1)"),
            400,
            "media_url_invalid",
        ),
        (
            "requests.xml",
            report("&attribute[colore]=blu"),
            400,
            "field_unknown",
        ),
        (
            "requests.json",
            report(&format!("&description={}", "a".repeat(4001))),
            400,
            "too_long",
        ),
        // Only requests are posted.
        ("services.json", report(""), 404, "not_found"),
        ("requests.csv", report(""), 404, "format_unknown"),
    ] {
        let (got, body) = post_form(&server, &format!("/open311/v2/{path}"), &form);
        assert_open311_error(got, &body, status, error_code);
        assert_eq!(
            path.ends_with(".xml"),
            body.starts_with("<?xml"),
            "{path}: {body}"
        );
    }
    for (path, status, error_code) in [
        ("services.json", 400, "jurisdiction_id_required"),
        (
            &format!("services/nessuno.xml?{query}") as &str,
            404,
            "service_not_found",
        ),
        (
            &format!("requests.json?{query}&status=sospesa"),
            400,
            "status_invalid",
        ),
        (
            &format!("requests.json?{query}&start_date=ieri"),
            400,
            "start_date_invalid",
        ),
        (
            &format!(
                "requests.json?{query}&start_date=2026-01-01T00:00:00Z&end_date=2026-12-01T00:00:00Z"
            ),
            400,
            "date_range_too_long",
        ),
        (
            &format!("requests/XYZ-1.json?{query}"),
            404,
            "request_not_found",
        ),
        (
            &format!("tokens/not-a-token.xml?{query}"),
            404,
            "request_not_found",
        ),
        (&format!("whatever.json?{query}"), 404, "not_found"),
    ] {
        let (got, body, _) = fetch(&server, &format!("/open311/v2/{path}"));
        assert_open311_error(got, &body, status, error_code);
    }
    let (got, body) = {
        let mut response = Server::agent()
            .post(format!("{}/open311/v2/requests.json", server.base))
            .header("Content-Type", "application/json")
            .send(r#"{"service_code":"segnalazione"}"#)
            .unwrap();
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    };
    assert_open311_error(got, &body, 415, "unsupported_media_type");
    assert_eq!(head(&server), before, "a refused request stored something");

    // A report without a service of the catalogue, without a citizen, with an address only;
    // retried with the same idempotency key, the same report.
    let form = format!(
        "jurisdiction_id={MASSAFRA}&service_code=segnalazione&address_string=Piazza+Garibaldi\
         &privacy_consent=true"
    );
    let send = || {
        let mut response = Server::agent()
            .post(format!("{}/open311/v2/requests.xml", server.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Idempotency-Key", "app-42")
            .send(form.clone())
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let (status, first) = send();
    assert_eq!(status, 201, "{first}");
    assert!(first.contains("<service_requests><request>"), "{first}");
    let after_first = head(&server);
    assert!(after_first > before);
    let (status, again) = send();
    assert_eq!(status, 201, "{again}");
    let id = |body: &str| {
        body.split("<service_request_id>")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(id(&first), id(&again));
    assert_eq!(head(&server), after_first, "a retry stored again");
}

#[test]
fn open311_reports_share_the_public_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir);
    run(&store, &["demo", "--cases", "1", "--seed", "3"]);
    let server = Server::start(
        &store,
        &[
            ("SPORTELLO__API__PUBLIC_BURST", "2"),
            ("SPORTELLO__API__PUBLIC_POSTS_PER_MINUTE", "1"),
            ("SPORTELLO__WORKERS__IN_SERVE", "false"),
        ],
    );
    let form = format!(
        "jurisdiction_id={MASSAFRA}&service_code=segnalazione&address_string=Via+Roma\
         &privacy_consent=true"
    );
    let statuses: Vec<u16> = (0..3)
        .map(|_| post_form(&server, "/open311/v2/requests.json", &form).0)
        .collect();
    assert_eq!(statuses, [201, 201, 429]);
    let mut response = Server::agent()
        .post(format!("{}/open311/v2/requests.xml", server.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form)
        .unwrap();
    assert!(response.headers().get("retry-after").is_some());
    let body = response.body_mut().read_to_string().unwrap();
    assert_open311_error(429, &body, 429, "rate_limited");
    // Reading is not limited.
    let (status, _, _) = fetch(
        &server,
        &format!("/open311/v2/requests.json?jurisdiction_id={MASSAFRA}"),
    );
    assert_eq!(status, 200);
}
