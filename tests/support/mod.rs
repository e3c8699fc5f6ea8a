//! Helpers shared by the binary's integration tests.
#![allow(dead_code)]

use std::process::Command;

pub fn postgres_admin_url() -> String {
    std::env::var("SPORTELLO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs `test` with the URL of a fresh PostgreSQL database, dropped afterwards whatever happens.
pub fn with_scratch_postgres(prefix: &str, test: impl FnOnce(&str)) {
    let admin = postgres_admin_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let store = sportello_engine::store::postgres::with_database(&admin, &name);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&store)));
    psql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

pub fn psql(url: &str, sql: &str) {
    let out = Command::new("psql").args([url, "-qAtc", sql]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "PostgreSQL at {url} refused `{sql}`: {}. Start it with `pg_ctlcluster \
             --skip-systemctl-redirect $(ls /etc/postgresql) main start`.",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("psql is not installed ({e}); install postgresql-client"),
    }
}
