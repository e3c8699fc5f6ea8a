//! How each backend under test is created, inspected behind the store's back, and removed.

use futures::future::BoxFuture;
use sportello_engine::EventLog;
use sportello_engine::store::postgres::{PostgresStore, test_database};
use sportello_engine::store::sqlite::SqliteStore;
use std::sync::{Arc, Mutex};

/// A fresh, empty store and a way to alter its bytes directly (to prove `verify` notices).
pub struct Fixture {
    pub log: EventLog,
    /// Changes one byte of the stored payload of the event at a position, bypassing the store.
    pub tamper: Arc<dyn Fn(u64) -> BoxFuture<'static, ()> + Send + Sync>,
    /// The same store opened again, as another process would (a second node, or the CLI beside
    /// `serve`).
    pub another_process: Arc<dyn Fn() -> BoxFuture<'static, EventLog> + Send + Sync>,
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
    let reopen_path = path.clone();
    Fixture {
        log: EventLog::new(Arc::new(store)),
        another_process: Arc::new(move || {
            let path = reopen_path.clone();
            Box::pin(async move {
                let store = SqliteStore::open(&path)
                    .await
                    .expect("open SQLite store again");
                EventLog::new(Arc::new(store))
            })
        }),
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
    let scratch = test_database("sportello_test").await;
    let url = scratch.url.clone();
    let store = PostgresStore::connect(&url)
        .await
        .expect("open PostgreSQL store");
    let pool = store.pool().clone();
    let reopen_url = url.clone();
    Fixture {
        log: EventLog::new(Arc::new(store)),
        another_process: Arc::new(move || {
            let url = reopen_url.clone();
            Box::pin(async move {
                let store = PostgresStore::connect(&url)
                    .await
                    .expect("open PostgreSQL store again");
                EventLog::new(Arc::new(store))
            })
        }),
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
            let _ = scratch.drop_database().await;
        }))))),
    }
}
