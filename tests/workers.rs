//! The workers end to end: `sportello serve` (and `sportello worker`) with the reactor and the
//! notice jobs, against a real SMTP server (aiosmtpd, installed by `scripts/python-tools.sh`),
//! on SQLite (the embedded default) and on PostgreSQL + Redis.
//!
//! Redis tests use `redis://127.0.0.1:6379` (or `SPORTELLO_TEST_REDIS_URL`) under a namespace of
//! their own, whose keys they delete; they fail, never skip, without a Redis.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::smtp::{SmtpServer, read_messages};
use support::{
    Server, Store, env_refs, run, token, wait_for, with_redis_namespace, with_scratch_postgres,
    worker,
};

const MASSAFRA: &str = "073015";

fn contact(email: Option<&str>) -> Value {
    json!({
        "comune": MASSAFRA, "kind": "reclamo", "channel": "web", "service": null,
        "subject": "Rifiuti non raccolti in via Verdi", "description": null,
        "citizen": {"name": "Carla Esposito", "email": email},
        "privacy_consent": true
    })
}

/// The notices recorded on a case: kind → outcome.
fn notices(server: &Server, staff: &str, case_id: &str) -> BTreeMap<String, String> {
    let (status, detail) = server.get(&format!("/api/v1/staff/cases/{case_id}"), Some(staff));
    assert_eq!(status, 200, "{detail}");
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "NoticeSent")
        .map(|e| {
            (
                e["details"]["kind"].as_str().unwrap().to_owned(),
                e["details"]["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sqlite_store(dir: &Path) -> Store {
    Store {
        url: format!("sqlite://{}", dir.join("sportello.db").display()),
        dir: Some(dir.to_owned()),
    }
}

/// The jobs with `status`, in every queue.
fn all_jobs(store: &Store, env: &[(String, String)], status: &str) -> Vec<Value> {
    let mut c = support::command(store);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c
        .args([
            "jobs", "list", "--status", status, "--json", "--limit", "1000",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect()
}

/// The notice jobs with `status` (the scheduled ones are `tests/schedules.rs`'s business).
fn jobs(store: &Store, env: &[(String, String)], status: &str) -> Vec<Value> {
    all_jobs(store, env, status)
        .into_iter()
        .filter(|j| j["queue"].as_str().is_some_and(|q| q.ends_with("-notices")))
        .collect()
}

#[test]
fn every_case_gets_one_receipt_and_its_notices_through_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let store = sqlite_store(dir.path());
    let staff = token(&store, "operator", MASSAFRA, "Maria Rossi");
    let mut env = smtp.env();
    env.push(("SPORTELLO__WORKERS__NOTICE_ATTEMPTS".into(), "3".into()));
    env.push(("SPORTELLO__API__PUBLIC_BURST".into(), "1000".into()));
    let server = Server::start(&store, &env_refs(&env));

    let addresses = [
        Some("uno@example.it"),
        Some("due@example.it"),
        Some("rifiuto-temporaneo-2@example.it"),
        Some("rifiuto-permanente@example.it"),
        Some("lento@example.it"),
        None,
    ];
    let mut cases = Vec::new();
    for address in addresses {
        let (status, opened) = server.post("/api/v1/cases", None, &contact(address));
        assert_eq!(status, 201, "{opened}");
        cases.push((
            opened["id"].as_str().unwrap().to_owned(),
            opened["code"].as_str().unwrap().to_owned(),
        ));
    }
    // The first case goes through its life: each step is a notice.
    let first = &cases[0].0;
    for (action, body) in [
        ("take-in-charge", json!({"office": "Ambiente"})),
        (
            "request-documents",
            json!({"documents": ["Fotografia dei rifiuti"]}),
        ),
        ("documents-received", json!({})),
        (
            "answer",
            json!({"text": "La raccolta è stata recuperata il giorno dopo."}),
        ),
    ] {
        let (status, body) = server.post(
            &format!("/api/v1/staff/cases/{first}/{action}"),
            Some(&staff),
            &body,
        );
        assert_eq!(status, 200, "{action}: {body}");
    }

    let expected_first: BTreeMap<String, String> = [
        "receipt",
        "taken_in_charge",
        "documents_requested",
        "answered",
    ]
    .map(|k| (k.to_owned(), "sent".to_owned()))
    .into();
    wait_for("every notice recorded", Duration::from_secs(60), || {
        notices(&server, &staff, first) == expected_first
            && cases[1..]
                .iter()
                .all(|(id, _)| notices(&server, &staff, id).contains_key("receipt"))
    });
    let outcome = |i: usize| notices(&server, &staff, &cases[i].0)["receipt"].clone();
    assert_eq!(outcome(1), "sent");
    assert_eq!(outcome(2), "sent", "a temporary refusal is retried");
    assert_eq!(outcome(3), "given_up", "a permanent refusal is recorded");
    assert_eq!(outcome(4), "sent", "a slow relay is waited for");
    assert_eq!(outcome(5), "skipped_no_address");

    // Exactly what was recorded as sent reached the server, once each.
    let messages = smtp.messages();
    let ids: HashSet<&String> = messages.iter().map(|m| &m.2).collect();
    assert_eq!(
        ids.len(),
        messages.len(),
        "a message arrived twice: {messages:?}"
    );
    assert_eq!(messages.len(), 4 + 3, "{messages:?}");
    let receipts: Vec<&(String, String, String)> = messages
        .iter()
        .filter(|m| m.1.starts_with("Ricevuta della richiesta"))
        .collect();
    assert_eq!(receipts.len(), 4, "{messages:?}");
    for (i, (_, code)) in cases.iter().enumerate().take(5) {
        let to_this = messages
            .iter()
            .filter(|m| m.1.contains(code.as_str()))
            .count();
        assert_eq!(
            to_this,
            [4, 1, 1, 0, 1][i],
            "messages about {code}: {messages:?}"
        );
    }
    // The given-up notice shows among the dead jobs, with the case it was for.
    let dead = jobs(&store, &env, "Killed");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["job"]["case_id"], cases[3].0.as_str());

    // Metrics count the jobs and show the reactor caught up.
    let metrics = Server::agent()
        .get(format!("{}/metrics", server.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains(r#"sportello_jobs_total{queue="notices",outcome="done"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sportello_consumer_lag_events{consumer="reactor"} 0"#),
        "{metrics}"
    );
    server.kill();
}

#[test]
fn demo_then_serve_leaves_the_receipts_in_the_outbox_and_a_restart_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    run(&store, &["demo", "--cases", "30", "--seed", "3"]);
    let outbox = dir.path().join("outbox");
    // The scheduled jobs too: the day's reminders to the offices are in the outbox as well.
    let all_done = |store: &Store| {
        ["Pending", "Queued", "Running"]
            .iter()
            .all(|s| all_jobs(store, &[], s).is_empty())
            && !jobs(store, &[], "Done").is_empty()
            && all_jobs(store, &[], "Done").len() > jobs(store, &[], "Done").len()
    };
    let server = Server::start(&store, &[]);
    wait_for("the demo's notices", Duration::from_secs(60), || {
        all_done(&store)
    });
    let sent = read_messages(&outbox);
    let receipts = sent
        .iter()
        .filter(|m| m.1.starts_with("Ricevuta della richiesta"))
        .count();
    assert!(
        receipts > 0 && receipts <= 30,
        "{receipts} receipts for 30 cases"
    );
    let done = jobs(&store, &[], "Done").len();
    server.kill();

    // Forget the reactor's checkpoint: a second reactor replays the whole log and queues every
    // job again, and nothing happens twice.
    rusqlite::Connection::open(dir.path().join("sportello.views.db"))
        .unwrap()
        .execute(
            "UPDATE projection_checkpoints SET position = 0 WHERE name = 'reactor'",
            [],
        )
        .unwrap();
    let server = Server::start(&store, &[]);
    wait_for("the replayed reactor", Duration::from_secs(60), || {
        let (_, ready) = server.get("/readyz", None);
        ready["projections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "reactor" && p["lag"] == 0)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        jobs(&store, &[], "Done").len(),
        done,
        "a job was queued twice"
    );
    assert_eq!(read_messages(&outbox).len(), sent.len());
    server.kill();
}

#[test]
fn two_workers_on_postgresql_and_redis_send_each_receipt_once() {
    with_redis_namespace(|redis, namespace| {
        with_scratch_postgres("workers", |url| {
            let store = Store {
                url: url.to_owned(),
                dir: None,
            };
            let side = support::side_folder(url);
            let outbox = side.join("outbox");
            let env = vec![
                ("SPORTELLO__WORKERS__QUEUE_URL".to_owned(), redis.to_owned()),
                (
                    "SPORTELLO__WORKERS__NAMESPACE".to_owned(),
                    namespace.to_owned(),
                ),
                ("SPORTELLO__API__PUBLIC_BURST".to_owned(), "1000".to_owned()),
            ];
            let staff = token(&store, "operator", MASSAFRA, "Maria Rossi");
            let server = Server::start(&store, &env_refs(&env));
            // A second process with the same consumers: each runs in one of them at a time,
            // and both take jobs from the same queue.
            let mut worker = support::command(&store);
            for (k, v) in &env {
                worker.env(k, v);
            }
            let mut worker = worker
                .arg("worker")
                .stdout(Stdio::null())
                .spawn()
                .expect("sportello worker starts");

            let mut ids = Vec::new();
            for i in 0..40 {
                let email = format!("cittadino{i}@example.it");
                let (status, opened) = server.post("/api/v1/cases", None, &contact(Some(&email)));
                assert_eq!(status, 201, "{opened}");
                ids.push(opened["id"].as_str().unwrap().to_owned());
            }
            wait_for("40 receipts", Duration::from_secs(60), || {
                ids.iter()
                    .all(|id| notices(&server, &staff, id).contains_key("receipt"))
            });
            let messages = read_messages(&outbox);
            assert_eq!(messages.len(), 40, "{messages:?}");
            let recipients: HashSet<&String> = messages.iter().map(|m| &m.0).collect();
            assert_eq!(recipients.len(), 40);

            // Kill the worker: the server's own runners and workers go on alone.
            worker.kill().unwrap();
            worker.wait().unwrap();
            let (status, opened) =
                server.post("/api/v1/cases", None, &contact(Some("ultimo@example.it")));
            assert_eq!(status, 201);
            let last = opened["id"].as_str().unwrap().to_owned();
            wait_for(
                "the receipt after the worker died",
                Duration::from_secs(60),
                || notices(&server, &staff, &last).contains_key("receipt"),
            );
            assert_eq!(read_messages(&outbox).len(), 41);
            // `jobs` reads the Redis queue too. A job is marked done after its handler has
            // recorded the receipt, so the last one may take a moment more.
            wait_for("41 jobs done", Duration::from_secs(30), || {
                jobs(&store, &env, "Done").len() >= 41
            });
            assert_eq!(jobs(&store, &env, "Done").len(), 41);
            server.kill();
        });
    });
}

/// A Redis server of the test's own on a free port, so it can be stopped and started again. It
/// keeps an append-only file with a sync at every write, as a deployment's Redis must for no job
/// to be lost when it stops.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = OwnRedis {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian: apt-get install redis-server)");
        self.child = Some(child);
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// Kills it, as a crash would; what it acknowledged is in its append-only file.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn citizens_keep_writing_while_redis_is_down_and_get_one_receipt_each_when_it_is_back() {
    let mut redis = OwnRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    let staff = token(&store, "operator", MASSAFRA, "Maria Rossi");
    let env = vec![
        ("SPORTELLO__WORKERS__QUEUE_URL".to_owned(), redis.url()),
        (
            "SPORTELLO__WORKERS__REDIS_RESPONSE_TIMEOUT_MS".to_owned(),
            "1000".to_owned(),
        ),
        ("SPORTELLO__API__PUBLIC_BURST".to_owned(), "1000".to_owned()),
    ];
    let server = Server::start(&store, &env_refs(&env));
    let open = |i: usize| {
        let email = format!("durante-{i}@example.it");
        let started = Instant::now();
        let (status, opened) = server.post("/api/v1/cases", None, &contact(Some(&email)));
        assert_eq!(status, 201, "{opened}");
        (opened["id"].as_str().unwrap().to_owned(), started.elapsed())
    };
    let mut ids: Vec<String> = (0..5).map(|i| open(i).0).collect();
    redis.stop();
    // Intake never touches the queue: requests answer as fast while Redis is away.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut i = 5;
    while started.elapsed() < Duration::from_secs(30) {
        let (id, took) = open(i);
        ids.push(id);
        slowest = slowest.max(took);
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?} with Redis down"
    );
    redis.restart();
    wait_for(
        "every receipt after Redis came back",
        Duration::from_secs(90),
        || {
            ids.iter().all(|id| {
                notices(&server, &staff, id)
                    .get("receipt")
                    .map(String::as_str)
                    == Some("sent")
            })
        },
    );
    // One receipt per case: what the reactor could not queue while Redis was away it queued
    // when it came back (its checkpoint had not moved), and nothing twice.
    let messages = read_messages(&dir.path().join("outbox"));
    let recipients: HashSet<&String> = messages.iter().map(|m| &m.0).collect();
    assert_eq!(
        messages.len(),
        ids.len(),
        "{} messages for {} cases",
        messages.len(),
        ids.len()
    );
    assert_eq!(recipients.len(), ids.len());
    server.kill();
}

/// The test SMTP server answers this address after 8 seconds: long enough to see the job in hand.
const SLOW: &str = "lento-8@example.it";

/// Opens a case whose receipt goes to the slow address and waits until a worker has its job in
/// hand.
fn slow_receipt_in_hand(server: &Server, store: &Store, env: &[(String, String)]) -> String {
    let (status, opened) = server.post("/api/v1/cases", None, &contact(Some(SLOW)));
    assert_eq!(status, 201, "{opened}");
    wait_for(
        "a worker to take the receipt",
        Duration::from_secs(30),
        || jobs(store, env, "Running").len() == 1,
    );
    opened["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_worker_stopped_mid_job_finishes_it_and_one_killed_mid_job_leaves_it_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(&dir.path().join("maildir"));
    let store = sqlite_store(dir.path());
    let staff = token(&store, "operator", MASSAFRA, "Maria Rossi");
    let mut env = smtp.env();
    env.push(("SPORTELLO__API__PUBLIC_BURST".into(), "1000".into()));
    env.push(("SPORTELLO__WORKERS__IN_SERVE".into(), "false".into()));
    let server = Server::start(&store, &env_refs(&env));
    let sent_to_slow = || {
        smtp.messages()
            .into_iter()
            .filter(|m| m.0 == SLOW)
            .map(|m| m.2)
            .collect::<HashSet<String>>()
    };

    // SIGTERM while the relay is still answering: the job finishes, then the process exits.
    let mut stopped = worker(&store, &env);
    let first = slow_receipt_in_hand(&server, &store, &env);
    let exit = stopped.terminate(Duration::from_secs(40));
    assert!(exit.success(), "the worker stopped with {exit}");
    assert_eq!(notices(&server, &staff, &first)["receipt"], "sent");
    assert_eq!(sent_to_slow().len(), 1);

    // SIGKILL in the middle of the job: a live worker takes it up once the dead one has missed
    // its heartbeats, and the citizen gets one receipt.
    let mut killed = worker(&store, &env);
    let second = slow_receipt_in_hand(&server, &store, &env);
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    assert!(!notices(&server, &staff, &second).contains_key("receipt"));
    let mut live = worker(&store, &env);
    wait_for(
        "the killed worker's job to be done by the live one",
        Duration::from_secs(90),
        || notices(&server, &staff, &second).contains_key("receipt"),
    );
    assert_eq!(notices(&server, &staff, &second)["receipt"], "sent");
    // The queue marks the job done once the record is stored.
    wait_for("no notice job running", Duration::from_secs(10), || {
        jobs(&store, &env, "Running").is_empty()
    });
    assert_eq!(
        sent_to_slow().len(),
        2,
        "one receipt for each of the two cases"
    );
    assert!(live.terminate(Duration::from_secs(40)).success());
    server.kill();
}

/// The reactor holds back while the queue holds `workers.max_waiting_jobs`: the backlog stays in
/// the log, and once the workers run every case gets its one receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reactor_holds_back_while_the_queue_is_full_and_the_backlog_drains_from_the_log() {
    use sportello_projections::runner::{acquire, has_reached, run};
    use sportello_projections::{Consumer, Views};
    use sportello_workers::queue::Queue;
    use sportello_workers::reactor::Reactor;

    let dir = tempfile::tempdir().unwrap();
    let mut settings = sportello_config::Settings::load_from(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        None,
        Vec::new(),
    )
    .unwrap();
    let url = sqlite_store(dir.path()).url;
    settings.store.url = sportello_config::SecretUrl::new(url.clone());
    settings.workers.max_waiting_jobs = 10;
    let urp = sportello::cli::open_urp(&settings).await.unwrap();
    for n in 0..60 {
        sportello::cli::bench_workers::open_case(&urp, &settings, n)
            .await
            .unwrap();
    }
    let head = urp.log().head().await.unwrap();

    let queue = Queue::connect(&settings).await.unwrap();
    let views = Views::open(&url).await.unwrap();
    let reactor: &'static dyn Consumer = Reactor::new(queue.clone(), 3, 10).leak();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut s: tokio::sync::watch::Receiver<bool>| async move {
        let _ = s.wait_for(|s| *s).await;
    };
    let reactor_task = {
        let (log, views, url, stop) = (
            urp.log().clone(),
            views.clone(),
            url.clone(),
            until_stopped(stopped.clone()),
        );
        tokio::spawn(async move {
            let guard = acquire(&views, &url, reactor, "test").await?;
            run(&log, &views, reactor, &guard, stop).await
        })
    };
    // No worker yet: the reactor queues up to the limit and stops there.
    let started = Instant::now();
    while queue.waiting().await.unwrap() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = queue.waiting().await.unwrap();
    assert!((5..=10).contains(&waiting), "{waiting} jobs waiting");
    assert!(!has_reached(urp.log(), &views, reactor, head).await.unwrap());

    let workers =
        sportello_workers::run::JobWorkers::from_settings(&settings, urp.clone(), &queue).unwrap();
    let workers_task = tokio::spawn(workers.run(until_stopped(stopped)));
    let outbox = dir.path().join("outbox");
    let started = Instant::now();
    loop {
        let waiting = queue.waiting().await.unwrap();
        assert!(waiting <= 10, "{waiting} jobs waiting");
        let sent = read_messages(&outbox).len();
        if sent == 60 && has_reached(urp.log(), &views, reactor, head).await.unwrap() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{sent} of 60 receipts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recipients: HashSet<String> = read_messages(&outbox).into_iter().map(|m| m.0).collect();
    assert_eq!(recipients.len(), 60, "one receipt for each case");
    let _ = stop.send(true);
    workers_task.await.unwrap().unwrap();
    reactor_task.await.unwrap().unwrap();
}
