//! The inbox projection on SQLite and PostgreSQL: rows, filters, exactly-once application,
//! rebuild equal to the incremental build, and a single runner per projection; and the retention
//! read model's candidates on the same history.

use chrono::{NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use sportello_config::Settings;
use sportello_engine::app::{Actor, CitizenInput, NewContact, Urp};
use sportello_engine::domain::case::{CaseCommand, CaseKind, Channel, Outcome};
use sportello_engine::store::postgres::{PostgresStore, with_scratch_database};
use sportello_engine::store::sqlite::SqliteStore;
use sportello_engine::vault::{KeyStore, MasterKey, PostgresKeyStore, SqliteKeyStore, Vault};
use sportello_engine::{EventLog, EventStore, RecordedEvent, StoreError};
use sportello_projections::inbox::{Inbox, InboxQuery, query};
use sportello_projections::runner::{acquire, catch_up, rebuild};
use sportello_projections::{Filter, Projection, RunnerGuard, Views, ViewsError, read_model};
use std::sync::Arc;
use uuid::Uuid;

struct Backend {
    url: String,
    log: EventLog,
    urp: Urp,
    views: Views,
}

async fn sqlite(dir: &std::path::Path) -> Backend {
    let db = dir.join("urp.db");
    let url = format!("sqlite://{}", db.display());
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&db).await.unwrap());
    let keys: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(&db).unwrap());
    backend(url, store, keys, dir).await
}

async fn postgres(url: &str, dir: &std::path::Path) -> Backend {
    let url = url.to_owned();
    let store = PostgresStore::connect(&url).await.unwrap();
    let keys: Arc<dyn KeyStore> = Arc::new(
        PostgresKeyStore::connect(store.pool().clone())
            .await
            .unwrap(),
    );
    backend(url, Arc::new(store), keys, dir).await
}

async fn backend(
    url: String,
    store: Arc<dyn EventStore>,
    keys: Arc<dyn KeyStore>,
    dir: &std::path::Path,
) -> Backend {
    let log = EventLog::new(store);
    let settings = Settings::load_from(dir, None, Vec::new()).unwrap();
    let urp = Urp::new(
        log.clone(),
        Vault::new(&MasterKey::generate(), keys),
        &settings,
    );
    let views = Views::open(&url).await.unwrap();
    Backend {
        url,
        log,
        urp,
        views,
    }
}

async fn on_both<F, Fut>(case: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    case(sqlite(dir.path()).await).await;

    let case = &case;
    with_scratch_database("sportello_views", |url| async move {
        let pg_dir = tempfile::tempdir().unwrap();
        case(postgres(&url, pg_dir.path()).await).await;
    })
    .await;
}

fn day(d: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, 9, 0, 0).unwrap()
}

/// Four cases: one open in Massafra, one transferred to Statte, one suspended, one closed.
async fn history(urp: &Urp) -> Vec<Uuid> {
    let staff = Actor {
        name: "staff:test".into(),
        ..Actor::default()
    };
    let mut ids = Vec::new();
    for (comune, received) in [("073015", 2), ("073015", 3), ("073004", 4), ("073029", 5)] {
        let opened = urp
            .open_case(
                &staff,
                NewContact {
                    case_id: Uuid::now_v7(),
                    comune: comune.into(),
                    kind: CaseKind::Segnalazione,
                    channel: Channel::Sportello,
                    service: None,
                    subject: "Lampione spento".into(),
                    description: None,
                    citizen: Some(CitizenInput {
                        name: Some("Rosa Greco".into()),
                        ..CitizenInput::default()
                    }),
                    received_at: day(received),
                    privacy_consent: true,
                },
            )
            .await
            .unwrap();
        ids.push(opened.case_id);
    }
    let act = |id: Uuid, command: CaseCommand| {
        let staff = staff.clone();
        async move { urp.act(&staff, id, Uuid::now_v7(), command).await.unwrap() }
    };
    for id in &ids {
        act(
            *id,
            CaseCommand::TakeInCharge {
                office: "URP".into(),
                at: day(6),
                expected_by: NaiveDate::MIN,
            },
        )
        .await;
    }
    act(
        ids[1],
        CaseCommand::Transfer {
            to_comune: "073029".into(),
            reason: "Competenza".into(),
            at: day(7),
        },
    )
    .await;
    act(
        ids[2],
        CaseCommand::RequestDocuments {
            documents: vec!["foto".into()],
            at: day(7),
        },
    )
    .await;
    act(
        ids[3],
        CaseCommand::Answer {
            text: "Riparato".into(),
            at: day(8),
        },
    )
    .await;
    act(
        ids[3],
        CaseCommand::Close {
            outcome: Outcome::Accolta,
            at: day(9),
        },
    )
    .await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_shows_every_case_where_it_belongs_now() {
    on_both(|b| async move {
        let ids = history(&b.urp).await;
        let guard = acquire(&b.views, &b.url, read_model::<Inbox>(), "test-runner")
            .await
            .unwrap();
        let checkpoint = catch_up(&b.log, &b.views, read_model::<Inbox>(), &guard, |_, _| {})
            .await
            .unwrap();
        assert_eq!(checkpoint, b.log.head().await.unwrap());

        let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let all = query(&b.views, &InboxQuery::default(), today)
            .await
            .unwrap();
        assert_eq!(all.total, 4);
        let dues: Vec<&str> = all.entries.iter().map(|e| e.row.due_on.as_str()).collect();
        assert!(
            dues.windows(2).all(|w| w[0] <= w[1]),
            "sorted by due date: {dues:?}"
        );

        let statte = query(
            &b.views,
            &InboxQuery {
                comune: Some("073029".into()),
                ..InboxQuery::default()
            },
            today,
        )
        .await
        .unwrap();
        assert_eq!(
            statte.total, 2,
            "the transferred case belongs to Statte now"
        );
        let moved = statte
            .entries
            .iter()
            .find(|e| e.row.id == ids[1].to_string())
            .unwrap();
        assert_eq!(
            (
                moved.row.transferred_from.as_deref(),
                moved.row.code.as_str()
            ),
            (Some("073015"), "MAS-2026-000002")
        );
        assert_eq!(
            (moved.row.status.as_str(), moved.row.office.as_deref()),
            ("received", None)
        );

        let closed = query(
            &b.views,
            &InboxQuery {
                status: Some("closed".into()),
                ..InboxQuery::default()
            },
            today,
        )
        .await
        .unwrap();
        assert_eq!(closed.entries[0].row.outcome.as_deref(), Some("accolta"));
        assert_eq!(closed.entries[0].days_left, None);

        let suspended = query(
            &b.views,
            &InboxQuery {
                status: Some("suspended".into()),
                ..InboxQuery::default()
            },
            today,
        )
        .await
        .unwrap();
        assert_eq!(suspended.entries[0].row.id, ids[2].to_string());
        // 4 March + 30 days = 3 April: 14 days left on 20 March.
        assert_eq!(suspended.entries[0].days_left, Some(14));

        let late = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let overdue = query(
            &b.views,
            &InboxQuery {
                overdue: Some(true),
                ..InboxQuery::default()
            },
            late,
        )
        .await
        .unwrap();
        assert_eq!(overdue.total, 3, "every open case is late in May");
        assert!(overdue.entries.iter().all(|e| e.overdue));
        let page = query(
            &b.views,
            &InboxQuery {
                limit: 2,
                offset: 2,
                ..InboxQuery::default()
            },
            today,
        )
        .await
        .unwrap();
        assert_eq!((page.total, page.entries.len()), (4, 2));
        let march_5 = query(
            &b.views,
            &InboxQuery {
                received_from: NaiveDate::from_ymd_opt(2026, 3, 5),
                ..InboxQuery::default()
            },
            today,
        )
        .await
        .unwrap();
        assert_eq!(march_5.total, 1);
    })
    .await;
}

/// A range of days is read day by day and merged (up to `MERGED_DAYS`), or as one range and
/// sorted: either way the same cases as the whole inbox has received on those days, in its order,
/// page after page by offset and by cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_days_pages_like_the_whole_inbox_narrowed_to_those_days() {
    on_both(|b| async move {
        // Every kind (their terms differ, so due dates cross the days received), around
        // midnight (UTC) too, and a neighbour's cases on the same days.
        for i in 0..36u32 {
            let comune = if i % 9 == 8 { "073029" } else { "073015" };
            let (hour, minute) = [(0, 0), (23, 59), (9, 30)][(i % 3) as usize];
            let contact = NewContact {
                case_id: Uuid::now_v7(),
                comune: comune.into(),
                kind: CaseKind::ALL[i as usize % CaseKind::ALL.len()],
                channel: Channel::Email,
                service: None,
                subject: format!("Richiesta {i}"),
                description: None,
                citizen: None,
                received_at: Utc
                    .with_ymd_and_hms(2026, 3, 1 + i % 12, hour, minute, 0)
                    .unwrap(),
                privacy_consent: true,
            };
            b.urp.open_case(&test_staff(), contact).await.unwrap();
        }
        let _guard = inbox_caught_up(&b).await;

        let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let massafra = InboxQuery {
            comune: Some("073015".into()),
            limit: 1000,
            ..InboxQuery::default()
        };
        let all = query(&b.views, &massafra, today).await.unwrap().entries;
        assert_eq!(all.len(), 32);
        let date = |month, day| NaiveDate::from_ymd_opt(2026, month, day);
        for (from, until) in [
            (date(3, 3), date(3, 4)),
            (date(3, 2), date(3, 9)),
            (date(3, 1), date(3, 13)),
            (date(3, 5), date(3, 5)),
            (date(3, 12), date(4, 30)),
            // Longer than `MERGED_DAYS`: one range, sorted.
            (date(1, 1), date(6, 1)),
        ] {
            let in_range = |e: &&sportello_projections::inbox::InboxEntry| {
                let day = &e.row.received_at[..10];
                day >= from.unwrap().to_string().as_str()
                    && day < until.unwrap().to_string().as_str()
            };
            let expected: Vec<&str> = all
                .iter()
                .filter(in_range)
                .map(|e| e.row.code.as_str())
                .collect();
            let range = InboxQuery {
                received_from: from,
                received_until: until,
                limit: 3,
                ..massafra.clone()
            };
            let (mut by_offset, mut by_cursor) = (Vec::new(), Vec::new());
            loop {
                let q = InboxQuery {
                    offset: by_offset.len() as u64,
                    ..range.clone()
                };
                let page = query(&b.views, &q, today).await.unwrap();
                assert_eq!(page.total, expected.len() as u64, "{from:?}..{until:?}");
                if page.entries.is_empty() {
                    break;
                }
                by_offset.extend(page.entries.into_iter().map(|e| e.row.code));
            }
            loop {
                let q = InboxQuery {
                    after: by_cursor.last().cloned(),
                    ..range.clone()
                };
                let page = query(&b.views, &q, today).await.unwrap().entries;
                if page.is_empty() {
                    break;
                }
                by_cursor.extend(page.into_iter().map(|e| (e.row.due_on, e.row.code)));
            }
            assert_eq!(by_offset, expected, "{from:?}..{until:?} by offset");
            let by_cursor: Vec<&str> = by_cursor.iter().map(|(_, code)| code.as_str()).collect();
            assert_eq!(by_cursor, expected, "{from:?}..{until:?} by cursor");
        }
    })
    .await;
}

/// The inbox's runner guard, the inbox caught up with the log.
async fn inbox_caught_up(b: &Backend) -> RunnerGuard {
    let guard = acquire(&b.views, &b.url, read_model::<Inbox>(), "test")
        .await
        .unwrap();
    catch_up(&b.log, &b.views, read_model::<Inbox>(), &guard, |_, _| {})
        .await
        .unwrap();
    guard
}

/// The inbox's runner guard, then [`history`] written and its case events as the inbox reads them.
async fn inbox_history(b: &Backend) -> (RunnerGuard, Vec<Uuid>, Vec<RecordedEvent>) {
    let guard = acquire(&b.views, &b.url, read_model::<Inbox>(), "test-runner")
        .await
        .unwrap();
    let ids = history(&b.urp).await;
    let events = futures::TryStreamExt::try_collect(b.log.read_all(Inbox::filter()))
        .await
        .unwrap();
    (guard, ids, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_applied_once_and_a_rebuild_equals_the_incremental_build() {
    on_both(|b| async move {
        let (guard, ids, events) = inbox_history(&b).await;
        // Incremental: follow the history as it is written, batch by batch.
        for chunk in events.chunks(3) {
            b.views
                .apply_batch::<Inbox>(&guard, chunk.to_vec())
                .await
                .unwrap();
        }
        // A batch replayed after a crash changes nothing.
        let replayed = b
            .views
            .apply_batch::<Inbox>(&guard, events.clone())
            .await
            .unwrap();
        assert_eq!(replayed, events.last().unwrap().position);
        let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let incremental = query(&b.views, &InboxQuery::default(), today)
            .await
            .unwrap();
        assert_eq!(incremental.total, ids.len() as u64);

        let mut seen = Vec::new();
        rebuild(
            &b.log,
            &b.views,
            read_model::<Inbox>(),
            &guard,
            |checkpoint, head| seen.push((checkpoint, head)),
        )
        .await
        .unwrap();
        assert_eq!(
            seen.last().map(|(c, _)| *c),
            Some(events.last().unwrap().position)
        );
        let rebuilt = query(&b.views, &InboxQuery::default(), today)
            .await
            .unwrap();
        let rows = |p: &sportello_projections::inbox::InboxPage| {
            p.entries.iter().map(|e| e.row.clone()).collect::<Vec<_>>()
        };
        assert_eq!(rows(&rebuilt), rows(&incremental));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_decoded_ahead_are_applied_in_order_and_a_failed_read_stops_after_the_last_applied()
{
    on_both(|b| async move {
        let consumer = read_model::<Inbox>();
        let (guard, ids, events) = inbox_history(&b).await;
        let (first, rest) = events.split_at(events.len() / 2);
        // The first half in batches of two, then the log fails, then the rest.
        let mut batches: Vec<Result<Vec<_>, StoreError>> =
            first.chunks(2).map(|c| Ok(c.to_vec())).collect();
        batches.push(Err(StoreError::Unavailable {
            backend: "test",
            detail: "the disk went away".into(),
        }));
        batches.push(Ok(rest.to_vec()));
        let mut seen = Vec::new();
        let failed = consumer
            .apply_all(
                &b.views,
                &guard,
                futures::stream::iter(batches).boxed(),
                &mut |checkpoint| seen.push(checkpoint),
            )
            .await;
        assert!(
            matches!(
                failed,
                Err(ViewsError::Store(StoreError::Unavailable { .. }))
            ),
            "{failed:?}"
        );
        let expected: Vec<u64> = first
            .chunks(2)
            .map(|c| c.last().unwrap().position)
            .collect();
        assert_eq!(seen, expected, "each batch applied once, in order");
        let last = first.last().unwrap().position;
        assert_eq!(b.views.checkpoint(consumer.id()).await.unwrap(), last);

        // Resumed from the checkpoint (the whole log again: what was applied is skipped), it
        // ends where a build in one go does.
        let all =
            futures::stream::iter(events.chunks(3).map(|c| Ok(c.to_vec())).collect::<Vec<_>>());
        let end = consumer
            .apply_all(&b.views, &guard, all.boxed(), &mut |_| {})
            .await
            .unwrap();
        assert_eq!(end, Some(events.last().unwrap().position));
        let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let resumed = query(&b.views, &InboxQuery::default(), today)
            .await
            .unwrap();
        rebuild(&b.log, &b.views, consumer, &guard, |_, _| {})
            .await
            .unwrap();
        let rebuilt = query(&b.views, &InboxQuery::default(), today)
            .await
            .unwrap();
        assert_eq!(resumed.total, ids.len() as u64);
        assert_eq!(
            serde_json::to_value(&resumed.entries).unwrap(),
            serde_json::to_value(&rebuilt.entries).unwrap()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_runner_waits_while_the_first_holds_the_projection() {
    on_both(|b| async move {
        let first = acquire(&b.views, &b.url, read_model::<Inbox>(), "runner-a")
            .await
            .unwrap();
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(1500),
            acquire(&b.views, &b.url, read_model::<Inbox>(), "runner-b"),
        )
        .await;
        assert!(second.is_err(), "the second runner must wait");
        match &first {
            RunnerGuard::Lease { .. } => {
                // On SQLite the guard is a locked file beside the read models: nothing else can
                // make one (so nothing else can write under the runner's name).
                assert!(
                    std::path::Path::new(&format!(
                        "{}.locks/{}",
                        sportello_projections::views_path_of(b.url.trim_start_matches("sqlite://")),
                        Inbox::table()
                    ))
                    .exists()
                );
                assert!(
                    b.views
                        .try_acquire(&b.url, Inbox::id(), "runner-b")
                        .await
                        .unwrap()
                        .is_none()
                );
                assert!(b.views.renew(&first).await.unwrap(), "the holder renews");
                b.views.release(&first).await.unwrap();
                let taken = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    acquire(&b.views, &b.url, read_model::<Inbox>(), "runner-b"),
                )
                .await;
                assert!(taken.is_ok(), "a released lease passes on at once");
            }
            RunnerGuard::Advisory { .. } => {
                drop(first);
                let taken = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    acquire(&b.views, &b.url, read_model::<Inbox>(), "runner-b"),
                )
                .await;
                assert!(
                    taken.is_ok(),
                    "the lock passes on when the first runner goes away"
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn satisfaction_statistics_group_ratings_and_give_the_participation_rate() {
    use sportello_engine::domain::feedback::{GiveFeedback, Scale, Target, TargetType};
    use sportello_projections::satisfaction::{
        Closures, Ratings, SatisfactionQuery, query as satisfaction,
    };
    on_both(|b| async move {
        let ids = history(&b.urp).await; // ids[3] is closed in Statte in March
        let staff = Actor {
            name: "staff:test".into(),
            ..Actor::default()
        };
        // Close two more cases in Massafra (one answered, one as a duplicate).
        b.urp
            .act(
                &staff,
                ids[0],
                Uuid::now_v7(),
                CaseCommand::Answer {
                    text: "ok".into(),
                    at: day(10),
                },
            )
            .await
            .unwrap();
        b.urp
            .act(
                &staff,
                ids[0],
                Uuid::now_v7(),
                CaseCommand::Close {
                    outcome: Outcome::Accolta,
                    at: day(11),
                },
            )
            .await
            .unwrap();
        let citizen = Actor {
            name: "citizen".into(),
            ..Actor::default()
        };
        let rate = |target: Target, comune: &str, scale: Scale, score: u8, reasons: &[&str]| {
            GiveFeedback {
                target,
                comune: comune.into(),
                channel: Channel::Web,
                scale,
                score,
                reasons: reasons.iter().map(|r| r.to_string()).collect(),
                comment: None,
                given_at: day(12),
                case_closed: None,
                case_kind: None,
            }
        };
        let case = |id: Uuid| Target {
            target_type: TargetType::Case,
            id: id.to_string(),
        };
        let service = || Target {
            target_type: TargetType::Service,
            id: "passo-carrabile".into(),
        };
        b.urp
            .give_feedback(
                &citizen,
                rate(
                    case(ids[3]),
                    "073029",
                    Scale::Stars,
                    5,
                    &["indicazioni_chiare"],
                ),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        b.urp
            .give_feedback(
                &citizen,
                rate(
                    case(ids[0]),
                    "073015",
                    Scale::Stars,
                    2,
                    &["problemi_tecnici"],
                ),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        for (score, reasons) in [
            (3u8, vec![]),
            (1, vec!["tempi_di_attesa"]),
            (1, vec!["tempi_di_attesa", "cortesia"]),
        ] {
            b.urp
                .give_feedback(
                    &citizen,
                    rate(service(), "073015", Scale::Faces, score, &reasons),
                    None,
                    None,
                    None,
                )
                .await
                .unwrap();
        }
        let ratings = acquire(&b.views, &b.url, read_model::<Ratings>(), "test")
            .await
            .unwrap();
        catch_up(
            &b.log,
            &b.views,
            read_model::<Ratings>(),
            &ratings,
            |_, _| {},
        )
        .await
        .unwrap();
        let closures = acquire(&b.views, &b.url, read_model::<Closures>(), "test")
            .await
            .unwrap();
        catch_up(
            &b.log,
            &b.views,
            read_model::<Closures>(),
            &closures,
            |_, _| {},
        )
        .await
        .unwrap();

        let by_comune = satisfaction(
            &b.views,
            &SatisfactionQuery {
                group_by: vec!["comune".into()],
                ..SatisfactionQuery::default()
            },
        )
        .await
        .unwrap();
        let row = |comune: &str, scale: &str| {
            by_comune
                .rows
                .iter()
                .find(|r| r.keys["comune"] == comune && r.keys["scale"] == scale)
                .cloned()
                .unwrap()
        };
        let faces = row("073015", "faces");
        assert_eq!(faces.count, 3);
        assert_eq!(
            faces.distribution.values().copied().collect::<Vec<_>>(),
            [2, 0, 1]
        );
        assert!((faces.share_positive - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(faces.mean, None, "no mean on the faces scale");
        assert_eq!(faces.reasons["tempi_di_attesa"], 2);
        let stars = row("073015", "stars");
        assert_eq!(
            (stars.count, stars.mean, stars.share_positive),
            (1, Some(2.0), 0.0)
        );
        // One rating of a closed case out of one case closed in Massafra in March.
        assert_eq!(stars.participation_rate, Some(1.0));
        let statte = row("073029", "stars");
        assert_eq!(
            (statte.count, statte.mean, statte.participation_rate),
            (1, Some(5.0), Some(1.0))
        );

        let by_target = satisfaction(
            &b.views,
            &SatisfactionQuery {
                group_by: vec!["target_type".into(), "target".into()],
                from: Some("2026-03".into()),
                to: Some("2026-03".into()),
                ..SatisfactionQuery::default()
            },
        )
        .await
        .unwrap();
        let kinds: Vec<(&str, &str)> = by_target
            .rows
            .iter()
            .map(|r| (r.keys["target_type"].as_str(), r.keys["target"].as_str()))
            .collect();
        assert!(kinds.contains(&("case", "segnalazione")), "{kinds:?}");
        assert!(kinds.contains(&("service", "passo-carrabile")), "{kinds:?}");
        assert!(
            by_target
                .rows
                .iter()
                .all(|r| r.participation_rate.is_none())
        );
        let april = satisfaction(
            &b.views,
            &SatisfactionQuery {
                from: Some("2026-04".into()),
                ..SatisfactionQuery::default()
            },
        )
        .await
        .unwrap();
        assert!(april.rows.is_empty());
        assert!(
            satisfaction(
                &b.views,
                &SatisfactionQuery {
                    group_by: vec!["colour".into()],
                    ..SatisfactionQuery::default()
                }
            )
            .await
            .is_err()
        );
    })
    .await;
}

/// The service levels of one comune in a report grouped by comune (and more).
fn level_of(
    report: &sportello_projections::service_levels::ServiceLevelReport,
    comune: &str,
) -> sportello_projections::service_levels::ServiceLevelRow {
    report
        .rows
        .iter()
        .find(|r| r.keys["comune"] == comune)
        .cloned()
        .unwrap_or_else(|| panic!("no row of {comune} in {:?}", report.rows))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_levels_count_opened_closed_within_term_days_to_answer_and_overdue() {
    use sportello_projections::service_levels::{ServiceLevelQuery, query as levels};
    on_both(|b| async move {
        history(&b.urp).await;
        let _guard = inbox_caught_up(&b).await;
        let may = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let report = levels(
            &b.views,
            &ServiceLevelQuery {
                group_by: vec!["comune".into()],
                ..ServiceLevelQuery::default()
            },
            may,
        )
        .await
        .unwrap();
        let row = |comune: &str| level_of(&report, comune);
        let statte = row("073029");
        // Its own case (answered in 3 days, closed in term) and the one transferred to it.
        assert_eq!(
            (statte.opened, statte.closed, statte.closed_within_term),
            (2, 1, 1)
        );
        assert_eq!(
            (
                statte.share_within_term,
                statte.median_days_to_answer,
                statte.p90_days_to_answer
            ),
            (Some(1.0), Some(3.0), Some(3.0))
        );
        assert_eq!(statte.currently_overdue, 1);
        assert_eq!(
            (
                row("073015").opened,
                row("073015").currently_overdue,
                row("073015").share_within_term
            ),
            (1, 1, None)
        );
        assert_eq!(
            row("073004").currently_overdue,
            1,
            "a suspended case still counts when late"
        );
        let april = levels(
            &b.views,
            &ServiceLevelQuery {
                from: Some("2026-04".into()),
                group_by: vec!["month".into()],
                ..ServiceLevelQuery::default()
            },
            may,
        )
        .await
        .unwrap();
        assert!(april.rows.is_empty(), "nothing happened after March");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_level_counters_follow_every_change_of_a_case_and_equal_a_rebuild() {
    use sportello_projections::service_levels::{ServiceLevelQuery, query as levels};
    on_both(|b| async move {
        let ids = history(&b.urp).await;
        let staff = Actor {
            name: "staff:test".into(),
            ..Actor::default()
        };
        // Statte's case (answered on the 8th, closed on the 9th) is reopened, answered again on
        // the 12th and closed past its term; Massafra's is answered in term.
        for (id, command) in [
            (
                ids[3],
                CaseCommand::Reopen {
                    reason: "Il lampione è di nuovo spento".into(),
                    at: day(10),
                },
            ),
            (
                ids[3],
                CaseCommand::Answer {
                    text: "Sostituito".into(),
                    at: day(12),
                },
            ),
            (
                ids[0],
                CaseCommand::Answer {
                    text: "Fatto".into(),
                    at: day(9),
                },
            ),
        ] {
            b.urp
                .act(&staff, id, Uuid::now_v7(), command)
                .await
                .unwrap();
        }
        let guard = acquire(&b.views, &b.url, read_model::<Inbox>(), "test")
            .await
            .unwrap();
        // One event a batch: the counters go through every state of every case.
        let events: Vec<_> =
            futures::TryStreamExt::try_collect::<Vec<_>>(b.log.read_all(Inbox::filter()))
                .await
                .unwrap();
        for event in &events {
            b.views
                .apply_batch::<Inbox>(&guard, vec![event.clone()])
                .await
                .unwrap();
        }
        let q = ServiceLevelQuery {
            group_by: vec!["comune".into(), "kind".into(), "month".into()],
            ..ServiceLevelQuery::default()
        };
        let may = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let incremental = levels(&b.views, &q, may).await.unwrap();
        let row = |comune: &str| level_of(&incremental, comune);
        let statte = row("073029");
        assert_eq!(
            (statte.opened, statte.closed, statte.closed_within_term),
            (2, 0, 0),
            "reopened: no longer closed"
        );
        assert_eq!(
            (statte.median_days_to_answer, statte.currently_overdue),
            (Some(7.0), 1),
            "the second answer counts, from the day received; answered is not overdue"
        );
        assert_eq!(row("073015").median_days_to_answer, Some(7.0));

        rebuild(&b.log, &b.views, read_model::<Inbox>(), &guard, |_, _| {})
            .await
            .unwrap();
        let rebuilt = levels(&b.views, &q, may).await.unwrap();
        assert_eq!(rebuilt.rows, incremental.rows);
    })
    .await;
}

/// Version 1 of the inbox, as a previous binary would still run it during a deployment.
struct InboxV1;

impl Projection for InboxV1 {
    type Row = <Inbox as Projection>::Row;
    const NAME: &'static str = "inbox";
    const VERSION: u32 = 1;

    fn columns() -> &'static [sportello_projections::Column] {
        Inbox::columns()
    }
    fn filter() -> sportello_engine::ReadAll {
        Inbox::filter()
    }
    type Event = <Inbox as Projection>::Event;
    fn decode(event: &sportello_engine::RecordedEvent) -> Option<(String, Self::Event)> {
        Inbox::decode(event)
    }
    fn apply(row: Option<Self::Row>, key: &str, decoded: Self::Event) -> Option<Self::Row> {
        Inbox::apply(row, key, decoded)
    }
    fn to_values(row: &Self::Row) -> Vec<sportello_projections::SqlValue> {
        Inbox::to_values(row)
    }
    fn from_values(values: Vec<sportello_projections::SqlValue>) -> Option<Self::Row> {
        Inbox::from_values(values)
    }
}

#[tokio::test]
async fn a_new_version_is_built_beside_the_old_one_which_is_retired_once_its_runner_lets_go() {
    on_both(|b| async move {
        history(&b.urp).await;
        let every = |views: &Views| {
            let views = views.clone();
            async move { views.select::<InboxV1>(&Filter::new(), "id", 1000, 0).await }
        };
        // The old binary serves version 1.
        let old = acquire(&b.views, &b.url, read_model::<InboxV1>(), "old-binary")
            .await
            .unwrap();
        rebuild(&b.log, &b.views, read_model::<InboxV1>(), &old, |_, _| {})
            .await
            .unwrap();
        let served = every(&b.views).await.unwrap();
        assert!(!served.is_empty());
        // The new one builds version 2 beside it; version 1 keeps serving, untouched.
        let new = acquire(&b.views, &b.url, read_model::<Inbox>(), "new-binary")
            .await
            .unwrap();
        rebuild(&b.log, &b.views, read_model::<Inbox>(), &new, |_, _| {})
            .await
            .unwrap();
        assert_eq!(b.views.status(Inbox::id()).await.unwrap().1, "live");
        assert_eq!(every(&b.views).await.unwrap(), served);
        // Retired only once the old runner has let go.
        assert!(b.views.retire_older(Inbox::id()).await.unwrap().is_empty());
        b.views.release(&old).await.unwrap();
        drop(old);
        assert_eq!(b.views.retire_older(Inbox::id()).await.unwrap(), vec![1]);
        assert!(every(&b.views).await.is_err(), "version 1's table is gone");
        let rows = b
            .views
            .select::<Inbox>(&Filter::new(), "id", 1000, 0)
            .await
            .unwrap();
        assert_eq!(rows, served);
    })
    .await;
}

/// A PostgreSQL runner whose session died (and with it the advisory lock) cannot commit a batch
/// or a checkpoint any more: the second runner, which took the lock, keeps what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_runner_that_lost_its_lock_cannot_overwrite_the_next_runner() {
    with_scratch_database("sportello_fence", |url| async move {
        let dir = tempfile::tempdir().unwrap();
        let b = postgres(&url, dir.path()).await;
        let ids = history(&b.urp).await;
        let events: Vec<_> =
            futures::TryStreamExt::try_collect::<Vec<_>>(b.log.read_all(Inbox::filter()))
                .await
                .unwrap();
        let (early, late) = events.split_at(events.len() / 2);

        let first = acquire(&b.views, &b.url, read_model::<Inbox>(), "runner-a")
            .await
            .unwrap();
        b.views
            .apply_batch::<Inbox>(&first, early.to_vec())
            .await
            .unwrap();
        // The first runner's session is ended, as a network fault or an administrator would.
        let admin = sqlx::PgPool::connect(&b.url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(first.backend_pid().unwrap())
            .execute(&admin)
            .await
            .unwrap();
        let second = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            acquire(&b.views, &b.url, read_model::<Inbox>(), "runner-b"),
        )
        .await
        .expect("the lock passes on once the first session is gone")
        .unwrap();
        let checkpoint = b
            .views
            .apply_batch::<Inbox>(&second, late.to_vec())
            .await
            .unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let after_second = query(&b.views, &InboxQuery::default(), today)
            .await
            .unwrap();
        assert_eq!(after_second.total, ids.len() as u64);

        // The first runner wakes up and writes what it believes comes next (here, a case's
        // opening delivered again, which would reset that case's row), then moves its checkpoint
        // far ahead (which would make the second runner skip events): neither may land.
        let mut stale = events[0].clone();
        stale.position = checkpoint + 1;
        assert!(
            b.views
                .apply_batch::<Inbox>(&first, vec![stale])
                .await
                .is_err()
        );
        assert!(
            b.views
                .advance_checkpoint(&first, checkpoint + 100)
                .await
                .is_err()
        );
        assert_eq!(b.views.checkpoint(Inbox::id()).await.unwrap(), checkpoint);
        let unchanged = query(&b.views, &InboxQuery::default(), today)
            .await
            .unwrap();
        let rows = |p: &sportello_projections::inbox::InboxPage| {
            p.entries.iter().map(|e| e.row.clone()).collect::<Vec<_>>()
        };
        assert_eq!(rows(&unchanged), rows(&after_second));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_finds_subjects_whose_cases_closed_unheld_and_ran_out() {
    use sportello_projections::retention::{Retention, candidates, cases_of};
    on_both(|b| async move {
        let ids = history(&b.urp).await;
        let guard = acquire(&b.views, &b.url, read_model::<Retention>(), "test-runner")
            .await
            .unwrap();
        let caught_up = || {
            catch_up(
                &b.log,
                &b.views,
                read_model::<Retention>(),
                &guard,
                |_, _| {},
            )
        };
        caught_up().await.unwrap();
        let ten_days = |kind: &str| (kind == "segnalazione").then_some(10);
        let on = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let found = |today: NaiveDate| {
            let views = b.views.clone();
            async move {
                candidates(&views, ten_days, today, None, 100)
                    .await
                    .unwrap()
            }
        };
        // Only the case closed on 9 March, and only from ten days later.
        assert!(found(on(18)).await.is_empty());
        let subjects = found(on(19)).await;
        assert_eq!(subjects.len(), 1, "{subjects:?}");
        let rows = cases_of(&b.views, &subjects[0]).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, ids[3].to_string());
        assert_eq!(rows[0].closed_on.as_deref(), Some("2026-03-09"));
        assert!(
            candidates(&b.views, ten_days, on(19), Some(&subjects[0]), 100)
                .await
                .unwrap()
                .is_empty(),
            "paging goes past it"
        );

        let staff = Actor {
            name: "staff:test".into(),
            ..Actor::default()
        };
        let urp = &b.urp;
        let held_case = ids[3];
        let hold = |command: CaseCommand| {
            let staff = staff.clone();
            async move {
                urp.act(&staff, held_case, Uuid::now_v7(), command)
                    .await
                    .unwrap()
            }
        };
        hold(CaseCommand::PlaceLegalHold {
            reason: "Ricorso".into(),
            at: day(20),
        })
        .await;
        caught_up().await.unwrap();
        assert!(
            found(on(25)).await.is_empty(),
            "a held case keeps its subject"
        );
        hold(CaseCommand::ReleaseLegalHold {
            reason: "Respinto".into(),
            at: day(21),
        })
        .await;
        caught_up().await.unwrap();
        assert_eq!(found(on(25)).await, subjects);

        let subject: Uuid = subjects[0].parse().unwrap();
        b.urp.erase_subject(&staff, subject, "prova").await.unwrap();
        caught_up().await.unwrap();
        assert!(
            found(on(25)).await.is_empty(),
            "an erased subject is not found again"
        );
    })
    .await;
}

/// Opens a case in `comune` about `subject`, for a citizen of its own.
async fn open_about(urp: &Urp, comune: &str, subject: &str) -> sportello_engine::app::OpenedCase {
    let contact = NewContact {
        case_id: Uuid::now_v7(),
        comune: comune.into(),
        kind: CaseKind::Segnalazione,
        channel: Channel::Email,
        service: None,
        subject: subject.into(),
        description: None,
        citizen: Some(CitizenInput {
            name: Some("Anna Russo".into()),
            ..CitizenInput::default()
        }),
        received_at: day(2),
        privacy_consent: true,
    };
    urp.open_case(&test_staff(), contact).await.unwrap()
}

fn test_staff() -> Actor {
    Actor {
        name: "staff:test".into(),
        ..Actor::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subject_search_finds_the_same_cases_by_either_plan_kept_up_rebuilt_and_after_an_erasure()
 {
    use sportello_projections::SearchPlan;
    use sportello_projections::search::Words;
    use sportello_projections::subject_texts::SubjectTexts;
    // Gathered from the full-text index, tested row by row, or as the query chooses.
    const PLANS: [Option<SearchPlan>; 3] =
        [Some(SearchPlan::FromMatches), Some(SearchPlan::Walk), None];

    on_both(|b| async move {
        let views = b.views.with_vault(b.urp.vault().clone());
        let subjects = [
            ("073015", "Buca pericolosa in via Roma 12"),
            ("073015", "Perdita d'acqua in Via Città Vecchia"),
            ("073029", "Lampione spento, via Roma 120"),
            ("073015", "Rumore notturno"),
        ];
        let mut cases = Vec::new();
        for (comune, subject) in subjects {
            cases.push(open_about(&b.urp, comune, subject).await);
        }
        let inbox = acquire(&views, &b.url, read_model::<Inbox>(), "test")
            .await
            .unwrap();
        let texts = acquire(&views, &b.url, read_model::<SubjectTexts>(), "test")
            .await
            .unwrap();
        catch_up(&b.log, &views, read_model::<Inbox>(), &inbox, |_, _| {})
            .await
            .unwrap();
        let catch_up_texts = || async {
            catch_up(
                &b.log,
                &views,
                read_model::<SubjectTexts>(),
                &texts,
                |_, _| {},
            )
            .await
            .unwrap()
        };
        // Kept up batch by batch: on SQLite the full-text index follows the rows.
        catch_up_texts().await;
        let case = |i: usize| cases[i].case_id.to_string();
        let found = |typed: &'static str, plan: Option<SearchPlan>| {
            let views = &views;
            async move {
                let mut filter = Filter::new();
                let words = Words::parse(typed).unwrap();
                views
                    .text_match_by::<SubjectTexts>(&mut filter, "text_subject", &words, plan)
                    .await
                    .unwrap();
                let mut ids: Vec<String> = views
                    .select::<Inbox>(&filter, "id", 100, 0)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                ids.sort();
                ids
            }
        };
        let expect = |indices: &[usize]| {
            let mut ids: Vec<String> = indices.iter().map(|i| case(*i)).collect();
            ids.sort();
            ids
        };
        let searches: [(&str, &[usize]); 6] = [
            ("roma 12", &[0, 2]),
            ("CITTÀ, acqua", &[1]),
            ("vecchia citta d", &[1]),
            ("via", &[0, 1, 2]),
            ("oma", &[]),
            ("rumore via", &[]),
        ];
        let every_search_finds_its_cases = |when: &'static str| {
            let (found, expect) = (&found, &expect);
            async move {
                for plan in PLANS {
                    for (typed, indices) in searches {
                        assert_eq!(
                            found(typed, plan).await,
                            expect(indices),
                            "{when}: {typed:?} by {plan:?}"
                        );
                    }
                }
            }
        };
        every_search_finds_its_cases("kept up").await;
        // The query picks a plan itself and pages as usual.
        let today = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let page = query(
            &views,
            &InboxQuery {
                comune: Some("073015".into()),
                text: Some("via".into()),
                ..InboxQuery::default()
            },
            today,
        )
        .await
        .unwrap();
        let mut ids: Vec<String> = page.entries.iter().map(|e| e.row.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, expect(&[0, 1]));
        assert_eq!((page.total, page.total_exact), (2, true));
        // A full page is counted past itself; one past the end counts what is before it.
        for (limit, offset) in [(1, 0), (1, 5)] {
            let page = query(
                &views,
                &InboxQuery {
                    comune: Some("073015".into()),
                    text: Some("via".into()),
                    limit,
                    offset,
                    ..InboxQuery::default()
                },
                today,
            )
            .await
            .unwrap();
            assert_eq!(
                (page.total, page.total_exact),
                (2, true),
                "limit {limit} offset {offset}"
            );
        }
        let punctuation_only = InboxQuery {
            text: Some(" ,;% ".into()),
            ..InboxQuery::default()
        };
        assert_eq!(
            query(&views, &punctuation_only, today).await.unwrap().total,
            4
        );

        // Rebuilt from the log: the index is made again, whole.
        rebuild(
            &b.log,
            &views,
            read_model::<SubjectTexts>(),
            &texts,
            |_, _| {},
        )
        .await
        .unwrap();
        every_search_finds_its_cases("rebuilt").await;

        // An erased citizen's words are gone from either plan.
        b.urp
            .erase_subject(&test_staff(), cases[1].subject_id.unwrap(), "prot. 1/2026")
            .await
            .unwrap();
        catch_up_texts().await;
        for plan in PLANS {
            assert_eq!(found("acqua", plan).await, expect(&[]), "{plan:?}");
            assert_eq!(found("via", plan).await, expect(&[0, 2]), "{plan:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_records_its_checkpoint_past_events_it_does_not_read_only_now_and_then() {
    use sportello_engine::{ExpectedVersion, NewEvent, StreamId};
    use sportello_projections::runner::{IDLE_CHECKPOINT_LAG, has_reached, lag, run};
    use sportello_projections::satisfaction::Ratings;
    on_both(|b| async move {
        let ratings = read_model::<Ratings>();
        let noted = |n: u64| NewEvent::new("Noted", &serde_json::json!({ "n": n })).unwrap();
        let append = |category: &'static str, events: Vec<NewEvent>| {
            let log = b.log.clone();
            async move {
                let stream = StreamId::new(category, Uuid::now_v7().to_string()).unwrap();
                log.append(stream, ExpectedVersion::NoStream, events)
                    .await
                    .unwrap()
            }
        };
        let guard = acquire(&b.views, &b.url, ratings, "test").await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = {
            let (log, views) = (b.log.clone(), b.views.clone());
            tokio::spawn(async move {
                run(&log, &views, ratings, &guard, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
            })
        };
        let checkpoint =
            |views: Views| async move { views.checkpoint(Ratings::id()).await.unwrap() };

        // Ten appends the ratings do not read, each passed by the runner: no commit for them.
        for n in 0..10 {
            append("other", vec![noted(n)]).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let head = b.log.head().await.unwrap();
        assert_eq!(checkpoint(b.views.clone()).await, 0);
        assert!(has_reached(&b.log, &b.views, ratings, head).await.unwrap());
        assert_eq!(lag(&b.log, ratings.filter(), 0, head).await.unwrap(), 0);

        // Past the lag allowed, the head passed is recorded.
        append("other", (0..IDLE_CHECKPOINT_LAG).map(noted).collect()).await;
        let head = b.log.head().await.unwrap();
        let started = std::time::Instant::now();
        while checkpoint(b.views.clone()).await < head {
            assert!(
                started.elapsed().as_secs() < 10,
                "the checkpoint stays behind"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop.send(()).unwrap();
        runner.await.unwrap();

        // With nobody running, an event it reads is its lag, counted from that event.
        append("other", vec![noted(0)]).await;
        append("feedback", vec![noted(1)]).await;
        append("other", vec![noted(2)]).await;
        let now = b.log.head().await.unwrap();
        assert_eq!(lag(&b.log, ratings.filter(), head, now).await.unwrap(), 2);
        assert!(
            has_reached(&b.log, &b.views, ratings, head + 1)
                .await
                .unwrap()
        );
        assert!(
            !has_reached(&b.log, &b.views, ratings, head + 2)
                .await
                .unwrap()
        );
    })
    .await;
}

/// On SQLite nothing gathers the planner's statistics by itself: a runner that builds its read
/// model event by event gathers them once it has caught up, and a rebuild ends with them, with
/// the samples of each index (without which a kind and a channel together walked a comune's
/// whole inbox).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_models_have_the_planners_statistics_after_a_catch_up_and_a_rebuild() {
    use sportello_projections::runner::run;
    let dir = tempfile::tempdir().unwrap();
    let b = sqlite(dir.path()).await;
    history(&b.urp).await;
    let views_file = sportello_projections::sqlite_views_path(&dir.path().join("urp.db"));
    let statistics = || {
        let conn = rusqlite::Connection::open(&views_file).unwrap();
        let count = |sql: &str| -> i64 {
            conn.query_row(sql, [Inbox::table()], |r| r.get(0))
                .unwrap_or(0)
        };
        (
            count("SELECT count(*) FROM sqlite_stat1 WHERE tbl = ?1"),
            count("SELECT count(*) FROM sqlite_stat4 WHERE tbl = ?1"),
        )
    };
    // One row for each index the table has, and samples.
    let gathered =
        |(rows, samples): (i64, i64)| rows >= Inbox::indexes().len() as i64 && samples > 0;

    let inbox = acquire(&b.views, &b.url, read_model::<Inbox>(), "test")
        .await
        .unwrap();
    assert_eq!(statistics(), (0, 0), "none before the runner");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let (log, views) = (b.log.clone(), b.views.clone());
        tokio::spawn(async move {
            run(&log, &views, read_model::<Inbox>(), &inbox, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
            inbox
        })
    };
    let started = std::time::Instant::now();
    while !gathered(statistics()) {
        assert!(
            started.elapsed().as_secs() < 10,
            "after the catch-up: {:?}",
            statistics()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    let inbox = runner.await.unwrap();

    rusqlite::Connection::open(&views_file)
        .unwrap()
        .execute_batch("DELETE FROM sqlite_stat1; DELETE FROM sqlite_stat4;")
        .unwrap();
    rebuild(&b.log, &b.views, read_model::<Inbox>(), &inbox, |_, _| {})
        .await
        .unwrap();
    assert!(
        gathered(statistics()),
        "after a rebuild: {:?}",
        statistics()
    );
}

/// On SQLite, a count that takes longer than its budget stops even between two rows it counts
/// (a filter that works long on one row), and the connection it ran on counts again in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_count_past_its_budget_stops_between_rows_too() {
    use sportello_projections::SqlValue;
    let dir = tempfile::tempdir().unwrap();
    let b = sqlite(dir.path()).await;
    history(&b.urp).await;
    let _guard = inbox_caught_up(&b).await;
    // Counting to `n` before the first row is tested, far longer than the budget.
    let slow = |n: i64| {
        let mut filter = Filter::new();
        filter.and(
            "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) \
             SELECT count(*) FROM c) > 0",
            SqlValue::Int(n),
        );
        filter
    };
    stops_past_its_budget(
        &b.views,
        |long| slow(if long { 1_000_000_000 } else { 1_000 }),
        4,
    )
    .await;
}

/// A count over `slow(true)`, a filter that works far longer than the budget of 20 ms before its
/// first row, stops within it as a lower bound of 0; then counts over `slow(false)` count all
/// `rows`, three times, whichever connection they get: the stopped count left nothing behind.
async fn stops_past_its_budget(views: &Views, slow: impl Fn(bool) -> Filter, rows: u64) {
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let cut_short = views
        .count::<Inbox>(&slow(true), 100, Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(cut_short, (0, false));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for _ in 0..3 {
        let whole = views
            .count::<Inbox>(&slow(false), 100, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(whole, (rows, true));
    }
}

/// On PostgreSQL too, a count that would take longer than its budget stops and says it is a lower
/// bound, instead of holding the staff's page; the budget ends with the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_past_its_budget_stops_and_says_it_is_a_lower_bound() {
    use sportello_projections::SqlValue;
    with_scratch_database("sportello_count", |url| async move {
        let dir = tempfile::tempdir().unwrap();
        let b = postgres(&url, dir.path()).await;
        b.views.ensure::<Inbox>().await.unwrap();
        // The server's time before the first row is looked at.
        let sleeping = |seconds: f64| {
            let mut filter = Filter::new();
            filter.and(
                &format!("(SELECT 1 FROM pg_sleep({seconds})) = ?"),
                SqlValue::Int(1),
            );
            filter
        };
        // No timeout is left behind on the cancelled count's connection.
        stops_past_its_budget(&b.views, |long| sleeping(if long { 2.0 } else { 0.05 }), 0).await;
    })
    .await;
}
