//! How each backend under test is created, inspected behind the store's back, and removed.

use futures::future::BoxFuture;
use sportello_engine::EventLog;
use sportello_engine::store::postgres::PostgresStore;
use sportello_engine::store::sqlite::SqliteStore;
use std::sync::{Arc, Mutex};

pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, empty store and a way to alter its bytes directly (to prove `verify` notices).
pub struct Fixture {
    pub log: EventLog,
    /// Changes one byte of the stored payload of the event at a position, bypassing the store.
    pub tamper: Arc<dyn Fn(u64) -> BoxFuture<'static, ()> + Send + Sync>,
    pub cleanup: Cleanup,
}

#[derive(Clone, Default)]
pub struct Cleanup(Arc<Mutex<Option<BoxFuture<'static, ()>>>>);

impl Cleanup {
    pub async fn run(&self) {
        let job = self.0.lock().unwrap().take();
        if let Some(job) = job {
            job.await;
        }
    }
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.expect("open SQLite store");
    let tamper_path = path.clone();
    Fixture {
        log: EventLog::new(Arc::new(store)),
        tamper: Arc::new(move |position| {
            let path = tamper_path.clone();
            Box::pin(async move {
                let conn = rusqlite::Connection::open(&path).unwrap();
                let changed = conn
                    .execute(
                        "UPDATE events SET data = \
                         substr(data, 1, 2) || char(unicode(substr(data, 3, 1)) + 1) || substr(data, 4) \
                         WHERE position = ?1",
                        [position as i64],
                    )
                    .unwrap();
                assert_eq!(changed, 1, "no event at position {position} to tamper with");
            })
        }),
        cleanup: Cleanup(Arc::new(Mutex::new(Some(Box::pin(async move {
            drop(dir);
        }))))),
    }
}

pub async fn postgres() -> Fixture {
    let admin_url = std::env::var("SPORTELLO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned());
    let admin = admin_pool(&admin_url).await;
    let name = format!("sportello_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    let url = sportello_engine::store::postgres::with_database(&admin_url, &name);
    let store = PostgresStore::connect(&url)
        .await
        .expect("open PostgreSQL store");
    let pool = store.pool().clone();
    let drop_admin = admin.clone();
    let drop_name = name.clone();
    Fixture {
        log: EventLog::new(Arc::new(store)),
        tamper: Arc::new(move |position| {
            let pool = pool.clone();
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE events SET data = overlay(data placing \
                     chr(ascii(substr(data, 3, 1)) + 1) from 3 for 1) WHERE position = $1",
                )
                .bind(position as i64)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected();
                assert_eq!(changed, 1, "no event at position {position} to tamper with");
            })
        }),
        cleanup: Cleanup(Arc::new(Mutex::new(Some(Box::pin(async move {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {drop_name} WITH (FORCE)"
            )))
            .execute(&drop_admin)
            .await;
        }))))),
    }
}

pub async fn admin_pool(admin_url: &str) -> sqlx::PgPool {
    match sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(admin_url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {admin_url} ({e}). Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or point \
             SPORTELLO_TEST_POSTGRES_URL at a server where this user may create databases."
        ),
    }
}
