//! `sportello bench queries`: how long the staff wait for the inbox, the satisfaction statistics
//! and the service levels when the read models hold N cases and M ratings over 24 months.
//!
//! The read models are filled by applying synthetic events straight to the projections (the
//! same code a runner uses), not through the log: what is measured is the query, not the load.
//! The subject search's texts are sealed and unsealed through the store's real vault.

use super::bench::{Scratch, Target, case_events_at, case_stream, case_subject};
use anyhow::Context;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use sportello_engine::domain::case::Channel;
use sportello_engine::domain::feedback::{FeedbackEvent, Scale, Target as RatedTarget, TargetType};
use sportello_engine::{Metadata, NewEvent, RecordedEvent, StreamId};
use sportello_projections::inbox::{self, Inbox, InboxQuery};
use sportello_projections::satisfaction::{self, Closures, Ratings, SatisfactionQuery};
use sportello_projections::service_levels::{self, ServiceLevelQuery};
use sportello_projections::subject_texts::SubjectTexts;
use sportello_projections::{Filter, Projection, Views};
use std::num::NonZeroUsize;
use std::time::Instant;

#[derive(clap::Args)]
pub struct QueriesArgs {
    /// Cases in the inbox (70% closed, the rest in every open state).
    #[arg(long, default_value_t = 1_000_000)]
    cases: u64,
    /// Ratings, spread over the 24 months from January 2025.
    #[arg(long, default_value_t = 500_000)]
    ratings: u64,
    /// Queries of each kind timed.
    #[arg(long, default_value_t = 1000)]
    queries: u64,
    /// Staff asking for inbox pages at once: each asks for the next as soon as its page came.
    #[arg(long, default_value_t = NonZeroUsize::MIN)]
    clients: NonZeroUsize,
    /// Also the staff's pages over HTTP on loopback, signed in: the inbox (first page, a status,
    /// overdue, page 201) and the statistics over 24 months.
    #[arg(long)]
    pages: bool,
    /// Time the queries again on a store an earlier run kept (`--keep`, with the same --cases
    /// and --ratings, and this build's read models): nothing is loaded, so a large store is
    /// filled once for several runs.
    #[arg(long, value_name = "URL", conflicts_with_all = ["keep", "in_place"])]
    again: Option<String>,
    #[command(flatten)]
    target: Target,
}

const COMUNI: [&str; 3] = ["073004", "073015", "073029"];
const BATCH: usize = 4000;

fn recorded(position: u64, stream: &StreamId, version: u64, event: NewEvent) -> RecordedEvent {
    RecordedEvent {
        position,
        stream: stream.clone(),
        version,
        id: event.id,
        event_type: event.event_type,
        schema_version: event.schema_version,
        occurred_at: event.occurred_at,
        recorded_at: event.occurred_at,
        data: event.data,
        metadata: event.metadata,
        hash: [0; 32],
    }
}

/// Applies what `events` yields to projection `P` in batches, from scratch.
async fn load<P: Projection>(
    views: &Views,
    url: &str,
    events: impl Iterator<Item = RecordedEvent>,
) -> anyhow::Result<u64> {
    views.reset::<P>().await?;
    let guard = views
        .try_acquire(url, P::id(), "bench")
        .await?
        .context("projection busy")?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut applied = 0;
    for event in events {
        batch.push(event);
        if batch.len() == BATCH {
            applied += batch.len() as u64;
            views
                .apply_batch::<P>(&guard, std::mem::take(&mut batch))
                .await?;
        }
    }
    applied += batch.len() as u64;
    views.apply_batch::<P>(&guard, batch).await?;
    views.finish_build::<P>().await?;
    views.release(&guard).await?;
    Ok(applied)
}

fn rating(n: u64) -> NewEvent {
    let month = n % 24;
    let given_at = Utc.with_ymd_and_hms(2025, 1, 1, 10, 0, 0).unwrap()
        + Duration::days((month * 30 + n % 28) as i64);
    let (target_type, id) = match n % 3 {
        0 => (TargetType::Service, format!("servizio-{}", n % 12)),
        1 => (TargetType::Page, format!("/pagina-{}", n % 8)),
        _ => (TargetType::Case, String::new()),
    };
    let scale = if n.is_multiple_of(2) {
        Scale::Stars
    } else {
        Scale::Faces
    };
    let score = match scale {
        Scale::Stars => (n % 5 + 1) as u8,
        Scale::Faces => (n % 3 + 1) as u8,
    };
    let reasons = match (scale, score) {
        (Scale::Faces, 1) => vec!["poco_chiaro".to_owned()],
        (Scale::Stars, 1..=3) => vec!["a_volte_poco_chiaro".to_owned()],
        _ => vec![],
    };
    let comune = COMUNI[(n % 3) as usize];
    NewEvent::new(
        "FeedbackGiven",
        &FeedbackEvent::FeedbackGiven {
            target: RatedTarget { target_type, id },
            comune: comune.into(),
            channel: Channel::ALL[(n % 7) as usize],
            scale,
            score,
            reasons,
            comment: None,
            given_at,
            case_kind: (target_type == TargetType::Case)
                .then_some(sportello_engine::domain::case::CaseKind::ALL[(n % 6) as usize]),
        },
    )
    .expect("a rating is a JSON object")
    .with_metadata(Metadata {
        comune: Some(comune.into()),
        ..Metadata::default()
    })
}

/// What the citizen wrote as the subject of case `n`: a kind of problem, a street, a number.
fn subject_text(n: u64) -> String {
    const WHAT: [&str; 8] = [
        "buca pericolosa",
        "lampione spento",
        "rifiuti abbandonati",
        "marciapiede dissestato",
        "perdita d'acqua",
        "segnaletica mancante",
        "albero pericolante",
        "rumore notturno",
    ];
    format!(
        "{} in {} {}",
        WHAT[(n % 8) as usize],
        STREETS[(n / 8 % 16) as usize],
        n % 997 + 1
    )
}

const STREETS: [&str; 16] = [
    "via roma",
    "via garibaldi",
    "corso vittorio emanuele",
    "piazza municipio",
    "via mazzini",
    "via cavour",
    "viale europa",
    "via taranto",
    "via della pace",
    "via dante alighieri",
    "largo san francesco",
    "via verdi",
    "via puccini",
    "via leopardi",
    "contrada lamia",
    "via nitti",
];

/// What an operator types in the search box: a street and a number, a word, a street.
fn text_query(i: u64) -> String {
    match i % 3 {
        0 => format!("{} {}", STREETS[(i % 16) as usize], i % 997 + 1),
        1 => ["pericolosa", "lampione", "dissestato", "acqua"][(i % 4) as usize].to_owned(),
        _ => format!("spento {}", STREETS[(i / 3 % 16) as usize]),
    }
}

/// Fills the subject search with every case's subject, sealed under the case's data subject by
/// the store's vault (thousands at a time, as the key store batches them) and unsealed by the
/// projection as a runner would.
async fn load_texts(
    views: &Views,
    url: &str,
    vault: &sportello_engine::vault::Vault,
    cases: u64,
) -> anyhow::Result<()> {
    views.reset::<SubjectTexts>().await?;
    let guard = views
        .try_acquire(url, SubjectTexts::id(), "bench")
        .await?
        .context("projection busy")?;
    let received = Utc.with_ymd_and_hms(2025, 1, 1, 8, 0, 0).unwrap();
    let mut start = 0;
    while start < cases {
        let end = (start + BATCH as u64).min(cases);
        let sealed = futures::future::try_join_all(
            (start..end)
                .map(|n| async move { vault.seal(case_subject(n), &subject_text(n)).await }),
        )
        .await?;
        let events = (start..end)
            .zip(sealed)
            .map(|(n, sealed)| {
                let mut opened = case_events_at(n, received).swap_remove(0);
                let mut data: serde_json::Value = serde_json::from_str(&opened.data)?;
                data["subject"] = serde_json::to_value(sealed)?;
                opened.data = data.to_string();
                Ok(recorded(n + 1, &case_stream(n), 1, opened))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        views.apply_batch::<SubjectTexts>(&guard, events).await?;
        start = end;
    }
    views.finish_build::<SubjectTexts>().await?;
    views.release(&guard).await?;
    Ok(())
}

/// Nearest-rank percentile, in milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub async fn run(settings: &sportello_config::Settings, args: QueriesArgs) -> anyhow::Result<()> {
    // It fills the inbox, the ratings and the subject search with made-up cases, and seals
    // their texts with keys of their own: never in an installation's store.
    anyhow::ensure!(
        !args.target.in_place(),
        "bench queries fills read models of its own and would replace the store's: run it on a \
         fresh store (without --in-place)"
    );
    let scratch = match &args.again {
        Some(url) => Scratch::kept(settings, url),
        None => Scratch::create(settings, &args.target).await?,
    };
    let url = scratch.settings.store.url.expose().to_owned();
    let mut vault_settings = scratch.settings.clone();
    if vault_settings.vault.master_key.is_none() && !url.starts_with("sqlite://") {
        // A PostgreSQL scratch has no key of its own; its texts need only outlive the run.
        let key = sportello_engine::vault::MasterKey::generate().to_base64();
        vault_settings.vault.master_key = Some(sportello_config::SecretString::new(key));
    }
    let vault = crate::cli::open_urp(&vault_settings).await?.vault().clone();
    let views = Views::open(&url).await?.with_vault(vault.clone());
    let started = Instant::now();
    let mut position = 0;
    let total = args.cases;
    let cases = (0..args.cases).flat_map(move |n| {
        // Spread evenly over the 24 months from January 2025.
        let received = Utc.with_ymd_and_hms(2025, 1, 1, 8, 0, 0).unwrap()
            + Duration::minutes((n * 24 * 30 * 24 * 60 / total.max(1)) as i64);
        let stream = case_stream(n);
        // 70% closed; the others stopped in each open state.
        let keep = match n % 10 {
            0 => 1,
            1 => 2,
            2 => 3,
            _ => 5,
        };
        case_events_at(n, received)
            .into_iter()
            .take(keep)
            .enumerate()
            .map(move |(i, e)| (stream.clone(), i as u64 + 1, e))
    });
    let cases = cases.map(|(stream, version, event)| {
        position += 1;
        recorded(position, &stream, version, event)
    });
    if args.again.is_some() {
        let (held, _) = views
            .count::<Inbox>(
                &Filter::new(),
                args.cases + 1,
                std::time::Duration::from_secs(3600),
            )
            .await?;
        anyhow::ensure!(
            held == args.cases,
            "{url} has {held} cases in this build's inbox ({}), not the {} of --cases: fill a \
             store with --keep first",
            Inbox::table(),
            args.cases
        );
    } else {
        let case_events = load::<Inbox>(&views, &url, cases).await?;
        let ratings = (0..args.ratings).map(|n| {
            let stream =
                StreamId::new("feedback", uuid::Uuid::from_u128(u128::from(n) + 1)).unwrap();
            recorded(n + 1, &stream, 1, rating(n))
        });
        let rating_events = load::<Ratings>(&views, &url, ratings).await?;
        load_texts(&views, &url, &vault, args.cases).await?;
        // Participation rates read the closures too (empty here: every rating counts alone).
        views.ensure::<Closures>().await?;
        eprintln!(
            "loaded {case_events} case events and {rating_events} ratings in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    let today = NaiveDate::from_ymd_opt(2026, 12, 15).unwrap();
    // Where page 201 of each comune's inbox starts: the pages' keyset cursor, against the offset
    // the API takes.
    const DEEP: u64 = 10_000;
    let mut cursors = Vec::new();
    for comune in COMUNI {
        let q = InboxQuery {
            comune: Some(comune.to_owned()),
            limit: 1,
            offset: DEEP - 1,
            ..InboxQuery::default()
        };
        let last = inbox::query(&views, &q, today).await?.entries.pop();
        cursors.push(last.map(|e| (e.row.due_on, e.row.code)));
    }
    // The i-th inbox query: every comune, kind of query and month in turn.
    const KINDS: u64 = 9;
    const TEXT: u64 = 8;
    let inbox_query = |i: u64| {
        let comune_index = (i / KINDS / 24 % 3) as usize;
        let comune = COMUNI[comune_index].to_owned();
        let mut q = InboxQuery {
            comune: Some(comune),
            limit: 50,
            ..InboxQuery::default()
        };
        match i % KINDS {
            0 => {}
            1 => q.status = Some("received".into()),
            2 => q.overdue = Some(true),
            3 => {
                let kind = sportello_engine::domain::case::CaseKind::ALL[(i / KINDS % 6) as usize];
                q.kind = Some(sportello_projections::name_of(&kind));
                q.channel = Some(sportello_projections::name_of(
                    &Channel::ALL[(i / KINDS / 6 % 7) as usize],
                ));
            }
            4 => q.code = Some(format!("BEN-2025-{:06}", (i * 7919) % args.cases)),
            6 => q.offset = DEEP,
            7 => q.after = cursors[comune_index].clone(),
            TEXT => q.text = Some(text_query(i / KINDS)),
            _ => {
                // A month of the two years, second page.
                let month = (i / KINDS % 24) as u32;
                q.received_from =
                    NaiveDate::from_ymd_opt(2025 + (month / 12) as i32, month % 12 + 1, 1);
                q.received_until = q
                    .received_from
                    .and_then(|d| d.checked_add_months(chrono::Months::new(1)));
                q.offset = 50;
            }
        }
        q
    };
    let timed_query = |i: u64| {
        let (q, views) = (inbox_query(i), &views);
        async move {
            let t = Instant::now();
            let page = inbox::query(views, &q, today).await?;
            std::hint::black_box(page);
            anyhow::Ok((i % KINDS, t.elapsed().as_secs_f64() * 1000.0))
        }
    };
    // The first pass (every comune, kind of query and month once) warms the caches as a
    // running server's are; the next ones are timed.
    let warm_up = KINDS * 24 * 3;
    for i in 0..warm_up {
        timed_query(i).await?;
    }
    let started = Instant::now();
    let timed: Vec<(u64, f64)> = futures::stream::iter(warm_up..warm_up + args.queries * KINDS)
        .map(timed_query)
        .buffer_unordered(args.clients.get())
        .try_collect()
        .await?;
    let inbox_per_second = timed.len() as f64 / started.elapsed().as_secs_f64();
    let mut inbox_ms = Vec::new();
    let mut by_kind: [Vec<f64>; KINDS as usize] = Default::default();
    for (kind, ms) in timed {
        // The subject search is reported apart: it does not meet the inbox's target yet.
        if kind != TEXT {
            inbox_ms.push(ms);
        }
        by_kind[kind as usize].push(ms);
    }
    let groupings: [&[&str]; 4] = [
        &["comune", "month"],
        &["target_type", "scale"],
        &["channel"],
        &["comune", "target_type", "target", "month"],
    ];
    let mut satisfaction_ms = Vec::new();
    for i in 0..args.queries * 4 {
        let q = SatisfactionQuery {
            from: Some("2025-01".into()),
            to: Some("2026-12".into()),
            comune: (i % 2 == 0).then(|| COMUNI[(i % 3) as usize].to_owned()),
            group_by: groupings[(i % 4) as usize]
                .iter()
                .map(|d| d.to_string())
                .collect(),
            ..SatisfactionQuery::default()
        };
        let t = Instant::now();
        let report = satisfaction::query(&views, &q).await?;
        satisfaction_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(report);
    }
    // The statistics page's other half: opened, closed within term, days to answer, overdue.
    let mut service_levels_ms = Vec::new();
    for i in 0..args.queries * 2 {
        let q = ServiceLevelQuery {
            from: Some("2025-01".into()),
            to: Some("2026-12".into()),
            comune: Some(COMUNI[(i % 3) as usize].to_owned()),
            group_by: vec![if i % 2 == 0 { "month" } else { "kind" }.into()],
            ..ServiceLevelQuery::default()
        };
        let t = Instant::now();
        let report = service_levels::query(&views, &q, today).await?;
        service_levels_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(report);
    }
    inbox_ms.sort_by(f64::total_cmp);
    let mut text_ms = by_kind[TEXT as usize].clone();
    text_ms.sort_by(f64::total_cmp);
    for (name, mut times) in [
        "default",
        "status",
        "overdue",
        "kind+channel",
        "code",
        "month+page 2",
        "page 201 offset",
        "page 201 keyset",
        "text",
    ]
    .into_iter()
    .zip(by_kind)
    {
        times.sort_by(f64::total_cmp);
        eprintln!(
            "inbox {name:<15} p50 {:7.2} ms  p99 {:7.2} ms",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    eprintln!(
        "inbox, {} client(s): {inbox_per_second:.0} queries a second",
        args.clients.get()
    );
    satisfaction_ms.sort_by(f64::total_cmp);
    service_levels_ms.sort_by(f64::total_cmp);
    if args.pages {
        let deep = cursors[1]
            .clone()
            .context("fewer cases than page 201 needs")?;
        pages(&scratch.settings, views.clone(), &deep, args.queries).await?;
    }
    drop(views);
    scratch.finish().await?;
    println!(
        "measure=queries store={} cases={} ratings={} clients={} inbox_per_s={inbox_per_second:.0} inbox_p50_ms={:.2} inbox_p99_ms={:.2} text_p50_ms={:.2} text_p99_ms={:.2} satisfaction_p50_ms={:.2} satisfaction_p99_ms={:.2} service_levels_p50_ms={:.2} service_levels_p99_ms={:.2}",
        scratch.backend,
        args.cases,
        args.ratings,
        args.clients.get(),
        percentile(&inbox_ms, 0.5),
        percentile(&inbox_ms, 0.99),
        percentile(&text_ms, 0.5),
        percentile(&text_ms, 0.99),
        percentile(&satisfaction_ms, 0.5),
        percentile(&satisfaction_ms, 0.99),
        percentile(&service_levels_ms, 0.5),
        percentile(&service_levels_ms, 0.99),
    );
    Ok(())
}

/// Times the staff's pages, served on loopback as `serve` serves them, to one signed-in operator
/// of Massafra; prints p50 and p99 of each.
async fn pages(
    settings: &sportello_config::Settings,
    views: Views,
    deep: &(String, String),
    queries: u64,
) -> anyhow::Result<()> {
    use crate::api::{self, AppState};
    use sportello_engine::app::staff::Role;
    let urp = super::open_urp(settings).await?;
    let password = "una password per il banco di prova";
    sportello_engine::app::users::create(
        urp.log(),
        "bench",
        "Banco di prova",
        Role::Operator,
        "073015",
        password.into(),
    )
    .await?;
    let state = std::sync::Arc::new(AppState::new(
        urp,
        views,
        std::sync::Arc::new(settings.clone()),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            api::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let paths = [
        ("inbox", "/ufficio".to_owned()),
        ("inbox status", "/ufficio?stato=received".to_owned()),
        ("inbox overdue", "/ufficio?scadenza=scadute".to_owned()),
        (
            "inbox page 201",
            format!("/ufficio?dopo={}~{}", deep.0, deep.1),
        ),
        (
            "statistics",
            "/ufficio/statistiche?dal=2025-01&al=2026-12".to_owned(),
        ),
    ];
    let timed = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(&str, Vec<f64>)>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let signed_in = agent
            .post(format!("{base}/ufficio/accesso"))
            .send_form([("username", "bench"), ("password", password)])?;
        let cookie = signed_in
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("signing in gave no session")?
            .to_owned();
        let mut timed = Vec::new();
        for (name, path) in &paths {
            let mut times = Vec::new();
            // One warm-up request, then the timed ones.
            for i in 0..=queries {
                let t = Instant::now();
                let mut response = agent
                    .get(format!("{base}{path}"))
                    .header("cookie", &cookie)
                    .call()?;
                let body = response.body_mut().read_to_string()?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                anyhow::ensure!(
                    response.status() == 200,
                    "{path}: {} {body}",
                    response.status()
                );
                if i > 0 {
                    times.push(ms);
                }
            }
            times.sort_by(f64::total_cmp);
            timed.push((*name, times));
        }
        Ok(timed)
    })
    .await??;
    server.abort();
    for (name, times) in timed {
        eprintln!(
            "page {name:<15} p50 {:7.2} ms  p99 {:7.2} ms",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
        println!(
            "measure=page name={} p50_ms={:.2} p99_ms={:.2}",
            name.replace(' ', "_"),
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    Ok(())
}
