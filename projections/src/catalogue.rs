//! The public catalogue (d.lgs. 33/2013 art. 35): the active services of each comune with what
//! they require and the forms that can be used now.

use crate::model::{Column, Filter, Projection, SqlType, SqlValue};
use crate::views::{Views, ViewsError};
use serde::Serialize;
use sportello_engine::domain::service::{FormEvent, ServiceEvent};
use sportello_engine::{ReadAll, RecordedEvent};
use std::collections::BTreeMap;

/// One row per service stream and per form stream.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogueRow {
    /// `service:<code>` or `form:<id>`.
    pub id: String,
    pub service: String,
    pub title: String,
    pub active: bool,
    /// The service card (JSON) for a service; for a form, its usable versions and their titles.
    pub detail: serde_json::Value,
}

const fn text(name: &'static str, indexed: bool) -> Column {
    Column {
        name,
        sql_type: SqlType::Text,
        indexed,
    }
}

const COLUMNS: &[Column] = &[
    text("id", false),
    text("service", true),
    text("title", false),
    Column {
        name: "active",
        sql_type: SqlType::Integer,
        indexed: false,
    },
    text("detail", false),
];

pub struct Catalogue;

/// A service's or a form's event.
pub enum CatalogueEvent {
    Service(ServiceEvent),
    Form(FormEvent),
}

impl Projection for Catalogue {
    type Row = CatalogueRow;
    const NAME: &'static str = "catalogue";
    const VERSION: u32 = 1;

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn filter() -> ReadAll {
        ReadAll {
            categories: vec!["service".into(), "form".into()],
            ..ReadAll::default()
        }
    }

    type Event = CatalogueEvent;

    fn decode(event: &RecordedEvent) -> Option<(String, CatalogueEvent)> {
        let decoded = match event.stream.category() {
            "service" => CatalogueEvent::Service(event.decode().ok()?),
            _ => CatalogueEvent::Form(event.decode().ok()?),
        };
        let key = format!("{}:{}", event.stream.category(), event.stream.id());
        Some((key, decoded))
    }

    fn apply(
        row: Option<CatalogueRow>,
        key: &str,
        decoded: CatalogueEvent,
    ) -> Option<CatalogueRow> {
        let id = key.to_owned();
        match decoded {
            CatalogueEvent::Service(service) => match service {
                ServiceEvent::ServicePublished { card } | ServiceEvent::ServiceRevised { card } => {
                    Some(CatalogueRow {
                        id,
                        service: card.code.clone(),
                        title: card.title.clone(),
                        active: true,
                        detail: serde_json::to_value(&card).ok()?,
                    })
                }
                ServiceEvent::ServiceWithdrawn { .. } => {
                    row.map(|r| CatalogueRow { active: false, ..r })
                }
            },
            CatalogueEvent::Form(form_event) => {
                let mut row = row.unwrap_or(CatalogueRow {
                    id,
                    service: String::new(),
                    title: String::new(),
                    active: false,
                    detail: serde_json::json!({}),
                });
                let mut versions: BTreeMap<String, String> =
                    serde_json::from_value(row.detail.get("versions").cloned().unwrap_or_default())
                        .unwrap_or_default();
                match form_event {
                    FormEvent::FormVersionPublished { version, form } => {
                        row.service = form.service.clone();
                        row.title = form.title.clone();
                        versions.insert(format!("{version:06}"), form.title);
                    }
                    FormEvent::FormVersionWithdrawn { version } => {
                        versions.remove(&format!("{version:06}"));
                    }
                }
                row.active = !versions.is_empty();
                row.detail = serde_json::json!({ "versions": versions });
                Some(row)
            }
        }
    }

    fn to_values(r: &CatalogueRow) -> Vec<SqlValue> {
        vec![
            SqlValue::Text(r.id.clone()),
            SqlValue::Text(r.service.clone()),
            SqlValue::Text(r.title.clone()),
            SqlValue::Int(i64::from(r.active)),
            SqlValue::Text(r.detail.to_string()),
        ]
    }

    fn from_values(values: Vec<SqlValue>) -> Option<CatalogueRow> {
        let text = |i: usize| values.get(i).and_then(|v| v.as_text()).map(str::to_owned);
        Some(CatalogueRow {
            id: text(0)?,
            service: text(1)?,
            title: text(2)?,
            active: values.get(3)?.as_int()? != 0,
            detail: serde_json::from_str(&text(4)?).ok()?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishedForm {
    pub id: String,
    /// The latest version that may be used.
    pub version: u32,
    pub title: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogueEntry {
    #[serde(flatten)]
    pub card: serde_json::Value,
    pub forms: Vec<PublishedForm>,
}

/// Active services (of `comune` when given), each with its usable forms, by title.
pub async fn query(views: &Views, comune: Option<&str>) -> Result<Vec<CatalogueEntry>, ViewsError> {
    let rows = views
        .select::<Catalogue>(
            Filter::new().and("active = ?", SqlValue::Int(1)),
            "title",
            u32::MAX as u64,
            0,
        )
        .await?;
    let mut forms: BTreeMap<String, Vec<PublishedForm>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.id.starts_with("form:")) {
        let versions: BTreeMap<String, String> =
            serde_json::from_value(row.detail.get("versions").cloned().unwrap_or_default())
                .unwrap_or_default();
        if let Some((version, title)) = versions.iter().next_back() {
            forms
                .entry(row.service.clone())
                .or_default()
                .push(PublishedForm {
                    id: row.id.trim_start_matches("form:").to_owned(),
                    version: version.parse().unwrap_or(0),
                    title: title.clone(),
                });
        }
    }
    Ok(rows
        .into_iter()
        .filter(|r| r.id.starts_with("service:"))
        .filter(|r| {
            comune.is_none_or(|c| {
                r.detail
                    .get("comuni")
                    .and_then(|v| v.as_array())
                    .is_some_and(|list| list.iter().any(|x| x == c))
            })
        })
        .map(|r| CatalogueEntry {
            forms: forms.remove(&r.service).unwrap_or_default(),
            card: r.detail,
        })
        .collect())
}

/// The active service with this code, with its usable forms.
pub async fn find(views: &Views, code: &str) -> Result<Option<CatalogueEntry>, ViewsError> {
    Ok(query(views, None)
        .await?
        .into_iter()
        .find(|e| e.card.get("code").and_then(serde_json::Value::as_str) == Some(code)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sportello_engine::domain::service::{FormDef, ServiceCard};
    use sportello_engine::{Metadata, StreamId};

    fn recorded(stream: &str, position: u64, data: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: StreamId::parse(stream).unwrap(),
            version: position,
            id: uuid::Uuid::now_v7(),
            event_type: data["type"].as_str().unwrap().into(),
            schema_version: 1,
            occurred_at: chrono::Utc::now(),
            recorded_at: chrono::Utc::now(),
            data: data.to_string(),
            metadata: Metadata::default(),
            hash: [0; 32],
        }
    }

    fn fold(events: &[RecordedEvent]) -> Option<CatalogueRow> {
        events.iter().fold(None, Catalogue::apply_event)
    }

    #[test]
    fn a_form_offers_its_latest_usable_version_and_a_withdrawn_service_leaves_the_catalogue() {
        let card = ServiceCard {
            code: "mensa".into(),
            title: "Mensa".into(),
            comuni: vec!["073004".into()],
            category: "Istruzione".into(),
            description: "d".into(),
            audience: "a".into(),
            documents: vec![],
            term_days: 30,
        };
        let form = FormDef {
            service: "mensa".into(),
            title: "Iscrizione".into(),
            fields: vec![],
            documents: vec![],
        };
        let publish = |v: u32| {
            serde_json::to_value(FormEvent::FormVersionPublished {
                version: v,
                form: form.clone(),
            })
            .unwrap()
        };
        let form_row = fold(&[
            recorded("form-mensa", 1, publish(1)),
            recorded("form-mensa", 2, publish(2)),
            recorded(
                "form-mensa",
                3,
                serde_json::to_value(FormEvent::FormVersionWithdrawn { version: 2 }).unwrap(),
            ),
        ])
        .unwrap();
        assert!(form_row.active);
        let versions: BTreeMap<String, String> =
            serde_json::from_value(form_row.detail["versions"].clone()).unwrap();
        assert_eq!(versions.keys().collect::<Vec<_>>(), ["000001"]);

        let published = serde_json::to_value(ServiceEvent::ServicePublished { card }).unwrap();
        let withdrawn = serde_json::to_value(ServiceEvent::ServiceWithdrawn {
            reason: "chiuso".into(),
        })
        .unwrap();
        assert!(
            fold(&[recorded("service-mensa", 1, published.clone())])
                .unwrap()
                .active
        );
        assert!(
            !fold(&[
                recorded("service-mensa", 1, published),
                recorded("service-mensa", 2, withdrawn)
            ])
            .unwrap()
            .active
        );
    }
}
