//! Which workers of the embedded (SQLite) queue are alive, told without writing anything.
//!
//! apalis-sqlite learns it from heartbeats: every worker rewrites its row every few seconds, so an
//! idle installation wrote about 12 MB an hour into `jobs.db` to say that nothing happened. That
//! queue lives on one machine, so each worker holds instead an exclusive `flock` on
//! `<jobs.db>.workers/<worker name>`, which the system lets go when the worker's process dies. A
//! sweep in every worker process (reading a folder when all is well) gives the jobs of a worker
//! whose file is no longer locked back to the queue, then removes the file. apalis's heartbeat
//! stays, rare, for a worker that has no file (one that could not make it).

use sqlx::SqlitePool;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The lock files of one SQLite queue's workers, and the queue they take jobs from.
#[derive(Clone)]
pub struct Liveness {
    dir: PathBuf,
    pool: SqlitePool,
}

/// Held as long as its worker runs: it travels in the worker's data. Closing it (the worker
/// dropped after a failure, or its process gone) is what tells the sweep.
#[derive(Clone)]
pub struct WorkerLock {
    _file: Arc<File>,
}

impl Liveness {
    /// The folder beside `jobs` (created here, so that a worker's lock can only fail as the
    /// queue's own writes would).
    pub fn beside(jobs: &Path, pool: SqlitePool) -> std::io::Result<Self> {
        let mut dir = jobs.as_os_str().to_owned();
        dir.push(".workers");
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, pool })
    }

    /// Locks the file of `worker` (a name never used before). It is made and locked under a
    /// hidden name, then renamed: the sweep never sees it unlocked.
    pub fn hold(&self, worker: &str) -> std::io::Result<WorkerLock> {
        let hidden = self.dir.join(format!(".{worker}"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&hidden)?;
        file.lock()?;
        std::fs::rename(&hidden, self.dir.join(worker))?;
        Ok(WorkerLock {
            _file: Arc::new(file),
        })
    }

    /// Gives the jobs of every worker that is gone back to the queue; how many.
    pub async fn sweep(&self) -> Result<u64, SweepError> {
        let mut given_back = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(worker) = name.to_str().filter(|n| !n.starts_with('.')) else {
                continue;
            };
            let file = match File::open(entry.path()) {
                Ok(file) => file,
                // Another process's sweep removed it just now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => return Err(e.into()),
            }
            // Holding its lock now, this sweep alone decides for that worker.
            given_back += sqlx::query(
                "UPDATE Jobs SET status = 'Pending', done_at = NULL, lock_by = NULL, \
                 lock_at = NULL, attempts = attempts + 1, \
                 last_result = '{\"Err\": \"Re-enqueued: its worker stopped.\"}' \
                 WHERE lock_by = ?1 AND status IN ('Running', 'Queued')",
            )
            .bind(worker)
            .execute(&self.pool)
            .await?
            .rows_affected();
            std::fs::remove_file(entry.path())?;
        }
        Ok(given_back)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("the workers' lock files cannot be read: {0}")]
    Files(#[from] std::io::Error),
    #[error("the job queue cannot be written: {0}")]
    Queue(#[from] sqlx::Error),
}
