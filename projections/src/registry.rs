//! The one list of the read models this program keeps. `serve` and `project` run a runner for
//! each, `/readyz` reports each one's lag, `rebuild` rebuilds them by name and `query --as-of`
//! builds them into a scratch database. Adding a read model is its module and one line in
//! [`read_models`]; a consumer kept elsewhere (the workers' reactor) joins with
//! [`Registry::with`].

use crate::catalogue::Catalogue;
use crate::inbox::Inbox;
use crate::retention::Retention;
use crate::runner::{Consumer, read_model};
use crate::satisfaction::{Closures, Ratings};
use crate::subject_texts::SubjectTexts;
use crate::views::{Views, ViewsError};

#[derive(Clone)]
pub struct Registry {
    consumers: Vec<&'static dyn Consumer>,
}

/// Every read model, in the order they are reported.
pub fn read_models() -> Registry {
    Registry {
        consumers: vec![
            read_model::<Inbox>(),
            read_model::<Ratings>(),
            read_model::<Closures>(),
            read_model::<Catalogue>(),
            read_model::<SubjectTexts>(),
            read_model::<Retention>(),
        ],
    }
}

impl Registry {
    /// No consumer (a process that runs only what it adds with [`Registry::with`]).
    pub fn empty() -> Registry {
        Registry {
            consumers: Vec::new(),
        }
    }

    /// The same list with one more consumer.
    pub fn with(mut self, consumer: &'static dyn Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    pub fn all(&self) -> &[&'static dyn Consumer] {
        &self.consumers
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.consumers.iter().map(|c| c.id().name).collect()
    }

    pub fn find(&self, name: &str) -> Option<&'static dyn Consumer> {
        self.consumers.iter().copied().find(|c| c.id().name == name)
    }

    /// True when one of them unseals personal data (and so needs the vault).
    pub fn unseals(&self) -> bool {
        self.consumers.iter().any(|c| c.unseals())
    }

    /// Only the consumers named (every one when `names` is empty); an unknown name is an error
    /// that lists the known ones.
    pub fn only(&self, names: &[&str]) -> Result<Registry, String> {
        if names.is_empty() {
            return Ok(self.clone());
        }
        let consumers = names
            .iter()
            .map(|name| {
                self.find(name).ok_or_else(|| {
                    format!(
                        "unknown read model '{name}' (known: {})",
                        self.names().join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Registry { consumers })
    }

    /// Creates what each one keeps, if missing.
    pub async fn ensure_all(&self, views: &Views) -> Result<(), ViewsError> {
        for consumer in &self.consumers {
            consumer.ensure(views).await?;
        }
        Ok(())
    }
}
