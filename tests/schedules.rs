//! The scheduled jobs end to end on the embedded default (SQLite, the job queue in its own file):
//! reminders to the offices through a real SMTP server (aiosmtpd), the retention sweep with a
//! legal hold, the monthly publication's record, periods caught up after a worker was down and
//! done once by two workers at a time, and a tick of apalis-cron at the scheduled time. The
//! workers' clock is set with `SPORTELLO_CLOCK` (it starts at that instant and runs on).

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Rome;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::smtp::SmtpServer;
use support::{Reaped, Server, Store, run, token, wait_for};

const MASSAFRA: &str = "073015";

/// Short terms and retention, and the offices of Massafra, so that a few days of the clock show
/// every rule.
const OVERLAY: &str = r#"
[calendar]
default_term_days = 14

[[offices]]
comune = "073015"
name = "URP"
email = "urp@massafra.example.it"

[[offices]]
comune = "073015"
name = "Tributi"
email = "tributi@massafra.example.it"

[reminders]
working_days = 5

[retention]
informazione = 10
segnalazione = 10
reclamo = 10
suggerimento = 10
accesso_agli_atti = 10
accesso_civico = 10
"#;

struct Setup {
    store: Store,
    config: String,
    env: Vec<(String, String)>,
}

impl Setup {
    fn command(&self) -> Command {
        let mut c = support::command(&self.store);
        c.args(["--config", &self.config]);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `sportello worker` whose clock reads `clock` as it starts.
    fn worker(&self, clock: DateTime<Utc>) -> Reaped {
        Reaped(
            self.command()
                .env("SPORTELLO_CLOCK", clock.to_rfc3339())
                .arg("worker")
                .stdout(Stdio::null())
                .spawn()
                .expect("sportello worker starts"),
        )
    }

    /// Every `ScheduledRunDone` in the log: (schedule, period) → the events' data and times.
    fn runs(&self) -> BTreeMap<(String, String), Vec<Value>> {
        let out = self
            .command()
            .args(["replay", "--category", "schedule"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut runs: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            let schedule = event["stream"]
                .as_str()
                .unwrap()
                .trim_start_matches("schedule-");
            let period = event["data"]["period"].as_str().unwrap().to_owned();
            runs.entry((schedule.to_owned(), period))
                .or_default()
                .push(event);
        }
        runs
    }

    fn wait_runs(&self, expected: &[(&str, String)]) -> BTreeMap<(String, String), Vec<Value>> {
        let mut runs = BTreeMap::new();
        wait_for(
            &format!("the runs {expected:?}"),
            Duration::from_secs(90),
            || {
                runs = self.runs();
                expected
                    .iter()
                    .all(|(s, p)| runs.contains_key(&(s.to_string(), p.clone())))
            },
        );
        runs
    }
}

/// Stops a worker as a service manager does, and checks it stopped cleanly.
fn terminate(mut worker: Reaped) {
    let exit = worker.terminate(Duration::from_secs(40));
    assert!(exit.success(), "the worker stopped with {exit}");
}

fn at_rome(day: NaiveDate, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Rome.from_local_datetime(&day.and_hms_opt(hour, minute, second).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn case(kind: &str, email: &str, received_at: Option<DateTime<Utc>>) -> Value {
    json!({
        "comune": MASSAFRA, "kind": kind, "channel": "sportello", "service": null,
        "subject": "Richiesta allo sportello", "description": null,
        "citizen": {"name": "Anna Bianchi", "email": email},
        "privacy_consent": true, "received_at": received_at,
    })
}

/// The office reminders the SMTP server received: (recipient, body).
fn office_messages(maildir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(maildir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let to = text
            .lines()
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap_or_default()
            .to_owned();
        if to.ends_with("@massafra.example.it") {
            // Quoted-printable folds long lines: unfold them to read the body.
            found.push((to, text.replace("=\r\n", "").replace("=\n", "")));
        }
    }
    found
}

#[test]
fn reminders_retention_and_publication_run_once_per_period_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let config = dir.path().join("overlay.toml");
    std::fs::write(&config, OVERLAY).unwrap();
    let setup = Setup {
        store: Store {
            url: format!("sqlite://{}", dir.path().join("sportello.db").display()),
            dir: Some(dir.path().to_owned()),
        },
        config: config.display().to_string(),
        env: smtp.env(),
    };
    let operator = token(&setup.store, "operator", MASSAFRA, "Maria Rossi");
    let supervisor = token(&setup.store, "supervisor", MASSAFRA, "Paolo Neri");
    // The server keeps the read models; the workers come and go with their own clocks.
    let mut server_command = setup.command();
    server_command.args(["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
    let server = Server::spawn(server_command, &[]);

    let open = |body: Value| -> (String, String, String) {
        let (status, opened) = server.post("/api/v1/staff/cases", Some(&operator), &body);
        assert_eq!(status, 201, "{opened}");
        let id = opened["id"].as_str().unwrap().to_owned();
        let (status, detail) = server.get(&format!("/api/v1/staff/cases/{id}"), Some(&operator));
        assert_eq!(status, 200, "{detail}");
        (
            id,
            opened["code"].as_str().unwrap().to_owned(),
            detail["citizen"]["subject_id"].as_str().unwrap().to_owned(),
        )
    };
    let act = |token: &str, id: &str, action: &str, body: Value| {
        let (status, answer) = server.post(
            &format!("/api/v1/staff/cases/{id}/{action}"),
            Some(token),
            &body,
        );
        assert_eq!(status, 200, "{action}: {answer}");
    };
    let now = Utc::now();
    // Due in about two weeks, in charge of Tributi: reminded as its term nears.
    let (nearing, nearing_code, _) = open(case("segnalazione", "a@example.it", None));
    act(
        &operator,
        &nearing,
        "take-in-charge",
        json!({"office": "Tributi"}),
    );
    // Received a month ago, in nobody's charge: overdue, reminded to the URP.
    let (late, late_code, _) = open(case(
        "reclamo",
        "b@example.it",
        Some(now - chrono::Duration::days(30)),
    ));
    // Closed today: its citizen is erased once the retention (10 days here) has passed.
    let (closed, _, closed_subject) = open(case("informazione", "c@example.it", None));
    act(&operator, &closed, "close", json!({"outcome": "duplicata"}));
    // Closed today and held: kept until the hold is released.
    let (held, _, held_subject) = open(case("informazione", "d@example.it", None));
    act(&operator, &held, "close", json!({"outcome": "duplicata"}));
    let (status, refused) = server.post(
        &format!("/api/v1/staff/cases/{held}/legal-hold"),
        Some(&operator),
        &json!({"reason": "Ricorso al TAR"}),
    );
    assert_eq!(status, 403, "an operator cannot hold a case: {refused}");
    act(
        &supervisor,
        &held,
        "legal-hold",
        json!({"reason": "Ricorso al TAR n. 123/2026"}),
    );
    let (status, refused) = server.post(
        &format!("/api/v1/staff/cases/{held}/legal-hold"),
        Some(&supervisor),
        &json!({"reason": "ancora"}),
    );
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "case_already_held");
    let detail = |id: &str| {
        server
            .get(&format!("/api/v1/staff/cases/{id}"), Some(&operator))
            .1
    };
    assert_eq!(detail(&held)["legal_hold"], "Ricorso al TAR n. 123/2026");
    server.wait_ready();

    // Day T, 08:00 in Rome: every schedule's time has come.
    let today = now.with_timezone(&Rome).date_naive();
    let t = today + Days::new(12);
    let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let month_before = day(t.with_day0(0).unwrap() - Days::new(1))[..7].to_owned();
    let worker = setup.worker(at_rome(t, 8, 0, 0));
    let runs = setup.wait_runs(&[
        ("reminders", day(t)),
        ("retention", day(t)),
        ("publication", month_before.clone()),
    ]);
    terminate(worker);
    assert_eq!(
        runs.len(),
        3,
        "only the latest period of each, nothing before: {runs:?}"
    );
    let publication = &runs[&("publication".to_owned(), month_before.clone())][0];
    assert!(publication["data"]["summary"]["position"].as_u64().unwrap() > 0);
    // The month's datasets are published beside the store, with the catalogue.
    let published = publication["data"]["summary"]["datasets"]
        .as_array()
        .unwrap();
    assert_eq!(published.len(), 4, "{publication}");
    for dataset in published {
        let name = dataset["dataset"].as_str().unwrap();
        assert_eq!(dataset["version"], 1, "{dataset}");
        let csv = dir
            .path()
            .join("opendata")
            .join(name)
            .join(&month_before)
            .join("v1")
            .join(format!("{name}-{month_before}.csv"));
        assert!(csv.exists(), "{} missing", csv.display());
    }
    assert!(dir.path().join("opendata/catalog.ttl").exists());

    // The offices were written to: Tributi of the case it has, the URP of the one nobody has.
    let messages = office_messages(smtp.maildir());
    assert_eq!(messages.len(), 2, "{messages:?}");
    let to = |address: &str| {
        messages
            .iter()
            .find(|(to, _)| to == address)
            .map(|(_, body)| body.clone())
            .unwrap_or_else(|| panic!("nothing to {address}: {messages:?}"))
    };
    let tributi = to("tributi@massafra.example.it");
    assert!(
        tributi.contains(&nearing_code) && tributi.contains("In scadenza"),
        "{tributi}"
    );
    assert!(!tributi.contains(&late_code), "{tributi}");
    let urp = to("urp@massafra.example.it");
    assert!(
        urp.contains(&late_code) && urp.contains("Termine scaduto"),
        "{urp}"
    );
    let reminded = |id: &str| -> Vec<String> {
        detail(id)["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "OfficeReminded")
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["details"]["threshold"].as_str().unwrap(),
                    e["details"]["office"].as_str().unwrap(),
                    e["details"]["outcome"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(reminded(&nearing), ["due_soon Tributi sent"]);
    assert_eq!(reminded(&late), ["overdue URP sent"]);

    // Retention: the closed case's citizen is erased, with the reason; the held one is not.
    assert_eq!(detail(&closed)["personal_data_erased"], true);
    assert_eq!(detail(&held)["personal_data_erased"], false);
    assert_eq!(detail(&held)["citizen"]["name"], "Anna Bianchi");
    let erasures = run(&setup.store, &["replay", "--type", "SubjectErased"]);
    let erasure: Value = serde_json::from_str(erasures.lines().next().unwrap()).unwrap();
    assert_eq!(erasure["stream"], format!("subject-{closed_subject}"));
    assert!(
        erasure["data"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("conservazione scaduta"),
        "{erasure}"
    );
    assert_eq!(erasures.lines().count(), 1, "{erasures}");

    // The hold is released; the workers were down for two days, and now two of them start at
    // once (two replicas ticking on their own): each missed period is done, once.
    act(
        &supervisor,
        &held,
        "release-legal-hold",
        json!({"reason": "Ricorso respinto"}),
    );
    server.wait_ready();
    let t2 = t + Days::new(2);
    let both = [
        setup.worker(at_rome(t2, 8, 0, 0)),
        setup.worker(at_rome(t2, 8, 0, 0)),
    ];
    let mut expected = Vec::new();
    for d in [t + Days::new(1), t2] {
        expected.push(("reminders", day(d)));
        expected.push(("retention", day(d)));
    }
    setup.wait_runs(&expected);
    // Let both finish whatever they had in hand before counting.
    for worker in both {
        terminate(worker);
    }
    let runs = setup.runs();
    assert_eq!(runs.len(), 7, "{runs:?}");
    for ((schedule, period), records) in &runs {
        assert_eq!(records.len(), 1, "{schedule} {period} recorded twice");
    }
    assert!(!runs.contains_key(&("publication".to_owned(), day(t)[..7].to_owned())));
    assert_eq!(detail(&held)["personal_data_erased"], true);
    let erasures = run(&setup.store, &["replay", "--type", "SubjectErased"]);
    assert!(
        erasures.contains(&format!("subject-{held_subject}")),
        "{erasures}"
    );
    // Reminded once per threshold and term: no second message about the same cases.
    assert_eq!(office_messages(smtp.maildir()).len(), 2);
    assert_eq!(reminded(&nearing).len(), 1);

    // A worker started just before 07:00 on T+3: the reminders run on apalis-cron's tick.
    let t3 = t2 + Days::new(1);
    let worker = setup.worker(at_rome(t3, 6, 59, 55));
    let runs = setup.wait_runs(&[("reminders", day(t3))]);
    terminate(worker);
    let ticked = &runs[&("reminders".to_owned(), day(t3))][0];
    let occurred: DateTime<Utc> = ticked["occurred_at"].as_str().unwrap().parse().unwrap();
    assert!(
        occurred >= at_rome(t3, 7, 0, 0),
        "the reminders of {t3} ran at {occurred}, before their time"
    );
    server.kill();
}
