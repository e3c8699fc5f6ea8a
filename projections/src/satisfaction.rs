//! Satisfaction statistics (CAD art. 7 c.3 asks to publish them): per comune × target (service,
//! page, case kind) × channel × month × scale, the number of ratings, the distribution over the
//! scale, the positive ones (faces: satisfied; stars: 4–5), the sum of scores and the reasons
//! chosen; and, beside them, the cases closed per comune and month, for the participation rate.

use crate::model::{Column, Filter, Projection, SqlType, SqlValue, check_dimensions, name_of};
use crate::views::{Views, ViewsError};
use chrono::{DateTime, Utc};
use chrono_tz::Europe::Rome;
use serde::Serialize;
use sportello_engine::domain::case::CaseEvent;
use sportello_engine::domain::feedback::{FeedbackEvent, Scale, TargetType};
use sportello_engine::{ReadAll, RecordedEvent};
use std::collections::BTreeMap;

fn month(at: DateTime<Utc>) -> String {
    at.with_timezone(&Rome).format("%Y-%m").to_string()
}

#[derive(Debug, Clone, PartialEq)]
pub struct RatingsRow {
    pub id: String,
    pub comune: String,
    pub target_type: String,
    /// Service code, page path, or the case kind.
    pub target: String,
    pub channel: String,
    pub month: String,
    pub scale: String,
    pub count: i64,
    /// Ratings per score, index 0 for score 1.
    pub distribution: [i64; 5],
    pub positive: i64,
    pub score_sum: i64,
    pub reasons: BTreeMap<String, i64>,
}

const fn text(name: &'static str, indexed: bool) -> Column {
    Column {
        name,
        sql_type: SqlType::Text,
        indexed,
    }
}
const fn int(name: &'static str) -> Column {
    Column {
        name,
        sql_type: SqlType::Integer,
        indexed: false,
    }
}

const RATING_COLUMNS: &[Column] = &[
    text("id", false),
    text("comune", true),
    text("target_type", false),
    text("target", false),
    text("channel", false),
    text("month", true),
    text("scale", false),
    int("ratings"),
    int("d1"),
    int("d2"),
    int("d3"),
    int("d4"),
    int("d5"),
    int("positive"),
    int("score_sum"),
    text("reasons", false),
];

pub struct Ratings;

impl Projection for Ratings {
    type Row = RatingsRow;
    const NAME: &'static str = "ratings";
    const VERSION: u32 = 1;

    fn columns() -> &'static [Column] {
        RATING_COLUMNS
    }

    fn filter() -> ReadAll {
        ReadAll {
            categories: vec!["feedback".into()],
            ..ReadAll::default()
        }
    }

    type Event = FeedbackEvent;

    fn decode(event: &RecordedEvent) -> Option<(String, FeedbackEvent)> {
        let feedback = event.decode::<FeedbackEvent>().ok()?;
        let FeedbackEvent::FeedbackGiven {
            target,
            comune,
            channel,
            scale,
            given_at,
            case_kind,
            ..
        } = &feedback;
        let target_id = match target.target_type {
            TargetType::Case => case_kind.map(|k| name_of(&k)).unwrap_or_default(),
            _ => target.id.clone(),
        };
        let key = format!(
            "{comune}|{}|{target_id}|{}|{}|{}",
            name_of(&target.target_type),
            name_of(channel),
            month(*given_at),
            name_of(scale)
        );
        Some((key, feedback))
    }

    fn apply(row: Option<RatingsRow>, key: &str, feedback: FeedbackEvent) -> Option<RatingsRow> {
        let FeedbackEvent::FeedbackGiven {
            scale,
            score,
            reasons,
            ..
        } = feedback;
        let mut row = row.unwrap_or_else(|| {
            let parts: Vec<&str> = key.split('|').collect();
            RatingsRow {
                id: key.to_owned(),
                comune: parts[0].into(),
                target_type: parts[1].into(),
                target: parts[2].into(),
                channel: parts[3].into(),
                month: parts[4].into(),
                scale: parts[5].into(),
                count: 0,
                distribution: [0; 5],
                positive: 0,
                score_sum: 0,
                reasons: BTreeMap::new(),
            }
        });
        row.count += 1;
        if (1..=5).contains(&score) {
            row.distribution[usize::from(score) - 1] += 1;
        }
        let positive = match scale {
            Scale::Faces => score == 3,
            Scale::Stars => score >= 4,
        };
        row.positive += i64::from(positive);
        row.score_sum += i64::from(score);
        for reason in reasons {
            *row.reasons.entry(reason).or_default() += 1;
        }
        Some(row)
    }

    fn to_values(r: &RatingsRow) -> Vec<SqlValue> {
        let t = |s: &str| SqlValue::Text(s.to_owned());
        let mut values = vec![
            t(&r.id),
            t(&r.comune),
            t(&r.target_type),
            t(&r.target),
            t(&r.channel),
            t(&r.month),
            t(&r.scale),
        ];
        values.push(SqlValue::Int(r.count));
        values.extend(r.distribution.iter().map(|d| SqlValue::Int(*d)));
        values.push(SqlValue::Int(r.positive));
        values.push(SqlValue::Int(r.score_sum));
        values.push(SqlValue::Text(
            serde_json::to_string(&r.reasons).unwrap_or_else(|_| "{}".into()),
        ));
        values
    }

    fn from_values(values: Vec<SqlValue>) -> Option<RatingsRow> {
        let text = |i: usize| values.get(i).and_then(|v| v.as_text()).map(str::to_owned);
        let int = |i: usize| values.get(i).and_then(|v| v.as_int()).unwrap_or(0);
        Some(RatingsRow {
            id: text(0)?,
            comune: text(1)?,
            target_type: text(2)?,
            target: text(3)?,
            channel: text(4)?,
            month: text(5)?,
            scale: text(6)?,
            count: int(7),
            distribution: [int(8), int(9), int(10), int(11), int(12)],
            positive: int(13),
            score_sum: int(14),
            reasons: serde_json::from_str(&text(15)?).unwrap_or_default(),
        })
    }
}

/// Cases closed (or withdrawn) per comune and month: the denominator of the participation rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosuresRow {
    pub id: String,
    pub comune: String,
    pub month: String,
    pub closed: i64,
}

const CLOSURE_COLUMNS: &[Column] = &[
    text("id", false),
    text("comune", true),
    text("month", true),
    int("closed"),
];

pub struct Closures;

impl Projection for Closures {
    type Row = ClosuresRow;
    const NAME: &'static str = "closures";
    const VERSION: u32 = 1;

    fn columns() -> &'static [Column] {
        CLOSURE_COLUMNS
    }

    fn filter() -> ReadAll {
        ReadAll {
            categories: vec!["case".into()],
            event_types: vec!["CaseClosed".into(), "CaseWithdrawn".into()],
            ..ReadAll::default()
        }
    }

    type Event = ();

    fn decode(event: &RecordedEvent) -> Option<(String, ())> {
        let at = match event.decode::<CaseEvent>().ok()? {
            CaseEvent::CaseClosed { at, .. } | CaseEvent::CaseWithdrawn { at } => at,
            _ => return None,
        };
        // The comune that owned the case when it was closed.
        let key = format!("{}|{}", event.metadata.comune.as_deref()?, month(at));
        Some((key, ()))
    }

    fn apply(row: Option<ClosuresRow>, key: &str, _: ()) -> Option<ClosuresRow> {
        let mut row = row.unwrap_or_else(|| {
            let (comune, month) = key.split_once('|').unwrap_or_default();
            ClosuresRow {
                id: key.to_owned(),
                comune: comune.into(),
                month: month.into(),
                closed: 0,
            }
        });
        row.closed += 1;
        Some(row)
    }

    fn to_values(r: &ClosuresRow) -> Vec<SqlValue> {
        vec![
            SqlValue::Text(r.id.clone()),
            SqlValue::Text(r.comune.clone()),
            SqlValue::Text(r.month.clone()),
            SqlValue::Int(r.closed),
        ]
    }

    fn from_values(values: Vec<SqlValue>) -> Option<ClosuresRow> {
        let text = |i: usize| values.get(i).and_then(|v| v.as_text()).map(str::to_owned);
        Some(ClosuresRow {
            id: text(0)?,
            comune: text(1)?,
            month: text(2)?,
            closed: values.get(3)?.as_int()?,
        })
    }
}

/// Dimensions the statistics can be grouped by; `scale` is always one of them.
pub const DIMENSIONS: &[&str] = &[
    "comune",
    "target_type",
    "target",
    "channel",
    "month",
    "scale",
];

#[derive(Debug, Clone, Default)]
pub struct SatisfactionQuery {
    /// First month, `YYYY-MM`.
    pub from: Option<String>,
    /// Last month, inclusive.
    pub to: Option<String>,
    pub comune: Option<String>,
    pub target_type: Option<String>,
    pub target: Option<String>,
    pub channel: Option<String>,
    pub scale: Option<String>,
    pub group_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SatisfactionRow {
    #[serde(flatten)]
    pub keys: BTreeMap<String, String>,
    pub count: i64,
    pub distribution: BTreeMap<String, i64>,
    pub share_positive: f64,
    /// Only on the stars scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    pub reasons: BTreeMap<String, i64>,
    /// Ratings of closed cases ÷ cases closed, when the grouping allows it (comune and month only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participation_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SatisfactionReport {
    pub rows: Vec<SatisfactionRow>,
}

pub async fn query(views: &Views, q: &SatisfactionQuery) -> Result<SatisfactionReport, ViewsError> {
    check_dimensions(&q.group_by, DIMENSIONS)?;
    let mut filter = Filter::new();
    filter
        .equal(&[
            ("comune", &q.comune),
            ("target_type", &q.target_type),
            ("target", &q.target),
            ("channel", &q.channel),
            ("scale", &q.scale),
        ])
        .and_some("month >= ?", q.from.as_deref())
        .and_some("month <= ?", q.to.as_deref());
    let ratings = views
        .select::<Ratings>(&filter, "id", u32::MAX as u64, 0)
        .await?;

    let mut dims: Vec<String> = q.group_by.clone();
    if !dims.iter().any(|d| d == "scale") {
        dims.push("scale".into());
    }
    let value_of = |r: &RatingsRow, dim: &str| -> String {
        match dim {
            "comune" => r.comune.clone(),
            "target_type" => r.target_type.clone(),
            "target" => r.target.clone(),
            "channel" => r.channel.clone(),
            "month" => r.month.clone(),
            _ => r.scale.clone(),
        }
    };
    let mut groups: BTreeMap<Vec<String>, (RatingsRow, i64)> = BTreeMap::new();
    for r in ratings {
        let key: Vec<String> = dims.iter().map(|d| value_of(&r, d)).collect();
        let case_ratings = if r.target_type == "case" { r.count } else { 0 };
        let entry = groups.entry(key).or_insert_with(|| {
            (
                RatingsRow {
                    count: 0,
                    distribution: [0; 5],
                    positive: 0,
                    score_sum: 0,
                    reasons: BTreeMap::new(),
                    ..r.clone()
                },
                0,
            )
        });
        entry.0.count += r.count;
        for (total, d) in entry.0.distribution.iter_mut().zip(r.distribution) {
            *total += d;
        }
        entry.0.positive += r.positive;
        entry.0.score_sum += r.score_sum;
        for (reason, n) in r.reasons {
            *entry.0.reasons.entry(reason).or_default() += n;
        }
        entry.1 += case_ratings;
    }

    // Participation needs the closures over the same comune/month cells.
    let participation_possible = dims
        .iter()
        .all(|d| matches!(d.as_str(), "comune" | "month" | "scale"))
        && q.target_type.as_deref().is_none_or(|t| t == "case")
        && q.target.is_none()
        && q.channel.is_none();
    let mut closures: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    if participation_possible {
        let mut filter = Filter::new();
        filter
            .and_some("comune = ?", q.comune.as_deref())
            .and_some("month >= ?", q.from.as_deref())
            .and_some("month <= ?", q.to.as_deref());
        let rows = views
            .select::<Closures>(&filter, "id", u32::MAX as u64, 0)
            .await?;
        for c in rows {
            let key: Vec<String> = dims
                .iter()
                .filter(|d| *d != "scale")
                .map(|d| {
                    if d == "comune" {
                        c.comune.clone()
                    } else {
                        c.month.clone()
                    }
                })
                .collect();
            *closures.entry(key).or_default() += c.closed;
        }
    }

    let rows = groups
        .into_iter()
        .map(|(key, (r, case_ratings))| {
            let scale = r.scale.clone();
            let points = if scale == "faces" { 3 } else { 5 };
            let distribution = (1..=points)
                .map(|s| (s.to_string(), r.distribution[s - 1]))
                .collect();
            let cell: Vec<String> = dims
                .iter()
                .zip(&key)
                .filter(|(d, _)| *d != "scale")
                .map(|(_, v)| v.clone())
                .collect();
            let participation_rate = participation_possible
                .then(|| closures.get(&cell).copied().unwrap_or(0))
                .filter(|closed| *closed > 0)
                .map(|closed| case_ratings as f64 / closed as f64);
            SatisfactionRow {
                keys: dims.iter().cloned().zip(key).collect(),
                count: r.count,
                distribution,
                share_positive: if r.count == 0 {
                    0.0
                } else {
                    r.positive as f64 / r.count as f64
                },
                mean: (scale == "stars" && r.count > 0)
                    .then(|| r.score_sum as f64 / r.count as f64),
                reasons: r.reasons,
                participation_rate,
            }
        })
        .collect();
    Ok(SatisfactionReport { rows })
}
