//! The monthly open-data publication, on the 1st at `schedules.publication_at` for the month
//! before. This job fixes what the publication of a month is built from: the log position it
//! read up to, recorded with the period (`ScheduledRunDone`), so that the same month built again
//! from the same position gives the same files. The datasets, their files and the DCAT-AP_IT
//! catalogue are written here by the open-data work that follows; until then the record says
//! that no dataset was written.

use crate::schedule::{Duties, DutyError, Period};

pub async fn publish(duties: &Duties, month: Period) -> Result<serde_json::Value, DutyError> {
    let position = duties.urp.log().head().await?;
    Ok(serde_json::json!({
        "month": month.to_string(),
        "position": position,
        "datasets": [],
    }))
}
