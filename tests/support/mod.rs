//! Helpers shared by the binary's integration tests.
#![allow(dead_code)]

pub mod smtp;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `test` with the URL of a fresh PostgreSQL database, dropped afterwards whatever happens.
pub fn with_scratch_postgres(prefix: &str, test: impl FnOnce(&str)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = runtime.block_on(sportello_engine::store::postgres::test_database(prefix));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&scratch.url)));
    let _ = std::fs::remove_dir_all(side_folder(&scratch.url));
    runtime
        .block_on(scratch.drop_database())
        .expect("drop the scratch database");
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

/// Environment pairs as `Server::start` takes them.
pub fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A fixed master key for PostgreSQL stores (SQLite ones make their own beside the file).
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Store {
    pub url: String,
    /// The SQLite file's folder, for the byte scan after erasure.
    pub dir: Option<PathBuf>,
}

/// Where the job queue and the outbox of a PostgreSQL store's processes go (an SQLite store
/// keeps them beside its file): a folder per database, removed with it.
pub fn side_folder(store_url: &str) -> PathBuf {
    let database = store_url.rsplit('/').next().unwrap_or("store");
    std::env::temp_dir().join(format!("sportello-side-{database}"))
}

pub fn command(store: &Store) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sportello"));
    c.arg("--store")
        .arg(&store.url)
        .env_remove("SPORTELLO__STORE__URL")
        .env_remove("SPORTELLO__WORKERS__QUEUE_URL")
        .env_remove("SPORTELLO__MAIL__OUTBOX_DIR")
        .env("SPORTELLO__VAULT__MASTER_KEY", MASTER_KEY)
        // Quiet by default; SPORTELLO_TEST_LOG (a SPORTELLO_LOG filter) to see what they do.
        .env(
            "SPORTELLO_LOG",
            std::env::var("SPORTELLO_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    if store.url.starts_with("postgres") {
        let side = side_folder(&store.url);
        c.env(
            "SPORTELLO__WORKERS__QUEUE_URL",
            format!("sqlite://{}", side.join("jobs.db").display()),
        )
        .env("SPORTELLO__MAIL__OUTBOX_DIR", side.join("outbox"));
    }
    c
}

pub fn run(store: &Store, args: &[&str]) -> String {
    let out: Output = command(store).args(args).output().expect("sportello runs");
    assert!(
        out.status.success(),
        "sportello {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn token(store: &Store, role: &str, comune: &str, name: &str) -> String {
    let out = run(
        store,
        &[
            "token", "create", "--role", role, "--comune", comune, "--name", name,
        ],
    );
    out.lines().last().unwrap().trim().to_owned()
}

/// A child process killed when dropped, so that a failing test leaves none behind.
pub struct Reaped(pub Child);

impl Reaped {
    /// Sends SIGTERM, as a service manager stops a process, and waits for it to exit (killing it
    /// and failing the test after `limit`).
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > limit {
                let _ = self.0.kill();
                panic!("the process did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `done` every 100 ms until it holds; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first line a child with piped stdout prints (its address, its port).
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    line
}

/// A running `sportello serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(store: &Store, env: &[(&str, &str)]) -> Server {
        let mut c = command(store);
        c.args(["serve", "--bind", "127.0.0.1:0"]);
        Self::spawn(c, env)
    }

    /// As [`Server::start`], with every file the server writes limited to `kib` KiB: past it a
    /// write fails as it would on a full disk (`ulimit -f`, with SIGXFSZ ignored).
    pub fn start_with_file_limit(store: &Store, env: &[(&str, &str)], kib: u64) -> Server {
        let plain = command(store);
        let mut c = Command::new("bash");
        c.args([
            "-c",
            &format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""),
        ])
        .arg(plain.get_program())
        .args(plain.get_args())
        .args(["serve", "--bind", "127.0.0.1:0"]);
        for (key, value) in plain.get_envs() {
            match value {
                Some(v) => c.env(key, v),
                None => c.env_remove(key),
            };
        }
        Self::spawn(c, env)
    }

    /// Runs `c`, a `sportello serve` command, and waits until it is ready.
    pub fn spawn(mut c: Command, env: &[(&str, &str)]) -> Server {
        c.stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("sportello serve starts");
        let line = first_line(&mut child);
        let base = line
            .trim()
            .strip_prefix("sportello: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let server = Server { child, base };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let (status, body) = self.get("/readyz", None);
            if status == 200 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never ready: {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = Self::agent().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let mut response = request.call().expect("the server answers");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.post_with(path, token, &[], "application/json", body.to_string())
    }

    pub fn post_with(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        content_type: &str,
        body: String,
    ) -> (u16, Value) {
        let mut request = Self::agent()
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(t) = token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = request.send(body).expect("the server answers");
        let status = response.status().as_u16();
        let content = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            assert_eq!(content, "application/problem+json", "{status} {text}");
            assert_eq!(value["status"], status, "{text}");
            assert!(
                value["code"].is_string() && value["detail"].is_string(),
                "{text}"
            );
        }
        (status, value)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The python of `scripts/python-tools.sh`'s environment (aiosmtpd, frictionless, pyshacl),
/// made on first use; fails saying `what` needs it and why it could not be made.
pub fn python_tools(what: &str) -> String {
    install("scripts/python-tools.sh", what)
}

/// Runs one of the scripts that install what tests need (on first use) and returns what it
/// printed; fails saying `what` needs it and why the script could not.
pub fn install(script: &str, what: &str) -> String {
    let out = Command::new(script)
        .output()
        .unwrap_or_else(|e| panic!("{what}: {script} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn redis_url() -> String {
    std::env::var("SPORTELLO_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Runs `test` with a namespace of its own on Redis, whose keys are deleted afterwards.
pub fn with_redis_namespace(test: impl FnOnce(&str, &str)) {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap_or_else(|e| {
        panic!(
            "Redis does not answer at {url} ({e}): start it with `redis-server --daemonize yes` \
             or set SPORTELLO_TEST_REDIS_URL"
        )
    });
    let namespace = format!("sportello-test-{}", uuid::Uuid::new_v4().simple());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&url, &namespace)));
    // SCAN, not KEYS: Redis may be shared with a large namespace (a benchmark's).
    let keys: Vec<String> = redis::Commands::scan_match(&mut conn, format!("{namespace}*"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut conn).unwrap();
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// `sportello worker` on `store` with `env`.
pub fn worker(store: &Store, env: &[(String, String)]) -> Reaped {
    let mut c = command(store);
    for (k, v) in env {
        c.env(k, v);
    }
    Reaped(
        c.arg("worker")
            .stdout(Stdio::null())
            .spawn()
            .expect("sportello worker starts"),
    )
}
