//! The open-data datasets (CAD art. 52, art. 7 c.3; d.lgs. 33/2013 art. 35) of one month, built
//! from the read models — never by scanning the cases' events — as tables ready to be written:
//! Italian column names and descriptions, totals per comune and for the union, small counts
//! suppressed (see [`suppression`]). Nothing sealed and no free text reaches them: the columns
//! are codes, counts and statistics, and the public catalogue's own texts.

pub mod cube;
pub mod suppression;

use crate::catalogue::Catalogue;
use crate::inbox::Inbox;
use crate::model::{Filter, Projection, SqlValue, name_of};
use crate::satisfaction::{Closures, Ratings};
use crate::service_levels::{median, percentile};
use crate::views::{Views, ViewsError};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Rome;
use cube::{Cube, CubeRow, Level};
use futures::TryStreamExt;
use sportello_engine::calendar::LegalCalendar;
use sportello_engine::domain::case::{CaseKind, Channel};
use sportello_engine::{EventLog, ReadAll};
use std::collections::{BTreeMap, HashSet};

/// The datasets, by their published names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dataset {
    ContattiUrp,
    SoddisfazioneUtenti,
    TempiDiRisposta,
    ProcedimentiEModuli,
}

impl Dataset {
    pub const ALL: [Dataset; 4] = [
        Dataset::ContattiUrp,
        Dataset::SoddisfazioneUtenti,
        Dataset::TempiDiRisposta,
        Dataset::ProcedimentiEModuli,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dataset::ContattiUrp => "contatti-urp",
            Dataset::SoddisfazioneUtenti => "soddisfazione-utenti",
            Dataset::TempiDiRisposta => "tempi-di-risposta",
            Dataset::ProcedimentiEModuli => "procedimenti-e-moduli",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn title(self) -> &'static str {
        match self {
            Dataset::ContattiUrp => "Contatti con gli Uffici Relazioni con il Pubblico",
            Dataset::SoddisfazioneUtenti => "Soddisfazione degli utenti dei servizi",
            Dataset::TempiDiRisposta => "Tempi di risposta alle richieste dei cittadini",
            Dataset::ProcedimentiEModuli => "Procedimenti, termini e moduli pubblicati",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Dataset::ContattiUrp => {
                "Richieste ricevute dagli URP (informazioni, segnalazioni, reclami, suggerimenti, \
                 accessi agli atti e accessi civici) per comune, canale di contatto, tipo e mese \
                 di ricezione (L. 150/2000 art. 8)."
            }
            Dataset::SoddisfazioneUtenti => {
                "Valutazioni date dagli utenti a servizi, pagine e pratiche concluse, per comune, \
                 scala (stelle da 1 a 5 o le tre facce di «Mettiamoci la faccia»), tipo di oggetto \
                 valutato, canale e mese: numero di valutazioni, distribuzione dei punteggi, quota \
                 di valutazioni positive, media (solo stelle) e tasso di partecipazione (CAD art. 7 \
                 c.3)."
            }
            Dataset::TempiDiRisposta => {
                "Richieste aperte e chiuse per comune, tipo e mese, quelle chiuse entro il termine \
                 (L. 241/1990, sospensioni comprese) e i giorni lavorativi dalla ricezione alla \
                 risposta: mediana e 90° percentile."
            }
            Dataset::ProcedimentiEModuli => {
                "I procedimenti pubblicati dai comuni con il termine di conclusione, i documenti \
                 che possono essere richiesti e le versioni dei moduli in vigore alla fine del \
                 mese (d.lgs. 33/2013 art. 35)."
            }
        }
    }

    /// Whether small counts are suppressed in it (the catalogue holds no counts).
    pub fn has_counts(self) -> bool {
        self != Dataset::ProcedimentiEModuli
    }
}

/// A month in Europe/Rome, the period of a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    /// `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Self> {
        let (y, m) = text.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let month = Month {
            year: y.parse().ok()?,
            month: m.parse().ok()?,
        };
        NaiveDate::from_ymd_opt(month.year, month.month, 1).map(|_| month)
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("a valid month")
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                month: self.month + 1,
                ..self
            }
        }
    }

    pub fn last_day(self) -> NaiveDate {
        self.next().first_day().pred_opt().expect("a day before")
    }

    /// The instant it starts, midnight in Rome.
    pub fn start(self) -> DateTime<Utc> {
        let midnight = self.first_day().and_hms_opt(0, 0, 0).expect("midnight");
        Rome.from_local_datetime(&midnight)
            .earliest()
            .expect("midnight exists in Rome")
            .with_timezone(&Utc)
    }

    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The comuni (ISTAT code, name) in publication order, and the union's name.
#[derive(Debug, Clone)]
pub struct Area {
    pub comuni: Vec<(String, String)>,
    pub union_name: String,
}

impl Area {
    fn codes(&self) -> Vec<String> {
        self.comuni.iter().map(|(c, _)| c.clone()).collect()
    }

    fn name_of(&self, comune: Option<&str>) -> String {
        match comune {
            None => self.union_name.clone(),
            Some(code) => self
                .comuni
                .iter()
                .find(|(c, _)| c == code)
                .map_or_else(|| code.to_owned(), |(_, n)| n.clone()),
        }
    }
}

/// Table Schema types the datasets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
    Number,
    YearMonth,
    Date,
}

/// A column: its name (the CSV header), Italian title and description, type and constraints.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub field_type: FieldType,
    pub required: bool,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    /// The values it may take, when they are a closed list.
    pub values: Option<Vec<String>>,
}

impl Field {
    fn new(
        name: &'static str,
        title: &'static str,
        description: &'static str,
        field_type: FieldType,
    ) -> Self {
        Self {
            name,
            title,
            description,
            field_type,
            required: true,
            minimum: None,
            maximum: None,
            values: None,
        }
    }

    /// A count: an integer from 0, empty when suppressed.
    fn count(name: &'static str, title: &'static str, description: &'static str) -> Self {
        Self {
            required: false,
            minimum: Some(0.0),
            ..Self::new(name, title, description, FieldType::Integer)
        }
    }

    /// A statistic: a number, empty when not computable or suppressed.
    fn statistic(
        name: &'static str,
        title: &'static str,
        description: &'static str,
        minimum: f64,
        maximum: Option<f64>,
    ) -> Self {
        Self {
            required: false,
            minimum: Some(minimum),
            maximum,
            ..Self::new(name, title, description, FieldType::Number)
        }
    }

    fn one_of(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.values = Some(values.into_iter().collect());
        self
    }
}

/// A cell's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(u64),
    /// A number written with this many decimals.
    Number(f64, usize),
    Empty,
}

/// One dataset for one month, ready to be written.
#[derive(Debug, Clone)]
pub struct Table {
    pub dataset: Dataset,
    pub month: Month,
    pub fields: Vec<Field>,
    pub primary_key: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

/// The value written in a key column of a total.
pub const TOTAL: &str = "totale";
/// The column naming the suppressed columns of a row.
pub const SUPPRESSED: &str = "valori_soppressi";

pub const SUPPRESSION_METHOD: &str = "Tutela del segreto statistico (soglia Sistan 3): i conteggi \
    pari a 1 o 2 non sono pubblicati (cella vuota), e con essi ogni statistica calcolata sugli \
    stessi dati (quote, medie, mediane, percentili, tassi). Soppressione secondaria: in ogni insieme \
    di celle che si somma a un totale pubblicato (righe, colonne, totali del comune e dell'Unione, \
    distribuzione dei punteggi) le celle soppresse sono nessuna o almeno due, scegliendo come \
    complementari le celle più piccole, così che nessun valore soppresso si ricavi per \
    sottrazione. La colonna «valori_soppressi» elenca, separate da virgola, le colonne soppresse \
    della riga.";

fn leading_fields(area: &Area) -> Vec<Field> {
    let codes = area
        .comuni
        .iter()
        .map(|(c, _)| c.clone())
        .chain([TOTAL.to_owned()]);
    vec![
        Field::new(
            "mese",
            "Mese",
            "Mese di riferimento (AAAA-MM), secondo l'ora italiana.",
            FieldType::YearMonth,
        ),
        Field::new(
            "livello",
            "Livello",
            "Dettaglio di un comune («comune»), totale di un comune («totale_comune»), \
             dettaglio dell'Unione («unione») o totale dell'Unione («totale_unione»).",
            FieldType::String,
        )
        .one_of(
            [
                Level::Comune,
                Level::ComuneTotal,
                Level::Union,
                Level::UnionTotal,
            ]
            .iter()
            .map(|l| l.name().to_owned()),
        ),
        Field::new(
            "codice_comune",
            "Codice ISTAT del comune",
            "Codice ISTAT del comune; «totale» nelle righe dell'Unione.",
            FieldType::String,
        )
        .one_of(codes),
        Field::new(
            "comune",
            "Comune",
            "Denominazione del comune, o dell'Unione nelle sue righe.",
            FieldType::String,
        ),
    ]
}

fn key_field(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    values: Vec<String>,
) -> Field {
    Field::new(name, title, description, FieldType::String)
        .one_of(values.into_iter().chain([TOTAL.to_owned()]))
}

fn suppressed_field() -> Field {
    Field {
        required: false,
        ..Field::new(
            SUPPRESSED,
            "Valori soppressi",
            "Colonne della riga non pubblicate per il segreto statistico, separate da virgola \
             (vuoto se nessuna).",
            FieldType::String,
        )
    }
}

fn channels() -> Vec<String> {
    Channel::ALL.iter().map(name_of).collect()
}

fn kinds() -> Vec<String> {
    CaseKind::ALL.iter().map(name_of).collect()
}

/// The leading cells of a cube row (month, level, comune) and its key, totals written as such.
fn row_start(area: &Area, month: Month, row: &CubeRow, key_width: usize) -> Vec<Value> {
    let mut cells = vec![
        Value::Text(month.to_string()),
        Value::Text(row.level.name().to_owned()),
        Value::Text(row.comune.clone().unwrap_or_else(|| TOTAL.to_owned())),
        Value::Text(area.name_of(row.comune.as_deref())),
    ];
    match &row.key {
        Some(key) => cells.extend(key.iter().map(|k| Value::Text(k.clone()))),
        None => cells.extend((0..key_width).map(|_| Value::Text(TOTAL.to_owned()))),
    }
    cells
}

/// A row's counts (empty where suppressed) and the names of the suppressed ones.
fn count_cells(row: &CubeRow, names: &[&'static str]) -> (Vec<Value>, Vec<&'static str>) {
    let mut hidden = Vec::new();
    let values = row
        .cell
        .counts
        .iter()
        .zip(&row.suppressed)
        .zip(names)
        .map(|((&c, &s), &name)| {
            if s {
                hidden.push(name);
                Value::Empty
            } else {
                Value::Int(c)
            }
        })
        .collect();
    (values, hidden)
}

fn ratio(numerator: u64, denominator: u64) -> Value {
    if denominator == 0 {
        Value::Empty
    } else {
        Value::Number(numerator as f64 / denominator as f64, 4)
    }
}

fn hidden_if(
    hide: bool,
    value: Value,
    name: &'static str,
    hidden: &mut Vec<&'static str>,
) -> Value {
    if hide && value != Value::Empty {
        hidden.push(name);
        Value::Empty
    } else {
        value
    }
}

fn flag(hidden: &[&str]) -> Value {
    Value::Text(hidden.join(","))
}

/// `columns` of the inbox rows a month concerns (received, answered or closed in it, by the
/// `dated` columns), or with `group_by`, those columns and a count per group: only what a
/// dataset reads, so that memory follows the month, not the log.
async fn inbox_rows(
    views: &Views,
    month: Month,
    dated: &[&str],
    columns: &[&str],
    group_by: bool,
) -> Result<Vec<Vec<SqlValue>>, ViewsError> {
    let (start, end) = (
        sportello_engine::store::rfc3339(month.start()),
        sportello_engine::store::rfc3339(month.end()),
    );
    let mut filter = Filter::new();
    let clause = dated
        .iter()
        .map(|c| format!("({c} >= ? AND {c} < ?)"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let values = dated
        .iter()
        .flat_map(|_| [SqlValue::Text(start.clone()), SqlValue::Text(end.clone())])
        .collect();
    filter.and_each(&format!("({clause})"), values);
    let list = columns.join(", ");
    let (select, tail, width) = if group_by {
        (
            format!("{list}, COUNT(*)"),
            format!(" GROUP BY {list}"),
            columns.len() + 1,
        )
    } else {
        (list, String::new(), columns.len())
    };
    let sql = format!(
        "SELECT {select} FROM {} WHERE {}{tail}",
        Inbox::table(),
        filter.sql()
    );
    views.fetch(sql, filter.params().to_vec(), width).await
}

fn text_at(row: &[SqlValue], i: usize) -> Option<&str> {
    row.get(i).and_then(SqlValue::as_text)
}

fn in_month(at: Option<&str>, month: Month) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(at?).ok()?.with_timezone(&Utc);
    (at >= month.start() && at < month.end()).then_some(at)
}

fn local_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Rome).date_naive()
}

/// `contatti-urp`: cases received per comune × channel × kind.
async fn contatti(views: &Views, area: &Area, month: Month) -> Result<Table, ViewsError> {
    let mut cube = Cube::new(1);
    let groups = inbox_rows(
        views,
        month,
        &["received_at"],
        &["comune", "channel", "kind"],
        true,
    )
    .await?;
    for row in groups {
        let (Some(comune), Some(channel), Some(kind)) =
            (text_at(&row, 0), text_at(&row, 1), text_at(&row, 2))
        else {
            continue;
        };
        let count = row.get(3).and_then(SqlValue::as_int).unwrap_or(0).max(0) as u64;
        cube.cell(comune, vec![channel.to_owned(), kind.to_owned()])
            .counts[0] += count;
    }
    let mut fields = leading_fields(area);
    fields.extend([
        key_field("canale", "Canale", "Canale di contatto.", channels()),
        key_field("tipo", "Tipo di richiesta", "Tipo di richiesta.", kinds()),
        Field::count(
            "contatti",
            "Contatti",
            "Richieste ricevute nel mese (vuoto se soppresso).",
        ),
        suppressed_field(),
    ]);
    let rows = cube
        .rows(&area.codes())
        .iter()
        .map(|row| {
            let mut cells = row_start(area, month, row, 2);
            let (counts, hidden) = count_cells(row, &["contatti"]);
            cells.extend(counts);
            cells.push(flag(&hidden));
            cells
        })
        .collect();
    Ok(Table {
        dataset: Dataset::ContattiUrp,
        month,
        fields,
        primary_key: vec!["mese", "codice_comune", "canale", "tipo"],
        rows,
    })
}

/// The days a comune's offices work: Monday to Friday, not a holiday of its calendar.
struct WorkingDays<'a> {
    calendar: &'a LegalCalendar,
    holidays: BTreeMap<(String, i32), HashSet<NaiveDate>>,
}

impl WorkingDays<'_> {
    /// Working days after `from` up to and including `to`.
    fn between(&mut self, comune: &str, from: NaiveDate, to: NaiveDate) -> i64 {
        let code = sportello_config::IstatCode::parse(comune).ok();
        let mut days = 0;
        let mut day = from;
        while day < to {
            day = day.succ_opt().expect("a next day");
            if matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                continue;
            }
            let holidays = self
                .holidays
                .entry((comune.to_owned(), day.year()))
                .or_insert_with(|| {
                    self.calendar
                        .holidays(day.year(), code.as_ref())
                        .into_iter()
                        .map(|h| h.date)
                        .collect()
                });
            if !holidays.contains(&day) {
                days += 1;
            }
        }
        days
    }
}

/// `tempi-di-risposta`: per comune × kind, cases opened and closed in the month, closed within
/// their term, and working days from receipt to answer of the cases answered in the month.
async fn tempi(
    views: &Views,
    calendar: &LegalCalendar,
    area: &Area,
    month: Month,
) -> Result<Table, ViewsError> {
    const OPENED: usize = 0;
    const CLOSED: usize = 1;
    const WITHIN: usize = 2;
    let mut working = WorkingDays {
        calendar,
        holidays: BTreeMap::new(),
    };
    let mut cube = Cube::new(3);
    let dated = ["received_at", "answered_at", "closed_at"];
    let columns = [
        "comune",
        "kind",
        "received_at",
        "answered_at",
        "closed_at",
        "due_on",
    ];
    for row in inbox_rows(views, month, &dated, &columns, false).await? {
        let (Some(comune), Some(kind), Some(received_at)) =
            (text_at(&row, 0), text_at(&row, 1), text_at(&row, 2))
        else {
            continue;
        };
        let (answered_at, closed_at, due_on) =
            (text_at(&row, 3), text_at(&row, 4), text_at(&row, 5));
        let cell = cube.cell(comune, vec![kind.to_owned()]);
        if in_month(Some(received_at), month).is_some() {
            cell.counts[OPENED] += 1;
        }
        if let Some(closed) = in_month(closed_at, month) {
            cell.counts[CLOSED] += 1;
            let due = due_on.and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            if due.is_some_and(|d| local_day(closed) <= d) {
                cell.counts[WITHIN] += 1;
            }
        }
        let received = DateTime::parse_from_rfc3339(received_at)
            .map(|t| t.with_timezone(&Utc))
            .ok();
        if let (Some(answered), Some(received)) = (in_month(answered_at, month), received) {
            cell.samples
                .push(working.between(comune, local_day(received), local_day(answered)));
        }
    }
    let mut fields = leading_fields(area);
    fields.extend([
        key_field("tipo", "Tipo di richiesta", "Tipo di richiesta.", kinds()),
        Field::count("aperte", "Richieste aperte", "Richieste ricevute nel mese."),
        Field::count("chiuse", "Richieste chiuse", "Richieste chiuse nel mese."),
        Field::count(
            "chiuse_nei_termini",
            "Chiuse nei termini",
            "Richieste chiuse nel mese entro il termine di conclusione (sospensioni comprese).",
        ),
        Field::statistic(
            "quota_nei_termini",
            "Quota chiusa nei termini",
            "Chiuse nei termini ÷ chiuse, da 0 a 1.",
            0.0,
            Some(1.0),
        ),
        Field::statistic(
            "mediana_giorni_lavorativi",
            "Mediana dei giorni lavorativi alla risposta",
            "Mediana dei giorni lavorativi (da lunedì a venerdì, festività del comune escluse) \
             dalla ricezione alla risposta, per le richieste con risposta nel mese.",
            0.0,
            None,
        ),
        Field::statistic(
            "p90_giorni_lavorativi",
            "90° percentile dei giorni lavorativi alla risposta",
            "90° percentile (rango più vicino) degli stessi giorni lavorativi.",
            0.0,
            None,
        ),
        suppressed_field(),
    ]);
    let rows = cube
        .rows(&area.codes())
        .into_iter()
        .map(|mut row| {
            let mut cells = row_start(area, month, &row, 1);
            let (counts, mut hidden) =
                count_cells(&row, &["aperte", "chiuse", "chiuse_nei_termini"]);
            cells.extend(counts);
            let c = &row.cell.counts;
            let share_hidden = row.suppressed[CLOSED] || row.suppressed[WITHIN];
            cells.push(hidden_if(
                share_hidden,
                ratio(c[WITHIN], c[CLOSED]),
                "quota_nei_termini",
                &mut hidden,
            ));
            row.cell.samples.sort_unstable();
            // A statistic of one or two answers gives them away.
            let few = suppression::is_small(row.cell.samples.len() as u64);
            let days = &row.cell.samples;
            for (value, name) in [
                (median(days), "mediana_giorni_lavorativi"),
                (percentile(days, 0.9), "p90_giorni_lavorativi"),
            ] {
                let value = value.map_or(Value::Empty, |v| Value::Number(v, 1));
                cells.push(hidden_if(few, value, name, &mut hidden));
            }
            cells.push(flag(&hidden));
            cells
        })
        .collect();
    Ok(Table {
        dataset: Dataset::TempiDiRisposta,
        month,
        fields,
        primary_key: vec!["mese", "codice_comune", "tipo"],
        rows,
    })
}

/// `soddisfazione-utenti`: per scale, comune × target type × channel; one cube per scale, since
/// scores on two scales do not add up.
async fn soddisfazione(views: &Views, area: &Area, month: Month) -> Result<Table, ViewsError> {
    const COUNT: usize = 0;
    let by_month = {
        let mut f = Filter::new();
        f.and("month = ?", SqlValue::Text(month.to_string()));
        f
    };
    let ratings = views
        .select::<Ratings>(&by_month, "id", u32::MAX as u64, 0)
        .await?;
    let closures: BTreeMap<String, u64> = views
        .select::<Closures>(&by_month, "id", u32::MAX as u64, 0)
        .await?
        .into_iter()
        .map(|c| (c.comune, c.closed.max(0) as u64))
        .collect();
    let scales = ["stars", "faces"];
    let score_names = [
        "punteggio_1",
        "punteggio_2",
        "punteggio_3",
        "punteggio_4",
        "punteggio_5",
    ];
    let mut fields = leading_fields(area);
    fields.extend([
        Field::new(
            "scala",
            "Scala",
            "«stars»: da 1 a 5 stelle; «faces»: le tre facce di «Mettiamoci la faccia» \
             (1 insoddisfatto, 2 neutro, 3 soddisfatto).",
            FieldType::String,
        )
        .one_of(scales.iter().map(|s| s.to_string())),
        key_field(
            "tipo_oggetto",
            "Oggetto valutato",
            "Servizio («service»), pagina del sito («page») o pratica conclusa («case»).",
            vec!["service".into(), "page".into(), "case".into()],
        ),
        key_field(
            "canale",
            "Canale",
            "Canale da cui è giunta la valutazione.",
            channels(),
        ),
        Field::count("valutazioni", "Valutazioni", "Numero di valutazioni."),
    ]);
    for (i, name) in score_names.iter().enumerate() {
        fields.push(Field::count(
            name,
            [
                "Punteggio 1",
                "Punteggio 2",
                "Punteggio 3",
                "Punteggio 4",
                "Punteggio 5",
            ][i],
            [
                "Valutazioni con punteggio 1.",
                "Valutazioni con punteggio 2.",
                "Valutazioni con punteggio 3.",
                "Valutazioni con punteggio 4 (solo stelle).",
                "Valutazioni con punteggio 5 (solo stelle).",
            ][i],
        ));
    }
    fields.extend([
        Field::statistic(
            "quota_positive",
            "Quota di valutazioni positive",
            "Valutazioni positive (4 o 5 stelle; la faccia soddisfatta) ÷ valutazioni, da 0 a 1.",
            0.0,
            Some(1.0),
        ),
        Field::statistic(
            "media_stelle",
            "Media delle stelle",
            "Media dei punteggi, solo per la scala a stelle.",
            1.0,
            Some(5.0),
        ),
        Field::statistic(
            "tasso_partecipazione",
            "Tasso di partecipazione",
            "Nelle righe dei totali: valutazioni di pratiche concluse su questa scala ÷ pratiche \
             chiuse nel mese dal comune (o dall'Unione).",
            0.0,
            None,
        ),
        suppressed_field(),
    ]);
    let mut rows = Vec::new();
    for scale in scales {
        let top = if scale == "stars" { 5 } else { 3 };
        let mut cube = Cube::new(6).with_row_equation(COUNT, (1..=top).collect());
        // Ratings of closed cases per comune, for the participation rate.
        let mut case_ratings: BTreeMap<String, u64> = BTreeMap::new();
        for r in ratings.iter().filter(|r| r.scale == scale) {
            let cell = cube.cell(&r.comune, vec![r.target_type.clone(), r.channel.clone()]);
            cell.counts[COUNT] += r.count.max(0) as u64;
            for (i, d) in r.distribution.iter().enumerate() {
                cell.counts[1 + i] += (*d).max(0) as u64;
            }
            if r.target_type == "case" {
                *case_ratings.entry(r.comune.clone()).or_default() += r.count.max(0) as u64;
            }
        }
        for row in cube.rows(&area.codes()) {
            let mut cells = row_start(area, month, &row, 2);
            cells.insert(4, Value::Text(scale.to_owned()));
            let (mut counts, mut hidden) = count_cells(
                &row,
                &["valutazioni"]
                    .into_iter()
                    .chain(score_names)
                    .collect::<Vec<_>>(),
            );
            // The faces have no fourth and fifth score: empty, not zero.
            if scale == "faces" {
                counts[4] = Value::Empty;
                counts[5] = Value::Empty;
            }
            cells.extend(counts);
            let c = &row.cell.counts;
            let any_hidden = row.suppressed.iter().any(|s| *s);
            let positive = if scale == "stars" { c[4] + c[5] } else { c[3] };
            cells.push(hidden_if(
                any_hidden,
                ratio(positive, c[COUNT]),
                "quota_positive",
                &mut hidden,
            ));
            let mean = (scale == "stars" && c[COUNT] > 0).then(|| {
                let sum: u64 = (1..=5).map(|s| s as u64 * c[s]).sum();
                Value::Number(sum as f64 / c[COUNT] as f64, 2)
            });
            cells.push(hidden_if(
                any_hidden,
                mean.unwrap_or(Value::Empty),
                "media_stelle",
                &mut hidden,
            ));
            let participation = match (&row.level, row.comune.as_deref()) {
                (Level::ComuneTotal, Some(comune)) => Some((
                    case_ratings.get(comune).copied().unwrap_or(0),
                    closures.get(comune).copied().unwrap_or(0),
                )),
                (Level::UnionTotal, None) => Some((
                    case_ratings.values().sum(),
                    area.codes().iter().filter_map(|c| closures.get(c)).sum(),
                )),
                _ => None,
            };
            let rate = participation.map_or(Value::Empty, |(rated, closed)| {
                hidden_if(
                    suppression::is_small(rated) || suppression::is_small(closed),
                    ratio(rated, closed),
                    "tasso_partecipazione",
                    &mut hidden,
                )
            });
            cells.push(rate);
            cells.push(flag(&hidden));
            rows.push(cells);
        }
    }
    Ok(Table {
        dataset: Dataset::SoddisfazioneUtenti,
        month,
        fields,
        primary_key: vec!["mese", "codice_comune", "scala", "tipo_oggetto", "canale"],
        rows,
    })
}

/// `procedimenti-e-moduli`: the catalogue as it stood at the end of the month (and at or before
/// `position`), folded from the services' and forms' own streams with the catalogue's fold.
async fn procedimenti(
    log: &EventLog,
    area: &Area,
    month: Month,
    position: u64,
) -> Result<Table, ViewsError> {
    let query = ReadAll {
        occurred_until: Some(month.end()),
        ..Catalogue::filter()
    };
    let mut catalogue: BTreeMap<String, crate::catalogue::CatalogueRow> = BTreeMap::new();
    let mut events = log.read_all(query);
    while let Some(event) = events.try_next().await? {
        if event.position > position {
            break;
        }
        if let Some((key, decoded)) = Catalogue::decode(&event) {
            let row = catalogue.remove(&key);
            if let Some(row) = Catalogue::apply(row, &key, decoded) {
                catalogue.insert(key, row);
            }
        }
    }
    let mut forms: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in catalogue
        .values()
        .filter(|r| r.id.starts_with("form:") && r.active)
    {
        let versions: BTreeMap<String, String> =
            serde_json::from_value(row.detail.get("versions").cloned().unwrap_or_default())
                .unwrap_or_default();
        let listed = versions
            .keys()
            .map(|v| {
                format!(
                    "{} v{}",
                    row.id.trim_start_matches("form:"),
                    v.trim_start_matches('0')
                )
            })
            .collect::<Vec<_>>();
        forms.entry(row.service.clone()).or_default().extend(listed);
    }
    let codes = area.codes();
    let fields = vec![
        Field::new(
            "data_riferimento",
            "Data di riferimento",
            "Ultimo giorno del mese: il catalogo è quello in vigore a quella data.",
            FieldType::Date,
        ),
        Field::new(
            "codice_servizio",
            "Codice del servizio",
            "Codice del procedimento.",
            FieldType::String,
        ),
        Field::new(
            "servizio",
            "Servizio",
            "Denominazione del procedimento.",
            FieldType::String,
        ),
        Field::new(
            "categoria",
            "Categoria",
            "Area tematica del servizio.",
            FieldType::String,
        ),
        Field::new(
            "comuni",
            "Comuni",
            "Codici ISTAT dei comuni che offrono il servizio, separati da punto e virgola.",
            FieldType::String,
        ),
        Field {
            minimum: Some(1.0),
            maximum: Some(180.0),
            ..Field::new(
                "termine_giorni",
                "Termine in giorni",
                "Termine massimo di conclusione in giorni (L. 241/1990 art. 2).",
                FieldType::Integer,
            )
        },
        Field {
            required: false,
            ..Field::new(
                "documenti_richiesti",
                "Documenti richiesti",
                "Documenti che possono essere richiesti, separati da punto e virgola (d.lgs. \
                 33/2013 art. 35: nessun altro può essere chiesto).",
                FieldType::String,
            )
        },
        Field {
            required: false,
            ..Field::new(
                "moduli",
                "Moduli in vigore",
                "Moduli utilizzabili e loro versioni («modulo vN»), separati da punto e virgola.",
                FieldType::String,
            )
        },
    ];
    let day = month.last_day().format("%Y-%m-%d").to_string();
    let rows = catalogue
        .values()
        .filter(|r| r.id.starts_with("service:") && r.active)
        .filter_map(|r| {
            serde_json::from_value::<sportello_engine::domain::service::ServiceCard>(
                r.detail.clone(),
            )
            .ok()
        })
        .filter(|card| card.comuni.iter().any(|c| codes.contains(c)))
        .map(|card| {
            let text_or_empty = |t: String| {
                if t.is_empty() {
                    Value::Empty
                } else {
                    Value::Text(t)
                }
            };
            vec![
                Value::Text(day.clone()),
                Value::Text(card.code.clone()),
                Value::Text(card.title),
                Value::Text(card.category),
                Value::Text(card.comuni.join(";")),
                Value::Int(u64::from(card.term_days)),
                text_or_empty(card.documents.join(";")),
                text_or_empty(forms.remove(&card.code).unwrap_or_default().join(";")),
            ]
        })
        .collect();
    Ok(Table {
        dataset: Dataset::ProcedimentiEModuli,
        month,
        fields,
        primary_key: vec!["data_riferimento", "codice_servizio"],
        rows,
    })
}

/// The tables of `dataset` for `month`, from the read models in `views` and (for the catalogue)
/// the services' streams up to `position`.
pub async fn build(
    views: &Views,
    log: &EventLog,
    calendar: &LegalCalendar,
    area: &Area,
    dataset: Dataset,
    month: Month,
    position: u64,
) -> Result<Table, ViewsError> {
    match dataset {
        Dataset::ContattiUrp => contatti(views, area, month).await,
        Dataset::SoddisfazioneUtenti => soddisfazione(views, area, month).await,
        Dataset::TempiDiRisposta => tempi(views, calendar, area, month).await,
        Dataset::ProcedimentiEModuli => procedimenti(log, area, month, position).await,
    }
}

/// The read models the datasets are built from: an export waits until each has reached the
/// position it is built from.
pub fn sources() -> [&'static dyn crate::Consumer; 3] {
    [
        crate::read_model::<Inbox>(),
        crate::read_model::<Ratings>(),
        crate::read_model::<Closures>(),
    ]
}
