//! The texts staff search the inbox by: each case's subject, unsealed, under the data subject it
//! belongs to. The only read model holding personal data in clear, so it is kept apart: rows are
//! keyed by data subject, an erasure (`SubjectErased`) deletes the subject's row, and the batch
//! that does it scrubs the files (see [`crate::Views::scrub`]).
//!
//! Its runner needs the vault ([`crate::Views::with_vault`]) to unseal.

use crate::model::{Column, Projection, SqlType, SqlValue};
use crate::search::normalize;
use crate::views::{Views, ViewsError};
use sportello_engine::domain::case::CaseEvent;
use sportello_engine::vault::Unsealed;
use sportello_engine::{ReadAll, RecordedEvent};

/// The clear subject a batch's `CaseOpened` carries after [`SubjectTexts::prepare`].
const CLEAR: &str = "subject_clear";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTextRow {
    /// The data subject the texts are sealed under.
    pub id: String,
    /// The words of the subject's cases' subjects ([`normalize`]d), one case after another.
    pub text: String,
}

const COLUMNS: &[Column] = &[
    Column {
        name: "id",
        sql_type: SqlType::Text,
        indexed: false,
    },
    Column {
        name: "text",
        sql_type: SqlType::Text,
        indexed: false,
    },
];

pub struct SubjectTexts;

fn sealed_under(event: &RecordedEvent) -> Option<String> {
    match event.event_type.as_str() {
        "CaseOpened" => match event.decode::<CaseEvent>().ok()? {
            CaseEvent::CaseOpened { subject, .. } => Some(subject.subject.to_string()),
            _ => None,
        },
        "SubjectErased" => Some(event.stream.id().to_owned()),
        _ => None,
    }
}

impl Projection for SubjectTexts {
    type Row = SubjectTextRow;
    const NAME: &'static str = "subject_texts";
    /// 2: the texts are kept as words ([`normalize`]), with a full-text index.
    const VERSION: u32 = 2;
    const UNSEALS: bool = true;
    const SEARCHED: Option<&'static str> = Some("text");

    fn columns() -> &'static [Column] {
        COLUMNS
    }

    fn filter() -> ReadAll {
        ReadAll {
            categories: vec!["case".into(), "subject".into()],
            event_types: vec!["CaseOpened".into(), "SubjectErased".into()],
            ..ReadAll::default()
        }
    }

    /// The words to search; `None` when the subject was erased.
    type Event = Option<String>;

    fn decode(event: &RecordedEvent) -> Option<(String, Option<String>)> {
        let subject = sealed_under(event)?;
        if event.event_type == "SubjectErased" {
            return Some((subject, None));
        }
        // No clear text when erased before it could be unsealed: nothing to search.
        let words = serde_json::from_str::<serde_json::Value>(&event.data)
            .ok()?
            .get(CLEAR)?
            .as_str()
            .map(normalize)?;
        Some((subject, Some(words)))
    }

    fn apply(
        row: Option<SubjectTextRow>,
        key: &str,
        words: Option<String>,
    ) -> Option<SubjectTextRow> {
        let words = words?;
        let mut row = row.unwrap_or(SubjectTextRow {
            id: key.to_owned(),
            text: String::new(),
        });
        row.text.push_str(&words);
        Some(row)
    }

    /// Unseals each `CaseOpened` subject into the event's data, for `apply`.
    async fn prepare(views: &Views, events: &mut [RecordedEvent]) -> Result<(), ViewsError> {
        let Some(vault) = views.vault() else {
            return Err(ViewsError::Database(
                "the subject search needs the vault to unseal texts".into(),
            ));
        };
        for event in events.iter_mut().filter(|e| e.event_type == "CaseOpened") {
            let Ok(CaseEvent::CaseOpened { subject, .. }) = event.decode::<CaseEvent>() else {
                continue;
            };
            let clear = match vault.unseal(&subject).await {
                Ok(Unsealed::Clear(text)) => text,
                Ok(Unsealed::Erased) => continue,
                Err(e) => return Err(ViewsError::Database(format!("cannot unseal: {e}"))),
            };
            let mut data: serde_json::Value = serde_json::from_str(&event.data)
                .map_err(|e| ViewsError::Database(e.to_string()))?;
            data[CLEAR] = serde_json::Value::String(clear);
            event.data = data.to_string();
        }
        Ok(())
    }

    fn scrub_after(events: &[RecordedEvent]) -> bool {
        events.iter().any(|e| e.event_type == "SubjectErased")
    }

    fn to_values(r: &SubjectTextRow) -> Vec<SqlValue> {
        vec![SqlValue::Text(r.id.clone()), SqlValue::Text(r.text.clone())]
    }

    fn from_values(values: Vec<SqlValue>) -> Option<SubjectTextRow> {
        let mut v = values.into_iter();
        Some(SubjectTextRow {
            id: v.next()?.as_text()?.to_owned(),
            text: v.next()?.as_text()?.to_owned(),
        })
    }
}
