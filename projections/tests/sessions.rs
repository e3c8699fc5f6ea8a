//! The staff's sessions in the read models' database, on SQLite and on PostgreSQL: found until
//! they end by time, by idleness, by signing out or with their account.

use sportello_engine::app::staff::{Role, StaffMember};
use sportello_engine::store::postgres::with_scratch_database;
use sportello_projections::Views;
use sportello_projections::sessions::Session;
use uuid::Uuid;

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn session(user: Uuid, idle_until: i64) -> Session {
    Session {
        member: StaffMember {
            token_id: user,
            name: "Mario Rossi".into(),
            role: Role::Operator,
            comune: "073015".into(),
        },
        csrf: "csrf-token".into(),
        idle_until,
    }
}

async fn sessions_end_as_they_should(views: Views) {
    let (mario, anna) = (Uuid::new_v4(), Uuid::new_v4());
    let hour = 3_600_000;
    views
        .open_session("live", &session(mario, now() + hour), now() + 10 * hour)
        .await
        .unwrap();
    let found = views
        .session("live")
        .await
        .unwrap()
        .expect("a live session");
    assert_eq!(found.member.token_id, mario);
    assert_eq!(found.member.role, Role::Operator);
    assert_eq!(found.csrf, "csrf-token");
    assert!(views.session("unknown").await.unwrap().is_none());

    // Idle too long, or past its whole lifetime however active: gone.
    views
        .open_session("idle", &session(mario, now() - 1), now() + hour)
        .await
        .unwrap();
    views
        .open_session("old", &session(mario, now() + hour), now() - 1)
        .await
        .unwrap();
    assert!(views.session("idle").await.unwrap().is_none());
    assert!(views.session("old").await.unwrap().is_none());

    // Activity keeps one open; signing out ends it.
    views
        .open_session("active", &session(anna, now() + 1000), now() + hour)
        .await
        .unwrap();
    views.extend_session("active", now() + hour).await.unwrap();
    assert!(views.session("active").await.unwrap().unwrap().idle_until > now() + 1000);
    views.close_session("active").await.unwrap();
    assert!(views.session("active").await.unwrap().is_none());

    // A disabled account's sessions all end; another's stay.
    views
        .open_session("anna", &session(anna, now() + hour), now() + hour)
        .await
        .unwrap();
    views
        .open_session("live-2", &session(mario, now() + hour), now() + hour)
        .await
        .unwrap();
    views.close_sessions_of(mario).await.unwrap();
    assert!(views.session("live").await.unwrap().is_none());
    assert!(views.session("live-2").await.unwrap().is_none());
    assert!(views.session("anna").await.unwrap().is_some());
}

#[tokio::test]
async fn sessions_end_by_time_idleness_sign_out_and_account_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("urp.db").display());
    sessions_end_as_they_should(Views::open(&url).await.unwrap()).await;
}

#[tokio::test]
async fn sessions_end_by_time_idleness_sign_out_and_account_on_postgresql() {
    with_scratch_database("sportello_sessions", |url| async move {
        sessions_end_as_they_should(Views::open(&url).await.unwrap()).await;
    })
    .await;
}
