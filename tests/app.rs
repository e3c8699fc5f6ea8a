//! The router in-process (`sportello::api::app`), without a socket: what any input a citizen can
//! type gets back, request ids and correlation, read-your-writes past the head, and a
//! PostgreSQL that goes away in the middle of intakes.

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sportello::api::{self, AppState};
use sportello_config::{SecretUrl, Settings};
use sportello_engine::store::postgres::with_scratch_database;
use sportello_engine::{EventLog, ReadAll};
use sportello_projections::Views;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;
use uuid::Uuid;

struct App {
    router: Router,
    log: EventLog,
    url: String,
    _dir: tempfile::TempDir,
}

fn settings(url: &str, consistency_wait_ms: u64) -> Settings {
    let mut settings = Settings::load_from(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        None,
        [(
            "SPORTELLO__VAULT__MASTER_KEY".to_owned(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
        )],
    )
    .unwrap();
    settings.store.url = SecretUrl::new(url.to_owned());
    settings.api.consistency_wait_ms = consistency_wait_ms;
    settings.api.public_burst = 1000;
    settings
}

async fn app_on(url: &str, consistency_wait_ms: u64, dir: tempfile::TempDir) -> App {
    sportello::cli::telemetry::init();
    let settings = settings(url, consistency_wait_ms);
    let urp = sportello::cli::open_urp(&settings).await.unwrap();
    let views = Views::open(url).await.unwrap();
    sportello_projections::read_models()
        .ensure_all(&views)
        .await
        .unwrap();
    let log = urp.log().clone();
    let state = Arc::new(AppState::new(urp, views, Arc::new(settings)));
    let router = api::app(state).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))));
    App {
        router,
        log,
        url: url.to_owned(),
        _dir: dir,
    }
}

async fn sqlite_app(consistency_wait_ms: u64) -> App {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("urp.db").display());
    app_on(&url, consistency_wait_ms, dir).await
}

/// A request with `headers` and a body of the given content type.
fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, String)>,
) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match body {
        Some((content_type, body)) => request
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body)),
        None => request.body(Body::empty()),
    }
    .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl App {
    async fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let body = body.map(|b| ("application/json", b.to_string()));
        let request = request(method, uri, headers, body);
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }
}

impl App {
    /// A page: (status, headers, HTML). `form` is posted url-encoded.
    async fn page(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        form: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let form = form.map(|f| ("application/x-www-form-urlencoded", f.to_owned()));
        let request = request(method, uri, headers, form);
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Posts a multipart form as a browser does: text fields, then files (name, content).
    async fn upload(
        &self,
        uri: &str,
        fields: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let boundary = "----sportello-test-boundary";
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        for (file_name, content) in files {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
                 Content-Type: application/pdf\r\n\r\n{content}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let request = request("POST", uri, &[], Some((&content_type, body)));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Runs the inbox's projection in the background, as `serve` does (what finds a case by its
    /// code), for as long as the test runs.
    async fn follow_inbox(&self) {
        use sportello_projections::inbox::Inbox;
        let views = Views::open(&self.url).await.unwrap();
        let inbox = sportello_projections::read_model::<Inbox>();
        let guard = sportello_projections::runner::acquire(&views, &self.url, inbox, "test")
            .await
            .unwrap();
        let log = self.log.clone();
        tokio::spawn(async move {
            sportello_projections::runner::run(&log, &views, inbox, &guard, std::future::pending())
                .await
        });
    }

    async fn cases_opened(&self) -> usize {
        self.log
            .read_all(ReadAll {
                event_types: vec!["CaseOpened".into()],
                ..ReadAll::from(1)
            })
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len()
    }
}

/// The text of the element with `id` in a page (`<… id="ID">TEXT<`).
fn text_of(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[start..];
    rest[rest.find('>').unwrap() + 1..rest.find('<').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_escape_what_citizens_type_refuse_cross_site_posts_and_open_one_case_per_form() {
    let app = sqlite_app(200).await;
    let (status, headers, html) = app.page("GET", "/contatti/nuovo", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let token = html
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form carries its token")
        .to_owned();

    // What a citizen typed comes back escaped, next to the field it concerns.
    let evil = "comune=073015&kind=reclamo&subject=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let (status, _, html) = app.page("POST", "/contatti/nuovo", &[], Some(evil)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("value=\"&#60;script&#62;alert(1)&#60;"),
        "not escaped"
    );
    assert!(!html.contains("<script>alert"));
    assert!(html.contains("id=\"privacy_consent-errore\""));

    let form = format!(
        "comune=073015&kind=segnalazione&subject=Buca+in+via+Roma&email=a%40example.it&privacy_consent=si&token={token}"
    );
    let before = app.cases_opened().await;
    let (status, _, _) = app
        .page(
            "POST",
            "/contatti/nuovo",
            &[("sec-fetch-site", "cross-site")],
            Some(&form),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(app.cases_opened().await, before);

    // The same form posted twice (a double click): one case, the same confirmation.
    let (status, _, first) = app.page("POST", "/contatti/nuovo", &[], Some(&form)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, _, second) = app.page("POST", "/contatti/nuovo", &[], Some(&form)).await;
    assert_eq!(app.cases_opened().await, before + 1);
    let (code, key) = (
        text_of(&first, "codice-pratica"),
        text_of(&first, "chiave-accesso"),
    );
    assert_eq!(text_of(&second, "codice-pratica"), code);
    assert_eq!(text_of(&second, "chiave-accesso"), key);

    // A browser gets a page for what does not exist, an API client a problem document.
    let (status, headers, html) = app
        .page("GET", "/non-esiste", &[("accept", "text/html")], None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.contains("<code>not_found</code>"));
    let answer = app.send("GET", "/non-esiste", &[], None).await;
    assert_eq!(answer.body["code"], "not_found");
}

fn new_case(subject: &str) -> Value {
    json!({
        "comune": "073015", "kind": "segnalazione", "channel": "web", "service": null,
        "subject": subject, "description": "Via Roma 12",
        "citizen": {"name": "Giuseppe Verdi", "email": "g.verdi@example.it"},
        "privacy_consent": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_a_citizen_can_type_get_a_4xx_problem_never_a_500() {
    let app = sqlite_app(200).await;
    let mut with_service = new_case("Lampione spento");
    with_service["service"] = json!("a b");
    let answer = app
        .send("POST", "/api/v1/cases", &[], Some(with_service))
        .await;
    // It names a service that does not exist: 404, with the field at fault.
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    assert_eq!(answer.body["errors"][0]["field"], "service");
    assert_eq!(answer.body["errors"][0]["code"], "service_unknown");

    for uri in [
        "/api/v1/forms/a%20b",
        "/api/v1/services/a%20b",
        "/api/v1/forms/%C3%A8%2F%2E%2E",
    ] {
        let answer = app.send("GET", uri, &[], None).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{uri}: {}",
            answer.body
        );
        assert_eq!(
            answer.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    let submission = json!({
        "form_id": "a b", "form_version": 1, "comune": "073015", "values": {},
        "citizen": {"name": "Giuseppe Verdi"}, "privacy_consent": true
    });
    let answer = app
        .send("POST", "/api/v1/submissions", &[], Some(submission))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    assert_eq!(answer.body["errors"][0]["field"], "form_id");

    let rating = json!({
        "target": {"type": "case", "id": "a b"}, "comune": "073015", "channel": "web",
        "scale": "stars", "score": 5, "access_key": "x"
    });
    let answer = app
        .send("POST", "/api/v1/feedback", &[], Some(rating))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);

    // Nothing was stored by any of them.
    let stored: Vec<_> = app
        .log
        .read_all(ReadAll::from(1))
        .try_collect()
        .await
        .unwrap();
    assert!(
        stored.iter().all(|e| e.stream.category() != "case"),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_comes_back_and_becomes_the_correlation_id_of_its_events() {
    let app = sqlite_app(200).await;
    let answer = app
        .send(
            "POST",
            "/api/v1/cases",
            &[("X-Request-Id", "sportello-prova-42")],
            Some(new_case("Buca in via Roma")),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.headers["x-request-id"], "sportello-prova-42");
    let case_id: Uuid = answer.body["id"].as_str().unwrap().parse().unwrap();
    let events: Vec<_> = app
        .log
        .read_stream(sportello_engine::StreamId::new("case", case_id).unwrap(), 1)
        .try_collect()
        .await
        .unwrap();
    let expected = Uuid::new_v5(&Uuid::NAMESPACE_OID, b"sportello-prova-42");
    assert_eq!(events[0].metadata.correlation_id, Some(expected));

    // A UUID is taken as it is; a problem document quotes the id.
    let given = Uuid::now_v7().to_string();
    let answer = app
        .send(
            "POST",
            "/api/v1/cases",
            &[("X-Request-Id", &given)],
            Some(json!({"comune": "073015"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.body["request_id"], given.as_str());
    assert_eq!(answer.headers["x-request-id"], given.as_str());

    // Without one, the server makes one.
    let answer = app.send("GET", "/healthz", &[], None).await;
    let made = answer.headers["x-request-id"].to_str().unwrap();
    assert!(Uuid::parse_str(made).is_ok(), "{made}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_past_the_head_waits_and_is_refused_as_not_yet_fresh() {
    let app = sqlite_app(300).await;
    let opened = app
        .send("POST", "/api/v1/cases", &[], Some(new_case("Rifiuti")))
        .await;
    let position = opened.body["position"].as_u64().unwrap();
    // The projections are not running here: the public catalogue has nothing to catch up to,
    // so a position the log has reached is fresh at once…
    let answer = app
        .send(
            "GET",
            &format!("/api/v1/services?min_position={position}"),
            &[],
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // …but one the log has not reached cannot be: a write this node has not seen.
    let started = std::time::Instant::now();
    let answer = app
        .send(
            "GET",
            "/api/v1/services",
            &[("X-Min-Position", &(position + 1000).to_string())],
            None,
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["code"], "projection_behind");
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

/// A TCP relay to PostgreSQL that can be cut and restored, to take the database away from the
/// server the way a restart or a network fault would.
struct Relay {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Relay {
            port,
            task: Some(task),
        }
    }

    /// Closes the listener and every relayed connection.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_is_a_503_to_retry_with_the_same_key_and_nothing_is_lost() {
    with_scratch_database("sportello_outage", |url| async move {
        let mut relay = Relay::start(0).await;
        let through = url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
        assert_ne!(through, url, "the test server must be 127.0.0.1:5432");
        let app = app_on(&through, 200, tempfile::tempdir().unwrap()).await;
        let first = app
            .send(
                "POST",
                "/api/v1/cases",
                &[("Idempotency-Key", "k-1")],
                Some(new_case("Prima")),
            )
            .await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);

        relay.cut();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let during = app
            .send(
                "POST",
                "/api/v1/cases",
                &[("Idempotency-Key", "k-2")],
                Some(new_case("Seconda")),
            )
            .await;
        assert_eq!(
            during.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            during.body
        );
        assert_eq!(during.body["code"], "temporarily_unavailable");
        assert!(
            during.body["detail"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key")
        );
        assert!(during.headers.contains_key(header::RETRY_AFTER));

        let _relay = Relay::start(relay.port).await;
        let mut retried = None;
        for _ in 0..20 {
            let answer = app
                .send(
                    "POST",
                    "/api/v1/cases",
                    &[("Idempotency-Key", "k-2")],
                    Some(new_case("Seconda")),
                )
                .await;
            if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                retried = Some(answer);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let retried = retried.expect("the server recovers once PostgreSQL is back");
        assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.body);
        let again = app
            .send(
                "POST",
                "/api/v1/cases",
                &[("Idempotency-Key", "k-2")],
                Some(new_case("Seconda")),
            )
            .await;
        assert_eq!(
            again.body["code"], retried.body["code"],
            "the same case, once"
        );

        let log = sportello_engine::store::open(&url).await.unwrap();
        let opened: Vec<_> = log
            .read_all(ReadAll {
                event_types: vec!["CaseOpened".into()],
                ..ReadAll::from(1)
            })
            .try_collect()
            .await
            .unwrap();
        assert_eq!(opened.len(), 2, "one case per key, none lost");
    })
    .await;
}

/// The aggregate, the staff's inbox and the citizen's view tell every demo case's status the
/// same way after every one of its events: there is one state machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_demo_case_has_the_same_status_in_the_aggregate_the_inbox_and_the_citizens_view() {
    use sportello::api::public::public_status;
    use sportello_engine::domain::Aggregate;
    use sportello_engine::domain::case::{Case, CaseEvent};
    use sportello_projections::Projection;
    use sportello_projections::inbox::Inbox;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("urp.db").display());
    let settings = settings(&url, 200);
    sportello::cli::demo::run(
        &settings,
        sportello::cli::demo::DemoArgs {
            cases: 600,
            seed: 11,
        },
    )
    .await
    .unwrap();
    // And one the demo may not tell: documents asked for after the answer, then received.
    let urp = sportello::cli::open_urp(&settings).await.unwrap();
    let staff = sportello_engine::app::Actor {
        name: "staff:test".into(),
        ..Default::default()
    };
    let opened = urp
        .open_case(
            &staff,
            sportello_engine::app::NewContact {
                case_id: Uuid::now_v7(),
                comune: "073015".into(),
                kind: sportello_engine::domain::case::CaseKind::Reclamo,
                channel: sportello_engine::domain::case::Channel::Sportello,
                service: None,
                subject: "Rumori notturni".into(),
                description: None,
                citizen: None,
                received_at: chrono::Utc::now(),
                privacy_consent: true,
            },
        )
        .await
        .unwrap();
    let now = chrono::Utc::now();
    use sportello_engine::domain::case::CaseCommand as C;
    for command in [
        C::TakeInCharge {
            office: "URP".into(),
            at: now,
            expected_by: chrono::NaiveDate::MIN,
        },
        C::Answer {
            text: "Verificheremo".into(),
            at: now,
        },
        C::RequestDocuments {
            documents: vec!["Esposto firmato".into()],
            at: now,
        },
        C::ReceiveDocuments {
            at: now,
            suspended_days: 0,
            due_on: chrono::NaiveDate::MIN,
            documents: Vec::new(),
        },
    ] {
        urp.act(&staff, opened.case_id, Uuid::now_v7(), command)
            .await
            .unwrap();
    }
    let log = urp.log().clone();
    let mut cases: std::collections::BTreeMap<String, Vec<sportello_engine::RecordedEvent>> =
        Default::default();
    let mut events = log.read_all(ReadAll {
        categories: vec!["case".into()],
        ..ReadAll::from(1)
    });
    while let Some(event) = events.try_next().await.unwrap() {
        cases
            .entry(event.stream.id().to_owned())
            .or_default()
            .push(event);
    }
    assert!(cases.len() >= 600, "{} cases", cases.len());
    let (mut suspended_and_resumed, mut compared) = (0, 0);
    for (id, recorded) in &cases {
        let mut case = Case::default();
        let mut row = None;
        let mut decoded: Vec<CaseEvent> = Vec::new();
        for event in recorded {
            let case_event: CaseEvent = event.decode().unwrap();
            case = case.evolve(&case_event);
            row = Inbox::apply_event(row, event);
            decoded.push(case_event.clone());
            let inbox_status = row.as_ref().map(|r| r.status.clone());
            assert_eq!(
                inbox_status.as_deref(),
                Some(case.status.name()),
                "case {id} after {}",
                event.event_type
            );
            assert_eq!(
                public_status(&decoded).status,
                case.lifecycle().public_name(),
                "case {id} after {}",
                event.event_type
            );
            compared += 1;
            if matches!(case_event, CaseEvent::DocumentsReceived { .. }) {
                suspended_and_resumed += 1;
            }
        }
    }
    assert!(
        suspended_and_resumed > 0,
        "the demo suspends and resumes some cases"
    );
    assert!(compared > cases.len() * 2);
}

/// The value of `name="NAME" value="…"` in a page (the first one).
fn field_value(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no field {name}"))
        .to_owned()
}

/// Signs in and returns the `Cookie` header of the session.
async fn sign_in(app: &App, username: &str, password: &str) -> String {
    let form = format!("username={username}&password={password}&torna=%2Fufficio");
    let (status, headers, html) = app.page("POST", "/ufficio/accesso", &[], Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    assert_eq!(
        headers[header::LOCATION],
        "/ufficio/accesso/verifica?torna=/ufficio"
    );
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_to_pages_that_act_on_their_comunes_cases_only_with_the_sessions_token() {
    use sportello_engine::app::staff::Role;
    use sportello_engine::app::users;
    let app = sqlite_app(200).await;
    let password = "una password lunga";
    users::create(
        &app.log,
        "mario.rossi",
        "Mario Rossi",
        Role::Operator,
        "073015",
        password.into(),
    )
    .await
    .unwrap();
    users::create(
        &app.log,
        "anna.statte",
        "Anna",
        Role::Supervisor,
        "073029",
        password.into(),
    )
    .await
    .unwrap();
    let opened = app
        .send(
            "POST",
            "/api/v1/cases",
            &[],
            Some(new_case("Lampione spento")),
        )
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let case = format!("/ufficio/pratiche/{}", opened.body["id"].as_str().unwrap());

    // Not signed in: to the sign-in page, and back here afterwards.
    let (status, headers, _) = app.page("GET", &case, &[], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers[header::LOCATION],
        format!("/ufficio/accesso?torna={case}")
    );
    // A wrong password and an unknown user are the same answer.
    for form in [
        "username=mario.rossi&password=sbagliata",
        "username=nessuno&password=una+password+lunga",
    ] {
        let (status, headers, html) = app.page("POST", "/ufficio/accesso", &[], Some(form)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.get(header::SET_COOKIE).is_none());
        assert!(html.contains("Nome utente o password non corretti."));
    }

    let mario = sign_in(&app, "Mario.Rossi", "una+password+lunga").await;
    // Signing in lands where the cookie is checked, then goes on; a browser that refused the
    // cookie (plain HTTP) is told why rather than sent to sign in again.
    let check = "/ufficio/accesso/verifica?torna=/ufficio";
    let (status, headers, _) = app.page("GET", check, &[("cookie", &mario)], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ufficio");
    let (status, _, html) = app.page("GET", check, &[], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("solo in HTTPS"), "{html}");
    let (status, _, html) = app.page("GET", &case, &[("cookie", &mario)], None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(text_of(&html, "oggetto"), "Lampione spento");
    assert_eq!(text_of(&html, "stato"), "Ricevuta");
    let csrf = field_value(&html, "csrf");
    let token = field_value(&html, "token");

    // A form without the session's token changes nothing.
    let take = |csrf: &str| format!("csrf={csrf}&token={token}&office=URP");
    let (status, _, html) = app
        .page(
            "POST",
            &format!("{case}/take-in-charge"),
            &[("cookie", &mario)],
            Some(&take("altro")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("csrf_token_invalid"));
    let (_, _, html) = app.page("GET", &case, &[("cookie", &mario)], None).await;
    assert_eq!(text_of(&html, "stato"), "Ricevuta");

    // With it, the action is done once however often the form is posted; a refusal of the
    // domain comes back in Italian beside the form.
    for _ in 0..2 {
        let (status, headers, _) = app
            .page(
                "POST",
                &format!("{case}/take-in-charge"),
                &[("cookie", &mario)],
                Some(&take(&csrf)),
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            headers[header::LOCATION],
            format!("{case}?fatto=take-in-charge")
        );
    }
    let (_, _, html) = app.page("GET", &case, &[("cookie", &mario)], None).await;
    assert_eq!(text_of(&html, "stato"), "Presa in carico");
    assert_eq!(html.matches("<strong>Presa in carico</strong>").count(), 1);
    let close = format!("csrf={csrf}&token={}&outcome=accolta", Uuid::new_v4());
    let (status, _, html) = app
        .page(
            "POST",
            &format!("{case}/answer"),
            &[("cookie", &mario)],
            Some(&format!("csrf={csrf}&token={}", Uuid::new_v4())),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"errore-answer\""), "{html}");
    let answer = format!(
        "csrf={csrf}&token={}&text=Riparato+il+3+dicembre",
        Uuid::new_v4()
    );
    let (status, _, _) = app
        .page(
            "POST",
            &format!("{case}/answer"),
            &[("cookie", &mario)],
            Some(&answer),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = app
        .page(
            "POST",
            &format!("{case}/close"),
            &[("cookie", &mario)],
            Some(&close),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = app.page("GET", &case, &[("cookie", &mario)], None).await;
    assert_eq!(text_of(&html, "stato"), "Chiusa");

    // An analyst reads statistics, never cases.
    users::create(
        &app.log,
        "analista",
        "Ufficio statistico",
        Role::Analyst,
        "073015",
        password.into(),
    )
    .await
    .unwrap();
    let analyst = sign_in(&app, "analista", "una+password+lunga").await;
    let (status, headers, _) = app
        .page("GET", "/ufficio", &[("cookie", &analyst)], None)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ufficio/statistiche");
    let (status, _, _) = app.page("GET", &case, &[("cookie", &analyst)], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, html) = app
        .page(
            "GET",
            "/ufficio/statistiche?dal=2026-13",
            &[("cookie", &analyst)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Il mese va scritto AAAA-MM."), "{html}");

    // Another comune's supervisor does not learn the case exists.
    let anna = sign_in(&app, "anna.statte", "una+password+lunga").await;
    let (status, _, _) = app.page("GET", &case, &[("cookie", &anna)], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Signing out ends the session on the server, not only in the browser.
    let (status, headers, _) = app
        .page(
            "POST",
            "/ufficio/esci",
            &[("cookie", &mario)],
            Some(&format!("csrf={csrf}")),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = app.page("GET", &case, &[("cookie", &mario)], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // A disabled account cannot sign in again (`sportello user disable` also ends its sessions).
    users::disable(&app.log, "anna.statte").await.unwrap();
    assert!(
        users::sign_in(&app.log, "anna.statte", password)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_sends_the_documents_asked_for_and_rates_the_closed_case_once_on_its_page() {
    use sportello_engine::app::staff::{self, Role};
    let app = sqlite_app(2000).await;
    app.follow_inbox().await;
    let opened = app
        .send(
            "POST",
            "/api/v1/cases",
            &[],
            Some(new_case("Passo carrabile")),
        )
        .await;
    let (id, code, key) = (
        opened.body["id"].as_str().unwrap().to_owned(),
        opened.body["code"].as_str().unwrap().to_owned(),
        opened.body["access_key"].as_str().unwrap().to_owned(),
    );
    let token = staff::issue(&app.log, "Mario", Role::Operator, "073015")
        .await
        .unwrap()
        .token;
    let bearer = format!("Bearer {token}");
    let act = |action: &'static str, body: Value| {
        let (app, bearer, id) = (&app, bearer.clone(), id.clone());
        async move {
            let answer = app
                .send(
                    "POST",
                    &format!("/api/v1/staff/cases/{id}/{action}"),
                    &[("authorization", &bearer)],
                    Some(body),
                )
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{action}: {}", answer.body);
        }
    };
    act("take-in-charge", json!({"office": "URP"})).await;
    act("request-documents", json!({"documents": ["Planimetria"]})).await;

    // The page shows what is asked and takes the answer; the key never leaves the page's body.
    let follow = format!("code={code}&key={key}");
    let (status, headers, html) = app.page("POST", "/pratiche", &[], Some(&follow)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(
        html.contains("ufficio ti ha chiesto: Planimetria."),
        "{html}"
    );
    let form_token = field_value(&html, "token");
    assert!(html.contains("enctype=\"multipart/form-data\""), "{html}");
    let fields = [
        ("code", code.as_str()),
        ("key", key.as_str()),
        ("token", form_token.as_str()),
    ];
    let (status, html) = app
        .upload("/pratiche/documenti", &fields, &[("", "")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no file: {html}");
    assert!(html.contains("id=\"errore-documenti\""));
    let disguised = [("planimetria.pdf", "<html><script>alert(1)</script>")];
    let (status, html) = app.upload("/pratiche/documenti", &fields, &disguised).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("non è un PDF"), "{html}");
    // Larger than the API's request limit (64 KB): the upload has its own.
    let plan = format!(
        "%PDF-1.4\n% planimetria di via Roma 12, Statte\n{}\n%%EOF\n",
        "0".repeat(900_000)
    );
    let plan = plan.as_str();
    for _ in 0..2 {
        let (status, html) = app
            .upload("/pratiche/documenti", &fields, &[("planimetria.pdf", plan)])
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("id=\"fatto\"") && html.contains("planimetria.pdf"));
    }
    let received = app
        .log
        .read_all(ReadAll {
            event_types: vec!["DocumentsReceived".into()],
            ..ReadAll::from(1)
        })
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    assert_eq!(received.len(), 1, "the same form posted twice acts once");
    let raw = String::from_utf8_lossy(&serde_json::to_vec(&received[0].data).unwrap()).into_owned();
    assert!(
        !raw.contains("planimetria") && raw.contains("application/pdf"),
        "the file's name is sealed in the log, its type is not: {raw}"
    );
    let (status, _) = app
        .upload(
            "/pratiche/documenti",
            &[
                ("code", &code),
                ("key", "sbagliata"),
                ("token", &form_token),
            ],
            &[("x.pdf", plan)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Staff see the file on the case and download exactly what was sent.
    let detail = app
        .send(
            "GET",
            &format!("/api/v1/staff/cases/{id}"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
    let document = &detail.body["documents"][0];
    assert_eq!(document["name"], "planimetria.pdf", "{}", detail.body);
    assert_eq!(document["bytes"], plan.len());
    let download = format!(
        "/api/v1/staff/cases/{id}/documents/{}",
        document["id"].as_str().unwrap()
    );
    let (status, headers, body) = app
        .page("GET", &download, &[("authorization", &bearer)], None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, plan);
    assert_eq!(headers[header::CONTENT_TYPE], "application/pdf");
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"planimetria.pdf\"")
    );
    let elsewhere = staff::issue(&app.log, "Lucia", Role::Operator, "073029")
        .await
        .unwrap()
        .token;
    let (status, _, _) = app
        .page(
            "GET",
            &download,
            &[("authorization", &format!("Bearer {elsewhere}"))],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another comune's staff");

    // Closed, the case is rated on its page: two stars ask where it went wrong; once only.
    act("answer", json!({"text": "Autorizzato"})).await;
    act("close", json!({"outcome": "accolta"})).await;
    let (_, _, html) = app.page("POST", "/pratiche", &[], Some(&follow)).await;
    assert!(html.contains("data-element=\"feedback\""), "{html}");
    assert!(!html.contains("Ritira la richiesta"));
    let rating = format!(
        "target_type=case&target_id={code}&comune=073015&key={key}&back=%2Fpratiche&scale=stars&score=2"
    );
    let (status, _, html) = app.page("POST", "/valutazione", &[], Some(&rating)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Dove hai incontrato le maggiori difficolt"));
    assert!(html.contains("name=\"reason_procedura_incerta\""));
    let step = format!(
        "{rating}&step=2&token={}&reason_procedura_incerta=si&comment=Troppi+passaggi",
        field_value(&html, "token")
    );
    let (status, _, html) = app.page("POST", "/valutazione", &[], Some(&step)).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Grazie per il tuo aiuto!"));
    let again = step.replace("&token=", "&token=0");
    let (status, _, html) = app.page("POST", "/valutazione", &[], Some(&again)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("id=\"errore-valutazione\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_manages_accounts_and_tokens_and_erases_a_citizen_from_the_pages() {
    use sportello_engine::app::staff::Role;
    use sportello_engine::app::users;
    let app = sqlite_app(2000).await;
    app.follow_inbox().await;
    let password = "una password lunga";
    users::create(
        &app.log,
        "admin",
        "Amministratore",
        Role::Admin,
        "073015",
        password.into(),
    )
    .await
    .unwrap();
    users::create(
        &app.log,
        "operatore",
        "Operatore",
        Role::Operator,
        "073015",
        password.into(),
    )
    .await
    .unwrap();
    let operator = sign_in(&app, "operatore", "una+password+lunga").await;
    let (status, _, _) = app
        .page(
            "GET",
            "/ufficio/amministrazione",
            &[("cookie", &operator)],
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an operator opens the administration"
    );

    let admin = sign_in(&app, "admin", "una+password+lunga").await;
    let (status, _, html) = app
        .page(
            "GET",
            "/ufficio/amministrazione",
            &[("cookie", &admin)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let csrf = field_value(&html, "csrf");
    let post = |action: &str, form: String| {
        let (app, admin, action) = (&app, admin.clone(), action.to_owned());
        async move {
            app.page(
                "POST",
                &format!("/ufficio/amministrazione/{action}"),
                &[("cookie", &admin)],
                Some(&form),
            )
            .await
        }
    };

    // A new account, whose password is shown once and works.
    let (status, _, html) = post(
        "crea-utente",
        format!(
            "csrf={csrf}&username=Nuova.Collega&name=Nuova+Collega&role=operator&comune=073015"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let secret = text_of(&html, "segreto");
    assert!(
        users::sign_in(&app.log, "nuova.collega", &secret)
            .await
            .unwrap()
            .is_some()
    );
    let (status, _, html) = post(
        "crea-utente",
        format!("csrf={csrf}&username=nuova.collega&name=Altra&role=operator&comune=073015"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("id=\"errore-crea-utente\"") && html.contains("esiste già"));
    // Without the session's token, nothing.
    let (status, _, _) = post(
        "disattiva-utente",
        "csrf=altro&username=nuova.collega".into(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        users::sign_in(&app.log, "nuova.collega", &secret)
            .await
            .unwrap()
            .is_some()
    );
    let (status, _, _) = post(
        "disattiva-utente",
        format!("csrf={csrf}&username=nuova.collega"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        users::sign_in(&app.log, "nuova.collega", &secret)
            .await
            .unwrap()
            .is_none()
    );

    // A token for an application: shown once, it opens the API until revoked.
    let (_, _, html) = post(
        "crea-token",
        format!("csrf={csrf}&name=Gestionale+protocollo&role=operator&comune=073015"),
    )
    .await;
    let token = text_of(&html, "segreto");
    let bearer = format!("Bearer {token}");
    let me = app
        .send(
            "GET",
            "/api/v1/staff/me",
            &[("authorization", &bearer)],
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["name"], "Gestionale protocollo");
    let id = token.split('_').nth(1).unwrap();
    let id = Uuid::parse_str(id).unwrap();
    let (_, _, html) = post("revoca-token", format!("csrf={csrf}&id={id}")).await;
    assert!(html.contains("Token revocato"), "{html}");

    // A citizen erased: their case shows "dati cancellati" from then on.
    let opened = app
        .send(
            "POST",
            "/api/v1/cases",
            &[],
            Some(new_case("Rumori dal bar")),
        )
        .await;
    let case = format!("/ufficio/pratiche/{}", opened.body["id"].as_str().unwrap());
    let (_, _, html) = app.page("GET", &case, &[("cookie", &admin)], None).await;
    let subject = text_of(&html, "interessato");
    let (status, _, html) = post(
        "cancella-interessato",
        format!("csrf={csrf}&subject={subject}&reason=Prot.+123"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "erased without confirming"
    );
    assert!(html.contains("id=\"errore-cancella-interessato\""));
    let mut erased = String::new();
    for _ in 0..50 {
        let (status, _, html) = post(
            "cancella-interessato",
            format!("csrf={csrf}&subject={subject}&reason=Prot.+123&confirm=si"),
        )
        .await;
        erased = html;
        if status == StatusCode::OK {
            break;
        }
        // The inbox, which says whose the case is, may not have it yet.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(erased.contains("sono stati cancellati"), "{erased}");
    let (_, _, html) = app.page("GET", &case, &[("cookie", &admin)], None).await;
    assert!(html.contains("Dati cancellati"), "{html}");
    assert!(!html.contains("Giuseppe Verdi") && !html.contains("Rumori dal bar"));
}
