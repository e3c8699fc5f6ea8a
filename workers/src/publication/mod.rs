//! The open-data publication (CAD art. 52, art. 7 c.3; d.lgs. 33/2013 art. 35): the datasets of
//! a month built from the read models ([`sportello_projections::opendata`]) and written as
//! versioned files ([`files`]) with an index `manifest.json` of every current file. The monthly
//! job runs on the 1st at `schedules.publication_at` for the month before; `sportello export`
//! runs the same code for any month.

pub mod catalog;
pub mod files;

use crate::schedule::{Duties, DutyError, Period};
use files::{Exported, Publisher, Source};
use futures::TryStreamExt;
use sportello_config::Settings;
use sportello_engine::calendar::LegalCalendar;
use sportello_engine::{EventLog, ReadAll};
use sportello_projections::Views;
use sportello_projections::opendata::{self, Area, Dataset, Month};
use sportello_projections::runner::wait_until_reached;
use std::path::PathBuf;
use std::time::Duration;

/// Everything an export needs: the read models, the log, the calendar, who publishes, where.
pub struct Publication {
    pub views: Views,
    pub log: EventLog,
    pub calendar: LegalCalendar,
    pub area: Area,
    pub publisher: Publisher,
    pub out: PathBuf,
    /// Where `out` is served, for the catalogue's links.
    pub base_url: String,
    pub contact_email: Option<String>,
}

impl Publication {
    pub fn new(settings: &Settings, views: Views, log: EventLog) -> Self {
        let seat = settings
            .comune(&settings.union.seat)
            .expect("the seat is one of the comuni (checked on load)");
        let publisher = match &settings.union.ipa {
            Some(ipa) => Publisher {
                name: settings.union.name.clone(),
                ipa: ipa.clone(),
            },
            None => Publisher {
                name: format!("Comune di {}", seat.name),
                ipa: seat.ipa.clone(),
            },
        };
        Self {
            views,
            log,
            calendar: LegalCalendar::from_settings(settings),
            area: Area {
                comuni: settings
                    .comuni
                    .iter()
                    .map(|c| (c.istat.to_string(), c.name.clone()))
                    .collect(),
                union_name: settings.union.name.clone(),
            },
            publisher,
            out: settings.opendata_dir(),
            base_url: settings.opendata_base_url(),
            contact_email: settings.opendata.contact_email.clone(),
        }
    }

    /// `position` and when the event there was recorded (the end of `month` for an empty log):
    /// what the files say they were built from, never the clock.
    pub async fn source(&self, position: u64, month: Month) -> anyhow::Result<Source> {
        let at = self
            .log
            .read_all(ReadAll {
                from: position.max(1),
                limit: Some(1),
                ..ReadAll::default()
            })
            .try_next()
            .await?
            .filter(|e| e.position == position)
            .map_or(month.end(), |e| e.recorded_at);
        Ok(Source {
            position,
            recorded_at: at,
        })
    }

    /// Waits (up to `patience`) until every read model the datasets use has applied the log up
    /// to `position`.
    pub async fn wait_for(&self, position: u64, patience: Duration) -> anyhow::Result<()> {
        let sources = opendata::sources();
        if let Some(behind) =
            wait_until_reached(&self.log, &self.views, &sources, position, patience).await?
        {
            anyhow::bail!(
                "the read model {} has not reached position {position}",
                behind.name
            );
        }
        Ok(())
    }

    /// Builds and writes one dataset for one month.
    pub async fn export(
        &self,
        dataset: Dataset,
        month: Month,
        source: Source,
    ) -> anyhow::Result<Exported> {
        let table = opendata::build(
            &self.views,
            &self.log,
            &self.calendar,
            &self.area,
            dataset,
            month,
            source.position,
        )
        .await?;
        let out = self.out.clone();
        let publisher = self.publisher.clone();
        tokio::task::spawn_blocking(move || files::write_version(&out, &table, &publisher, source))
            .await?
    }

    /// Rewrites the index `manifest.json` (every current file with its checksum) and the
    /// DCAT-AP_IT catalogue; a file whose content did not change is not touched.
    pub fn write_index(&self) -> anyhow::Result<bool> {
        let current = files::current_manifests(&self.out);
        let mut listed = Vec::new();
        let mut datasets = Vec::new();
        for (manifest, folder) in &current {
            for file in &manifest.files {
                listed.push(files::FileSum {
                    path: format!("{folder}/{}", file.path),
                    ..file.clone()
                });
            }
            datasets.push(serde_json::json!({
                "dataset": manifest.dataset,
                "period": manifest.period,
                "version": manifest.version,
                "position": manifest.position,
                "modified": manifest.modified,
            }));
        }
        let index = serde_json::json!({
            "publisher": { "name": self.publisher.name, "ipa": self.publisher.ipa },
            "licence": "CC-BY-4.0",
            "position": current.iter().map(|(m, _)| m.position).max().unwrap_or(0),
            "datasets": datasets,
            "files": listed,
        });
        std::fs::create_dir_all(&self.out)?;
        let mut bytes = serde_json::to_vec_pretty(&index)?;
        bytes.push(b'\n');
        let graph = catalog::graph(&catalog::CatalogInput {
            base: &self.base_url,
            publisher: &self.publisher,
            union_name: &self.area.union_name,
            current: &current,
            contact_email: self.contact_email.as_deref(),
        });
        let mut changed = false;
        for (name, bytes) in [
            ("catalog.ttl", catalog::turtle(&graph)?),
            ("catalog.jsonld", catalog::json_ld(&graph)?),
            ("manifest.json", bytes),
        ] {
            changed |= files::replace_file(&self.out.join(name), &bytes)?;
        }
        Ok(changed)
    }
}

/// The monthly job: every dataset of `month`, once the read models have caught up with the log
/// as it stood when the job started.
pub async fn publish(duties: &Duties, month: Period) -> Result<serde_json::Value, DutyError> {
    let Period::Month(first) = month else {
        return Err(DutyError::GivenUp(format!("{month} is not a month")));
    };
    let month = Month {
        year: chrono::Datelike::year(&first),
        month: chrono::Datelike::month(&first),
    };
    let retry = |e: anyhow::Error| DutyError::Retry(format!("{e:#}"));
    let head = duties.urp.log().head().await?;
    let publication = Publication::new(
        &duties.settings,
        duties.views.clone(),
        duties.urp.log().clone(),
    );
    publication
        .wait_for(head, Duration::from_secs(60))
        .await
        .map_err(retry)?;
    let source = publication.source(head, month).await.map_err(retry)?;
    let mut exported = Vec::new();
    for dataset in Dataset::ALL {
        exported.push(
            publication
                .export(dataset, month, source)
                .await
                .map_err(retry)?,
        );
    }
    publication.write_index().map_err(retry)?;
    Ok(serde_json::json!({
        "month": month.to_string(),
        "position": source.position,
        "datasets": exported,
    }))
}
