//! The `sportello` binary as an operator uses it: replay, verify and bench on SQLite and PostgreSQL.
//!
//! PostgreSQL tests create a uniquely named database on `SPORTELLO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drop it; they fail, never skip, without one.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod support;
use support::with_scratch_postgres;

fn sportello(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sportello"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("SPORTELLO__STORE__URL")
        .output()
        .expect("the sportello binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "sportello failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// A SQLite store with 3 streams × 2 events written through the binary.
fn sqlite_store_with_events(dir: &Path) -> String {
    let store = format!("sqlite://{}", dir.join("urp.db").display());
    let last = last_line(&sportello(
        &store,
        &[
            "bench",
            "appends",
            "--in-place",
            "--streams",
            "3",
            "--events-per-stream",
            "2",
            "--mode",
            "batch",
        ],
    ));
    assert!(
        last.starts_with("measure=appends_batch store=sqlite events=6 seconds="),
        "{last}"
    );
    assert!(
        last.contains(" events_per_s=") && last.contains(" fsync_per_s="),
        "{last}"
    );
    store
}

#[test]
fn replay_writes_one_json_envelope_per_line_in_global_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_with_events(dir.path());
    let events = json_lines(&stdout(&sportello(&store, &["replay"])));
    assert_eq!(events.len(), 6);
    let keys: Vec<&str> = events[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "position",
        "stream",
        "version",
        "id",
        "type",
        "schema",
        "occurred_at",
        "recorded_at",
        "data",
        "metadata",
    ];
    expected.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(events[0]["type"], "BenchContactRecorded");
    assert_eq!(events[0]["schema"], 1);
    assert_eq!(events[1]["version"], 2);
    assert!(
        events[0]["data"]["subject"]
            .as_str()
            .unwrap()
            .contains("marciapiede")
    );
    assert!(
        events[0]["metadata"]
            .as_object()
            .unwrap()
            .contains_key("correlation_id")
    );

    let tail = json_lines(&stdout(&sportello(&store, &["replay", "--from", "5"])));
    assert_eq!(
        tail.iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [5, 6]
    );
    let limited = json_lines(&stdout(&sportello(
        &store,
        &["replay", "--limit", "2", "--category", "bench"],
    )));
    assert_eq!(limited.len(), 2);
    let none = stdout(&sportello(&store, &["replay", "--type", "CaseOpened"]));
    assert!(none.is_empty());
    let future = stdout(&sportello(&store, &["replay", "--since", "2999-01-01"]));
    assert!(future.is_empty());
    let all_time = json_lines(&stdout(&sportello(
        &store,
        &["replay", "--until", "2999-01-01T00:00:00Z"],
    )));
    assert_eq!(all_time.len(), 6);
}

#[test]
fn replay_refuses_bad_arguments_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_with_events(dir.path());
    let out = sportello(&store, &["replay", "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither RFC 3339"));
    let out = sportello(&store, &["replay", "--category", "Case"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--category Case"));
}

#[test]
fn verify_passes_then_names_the_stream_and_version_of_a_changed_byte() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_with_events(dir.path());
    let ok = sportello(&store, &["verify"]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("6 events in 3 streams"));

    let conn = rusqlite::Connection::open(dir.path().join("urp.db")).unwrap();
    let (stream, version): (String, i64) = conn
        .query_row(
            "SELECT stream, version FROM events WHERE position = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // One byte: the third character of the payload, moved to the next letter.
    let changed = conn
        .execute(
            "UPDATE events SET data = substr(data, 1, 2) || char(unicode(substr(data, 3, 1)) + 1) \
             || substr(data, 4) WHERE position = 4",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let broken = sportello(&store, &["verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let report = String::from_utf8_lossy(&broken.stdout);
    assert!(
        report.contains(&format!("stream {stream} at version {version}")),
        "{report}"
    );
}

#[test]
fn a_bad_configuration_value_stops_start_up_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_sportello"))
        .args(["verify"])
        .env("SPORTELLO__UNION__SEAT", "12345")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SPORTELLO__UNION__SEAT") && err.contains("6 digits"),
        "{err}"
    );

    let out = sportello("mysql://localhost/urp", &["verify"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store.url") && err.contains("is not a store URL"),
        "{err}"
    );

    // A KurrentDB log: `--store` is checked with the other layers, so the missing database for
    // the read models is named; with it, a default build says how to get the backend.
    let kurrentdb = "kurrentdb://127.0.0.1:2113?tls=false";
    let out = sportello(kurrentdb, &["verify"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SPORTELLO__STORE__DATA_URL"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sportello"))
        .args(["--store", kurrentdb, "verify"])
        .env_remove("SPORTELLO__STORE__URL")
        .env(
            "SPORTELLO__STORE__DATA_URL",
            format!("sqlite://{}/urp.db", dir.path().display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this build has no kurrentdb backend") && err.contains("--features kurrentdb"),
        "{err}"
    );
}

#[test]
fn a_follower_sees_every_event_of_four_concurrent_writers_once_in_order() {
    const PROCESSES: usize = 4;
    const STREAMS: usize = 50;
    const EVENTS: usize = 10;
    with_scratch_postgres("sportello_cli", |store| {
        let store = store.to_owned();
        // Create the schema first so the follower and the writers start together.
        stdout(&sportello(&store, &["verify"]));
        let total = PROCESSES * STREAMS * EVENTS;
        let follower = Command::new(env!("CARGO_BIN_EXE_sportello"))
            .args([
                "--store",
                &store,
                "replay",
                "--follow",
                "--limit",
                &total.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let writers: Vec<_> = (0..PROCESSES)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_sportello"))
                    .args([
                        "--store",
                        &store,
                        "bench",
                        "appends",
                        "--in-place",
                        "--mode",
                        "single",
                    ])
                    .args([
                        "--streams",
                        &STREAMS.to_string(),
                        "--events-per-stream",
                        &EVENTS.to_string(),
                    ])
                    .args(["--concurrency", "4"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut writer in writers {
            assert!(writer.wait().unwrap().success());
        }
        let out = follower.wait_with_output().unwrap();
        let events = json_lines(&stdout(&out));
        assert_eq!(events.len(), total);
        let positions: Vec<u64> = events
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect();
        assert_eq!(
            positions,
            (1..=total as u64).collect::<Vec<_>>(),
            "every position once, in order"
        );
        let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), total);
        let verified = stdout(&sportello(&store, &["verify"]));
        assert!(verified.contains(&format!("{total} events")), "{verified}");
    });
}

/// The last line `sportello` printed, where every bench puts its result.
fn last_line(output: &Output) -> String {
    stdout(output).lines().last().unwrap_or_default().to_owned()
}

#[test]
fn bench_leaves_no_scratch_store_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    let last = last_line(&sportello(&store, &["bench", "read", "--events", "500"]));
    assert!(
        last.starts_with("measure=read store=sqlite events=500 seconds="),
        "{last}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bench_writes_splits_a_cases_bytes_between_the_log_and_the_read_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    let last = last_line(&sportello(&store, &["bench", "writes", "--cases", "5"]));
    assert!(
        last.starts_with("measure=writes store=sqlite cases=5 concurrency=1 events=10 "),
        "{last}"
    );
    let field = |name: &str| -> f64 {
        last.split(' ')
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {last}"))
            .parse()
            .unwrap()
    };
    // A case is at least a page of the log and a page of each read model it touches.
    assert!(field("log_bytes_per_case") >= 4096.0, "{last}");
    assert!(field("views_bytes_per_case") >= 4096.0, "{last}");
    let parts = field("log_bytes_per_case") + field("views_bytes_per_case");
    assert!(
        (field("total_bytes_per_case") - parts).abs() <= 1.0,
        "{last}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("bench-"))
        .collect();
    assert!(left.is_empty(), "the scratch store is left: {left:?}");
}

#[test]
fn bench_peer_runs_the_peers_workload_and_checks_what_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let line = |store: &str, measure: &str| -> Value {
        let last = last_line(&sportello(
            store,
            &["bench", "peer", "--measure", measure, "--streams", "20"],
        ));
        serde_json::from_str(&last).unwrap()
    };
    let single = fresh("a.db");
    let a = line(&single, "a");
    assert_eq!(a["events"], 200, "{a}");
    assert_eq!(a["extra"]["occ_check"], "ok", "{a}");
    // Never into a store that holds events: it could be an installation's.
    let again = sportello(
        &single,
        &["bench", "peer", "--measure", "b", "--streams", "20"],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty"));

    let batched = fresh("b.db");
    assert_eq!(line(&batched, "b")["events"], 200);
    let c = line(&batched, "c");
    assert_eq!(c["extra"]["projection_check"], "ok", "{c}");
    assert_eq!(
        c["extra"]["projection"],
        json!({"CaseOpened": 20, "CaseRated": 80, "NoteAdded": 80, "CaseClosed": 20})
    );
    assert_eq!(c["extra"]["rating_sum"], 600);
    // The workload's payload: 300 bytes, 302 for CaseClosed.
    assert_eq!(c["extra"]["avg_state_bytes"], 300.2);
}

/// `bench queries` fills read models with made-up cases and seals their texts: never in the
/// configured store of an installation.
#[test]
fn bench_queries_refuses_to_run_in_an_installations_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    let refused = sportello(&store, &["bench", "queries", "--in-place", "--cases", "10"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("without --in-place"));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn a_writer_killed_mid_append_leaves_a_verifiable_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    let mut writer = Command::new(env!("CARGO_BIN_EXE_sportello"))
        .args([
            "--store",
            &store,
            "bench",
            "appends",
            "--in-place",
            "--mode",
            "single",
        ])
        .args([
            "--streams",
            "100000",
            "--events-per-stream",
            "1",
            "--concurrency",
            "8",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it commit for a while, then SIGKILL it in the middle of its appends.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    writer.kill().unwrap();
    writer.wait().unwrap();

    let verified = stdout(&sportello(&store, &["verify"]));
    assert!(verified.starts_with("ok: "), "{verified}");
    let events = json_lines(&stdout(&sportello(&store, &["replay"])));
    assert!(
        !events.is_empty(),
        "the writer committed something before the kill"
    );
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(
        verified.contains(&format!("{} events", events.len())),
        "{verified}"
    );
}

fn calendar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sportello"))
        .arg("calendar")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn calendar_due_prints_the_last_day_of_a_term() {
    let due = stdout(&calendar(&[
        "due",
        "--from",
        "2026-07-06",
        "--days",
        "30",
        "--comune",
        "073004",
    ]));
    assert_eq!(
        due, "2026-08-06\n",
        "Crispiano's patron feast on 5 August moves it"
    );
    let due = stdout(&calendar(&[
        "due",
        "--from",
        "2026-03-02",
        "--days",
        "30",
        "--suspended-days",
        "12",
    ]));
    assert_eq!(due, "2026-04-13\n");
    let unknown = calendar(&[
        "due",
        "--from",
        "2026-03-02",
        "--days",
        "30",
        "--comune",
        "058091",
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("058091 is not configured"));
    let bad = calendar(&["due", "--from", "2026-02-30", "--days", "30"]);
    assert!(!bad.status.success());
}

#[test]
fn calendar_holidays_lists_one_date_and_name_a_line() {
    let out = stdout(&calendar(&[
        "holidays", "--year", "2026", "--comune", "073029",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 14);
    assert_eq!(lines[0], "2026-01-01 Capodanno");
    assert!(lines.contains(&"2026-04-06 Lunedì dell'Angelo"));
    assert!(lines.contains(&"2026-10-07 Madonna del Rosario"));
    assert!(lines.contains(&"2026-10-04 San Francesco d'Assisi, patrono d'Italia"));
}

/// Registration numbers and case codes per comune and year, from a replay: each must be exactly
/// 1..=n, whatever the number of processes that took them.
fn assert_gap_free(events: &[Value]) -> usize {
    use std::collections::BTreeMap;
    let mut registrations: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
    let mut codes: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in events {
        match e["type"].as_str() {
            Some("SubmissionAccepted") => registrations
                .entry((
                    e["data"]["comune"].as_str().unwrap().into(),
                    e["data"]["registration_year"].as_i64().unwrap(),
                ))
                .or_default()
                .push(e["data"]["registration_number"].as_u64().unwrap()),
            Some("CaseOpened") => {
                let code = e["data"]["code"].as_str().unwrap();
                let (prefix_year, number) = code.rsplit_once('-').unwrap();
                codes
                    .entry(prefix_year.into())
                    .or_default()
                    .push(number.parse().unwrap());
            }
            _ => {}
        }
    }
    let mut submissions = 0;
    for (key, mut numbers) in registrations
        .into_iter()
        .map(|(k, v)| (format!("{k:?}"), v))
        .chain(codes)
    {
        numbers.sort_unstable();
        submissions += numbers.len();
        assert_eq!(
            numbers,
            (1..=numbers.len() as u64).collect::<Vec<_>>(),
            "numbers of {key}"
        );
    }
    submissions
}

#[test]
fn demos_in_four_processes_at_once_number_submissions_and_cases_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    let demos: Vec<_> = (1..=4)
        .map(|seed| {
            Command::new(env!("CARGO_BIN_EXE_sportello"))
                .args([
                    "--store",
                    &store,
                    "demo",
                    "--cases",
                    "150",
                    "--seed",
                    &seed.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for demo in demos {
        let out = demo.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let events = json_lines(&stdout(&sportello(&store, &["replay"])));
    let opened = events.iter().filter(|e| e["type"] == "CaseOpened").count();
    assert_eq!(opened, 600);
    assert!(events.iter().any(|e| e["type"] == "SubmissionAccepted"));
    assert!(assert_gap_free(&events) > 600);
    assert!(stdout(&sportello(&store, &["verify"])).starts_with("ok: "));
}

#[test]
fn the_demo_tells_the_whole_story_without_a_clear_name_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    let out = stdout(&sportello(
        &store,
        &["demo", "--cases", "400", "--seed", "11"],
    ));
    assert!(out.contains("400 cases opened"), "{out}");
    let events = json_lines(&stdout(&sportello(&store, &["replay"])));
    let types: HashSet<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in [
        "ServicePublished",
        "FormVersionPublished",
        "SubmissionAccepted",
        "CaseOpened",
        "CaseTakenInCharge",
        "CaseAssigned",
        "CaseAnswered",
        "CaseClosed",
        "FeedbackGiven",
        "NumberAssigned",
    ] {
        assert!(
            types.contains(expected),
            "{expected} missing from {types:?}"
        );
    }
    // Facts keep the time they happened, not the time the demo ran.
    assert!(
        events
            .iter()
            .all(|e| e["occurred_at"].as_str().unwrap() < "2026-11-01")
    );
    assert!(stdout(&sportello(&store, &["verify"])).starts_with("ok: "));
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        // The key itself, and the folder of the runners' (empty) lock files, hold no text.
        if path.file_name().unwrap() != "master.key" && !path.is_dir() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    for surname in ["Semeraro", "Carrieri", "Lippolis", "Quaranta", "example.it"] {
        assert!(
            !bytes
                .windows(surname.len())
                .any(|w| w == surname.as_bytes()),
            "{surname} in clear"
        );
    }
    // Same seed again: nothing new.
    let head_before = events.len();
    stdout(&sportello(
        &store,
        &["demo", "--cases", "400", "--seed", "11"],
    ));
    assert_eq!(
        json_lines(&stdout(&sportello(&store, &["replay"]))).len(),
        head_before
    );
}

#[test]
fn the_demo_runs_on_postgres_with_a_configured_master_key_and_erasure_leaves_no_clear_text() {
    with_scratch_postgres("sportello_demo", |store| {
        let store = store.to_owned();
        let demo = |key: Option<&str>| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_sportello"));
            command.args(["--store", &store, "demo", "--cases", "300", "--seed", "5"]);
            match key {
                Some(k) => command.env("SPORTELLO__VAULT__MASTER_KEY", k),
                None => command.env_remove("SPORTELLO__VAULT__MASTER_KEY"),
            };
            command.output().unwrap()
        };
        let refused = demo(None);
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("SPORTELLO__VAULT__MASTER_KEY"));
        // 32 bytes of base64.
        let out = stdout(&demo(Some("c3BvcnRlbGxvLXRlc3QtbWFzdGVyLWtleS0zMmJ5dGU=")));
        assert!(out.contains("300 cases opened"), "{out}");
        let events = json_lines(&stdout(&sportello(&store, &["replay"])));
        assert_gap_free(&events);
        assert!(stdout(&sportello(&store, &["verify"])).starts_with("ok: "));
        // Nothing personal in clear in any table, and erased subjects have no key left.
        let count = |sql: &str| -> i64 {
            let out = Command::new("psql")
                .args([store.as_str(), "-qAtc", sql])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        for clear in ["Semeraro", "Carrieri", "example.it"] {
            let rows = count(&format!(
                "SELECT (SELECT count(*) FROM events e WHERE e::text LIKE '%{clear}%') + \
                 (SELECT count(*) FROM subject_keys k WHERE k::text LIKE '%{clear}%')"
            ));
            assert_eq!(rows, 0, "{clear} in clear");
        }
        let erased = events
            .iter()
            .filter(|e| e["type"] == "SubjectErased")
            .count() as i64;
        assert_eq!(
            count("SELECT count(*) FROM subject_keys WHERE wrapped IS NULL"),
            erased
        );
    });
}

/// The store's URL may name PostgreSQL's Unix socket (`?host=/var/run/postgresql`), as the
/// peers of `../shared/peers/` connect: the log, the keys and the read models all go through it.
#[test]
fn a_postgresql_store_is_reached_through_its_unix_socket() {
    let socket = std::env::var("SPORTELLO_TEST_POSTGRES_SOCKET")
        .unwrap_or_else(|_| "/var/run/postgresql".into());
    assert!(
        Path::new(&socket).join(".s.PGSQL.5432").exists(),
        "no PostgreSQL socket in {socket}: run PostgreSQL on this machine or set \
         SPORTELLO_TEST_POSTGRES_SOCKET to the folder of its socket"
    );
    with_scratch_postgres("sportello_socket", |store| {
        let database = store.rsplit('/').next().unwrap().split('?').next().unwrap();
        // A host name that never resolves: only the socket can answer.
        let url = format!("postgres://postgres@nowhere.invalid/{database}?host={socket}");
        let demo = Command::new(env!("CARGO_BIN_EXE_sportello"))
            .args(["--store", &url, "demo", "--cases", "20", "--seed", "3"])
            .env("SPORTELLO__VAULT__MASTER_KEY", support::MASTER_KEY)
            .output()
            .unwrap();
        assert!(stdout(&demo).contains("20 cases opened"), "{demo:?}");
        assert!(stdout(&sportello(&url, &["verify"])).starts_with("ok: "));
        let through_socket = json_lines(&stdout(&sportello(&url, &["replay"])));
        let through_tcp = json_lines(&stdout(&sportello(store, &["replay"])));
        assert!(through_socket.len() >= 20);
        assert_eq!(through_socket, through_tcp);
    });
}

#[test]
fn rebuild_then_query_cases_shows_the_inbox_as_a_table_json_or_csv() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    stdout(&sportello(
        &store,
        &["demo", "--cases", "200", "--seed", "3"],
    ));
    let rebuilt = stdout(&sportello(&store, &["rebuild"]));
    assert!(
        rebuilt.starts_with("rebuilt inbox up to position "),
        "{rebuilt}"
    );
    // Again at once: the first run released its lease.
    stdout(&sportello(&store, &["rebuild", "inbox"]));
    let unknown = sportello(&store, &["rebuild", "nonesuch"]);
    assert!(!unknown.status.success());

    let all: Value = serde_json::from_str(&stdout(&sportello(
        &store,
        &["query", "cases", "--format", "json", "--limit", "1000"],
    )))
    .unwrap();
    assert_eq!(all["total"], 200);
    let entries = all["entries"].as_array().unwrap();
    let dues: Vec<&str> = entries
        .iter()
        .map(|e| e["due_on"].as_str().unwrap())
        .collect();
    assert!(dues.windows(2).all(|w| w[0] <= w[1]), "sorted by due date");
    assert!(
        entries
            .iter()
            .all(|e| e["code"].as_str().unwrap().len() == 15)
    );

    let massafra: Value = serde_json::from_str(&stdout(&sportello(
        &store,
        &[
            "query", "cases", "--comune", "073015", "--status", "closed", "--format", "json",
            "--limit", "1000",
        ],
    )))
    .unwrap();
    assert!(
        massafra["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["comune"] == "073015" && e["status"] == "closed")
    );

    let overdue = stdout(&sportello(
        &store,
        &[
            "query",
            "cases",
            "--overdue",
            "--today",
            "2030-01-01",
            "--format",
            "csv",
        ],
    ));
    let mut lines = overdue.lines();
    assert!(lines.next().unwrap().starts_with("codice,comune,tipo"));
    assert!(
        lines.all(|l| l.contains(",si,") || l.ends_with(",si")),
        "{overdue}"
    );
    let table = stdout(&sportello(&store, &["query", "cases", "--limit", "3"]));
    assert!(table.trim_end().ends_with("di 200 pratiche"), "{table}");

    let stats: Value = serde_json::from_str(&stdout(&sportello(
        &store,
        &[
            "query",
            "satisfaction",
            "--group-by",
            "comune,month",
            "--from",
            "2024-11",
            "--to",
            "2026-10",
            "--format",
            "json",
        ],
    )))
    .unwrap();
    let rows = stats["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        for key in [
            "comune",
            "month",
            "scale",
            "count",
            "distribution",
            "share_positive",
            "reasons",
        ] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
        let points = if row["scale"] == "stars" { 5 } else { 3 };
        let distribution = row["distribution"].as_object().unwrap();
        assert_eq!(distribution.len(), points);
        assert_eq!(
            distribution
                .values()
                .map(|v| v.as_i64().unwrap())
                .sum::<i64>(),
            row["count"].as_i64().unwrap()
        );
        assert_eq!(row.get("mean").is_some(), row["scale"] == "stars");
    }
    let bad = sportello(&store, &["query", "satisfaction", "--from", "2026-13"]);
    assert!(!bad.status.success());

    let levels: Value = serde_json::from_str(&stdout(&sportello(
        &store,
        &[
            "query",
            "service-levels",
            "--group-by",
            "comune",
            "--today",
            "2026-11-26",
            "--format",
            "json",
        ],
    )))
    .unwrap();
    let rows = levels["rows"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["opened"].as_u64().unwrap())
            .sum::<u64>(),
        200
    );
    for row in rows {
        assert!(row["closed_within_term"].as_u64() <= row["closed"].as_u64());
        if let (Some(median), Some(p90)) = (
            row["median_days_to_answer"].as_f64(),
            row["p90_days_to_answer"].as_f64(),
        ) {
            assert!(median <= p90);
        }
    }
}

/// `sportello user …` with `stdin` given to it.
fn user(store: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sportello"))
        .arg("--store")
        .arg(store)
        .arg("user")
        .args(args)
        .env_remove("SPORTELLO__STORE__URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sportello binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_accounts_are_created_once_with_a_password_that_is_shown_once_or_read_from_stdin() {
    use sportello_engine::app::users;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    let create = [
        "create",
        "--username",
        "Mario.Rossi",
        "--name",
        "Mario Rossi",
    ];
    let generated = stdout(&user(
        &store,
        &[&create[..], &["--role", "operator", "--comune", "073015"]].concat(),
        "",
    ));
    let password = generated.lines().last().unwrap().trim().to_owned();
    assert!(password.len() >= 20, "{generated}");

    // Taken, whatever the case; short passwords, unknown roles and comuni are refused by name.
    for (args, stdin, says) in [
        (
            vec!["--role", "operator", "--comune", "073015"],
            "",
            "already exists",
        ),
        (
            vec!["--role", "capo", "--comune", "073015"],
            "",
            "unknown role",
        ),
        (
            vec!["--role", "operator", "--comune", "999999"],
            "",
            "not configured",
        ),
    ] {
        let out = user(&store, &[&create[..], &args[..]].concat(), stdin);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{out:?}"
        );
    }
    let out = user(
        &store,
        &[
            "create",
            "--username",
            "breve",
            "--name",
            "B",
            "--role",
            "admin",
            "--comune",
            "073015",
            "--password-stdin",
        ],
        "corta\n",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));

    // A new password from stdin replaces the generated one; a disabled user signs in no more.
    stdout(&user(
        &store,
        &["password", "--username", "mario.rossi", "--password-stdin"],
        "una nuova password lunga\n",
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let signs_in = |password: &str| {
        runtime.block_on(async {
            let log = sportello_engine::store::open(&store).await.unwrap();
            users::sign_in(&log, "mario.rossi", password)
                .await
                .unwrap()
                .is_some()
        })
    };
    assert!(!signs_in(&password));
    assert!(signs_in("una nuova password lunga"));
    stdout(&user(&store, &["disable", "--username", "mario.rossi"], ""));
    assert!(!signs_in("una nuova password lunga"));
    let out = user(&store, &["disable", "--username", "mario.rossi"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active user"));
}
