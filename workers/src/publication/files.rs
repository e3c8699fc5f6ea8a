//! The files of one dataset and month: CSV and JSON of the same table, its Frictionless
//! `datapackage.json` and a `manifest.json` of checksums, in a version folder
//! `<dataset>/<YYYY-MM>/v<N>/` written beside and renamed into place. A new version appears
//! only when the data changed; the old ones stay where they were.

use serde::Serialize;
use serde::ser::SerializeMap;
use sha2::{Digest, Sha256};
use sportello_projections::opendata::{Field, FieldType, SUPPRESSION_METHOD, Table, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Who publishes, for the descriptor.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub name: String,
    pub ipa: String,
}

/// Where the data came from: the log position and the date of the event there.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub position: u64,
    /// When the event at `position` was recorded (what "modified" says: never the clock).
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// What an export of one dataset and month did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exported {
    pub dataset: String,
    pub month: String,
    pub version: u32,
    /// False when the data was the same as the current version's: nothing was written.
    pub written: bool,
}

pub fn csv_bytes(table: &Table) -> anyhow::Result<Vec<u8>> {
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    out.write_record(table.fields.iter().map(|f| f.name))?;
    for row in &table.rows {
        out.write_record(row.iter().map(|v| match v {
            Value::Text(t) => t.clone(),
            Value::Int(n) => n.to_string(),
            Value::Number(x, decimals) => format!("{x:.decimals$}"),
            Value::Empty => String::new(),
        }))?;
    }
    Ok(out.into_inner()?)
}

/// A row as a JSON object, its keys in the columns' order.
struct JsonRow<'a> {
    fields: &'a [Field],
    values: &'a [Value],
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (field, value) in self.fields.iter().zip(self.values) {
            match value {
                Value::Text(t) => map.serialize_entry(field.name, t)?,
                Value::Int(n) => map.serialize_entry(field.name, n)?,
                Value::Number(x, decimals) => {
                    // The number as the CSV writes it, so both files say the same.
                    let rounded: f64 = format!("{x:.decimals$}").parse().unwrap_or(*x);
                    map.serialize_entry(field.name, &rounded)?
                }
                Value::Empty => map.serialize_entry(field.name, &())?,
            }
        }
        map.end()
    }
}

pub fn json_bytes(table: &Table) -> anyhow::Result<Vec<u8>> {
    let rows: Vec<JsonRow> = table
        .rows
        .iter()
        .map(|values| JsonRow {
            fields: &table.fields,
            values,
        })
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&rows)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn table_schema(table: &Table) -> serde_json::Value {
    let fields: Vec<serde_json::Value> = table
        .fields
        .iter()
        .map(|f| {
            let (kind, format) = match f.field_type {
                FieldType::String => ("string", None),
                FieldType::Integer => ("integer", None),
                FieldType::Number => ("number", None),
                FieldType::YearMonth => ("yearmonth", None),
                FieldType::Date => ("date", Some("%Y-%m-%d")),
            };
            let mut constraints = serde_json::Map::new();
            if f.required {
                constraints.insert("required".into(), true.into());
            }
            if let Some(min) = f.minimum {
                constraints.insert("minimum".into(), number(min, f.field_type));
            }
            if let Some(max) = f.maximum {
                constraints.insert("maximum".into(), number(max, f.field_type));
            }
            if let Some(values) = &f.values {
                constraints.insert("enum".into(), values.clone().into());
            }
            let mut field = serde_json::json!({
                "name": f.name,
                "title": f.title,
                "description": f.description,
                "type": kind,
            });
            if let Some(format) = format {
                field["format"] = format.into();
            }
            if !constraints.is_empty() {
                field["constraints"] = constraints.into();
            }
            field
        })
        .collect();
    serde_json::json!({
        "fields": fields,
        "primaryKey": table.primary_key,
        "missingValues": [""],
    })
}

fn number(x: f64, kind: FieldType) -> serde_json::Value {
    if kind == FieldType::Integer {
        (x as i64).into()
    } else {
        x.into()
    }
}

const MONTHS: [&str; 12] = [
    "gennaio",
    "febbraio",
    "marzo",
    "aprile",
    "maggio",
    "giugno",
    "luglio",
    "agosto",
    "settembre",
    "ottobre",
    "novembre",
    "dicembre",
];

/// `novembre 2026`.
pub fn month_in_italian(month: sportello_projections::opendata::Month) -> String {
    format!("{} {}", MONTHS[month.month as usize - 1], month.year)
}

pub fn file_stem(table: &Table) -> String {
    format!("{}-{}", table.dataset.name(), table.month)
}

fn datapackage(
    table: &Table,
    publisher: &Publisher,
    source: Source,
    version: u32,
) -> serde_json::Value {
    let stem = file_stem(table);
    let schema = table_schema(table);
    let mut description = format!(
        "{}\n\nFile CSV in UTF-8, separatore virgola, intestazione con i nomi delle colonne, \
         date ISO 8601 (AAAA-MM-GG, mesi AAAA-MM), punto come separatore decimale; lo stesso \
         contenuto in JSON (un oggetto per riga, null per le celle vuote).",
        table.dataset.description()
    );
    if table.dataset.has_counts() {
        description.push_str("\n\n");
        description.push_str(SUPPRESSION_METHOD);
    }
    serde_json::json!({
        "name": stem,
        "title": format!("{} — {}", table.dataset.title(), month_in_italian(table.month)),
        "description": description,
        "version": version.to_string(),
        "created": sportello_engine::store::rfc3339(source.recorded_at),
        "keywords": ["URP", "open data", table.dataset.name()],
        "licenses": [{
            "name": "CC-BY-4.0",
            "path": "https://creativecommons.org/licenses/by/4.0/",
            "title": "Creative Commons Attribution 4.0 International",
        }],
        "sources": [{
            "title": format!(
                "Registro degli eventi di sportello, fino alla posizione {}",
                source.position
            ),
        }],
        "contributors": [{
            "title": publisher.name,
            "role": "publisher",
            "organization": format!("IPA {}", publisher.ipa),
        }],
        "resources": [
            {
                "name": format!("{stem}-csv"),
                "path": format!("{stem}.csv"),
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "dialect": { "delimiter": ",", "header": true },
                "schema": schema,
            },
            {
                "name": format!("{stem}-json"),
                "path": format!("{stem}.json"),
                "format": "json",
                "mediatype": "application/json",
                "encoding": "utf-8",
                "schema": schema,
            },
        ],
    })
}

/// A file of a version and its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FileSum {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// `manifest.json` of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub dataset: String,
    pub period: String,
    pub version: u32,
    /// The log position the data was built from.
    pub position: u64,
    /// When the event at `position` was recorded.
    pub modified: String,
    pub files: Vec<FileSum>,
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `<out>/<dataset>/<YYYY-MM>/`.
pub fn period_dir(out: &Path, dataset: &str, period: &str) -> PathBuf {
    out.join(dataset).join(period)
}

/// The versions of a period, oldest first.
pub fn versions(dir: &Path) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix('v')?.parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// Writes `table` as a new version unless the current one holds the same data.
pub fn write_version(
    out: &Path,
    table: &Table,
    publisher: &Publisher,
    source: Source,
) -> anyhow::Result<Exported> {
    let stem = file_stem(table);
    let dir = period_dir(out, table.dataset.name(), &table.month.to_string());
    let data = [
        (format!("{stem}.csv"), csv_bytes(table)?),
        (format!("{stem}.json"), json_bytes(table)?),
    ];
    let current = versions(&dir).last().copied();
    let exported = |version, written| Exported {
        dataset: table.dataset.name().to_owned(),
        month: table.month.to_string(),
        version,
        written,
    };
    if let Some(v) = current {
        let unchanged = data.iter().all(|(name, bytes)| {
            std::fs::read(dir.join(format!("v{v}")).join(name)).is_ok_and(|old| old == *bytes)
        });
        if unchanged {
            return Ok(exported(v, false));
        }
    }
    let version = current.unwrap_or(0) + 1;
    let descriptor = serde_json::to_vec_pretty(&datapackage(table, publisher, source, version))?;
    let mut files: Vec<(String, Vec<u8>)> = data.into();
    files.push(("datapackage.json".into(), descriptor));
    let manifest = Manifest {
        dataset: table.dataset.name().to_owned(),
        period: table.month.to_string(),
        version,
        position: source.position,
        modified: sportello_engine::store::rfc3339(source.recorded_at),
        files: files
            .iter()
            .map(|(name, bytes)| FileSum {
                path: name.clone(),
                sha256: sha256(bytes),
                bytes: bytes.len() as u64,
            })
            .collect(),
    };
    files.push((
        "manifest.json".into(),
        serde_json::to_vec_pretty(&manifest)?,
    ));

    std::fs::create_dir_all(&dir)?;
    let staging = dir.join(format!(".v{version}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging)?;
    for (name, bytes) in &files {
        let mut file = std::fs::File::create(staging.join(name))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    // A version that appeared meanwhile (another process) wins; this one is dropped.
    if let Err(e) = std::fs::rename(&staging, dir.join(format!("v{version}"))) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(anyhow::anyhow!(
            "cannot publish {stem} version {version}: {e}"
        ));
    }
    Ok(exported(version, true))
}

/// The current version's manifest of every dataset and period under `out`, with its folder
/// relative to `out` (`contatti-urp/2026-11/v2`).
pub fn current_manifests(out: &Path) -> Vec<(Manifest, String)> {
    let mut found = Vec::new();
    let mut datasets: Vec<_> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    datasets.sort_by_key(|e| e.file_name());
    for dataset in datasets.into_iter().filter(|e| e.path().is_dir()) {
        let mut periods: Vec<_> = std::fs::read_dir(dataset.path())
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        periods.sort_by_key(|e| e.file_name());
        for period in periods {
            let Some(v) = versions(&period.path()).last().copied() else {
                continue;
            };
            let dir = period.path().join(format!("v{v}"));
            if let Some(manifest) = std::fs::read(dir.join("manifest.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
            {
                let folder = format!(
                    "{}/{}/v{v}",
                    dataset.file_name().to_string_lossy(),
                    period.file_name().to_string_lossy()
                );
                found.push((manifest, folder));
            }
        }
    }
    found
}

/// Writes `bytes` to `path` through a file beside it, renamed into place; unless it already
/// holds them.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    let staging = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&staging)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&staging, path)?;
    Ok(true)
}
