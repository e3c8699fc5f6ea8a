//! The OpenAPI document against the server, checked by an outside tool: schemathesis runs every
//! operation, public and staff (with an administrator's token), with every check — no 5xx, every
//! status and content type documented, every answer matching its schema, schema-valid requests
//! accepted and schema-violating ones refused (`scripts/schemathesis.sh`; the data-generation
//! hooks are in `tests/schemathesis/hooks.py`). It installs schemathesis into
//! `target/schemathesis-venv` on first use and fails, with the reason, when it cannot.

use std::process::Command;

mod support;
use support::{Server, Store, run, token};

#[test]
fn the_server_does_what_its_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store {
        url: format!("sqlite://{}", dir.path().join("urp.db").display()),
        dir: Some(dir.path().to_owned()),
    };
    run(&store, &["demo", "--cases", "150", "--seed", "5"]);
    let admin = token(&store, "admin", "073015", "Verifica API");
    let server = Server::start(
        &store,
        &[
            // schemathesis sends thousands of writes from one address.
            ("SPORTELLO__API__PUBLIC_POSTS_PER_MINUTE", "10000000"),
            ("SPORTELLO__API__PUBLIC_BURST", "1000000"),
            ("SPORTELLO__API__CONSISTENCY_WAIT_MS", "200"),
        ],
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schemathesis.sh");
    let seconds = std::env::var("SPORTELLO_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "90".into());
    let out = Command::new("bash")
        .args([script, &server.base, &admin, &seconds])
        .output()
        .expect("bash runs scripts/schemathesis.sh");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found the server and its OpenAPI document disagree:\n{report}"
    );
    // It really ran: every operation was tested and requests were made.
    assert!(report.contains("Tested: "), "{report}");
    assert!(!report.contains("Tested: 0"), "{report}");
}
