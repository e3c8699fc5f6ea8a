//! Several nodes on one PostgreSQL and one Redis, as `docs/deploy.md` describes: two `serve`
//! processes that only answer requests (`--no-projections --no-workers`) behind a round-robin,
//! and two `sportello worker`s that run the projections, the reactor and the jobs. While a steady
//! stream of intakes and staff actions goes on, one server and one worker at a time are killed
//! (SIGKILL) and started again.
//!
//! Uses a scratch PostgreSQL database and a Redis namespace of its own (see `tests/support`);
//! fails, never skips, without them.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

mod support;
use support::smtp::SmtpServer;
use support::{
    Server, Store, env_refs, token, wait_for, with_redis_namespace, with_scratch_postgres, worker,
};

const MASSAFRA: &str = "073015";

/// A `serve` that answers requests and leaves projections and jobs to the workers.
fn serve_node(store: &Store, env: &[(String, String)]) -> Server {
    let mut c = support::command(store);
    c.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--no-projections",
        "--no-workers",
    ]);
    Server::spawn(c, &env_refs(env))
}

/// What the client saw acknowledged.
#[derive(Default)]
struct Acknowledged {
    /// Case code → (case id, e-mail).
    cases: BTreeMap<String, (String, String)>,
    /// Cases taken in charge.
    taken: BTreeSet<String>,
    /// Reads on another server than the write's, with the write's position, that saw it.
    reads_across: usize,
}

/// One request to whichever server is next, moving on to the following one when a server does
/// not answer (a load balancer's retry); `None` after every server has failed several times.
fn round_robin(
    bases: &Mutex<Vec<String>>,
    turn: &mut usize,
    send: impl Fn(&ureq::Agent, &str) -> Result<(u16, Value), ureq::Error>,
) -> Option<(u16, Value, String)> {
    let agent = Server::agent();
    for _ in 0..40 {
        let base = {
            let bases = bases.lock().unwrap();
            bases[*turn % bases.len()].clone()
        };
        *turn += 1;
        match send(&agent, &base) {
            // A server that is not there, or a database that is briefly away: the next one.
            Err(_) | Ok((502..=504, _)) => thread::sleep(Duration::from_millis(100)),
            Ok((status, body)) => return Some((status, body, base)),
        }
    }
    None
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Intakes and staff actions until `stop`, each intake with an idempotency key of its own, so
/// that a retry on another server after one died answers with the same case.
fn steady_stream(
    bases: Arc<Mutex<Vec<String>>>,
    staff: String,
    stop: Arc<AtomicBool>,
) -> Acknowledged {
    let mut seen = Acknowledged::default();
    let mut turn = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let email = format!("cittadino{n}@example.it");
        let body = json!({
            "comune": MASSAFRA, "kind": "segnalazione", "channel": "web", "service": null,
            "subject": format!("Lampione spento in via Roma {n}"), "description": null,
            "citizen": {"name": "Carla Esposito", "email": email},
            "privacy_consent": true
        })
        .to_string();
        let key = format!("nodes-{n}");
        let Some((status, opened, wrote_on)) = round_robin(&bases, &mut turn, |agent, base| {
            agent
                .post(format!("{base}/api/v1/cases"))
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &key)
                .send(&body)
                .map(answer)
        }) else {
            panic!("no server took intake {n}");
        };
        assert_eq!(status, 201, "intake {n}: {opened}");
        let code = opened["code"].as_str().unwrap().to_owned();
        let id = opened["id"].as_str().unwrap().to_owned();
        let position = opened["position"].as_u64().unwrap();
        seen.cases.insert(code.clone(), (id.clone(), email));

        // Read your write on another server: it waits for its projection, never answers stale.
        let Some((status, inbox, read_on)) = round_robin(&bases, &mut turn, |agent, base| {
            agent
                .get(format!(
                    "{base}/api/v1/staff/cases?code={code}&min_position={position}"
                ))
                .header("Authorization", format!("Bearer {staff}"))
                .call()
                .map(answer)
        }) else {
            panic!("no server answered the read of {code}");
        };
        assert_eq!(status, 200, "{inbox}");
        assert_eq!(inbox["entries"][0]["code"], code.as_str(), "{inbox}");
        if read_on != wrote_on {
            seen.reads_across += 1;
        }

        if n % 3 == 0 {
            let action = round_robin(&bases, &mut turn, |agent, base| {
                agent
                    .post(format!("{base}/api/v1/staff/cases/{id}/take-in-charge"))
                    .header("Authorization", format!("Bearer {staff}"))
                    .header("Content-Type", "application/json")
                    .send(r#"{"office": "Ufficio tecnico"}"#)
                    .map(answer)
            });
            match action {
                Some((200, _, _)) => {
                    seen.taken.insert(code);
                }
                // Done by an attempt whose answer was lost with its server.
                Some((409, _, _)) => {
                    seen.taken.insert(code);
                }
                other => panic!("take-in-charge of {code}: {other:?}"),
            }
        }
    }
    seen
}

/// Notice jobs a worker runs at once in this test: what a killed worker may have had in hand.
const NOTICES_IN_HAND: usize = 2;

#[test]
fn two_servers_and_two_workers_lose_nothing_when_each_is_killed_in_turn() {
    with_redis_namespace(|redis, namespace| {
        with_scratch_postgres("nodes", |url| {
            let store = Store {
                url: url.to_owned(),
                dir: None,
            };
            let maildir = tempfile::tempdir().unwrap();
            let smtp = SmtpServer::start(maildir.path());
            let mut env = smtp.env();
            env.extend([
                ("SPORTELLO__WORKERS__QUEUE_URL".to_owned(), redis.to_owned()),
                (
                    "SPORTELLO__WORKERS__NAMESPACE".to_owned(),
                    namespace.to_owned(),
                ),
                (
                    "SPORTELLO__API__PUBLIC_BURST".to_owned(),
                    "100000".to_owned(),
                ),
                (
                    "SPORTELLO__WORKERS__CONCURRENCY".to_owned(),
                    NOTICES_IN_HAND.to_string(),
                ),
            ]);
            let staff = token(&store, "operator", MASSAFRA, "Maria Rossi");
            // The workers first: a server is ready once the projections are live.
            let mut workers = [worker(&store, &env), worker(&store, &env)];
            let mut servers = [serve_node(&store, &env), serve_node(&store, &env)];
            let bases = Arc::new(Mutex::new(
                servers.iter().map(|s| s.base.clone()).collect::<Vec<_>>(),
            ));
            let stop = Arc::new(AtomicBool::new(false));
            let client = {
                let (bases, staff, stop) = (bases.clone(), staff.clone(), stop.clone());
                thread::spawn(move || steady_stream(bases, staff, stop))
            };

            // Each node killed in turn, while the stream goes on.
            for victim in 0..2 {
                thread::sleep(Duration::from_secs(3));
                servers[victim].child.kill().unwrap();
                servers[victim].child.wait().unwrap();
                thread::sleep(Duration::from_secs(1));
                servers[victim] = serve_node(&store, &env);
                bases.lock().unwrap()[victim] = servers[victim].base.clone();

                thread::sleep(Duration::from_secs(3));
                workers[victim].0.kill().unwrap();
                workers[victim].0.wait().unwrap();
                thread::sleep(Duration::from_secs(1));
                workers[victim] = worker(&store, &env);
            }
            thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::Relaxed);
            let seen = client.join().expect("the client's checks hold");
            let total = seen.cases.len();
            assert!(total >= 20, "only {total} intakes in the run");
            assert!(seen.reads_across > 0, "no read went to another server");

            // Everything acknowledged is there once, and nothing else.
            let server = &servers[0];
            let head = server.get("/readyz", None).1["head"].as_u64().unwrap();
            let (status, inbox) = server.get(
                &format!("/api/v1/staff/cases?limit=1000&min_position={head}"),
                Some(&staff),
            );
            assert_eq!(status, 200, "{inbox}");
            let listed: BTreeMap<String, String> = inbox["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["code"].as_str().unwrap().to_owned(),
                        e["status"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            assert_eq!(
                listed.keys().collect::<Vec<_>>(),
                seen.cases.keys().collect::<Vec<_>>()
            );
            for code in &seen.taken {
                assert_eq!(listed[code], "taken_in_charge", "{code}");
            }

            // The projections' counters moved once per case: one runner at a time applied each
            // event once, through the kills.
            let (status, levels) = server.get(
                &format!("/api/v1/staff/stats/service-levels?group_by=comune&min_position={head}"),
                Some(&staff),
            );
            assert_eq!(status, 200, "{levels}");
            let opened: u64 = levels["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["opened"].as_u64().unwrap())
                .sum();
            assert_eq!(opened, total as u64, "{levels}");

            // Every notice sent (a receipt for each case, a message for each taken in charge),
            // once: only the jobs a killed worker had in hand (at most its concurrency) may go
            // twice, as the SMTP server's acceptance and the log's record of it cannot be one
            // transaction.
            let expected = total + seen.taken.len();
            wait_for("every notice", Duration::from_secs(90), || {
                let sent: BTreeSet<String> = smtp.messages().into_iter().map(|m| m.2).collect();
                sent.len() >= expected
            });
            let messages = smtp.messages();
            let mut deliveries: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, _, message_id) in &messages {
                *deliveries.entry(message_id).or_default() += 1;
            }
            assert_eq!(deliveries.len(), expected, "notices sent: {deliveries:?}");
            let again: usize = deliveries.values().map(|n| n - 1).sum();
            assert!(
                again <= 2 * NOTICES_IN_HAND,
                "{again} notices went twice with two workers killed, each holding at most \
                 {NOTICES_IN_HAND}"
            );
            let receipts_to: BTreeSet<&String> = messages
                .iter()
                .filter(|m| m.2.contains(".receipt@"))
                .map(|m| &m.0)
                .collect();
            let citizens: BTreeSet<&String> = seen.cases.values().map(|(_, email)| email).collect();
            assert_eq!(receipts_to, citizens);
            let receipts = |id: &str| {
                let (_, detail) = server.get(&format!("/api/v1/staff/cases/{id}"), Some(&staff));
                detail["timeline"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["type"] == "NoticeSent" && e["details"]["kind"] == "receipt")
                    .count()
            };
            for (code, (id, _)) in seen.cases.iter().step_by(7) {
                wait_for("the receipt recorded", Duration::from_secs(30), || {
                    receipts(id) > 0
                });
                assert_eq!(receipts(id), 1, "{code}");
            }
        });
    });
}

/// A PostgreSQL cluster of the test's own in a temporary folder, on a free port: a primary, or a
/// streaming replica of one. Stopped (immediately) when dropped.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
}

/// Where Debian keeps the server's programs (`initdb`, `pg_ctl`): the newest version installed.
fn pg_bin() -> std::path::PathBuf {
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "the replica test needs PostgreSQL's server programs (initdb, pg_basebackup, pg_ctl) \
             in /usr/lib/postgresql/VERSION/bin: apt-get install postgresql"
        )
    })
}

/// Runs a PostgreSQL program as the `postgres` user when the tests run as root (PostgreSQL
/// refuses to run as root), as the current user otherwise.
fn pg_program(program: &str) -> Command {
    let path = pg_bin().join(program);
    let path = path.to_str().expect("a UTF-8 path");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", path]);
        c
    } else {
        Command::new(path)
    }
}

fn pg_run(mut c: Command, what: &str) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e} (runuser is in util-linux)"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl OwnPostgres {
    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        // The server runs as `postgres`, which must own its data folder.
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status();
        dir
    }

    fn primary() -> OwnPostgres {
        let dir = Self::folder();
        let data = dir.path().join("data");
        let mut initdb = pg_program("initdb");
        initdb
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data);
        pg_run(initdb, "initdb");
        Self::start(dir, free_port())
    }

    fn replica_of(primary: &OwnPostgres) -> OwnPostgres {
        let dir = Self::folder();
        let mut backup = pg_program("pg_basebackup");
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "stream", "-R", "-D"])
            .arg(dir.path().join("data"));
        pg_run(backup, "pg_basebackup");
        Self::start(dir, free_port())
    }

    fn start(dir: tempfile::TempDir, port: u16) -> OwnPostgres {
        let data = dir.path().join("data");
        let mut start = pg_program("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.path().display()
            ))
            .args(["-w", "start"]);
        pg_run(start, "pg_ctl start");
        OwnPostgres { dir, port }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn sql(&self, sql: &str) {
        support::psql(&self.url(), sql);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let mut stop = pg_program("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}

#[test]
fn a_server_reading_a_replica_waits_for_it_and_never_answers_stale_data_as_fresh() {
    with_redis_namespace(|redis, namespace| {
        let primary = OwnPostgres::primary();
        let replica = OwnPostgres::replica_of(&primary);
        let store = Store {
            url: primary.url(),
            dir: None,
        };
        let env = vec![
            ("SPORTELLO__WORKERS__QUEUE_URL".to_owned(), redis.to_owned()),
            (
                "SPORTELLO__WORKERS__NAMESPACE".to_owned(),
                namespace.to_owned(),
            ),
            ("SPORTELLO__STORE__READ_URL".to_owned(), replica.url()),
            (
                "SPORTELLO__API__CONSISTENCY_WAIT_MS".to_owned(),
                "1500".to_owned(),
            ),
        ];
        let staff = token(&store, "operator", MASSAFRA, "Maria Rossi");
        let _worker = worker(&store, &env);
        let server = serve_node(&store, &env);
        let open = |n: u32| {
            let (status, opened) = server.post(
                "/api/v1/cases",
                None,
                &json!({
                    "comune": MASSAFRA, "kind": "segnalazione", "channel": "web", "service": null,
                    "subject": format!("Buca in via Roma {n}"), "description": null,
                    "citizen": null, "privacy_consent": true
                }),
            );
            assert_eq!(status, 201, "{opened}");
            (
                opened["code"].as_str().unwrap().to_owned(),
                opened["position"].as_u64().unwrap(),
            )
        };
        let read = |code: &str, position: Option<u64>| {
            let wait = position.map_or_else(String::new, |p| format!("&min_position={p}"));
            server.get(
                &format!("/api/v1/staff/cases?code={code}{wait}"),
                Some(&staff),
            )
        };

        // The replica follows: a write is read back through it.
        let (first, position) = open(1);
        let (status, inbox) = read(&first, Some(position));
        assert_eq!(status, 200, "{inbox}");
        assert_eq!(inbox["entries"][0]["code"], first.as_str());

        // The replica stops applying the primary's changes: a query that asks for the new write
        // waits, then answers 503 rather than the replica's older state.
        replica.sql("SELECT pg_wal_replay_pause()");
        let (second, position) = open(2);
        let (status, problem) = read(&second, Some(position));
        assert_eq!(status, 503, "{problem}");
        assert_eq!(problem["code"], "projection_behind", "{problem}");
        // Without `min_position` the replica's state is what it is: the case is not there yet.
        let (status, inbox) = read(&second, None);
        assert_eq!(status, 200, "{inbox}");
        assert_eq!(inbox["entries"].as_array().unwrap().len(), 0, "{inbox}");
        // Looked up by its code (Open311, a citizen following it): not "not found" but 503.
        let (status, problem) = server.get(
            &format!("/open311/v2/requests/{second}.json?jurisdiction_id={MASSAFRA}"),
            None,
        );
        assert_eq!(status, 503, "{problem}");

        // Replay again: the same query finds it.
        replica.sql("SELECT pg_wal_replay_resume()");
        let (status, inbox) = read(&second, Some(position));
        assert_eq!(status, 200, "{inbox}");
        assert_eq!(inbox["entries"][0]["code"], second.as_str());
    });
}
