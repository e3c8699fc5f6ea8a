//! The staff's sessions on the pages, kept in the read models' database: every server of a
//! deployment sees the same sessions, and a session is ended for good by deleting its row.
//! Only a hash of the cookie's secret is stored, so the table cannot be used to sign in.

use crate::views::{Views, ViewsError, blocking, now_ms, reading};
use rusqlite::OptionalExtension;
use sportello_engine::app::staff::{Role, StaffMember};
use sqlx::Row;
use uuid::Uuid;

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub member: StaffMember,
    /// The token every form of the session carries.
    pub csrf: String,
    /// Unix milliseconds until which it stays open without activity.
    pub idle_until: i64,
}

const COLUMNS: &str = "user_id, name, role, comune, csrf, idle_until";

fn session(
    user_id: String,
    name: String,
    role: String,
    comune: String,
    csrf: String,
    idle_until: i64,
) -> Option<Session> {
    Some(Session {
        member: StaffMember {
            token_id: user_id.parse::<Uuid>().ok()?,
            name,
            role: Role::parse(&role)?,
            comune,
        },
        csrf,
        idle_until,
    })
}

impl Views {
    /// Records a new session (and forgets those that ended: signing in is rare enough to pay
    /// for it).
    pub async fn open_session(
        &self,
        id_hash: &str,
        session: &Session,
        expires_at: i64,
    ) -> Result<(), ViewsError> {
        let purge = "DELETE FROM staff_sessions WHERE expires_at < $1 OR idle_until < $1";
        let insert = "INSERT INTO staff_sessions \
                      (id_hash, user_id, name, role, comune, csrf, expires_at, idle_until) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let m = &session.member;
        let values = (
            id_hash.to_owned(),
            m.token_id.to_string(),
            m.name.clone(),
            m.role.as_str().to_owned(),
            m.comune.clone(),
            session.csrf.clone(),
            expires_at,
            session.idle_until,
        );
        match self {
            Views::Sqlite(db, _) => {
                blocking(db, move |c| {
                    let tx = c.transaction()?;
                    tx.execute(purge, [now_ms()])?;
                    tx.execute(
                        insert,
                        rusqlite::params![
                            values.0, values.1, values.2, values.3, values.4, values.5, values.6,
                            values.7
                        ],
                    )?;
                    tx.commit()
                })
                .await
            }
            Views::Postgres(pool, _) => {
                let mut tx = pool.begin().await?;
                sqlx::query(purge).bind(now_ms()).execute(&mut *tx).await?;
                sqlx::query(insert)
                    .bind(values.0)
                    .bind(values.1)
                    .bind(values.2)
                    .bind(values.3)
                    .bind(values.4)
                    .bind(values.5)
                    .bind(values.6)
                    .bind(values.7)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// The session whose secret hashes to `id_hash`, if it has not ended.
    pub async fn session(&self, id_hash: &str) -> Result<Option<Session>, ViewsError> {
        let select = format!(
            "SELECT {COLUMNS} FROM staff_sessions \
             WHERE id_hash = $1 AND expires_at > $2 AND idle_until > $2"
        );
        let id_hash = id_hash.to_owned();
        let now = now_ms();
        match self {
            Views::Sqlite(db, _) => {
                reading(db, move |c| {
                    c.query_row(&select, rusqlite::params![id_hash, now], |r| {
                        Ok(session(
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    })
                    .optional()
                    .map(Option::flatten)
                })
                .await
            }
            Views::Postgres(pool, _) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(select))
                    .bind(id_hash)
                    .bind(now)
                    .fetch_optional(pool)
                    .await?;
                Ok(match row {
                    Some(r) => session(
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                    ),
                    None => None,
                })
            }
        }
    }

    /// Keeps an active session open until `idle_until`.
    pub async fn extend_session(&self, id_hash: &str, idle_until: i64) -> Result<(), ViewsError> {
        // SQLite numbers `$n` parameters in the order they first appear: `$1` comes first.
        let sql = "UPDATE staff_sessions SET idle_until = $1 WHERE id_hash = $2";
        let id_hash = id_hash.to_owned();
        match self {
            Views::Sqlite(db, _) => {
                blocking(db, move |c| {
                    c.execute(sql, rusqlite::params![idle_until, id_hash])
                })
                .await?;
            }
            Views::Postgres(pool, _) => {
                sqlx::query(sql)
                    .bind(idle_until)
                    .bind(id_hash)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Ends a session (signing out).
    pub async fn close_session(&self, id_hash: &str) -> Result<(), ViewsError> {
        self.delete_where("id_hash", id_hash).await
    }

    /// Ends every session of a user (a disabled account, a changed password).
    pub async fn close_sessions_of(&self, user_id: Uuid) -> Result<(), ViewsError> {
        self.delete_where("user_id", &user_id.to_string()).await
    }

    async fn delete_where(&self, column: &'static str, value: &str) -> Result<(), ViewsError> {
        let sql = format!("DELETE FROM staff_sessions WHERE {column} = $1");
        let value = value.to_owned();
        match self {
            Views::Sqlite(db, _) => {
                blocking(db, move |c| c.execute(&sql, [value])).await?;
            }
            Views::Postgres(pool, _) => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(value)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}
