//! The pages in a real browser: Debian's Chromium driven by Playwright (`tests/browser/*.cjs`),
//! with axe-core checking every page against WCAG 2.1 AA. `scripts/browser-tools.sh` installs
//! both on first use; without them the tests fail, saying how to get them.
//!
//! Screenshots go to `target/screenshots/<test>/`: the last page on a failure, every page with
//! `SPORTELLO_SCREENSHOTS=1`.

use std::path::PathBuf;
use std::process::Command;

mod support;
use support::{Server, Store, run, with_scratch_postgres};

/// (Chromium, the Node packages' folder), installed if need be.
fn browser_tools() -> (String, String) {
    let printed = support::install(
        "scripts/browser-tools.sh",
        "the browser tests need Chromium, Node and their npm packages",
    );
    let (chromium, node_path) = printed.split_once('\n').expect("two lines");
    (chromium.to_owned(), node_path.to_owned())
}

/// Runs `script` against a server of `store` (seeded with a small demo); returns its report.
fn drive(store: &Store, script: &str, name: &str) -> serde_json::Value {
    let (chromium, node_path) = browser_tools();
    run(store, &["demo", "--cases", "40", "--seed", "11"]);
    let env = users(store, script);
    let server = Server::start(store, &[("SPORTELLO__API__PUBLIC_BURST", "1000")]);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("../screenshots")
        .join(name);
    let every = if std::env::var_os("SPORTELLO_SCREENSHOTS").is_some() {
        "all"
    } else {
        "failures"
    };
    let out = Command::new("node")
        .arg(format!("tests/browser/{script}"))
        .args([&server.base, &chromium, &shots.display().to_string(), every])
        .env("NODE_PATH", node_path)
        .envs(env)
        .output()
        .expect("node runs (scripts/browser-tools.sh installs it)");
    server.kill();
    assert!(
        out.status.success(),
        "{script} found problems:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let report = serde_json::from_slice(&out.stdout).expect("the script reports in JSON");
    eprintln!("{script}: {report}");
    report
}

/// The accounts the staff's script signs in with: an operator of Massafra, a supervisor of
/// Statte, an administrator.
fn users(store: &Store, script: &str) -> Vec<(&'static str, String)> {
    if script != "staff.cjs" {
        return Vec::new();
    }
    let create = |username: &str, role: &str, comune: &str| {
        let printed = run(
            store,
            &[
                "user",
                "create",
                "--username",
                username,
                "--name",
                username,
                "--role",
                role,
                "--comune",
                comune,
            ],
        );
        format!("{username}:{}", printed.lines().last().unwrap().trim())
    };
    vec![
        (
            "SPORTELLO_TEST_OPERATOR",
            create("mario.rossi", "operator", "073015"),
        ),
        (
            "SPORTELLO_TEST_OTHER",
            create("anna.statte", "supervisor", "073029"),
        ),
        (
            "SPORTELLO_TEST_ADMIN",
            create("amministratore", "admin", "073015"),
        ),
    ]
}

fn check_citizen_visit(report: &serde_json::Value) {
    assert_eq!(report["pages"].as_array().unwrap().len(), 15, "{report}");
    // Bootstrap Italia's CSS, the fonts the home page uses and the page itself, compressed.
    let weight = report["first_load_bytes"].as_u64().unwrap();
    assert!(
        (50_000..300_000).contains(&weight),
        "the home page's first load weighs {weight} bytes"
    );
}

#[test]
fn a_citizen_opens_a_contact_and_follows_it_in_a_browser_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store {
        url: format!("sqlite://{}", dir.path().join("sportello.db").display()),
        dir: Some(dir.path().to_owned()),
    };
    check_citizen_visit(&drive(&store, "citizen.cjs", "citizen-sqlite"));
}

#[test]
fn a_citizen_opens_a_contact_and_follows_it_in_a_browser_on_postgresql() {
    with_scratch_postgres("browser", |url| {
        let store = Store {
            url: url.to_owned(),
            dir: None,
        };
        check_citizen_visit(&drive(&store, "citizen.cjs", "citizen-postgresql"));
    });
}

#[test]
fn an_operator_signs_in_works_a_case_and_another_comune_cannot_see_it_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store {
        url: format!("sqlite://{}", dir.path().join("sportello.db").display()),
        dir: Some(dir.path().to_owned()),
    };
    let report = drive(&store, "staff.cjs", "staff-sqlite");
    assert_eq!(report["pages"].as_array().unwrap().len(), 15, "{report}");
}

#[test]
fn an_operator_signs_in_works_a_case_and_another_comune_cannot_see_it_on_postgresql() {
    with_scratch_postgres("browser_staff", |url| {
        let store = Store {
            url: url.to_owned(),
            dir: None,
        };
        let report = drive(&store, "staff.cjs", "staff-postgresql");
        assert_eq!(report["pages"].as_array().unwrap().len(), 15, "{report}");
    });
}
