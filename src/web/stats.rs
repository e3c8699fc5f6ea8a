//! The statistics page: satisfaction by month and by channel on both scales, the participation
//! rate, the share closed within term and the volumes by kind. Each chart is an SVG drawn here
//! ([`chart`]), a data table beside it (what a screen reader reads) and a CSV of that table.
//! The figures are the API's own (`/api/v1/staff/stats/…`), for every signed-in role.

use super::chart::{self, Series, Unit};
use super::session::SignedIn;
use super::staff::{Choice, channel_label, choices, kind_label, problem_text};
use super::{Layout, Section, error_page, page};
use crate::api::Shared;
use crate::api::guard::Staff;
use crate::api::problem::{ApiError, Params, PathParams};
use crate::api::staff::{self as api, SatisfactionParams, ServiceLevelParams};
use askama::Template;
use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, Months, Utc};
use serde::Deserialize;
use sportello_projections::satisfaction::SatisfactionRow;
use sportello_projections::service_levels::ServiceLevelRow;
use std::collections::BTreeSet;

/// The period and the comune, as the form sends them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatsFilters {
    /// YYYY-MM.
    pub dal: String,
    /// YYYY-MM, inclusive.
    pub al: String,
    /// ISTAT code; empty: the whole union.
    pub comune: String,
}

impl StatsFilters {
    /// The last twelve months, to this one, where the form leaves them empty.
    fn with_defaults(mut self) -> Self {
        let today = Utc::now()
            .with_timezone(&chrono_tz::Europe::Rome)
            .date_naive();
        if self.al.trim().is_empty() {
            self.al = format!("{:04}-{:02}", today.year(), today.month());
        }
        if self.dal.trim().is_empty() {
            let start = today.checked_sub_months(Months::new(11)).unwrap_or(today);
            self.dal = format!("{:04}-{:02}", start.year(), start.month());
        }
        self.dal = self.dal.trim().to_owned();
        self.al = self.al.trim().to_owned();
        self
    }

    fn comune(&self) -> Option<String> {
        Some(self.comune.trim().to_owned()).filter(|c| !c.is_empty())
    }

    fn query(&self) -> String {
        format!(
            "?dal={}&al={}&comune={}",
            self.dal
                .replace(|c: char| !c.is_ascii_digit() && c != '-', ""),
            self.al
                .replace(|c: char| !c.is_ascii_digit() && c != '-', ""),
            self.comune.replace(|c: char| !c.is_ascii_digit(), "")
        )
    }
}

/// A table of figures: the page prints it, the CSV is it.
pub struct Table {
    /// In the CSV's name and the page's anchors.
    pub id: &'static str,
    pub title: &'static str,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// The chart drawn from it (SVG markup made by [`chart`], escaped there).
    pub chart: String,
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(
        || "–".to_owned(),
        |s| format!("{:.1}%", s * 100.0).replace('.', ","),
    )
}

fn decimal(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}").replace('.', ","))
}

fn scale_label(scale: &str) -> &'static str {
    match scale {
        "stars" => "Stelle (1–5)",
        "faces" => "Faccine (Mettiamoci la faccia)",
        _ => "Altra scala",
    }
}

fn key<'a>(row: &'a std::collections::BTreeMap<String, String>, name: &str) -> &'a str {
    row.get(name).map_or("", String::as_str)
}

/// Satisfaction by `dimension` (month or channel) and scale: a table, and a chart of the share of
/// positive ratings with one series per scale.
fn satisfaction_table(
    id: &'static str,
    title: &'static str,
    dimension: &'static str,
    rows: &[SatisfactionRow],
) -> Table {
    let label = |value: &str| match dimension {
        "channel" => channel_label(value).to_owned(),
        _ => value.to_owned(),
    };
    let categories: Vec<String> = rows
        .iter()
        .map(|r| key(&r.keys, dimension).to_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let series = ["stars", "faces"]
        .iter()
        .map(|scale| Series {
            name: scale_label(scale).to_owned(),
            values: categories
                .iter()
                .map(|c| {
                    rows.iter()
                        .find(|r| key(&r.keys, dimension) == c && key(&r.keys, "scale") == *scale)
                        .map(|r| r.share_positive)
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    let labels: Vec<String> = categories.iter().map(|c| label(c)).collect();
    let mut headers = vec![
        if dimension == "month" {
            "Mese"
        } else {
            "Canale"
        },
        "Scala",
        "Valutazioni",
        "Positive",
        "Media (stelle)",
    ];
    if dimension == "month" {
        headers.push("Partecipazione");
    }
    Table {
        id,
        title,
        rows: rows
            .iter()
            .map(|r| {
                let mut cells = vec![
                    label(key(&r.keys, dimension)),
                    scale_label(key(&r.keys, "scale")).to_owned(),
                    r.count.to_string(),
                    percent(Some(r.share_positive)),
                    decimal(r.mean),
                ];
                if dimension == "month" {
                    cells.push(percent(r.participation_rate));
                }
                cells
            })
            .collect(),
        headers,
        chart: chart::bars(
            &format!("grafico-{id}"),
            &format!("{title}: quota di giudizi positivi"),
            &labels,
            &series,
            Unit::Share,
        ),
    }
}

fn within_term_table(rows: &[ServiceLevelRow]) -> Table {
    let months: Vec<String> = rows
        .iter()
        .map(|r| key(&r.keys, "month").to_owned())
        .collect();
    Table {
        id: "termini-per-mese",
        title: "Pratiche chiuse entro il termine, per mese",
        headers: vec![
            "Mese",
            "Aperte",
            "Chiuse",
            "Chiuse entro il termine",
            "Quota entro il termine",
            "Giorni per la risposta (mediana)",
            "Giorni per la risposta (90° percentile)",
            "Scadute oggi",
        ],
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    key(&r.keys, "month").to_owned(),
                    r.opened.to_string(),
                    r.closed.to_string(),
                    r.closed_within_term.to_string(),
                    percent(r.share_within_term),
                    decimal(r.median_days_to_answer),
                    decimal(r.p90_days_to_answer),
                    r.currently_overdue.to_string(),
                ]
            })
            .collect(),
        chart: chart::bars(
            "grafico-termini-per-mese",
            "Quota di pratiche chiuse entro il termine, per mese",
            &months,
            &[Series {
                name: "Chiuse entro il termine".into(),
                values: rows.iter().map(|r| r.share_within_term).collect(),
            }],
            Unit::Share,
        ),
    }
}

/// A kind as a chart's axis says it (the tables use the full label).
fn kind_short(kind: &str) -> &'static str {
    match kind {
        "informazione" => "Informazioni",
        "segnalazione" => "Segnalazioni",
        "reclamo" => "Reclami",
        "suggerimento" => "Suggerimenti",
        "accesso_agli_atti" => "Accesso agli atti",
        "accesso_civico" => "Accesso civico",
        _ => "Altro",
    }
}

fn volumes_table(rows: &[ServiceLevelRow]) -> Table {
    let kinds: Vec<String> = rows
        .iter()
        .map(|r| kind_label(key(&r.keys, "kind")).to_owned())
        .collect();
    let short: Vec<String> = rows
        .iter()
        .map(|r| kind_short(key(&r.keys, "kind")).to_owned())
        .collect();
    Table {
        id: "volumi-per-tipo",
        title: "Richieste per tipo",
        headers: vec!["Tipo", "Aperte", "Chiuse", "Scadute oggi"],
        rows: rows
            .iter()
            .zip(&kinds)
            .map(|(r, kind)| {
                vec![
                    kind.clone(),
                    r.opened.to_string(),
                    r.closed.to_string(),
                    r.currently_overdue.to_string(),
                ]
            })
            .collect(),
        chart: chart::bars(
            "grafico-volumi-per-tipo",
            "Richieste aperte e chiuse, per tipo",
            &short,
            &[
                Series {
                    name: "Aperte".into(),
                    values: rows.iter().map(|r| Some(r.opened as f64)).collect(),
                },
                Series {
                    name: "Chiuse".into(),
                    values: rows.iter().map(|r| Some(r.closed as f64)).collect(),
                },
            ],
            Unit::Count,
        ),
    }
}

/// The tables of the page, in its order.
const TABLES: [&str; 4] = [
    "soddisfazione-per-mese",
    "soddisfazione-per-canale",
    "termini-per-mese",
    "volumi-per-tipo",
];

/// One table of the page, from the API's statistics; `None` for a name the page does not have.
async fn table(
    state: &Shared,
    staff: &Staff,
    f: &StatsFilters,
    id: &str,
) -> Result<Option<Table>, ApiError> {
    let satisfaction = |group_by: &'static str| async move {
        let params = SatisfactionParams {
            from: Some(f.dal.clone()),
            to: Some(f.al.clone()),
            group_by: Some(group_by.to_owned()),
            comune: f.comune(),
            target_type: None,
            target: None,
            channel: None,
            scale: None,
            min_position: None,
        };
        let staff = Staff(staff.0.clone());
        api::satisfaction(
            State(state.clone()),
            staff,
            HeaderMap::new(),
            Params(params),
        )
        .await
        .map(|report| report.0.rows)
    };
    let levels = |group_by: &'static str| async move {
        let params = ServiceLevelParams {
            from: Some(f.dal.clone()),
            to: Some(f.al.clone()),
            group_by: Some(group_by.to_owned()),
            comune: f.comune(),
            kind: None,
            min_position: None,
        };
        let staff = Staff(staff.0.clone());
        api::service_levels(
            State(state.clone()),
            staff,
            HeaderMap::new(),
            Params(params),
        )
        .await
        .map(|report| report.0.rows)
    };
    Ok(Some(match id {
        "soddisfazione-per-mese" => satisfaction_table(
            "soddisfazione-per-mese",
            "Soddisfazione per mese",
            "month",
            &satisfaction("month,scale").await?,
        ),
        "soddisfazione-per-canale" => satisfaction_table(
            "soddisfazione-per-canale",
            "Soddisfazione per canale",
            "channel",
            &satisfaction("channel,scale").await?,
        ),
        "termini-per-mese" => within_term_table(&levels("month").await?),
        "volumi-per-tipo" => volumes_table(&levels("kind").await?),
        _ => return Ok(None),
    }))
}

/// Every table of the page.
async fn tables(state: &Shared, staff: &Staff, f: &StatsFilters) -> Result<Vec<Table>, ApiError> {
    let mut tables = Vec::with_capacity(TABLES.len());
    for id in TABLES {
        tables.extend(table(state, staff, f, id).await?);
    }
    Ok(tables)
}

#[derive(Template)]
#[template(path = "staff/stats.html")]
pub struct StatsPage {
    pub layout: Layout,
    pub filters: StatsFilters,
    pub comuni: Vec<Choice>,
    pub tables: Vec<Table>,
    pub problem: Option<String>,
    /// The filters as a query string, for the CSV links.
    pub query: String,
}

pub async fn statistics(
    State(state): State<Shared>,
    signed_in: SignedIn,
    query: Result<axum::extract::Query<StatsFilters>, QueryRejection>,
) -> Response {
    let filters = query.map(|q| q.0).unwrap_or_default().with_defaults();
    let (status, tables, problem) = match tables(&state, &signed_in.staff, &filters).await {
        Ok(tables) => (StatusCode::OK, tables, None),
        Err(e) if e.status.is_client_error() => (e.status, Vec::new(), Some(problem_text(&e))),
        Err(e) => return error_page(&state, e),
    };
    let comuni = state
        .settings
        .comuni
        .iter()
        .map(|c| (c.istat.to_string(), c.name.as_str()));
    page(
        status,
        &StatsPage {
            layout: Layout::staff(&state, "Statistiche", Section::Stats, Some(&signed_in)),
            query: filters.query(),
            filters,
            comuni: choices(comuni),
            tables,
            problem,
        },
    )
}

/// `GET /ufficio/statistiche/{table}.csv`: one table of the page as CSV (UTF-8, comma-separated,
/// the same figures and headers).
pub async fn csv(
    State(state): State<Shared>,
    signed_in: SignedIn,
    PathParams(name): PathParams<String>,
    query: Result<axum::extract::Query<StatsFilters>, QueryRejection>,
) -> Response {
    let filters = query.map(|q| q.0).unwrap_or_default().with_defaults();
    // Only the table asked for: the CSV of one chart does not pay for the others.
    let id = name.strip_suffix(".csv").unwrap_or_default();
    let table = match table(&state, &signed_in.staff, &filters, id).await {
        Ok(Some(table)) => table,
        Ok(None) => {
            return error_page(
                &state,
                ApiError::not_found("table_not_found", "Questa tabella non esiste."),
            );
        }
        Err(e) => return error_page(&state, e),
    };
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let written = writer
        .write_record(&table.headers)
        .and_then(|()| table.rows.iter().try_for_each(|r| writer.write_record(r)));
    let bytes = match (written, writer.into_inner()) {
        (Ok(()), Ok(bytes)) => bytes,
        _ => return error_page(&state, ApiError::internal()),
    };
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}_{}_{}.csv\"",
        table.id,
        filters
            .dal
            .replace(|c: char| !c.is_ascii_digit() && c != '-', ""),
        filters
            .al
            .replace(|c: char| !c.is_ascii_digit() && c != '-', "")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
