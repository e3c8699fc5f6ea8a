//! The append decision shared by every backend.
//!
//! A backend's writer takes a batch of appends, opens one write transaction, loads what the batch
//! needs (the heads of its streams, any stored events with its ids, the log's head position) and
//! hands it to [`plan_batch`]. The plan says which appends succeed, with the rows to insert, and
//! which are refused; the backend writes the rows and commits once for the whole batch (group
//! commit). Because the transaction holds the log's write lock from the loading to the commit, the
//! decisions made in memory stay true until they are durable. (PostgreSQL's writer first plans
//! from what it remembers and lets the write check it under the lock: see its module.)

use super::chain::{GENESIS, event_hash};
use super::error::{InvalidInput, StoreError};
use super::types::{
    AppendOutcome, ExpectedVersion, MAX_EVENTS_PER_APPEND, NewEvent, RecordedEvent, StreamHead,
    StreamId,
};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

pub(crate) struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// Appends of one group (the parts of one atomic multi-stream append) are stored together
    /// or not at all; the writer numbers the groups of a batch.
    pub group: usize,
}

impl AppendRequest {
    /// Validates the input before it reaches a writer, so bad input never touches the database.
    pub fn new(
        stream: StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<Self, InvalidInput> {
        if events.is_empty() {
            return Err(InvalidInput::EmptyAppend);
        }
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(InvalidInput::TooManyEvents {
                count: events.len(),
                max: MAX_EVENTS_PER_APPEND,
            });
        }
        let mut ids = HashSet::with_capacity(events.len());
        for (index, event) in events.iter_mut().enumerate() {
            event.validate(index)?;
            if !ids.insert(event.id) {
                return Err(InvalidInput::RepeatedEventId { id: event.id });
            }
        }
        Ok(Self {
            stream,
            expected,
            events,
            group: 0,
        })
    }
}

/// The appends of one job, as a writer receives them: validated, then numbered as one group.
pub(crate) fn requests_of(
    appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
) -> Result<Vec<AppendRequest>, InvalidInput> {
    if appends.is_empty() {
        return Err(InvalidInput::EmptyAppend);
    }
    appends
        .into_iter()
        .map(|(stream, expected, events)| AppendRequest::new(stream, expected, events))
        .collect()
}

/// Flattens the jobs of a batch into requests, each job a group of its own.
pub(crate) fn flatten_jobs(jobs: Vec<Vec<AppendRequest>>) -> (Vec<AppendRequest>, Vec<usize>) {
    let sizes = jobs.iter().map(Vec::len).collect();
    let requests = jobs
        .into_iter()
        .enumerate()
        .flat_map(|(group, requests)| {
            requests.into_iter().map(move |mut r| {
                r.group = group;
                r
            })
        })
        .collect();
    (requests, sizes)
}

/// Each job's answer from the results of its requests: every outcome, or the first refusal.
pub(crate) fn answers_of(
    results: Vec<Result<AppendOutcome, StoreError>>,
    sizes: &[usize],
) -> Vec<Result<Vec<AppendOutcome>, StoreError>> {
    let mut results = results.into_iter();
    sizes
        .iter()
        .map(|&n| {
            // Take the whole job's results first: stopping at its first refusal would hand the
            // rest of them to the next job.
            let job: Vec<_> = results.by_ref().take(n).collect();
            job.into_iter().collect()
        })
        .collect()
}

/// What the writer loaded inside its write transaction.
#[derive(Clone)]
pub(crate) struct BatchContext {
    /// Current heads of the batch's streams (absent: the stream does not exist).
    pub heads: HashMap<StreamId, StreamHead>,
    /// Already stored events whose ids appear in the batch.
    pub existing: HashMap<Uuid, RecordedEvent>,
    /// The log's current head position (0 when empty).
    pub head_position: u64,
    pub recorded_at: DateTime<Utc>,
}

pub(crate) struct BatchPlan {
    /// Rows to insert, in position order.
    pub new_events: Vec<RecordedEvent>,
    /// The final head of every stream the batch appended to.
    pub new_heads: Vec<StreamHead>,
    /// One result per request, in request order.
    pub results: Vec<Result<AppendOutcome, StoreError>>,
}

impl BatchPlan {
    pub fn last_position(&self) -> Option<u64> {
        self.new_events.last().map(|e| e.position)
    }

    /// After a failed commit nothing was written: every append of the batch failed with it, and
    /// no position it planned may be taken as committed (the head that wakes followers).
    pub fn fail_all(&mut self, backend: &'static str, error: impl super::Transient) {
        self.new_events.clear();
        self.new_heads.clear();
        let failure = StoreError::classified(backend, error);
        for result in &mut self.results {
            *result = Err(failure.clone());
        }
    }
}

/// Ids of the appends `plan` refused. Writers plan a batch assuming its event ids are new (the
/// unique index on ids catches a reused one at insert time, and the batch is then redone with
/// every id looked up); but a retried append usually fails its expectation and must still get its
/// original outcome, so the ids of refused appends are looked up and, if any is stored, the batch
/// is planned again with them.
pub(crate) fn refused_ids(requests: &[AppendRequest], plan: &BatchPlan) -> Vec<Uuid> {
    requests
        .iter()
        .zip(&plan.results)
        .filter(|(_, result)| result.is_err())
        .flat_map(|(request, _)| request.events.iter().map(|e| e.id))
        .collect()
}

/// Plans a batch. The requests of a group succeed together or not at all: a group with a refused
/// request is planned again left out whole, every one of its requests answered with that refusal.
pub(crate) fn plan_batch(requests: &[AppendRequest], ctx: BatchContext) -> BatchPlan {
    let mut sizes: HashMap<usize, usize> = HashMap::new();
    for request in requests {
        *sizes.entry(request.group).or_default() += 1;
    }
    let mut left_out: HashMap<usize, StoreError> = HashMap::new();
    loop {
        let plan = plan_once(requests, ctx.clone(), &left_out);
        let mut more = false;
        for (request, result) in requests.iter().zip(&plan.results) {
            if let Err(e) = result
                && sizes[&request.group] > 1
                && !left_out.contains_key(&request.group)
            {
                left_out.insert(request.group, e.clone());
                more = true;
            }
        }
        if !more {
            return plan;
        }
    }
}

fn plan_once(
    requests: &[AppendRequest],
    ctx: BatchContext,
    left_out: &HashMap<usize, StoreError>,
) -> BatchPlan {
    let BatchContext {
        mut heads,
        existing,
        head_position,
        recorded_at,
    } = ctx;
    let mut next_position = head_position + 1;
    let mut new_events: Vec<RecordedEvent> = Vec::new();
    // Ids accepted earlier in this batch, pointing into `new_events`.
    let mut accepted: HashMap<Uuid, usize> = HashMap::new();
    let mut touched: Vec<StreamId> = Vec::new();
    let mut touched_set: HashSet<StreamId> = HashSet::new();
    let mut results = Vec::with_capacity(requests.len());

    for request in requests {
        if let Some(refusal) = left_out.get(&request.group) {
            results.push(Err(refusal.clone()));
            continue;
        }
        let already_stored = request
            .events
            .iter()
            .any(|e| existing.contains_key(&e.id) || accepted.contains_key(&e.id));
        if already_stored {
            let lookup = |id: &Uuid| {
                accepted
                    .get(id)
                    .map(|&i| &new_events[i])
                    .or_else(|| existing.get(id))
            };
            results.push(replay_outcome(request, lookup));
            continue;
        }

        let head = heads.get(&request.stream);
        let actual = head.map(|h| h.version);
        if !request.expected.admits(actual) {
            results.push(Err(StoreError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            }));
            continue;
        }

        let mut version = actual.unwrap_or(0);
        let mut previous = head.map_or(GENESIS, |h| h.hash);
        let first_position = next_position;
        for event in &request.events {
            version += 1;
            let mut recorded = RecordedEvent {
                position: next_position,
                stream: request.stream.clone(),
                version,
                id: event.id,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                occurred_at: event.occurred_at,
                recorded_at,
                data: event.data.clone(),
                metadata: event.metadata.clone(),
                hash: [0; 32],
            };
            recorded.hash = event_hash(&previous, &recorded);
            previous = recorded.hash;
            accepted.insert(event.id, new_events.len());
            new_events.push(recorded);
            next_position += 1;
        }
        if touched_set.insert(request.stream.clone()) {
            touched.push(request.stream.clone());
        }
        heads.insert(
            request.stream.clone(),
            StreamHead {
                stream: request.stream.clone(),
                version,
                hash: previous,
            },
        );
        results.push(Ok(AppendOutcome {
            stream: request.stream.clone(),
            first_version: version - request.events.len() as u64 + 1,
            last_version: version,
            first_position,
            last_position: next_position - 1,
        }));
    }

    let new_heads = touched
        .into_iter()
        .filter_map(|s| heads.remove(&s))
        .collect();
    BatchPlan {
        new_events,
        new_heads,
        results,
    }
}

/// A repeated append: every event must already be stored, in this stream, in the same order and
/// with the same content; then the original outcome is returned and nothing is written.
fn replay_outcome<'a>(
    request: &AppendRequest,
    lookup: impl Fn(&Uuid) -> Option<&'a RecordedEvent>,
) -> Result<AppendOutcome, StoreError> {
    let mut stored_events = Vec::with_capacity(request.events.len());
    for event in &request.events {
        let Some(stored) = lookup(&event.id) else {
            return Err(StoreError::DuplicateEventId {
                event_id: request
                    .events
                    .iter()
                    .find_map(|e| lookup(&e.id).map(|s| s.id))
                    .unwrap_or(event.id),
                detail: "the append repeats only some of the events stored with these ids".into(),
            });
        };
        if stored.stream != request.stream {
            return Err(StoreError::DuplicateEventId {
                event_id: event.id,
                detail: format!("it belongs to stream {}", stored.stream),
            });
        }
        if !stored.same_content_as(event) {
            return Err(StoreError::DuplicateEventId {
                event_id: event.id,
                detail: "type, payload, metadata or occurred-at differ".into(),
            });
        }
        stored_events.push(stored);
    }
    let consecutive = stored_events
        .windows(2)
        .all(|w| w[1].version == w[0].version + 1);
    if !consecutive {
        return Err(StoreError::DuplicateEventId {
            event_id: request.events[0].id,
            detail: "the events were stored in another order or in separate appends".into(),
        });
    }
    let (first, last) = (stored_events[0], stored_events[stored_events.len() - 1]);
    Ok(AppendOutcome {
        stream: request.stream.clone(),
        first_version: first.version,
        last_version: last.version,
        first_position: first.position,
        last_position: last.position,
    })
}
