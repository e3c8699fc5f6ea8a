//! The measurement behind docs/adr/0001-sqlite-driver.md: rusqlite against sqlx on the same
//! SQLite, for the event store's hot paths. Run with
//! `cargo run --release -p sportello-engine --example sqlite_drivers [ROWS]`.

use sqlx::{Connection, Row};
use std::time::Instant;

const PAYLOAD: &str = r#"{"kind":"segnalazione","comune":"073015","channel":"web","office":"Ufficio Relazioni con il Pubblico","subject":"Buca sul marciapiede in via Roma all'altezza del civico 12","description":"Segnalo una buca profonda sul marciapiede che rende difficile il passaggio","rating":4,"at":"2026-11-26T10:15:00Z","n":1}"#;
const SCHEMA: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
    CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
      event_id BLOB NOT NULL, data TEXT NOT NULL, UNIQUE (stream, version));
    CREATE UNIQUE INDEX events_by_id ON events (event_id);";

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Payload<'a> {
    kind: &'a str,
    comune: &'a str,
    rating: u8,
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for run in 1..=3 {
        let r_path = dir.path().join(format!("r{run}.db"));
        let (ins, read) = rusqlite_run(&r_path, rows);
        println!(
            "run={run} driver=rusqlite statement=one_row insert_per_s={ins:.0} read_decode_per_s={read:.0}"
        );
        for per_insert in [1usize, 100] {
            let s_path = dir.path().join(format!("s{run}-{per_insert}.db"));
            let (ins, read) = runtime.block_on(sqlx_run(&s_path, rows, per_insert));
            println!(
                "run={run} driver=sqlx statement={per_insert}_rows insert_per_s={ins:.0} read_decode_per_s={read:.0}"
            );
        }
        let commits = durable_commits(&dir.path().join(format!("c{run}.db")), 3000);
        println!("run={run} driver=rusqlite durable_single_row_commits_per_s={commits:.0}");
    }
}

fn id(n: usize) -> [u8; 16] {
    (n as u128).to_be_bytes()
}

fn rusqlite_run(path: &std::path::Path, rows: usize) -> (f64, f64) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let started = Instant::now();
    for chunk in 0..rows.div_ceil(1000) {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO events (position, stream, version, event_id, data) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for n in chunk * 1000..((chunk + 1) * 1000).min(rows) {
                stmt.execute(rusqlite::params![
                    n as i64 + 1,
                    format!("case-{}", n / 10),
                    (n % 10) as i64 + 1,
                    id(n).as_slice(),
                    PAYLOAD
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let insert = rows as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut stmt = conn
        .prepare("SELECT position, stream, version, event_id, data FROM events ORDER BY position")
        .unwrap();
    let mut q = stmt.query([]).unwrap();
    let mut n = 0usize;
    while let Some(row) = q.next().unwrap() {
        let stream: String = row.get(1).unwrap();
        let data: String = row.get(4).unwrap();
        let p: Payload<'_> = serde_json::from_str(&data).unwrap();
        n += usize::from(p.rating) + usize::from(stream.is_empty());
    }
    assert!(n > 0);
    (insert, rows as f64 / started.elapsed().as_secs_f64())
}

async fn sqlx_run(path: &std::path::Path, rows: usize, per_insert: usize) -> (f64, f64) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(&mut conn).await.unwrap();
    let started = Instant::now();
    let mut n = 0usize;
    while n < rows {
        let mut tx = conn.begin().await.unwrap();
        let end = (n + 1000).min(rows);
        while n < end {
            let take = per_insert.min(end - n);
            let marks = vec!["(?, ?, ?, ?, ?)"; take].join(", ");
            let sql = format!(
                "INSERT INTO events (position, stream, version, event_id, data) VALUES {marks}"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for m in n..n + take {
                q = q
                    .bind(m as i64 + 1)
                    .bind(format!("case-{}", m / 10))
                    .bind((m % 10) as i64 + 1)
                    .bind(id(m).to_vec())
                    .bind(PAYLOAD);
            }
            q.execute(&mut *tx).await.unwrap();
            n += take;
        }
        tx.commit().await.unwrap();
    }
    let insert = rows as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut stream = sqlx::query(
        "SELECT position, stream, version, event_id, data FROM events ORDER BY position",
    )
    .fetch(&mut conn);
    let mut total = 0usize;
    use futures::TryStreamExt;
    while let Some(row) = stream.try_next().await.unwrap() {
        let data: String = row.get(4);
        let p: Payload<'_> = serde_json::from_str(&data).unwrap();
        total += usize::from(p.rating);
    }
    assert!(total > 0);
    (insert, rows as f64 / started.elapsed().as_secs_f64())
}

/// One row per durable commit, on the calling thread: the ceiling for one sequential writer.
fn durable_commits(path: &std::path::Path, commits: usize) -> f64 {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let started = Instant::now();
    for n in 0..commits {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.prepare_cached("INSERT INTO events (position, stream, version, event_id, data) VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap()
            .execute(rusqlite::params![n as i64 + 1, format!("case-{}", n), 1, id(n).as_slice(), PAYLOAD])
            .unwrap();
        tx.commit().unwrap();
    }
    commits as f64 / started.elapsed().as_secs_f64()
}
