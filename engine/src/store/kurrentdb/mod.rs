//! The KurrentDB backend (cargo feature `kurrentdb`), on the official `kurrentdb` client.
//!
//! **It has not run against a KurrentDB server in this project's CI**: none can be installed on
//! the machines it is built on. Its mapping is unit-tested offline (`mapping`, `v2`) and the one
//! conformance suite runs against a server when `SPORTELLO_TEST_KURRENTDB_URL` names one (see the
//! README). ADR 0010 explains the choices; in short:
//!
//! - **Writes** go through one writer task per process, in the order they were queued (a
//!   register's next number may expect the version a queued append is to make). For each append
//!   the writer reads the streams' last events (their versions and hashes), plans with the shared
//!   `store::append` rules, and appends at exactly the revisions it read, so that the hash chain
//!   it computed is the one stored; another writer in between makes the server refuse, and the
//!   append is planned again.
//! - **Several streams in one commit** (a case and its register number) use protocol v2's
//!   `AppendSession` (KurrentDB 25.1 or later): every part or none. An older server refuses such
//!   appends with a message naming the version needed; single-stream appends work on 22.10 and
//!   later.
//! - **Positions** are `2 × log offset + 2`: increasing, never adjacent (see `mapping`). Readers
//!   page by count ([`EventStore::read_page`]); a runner's checkpoint is the last position it
//!   applied, as on every backend; lag is measured in positions, not events.
//! - **Repeated appends**: KurrentDB has no index by event id, so a retry is recognised by reading
//!   the stream where its events would be (at the version it expected, or, for `Any`, among the
//!   stream's last [`ANY_LOOKBACK`] events). An id reused in *another* stream is not detected here
//!   (SQLite and PostgreSQL refuse it): the engine's ids are UUIDv7 or derived from the command, so
//!   this only matters for a caller that reuses ids on purpose.
//! - **Time filters** are applied here, on the recorded `occurred_at`, after the server's filters
//!   by stream prefix or event type.

mod mapping;
mod v2;

use super::append::{AppendRequest, BatchContext, answers_of, plan_batch, requests_of};
use super::types::truncate_to_micros;
use super::{
    AppendOutcome, EventStore, ExpectedVersion, InvalidInput, NewEvent, QueuedAppend, ReadAll,
    RecordedEvent, StoreError, StreamHead, StreamId,
};
use async_trait::async_trait;
use chrono::Utc;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ReadAllOptions, ReadStreamOptions,
    StreamPosition, SubscribeToAllOptions,
};
use mapping::{BACKEND, Envelope, Names, Stored, decode, engine_position, store_error};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

/// How many of a stream's last events are searched for a repeated `Any` append.
pub const ANY_LOOKBACK: usize = 256;
/// Plans tried before an append gives up on streams that keep changing under it.
const WRITE_ATTEMPTS: usize = 8;
/// Events read per request to the server when paging through `$all`.
const READ_BATCH: usize = 1024;

/// The environment variable naming the server the conformance suite runs against.
pub const TEST_URL_VARIABLE: &str = "SPORTELLO_TEST_KURRENTDB_URL";

struct Shared {
    client: Client,
    names: Names,
    /// Protocol v2 over its own channel to the first host of the URL (the leader, for writes).
    v2: tonic::transport::Channel,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// The highest position this process knows of, for [`EventStore::wait_for_append`].
    head: watch::Sender<u64>,
}

struct Job {
    requests: Vec<AppendRequest>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, StoreError>>,
}

pub struct KurrentStore {
    shared: Arc<Shared>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Dropped with the store: stops the task that follows the server's appends.
    _follower: oneshot::Sender<()>,
}

/// rustls finds two crypto providers in a build with this backend (ring through sqlx, aws-lc-rs
/// through tonic) and then picks neither by itself: a process installs one before any TLS client
/// is built (`main` does, first thing). Installing it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

impl KurrentStore {
    /// Connects to the server named by `url` (`kurrentdb://HOST:2113?tls=false`, or any form the
    /// client accepts) and checks that it answers.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_prefix(url, "").await
    }

    /// Like [`KurrentStore::connect`], with every stream name behind `prefix` (a-z, 0-9, `_`): how
    /// several installations or test runs share one server without seeing each other.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        install_crypto_provider();
        let names = Names::new(prefix)?;
        let settings: ClientSettings =
            url.parse()
                .map_err(|e: kurrentdb::ClientSettingsParseError| {
                    InvalidInput::MalformedStoreUrl(format!("KurrentDB: {}", e.message()))
                })?;
        let (v2, authorization) = v2_channel(url, &settings)?;
        let client = Client::new(settings).map_err(|e| StoreError::backend(BACKEND, e))?;
        let (head, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            client,
            names,
            v2,
            authorization,
            head,
        });
        let head = shared.last_position().await.map_err(|e| match e {
            StoreError::Unavailable { detail, .. } => StoreError::Unavailable {
                backend: BACKEND,
                detail: format!(
                    "no KurrentDB server answers at {}: {detail}",
                    sportello_config::SecretUrl::new(url)
                ),
            },
            other => other,
        })?;
        shared.head.send_replace(head);
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(shared.clone(), queue));
        let (follower, stop) = oneshot::channel();
        tokio::spawn(follow(shared.clone(), stop));
        Ok(Self {
            shared,
            jobs,
            _follower: follower,
        })
    }
}

/// A lazily connected channel for protocol v2, with the URL's credentials as basic auth.
fn v2_channel(
    url: &str,
    settings: &ClientSettings,
) -> Result<
    (
        tonic::transport::Channel,
        Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ),
    StoreError,
> {
    let malformed = |detail: String| StoreError::from(InvalidInput::MalformedStoreUrl(detail));
    let host = settings
        .hosts()
        .first()
        .ok_or_else(|| malformed("KurrentDB: the URL names no host".into()))?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(settings.to_uri(host).to_string())
        .map_err(|e| malformed(format!("KurrentDB: {e}")))?;
    if settings.is_secure_mode_enabled() {
        let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = settings.tls_ca_file() {
            let pem = std::fs::read(ca).map_err(|e| {
                malformed(format!("KurrentDB: the CA file {ca} cannot be read: {e}"))
            })?;
            tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| malformed(format!("KurrentDB TLS: {e}")))?;
    }
    let authorization = credentials(url).map(|(user, password)| {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {token}")
            .parse()
            .expect("base64 is valid header text")
    });
    Ok((endpoint.connect_lazy(), authorization))
}

/// `user:password` from the URL's authority, percent-decoded.
fn credentials(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((decode(user), decode(password)))
}

async fn write_loop(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = queue.recv().await {
        let answer = shared.write(job.requests).await;
        let _ = job.reply.send(answer);
    }
}

/// Follows the server's appends (this process's and every other's) to wake waiting readers.
async fn follow(shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::End)
        .filter(shared.names.everything());
    loop {
        let mut subscription = shared.client.subscribe_to_all(&options).await;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                next = subscription.next() => match next {
                    Ok(event) => {
                        if let Some(Ok(position)) = event.event.map(|e| engine_position(e.position)) {
                            shared.advance(position);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "following KurrentDB's appends failed; readers poll until it resumes");
                        break;
                    }
                },
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The outcome of sending a planned append.
enum Sent {
    Stored,
    /// A stream moved between reading its head and appending: plan again.
    Moved,
}

impl Shared {
    fn advance(&self, position: u64) {
        self.head.send_if_modified(|head| {
            let moved = position > *head;
            if moved {
                *head = position;
            }
            moved
        });
    }

    async fn write(&self, requests: Vec<AppendRequest>) -> Result<Vec<AppendOutcome>, StoreError> {
        let sizes = [requests.len()];
        for _ in 0..WRITE_ATTEMPTS {
            let ctx = self.context(&requests).await?;
            let read_heads = ctx.heads.clone();
            let plan = plan_batch(&requests, ctx);
            let nothing_new = plan.new_events.is_empty();
            if nothing_new {
                // Refused, or repeated: the outcomes carry the stored positions already.
                return answers_of(plan.results, &sizes).remove(0);
            }
            match self.send(&plan.new_events, &read_heads).await? {
                Sent::Moved => continue,
                Sent::Stored => {}
            }
            let mut outcomes = answers_of(plan.results, &sizes).remove(0)?;
            // The plan numbered positions as if they were dense; the server chose them.
            for outcome in &mut outcomes {
                let count = (outcome.last_version - outcome.first_version + 1) as usize;
                let stored = self
                    .read_stream(&outcome.stream, outcome.first_version, count)
                    .await?;
                let (Some(first), Some(last)) = (stored.first(), stored.last()) else {
                    return Err(StoreError::backend(
                        BACKEND,
                        format!("{} was appended to but reads back empty", outcome.stream),
                    ));
                };
                outcome.first_position = first.position;
                outcome.last_position = last.position;
                self.advance(last.position);
            }
            return Ok(outcomes);
        }
        Err(StoreError::Unavailable {
            backend: BACKEND,
            detail: format!(
                "the streams changed under this append {WRITE_ATTEMPTS} times in a row: another writer is busy on them"
            ),
        })
    }

    /// What the plan needs: the streams' heads and the stored events a repeat would match.
    async fn context(&self, requests: &[AppendRequest]) -> Result<BatchContext, StoreError> {
        let mut heads = HashMap::new();
        for request in requests {
            if !heads.contains_key(&request.stream)
                && let Some(head) = self.last_event(&request.stream).await?
            {
                heads.insert(request.stream.clone(), head);
            }
        }
        let mut existing = HashMap::new();
        for request in requests {
            let Some(head) = heads.get(&request.stream) else {
                continue;
            };
            let (from, count) = match request.expected {
                ExpectedVersion::Exact(n) => (n + 1, request.events.len()),
                ExpectedVersion::NoStream => (1, request.events.len()),
                ExpectedVersion::Any => {
                    let count = request.events.len() + ANY_LOOKBACK;
                    (head.version.saturating_sub(count as u64) + 1, count)
                }
            };
            if from > head.version {
                continue;
            }
            let ids: HashSet<Uuid> = request.events.iter().map(|e| e.id).collect();
            for event in self.read_stream(&request.stream, from, count).await? {
                if ids.contains(&event.id) {
                    existing.insert(event.id, event);
                }
            }
        }
        Ok(BatchContext {
            heads,
            existing,
            head_position: 0,
            recorded_at: truncate_to_micros(Utc::now()),
        })
    }

    /// Sends the planned events: one stream through the client, several in one v2 session.
    async fn send(
        &self,
        events: &[RecordedEvent],
        read_heads: &HashMap<StreamId, StreamHead>,
    ) -> Result<Sent, StoreError> {
        // The parts, one per stream in order of first appearance (a session takes each stream
        // once); the events of one stream stay in version order.
        let mut parts: Vec<(&StreamId, Vec<&RecordedEvent>)> = Vec::new();
        for event in events {
            match parts.iter_mut().find(|(s, _)| **s == event.stream) {
                Some((_, part)) => part.push(event),
                None => parts.push((&event.stream, vec![event])),
            }
        }
        let version_read = |stream: &StreamId| read_heads.get(stream).map(|h| h.version);
        if let [(stream, part)] = parts.as_slice() {
            let options = AppendToStreamOptions::default()
                .stream_state(mapping::stream_state(version_read(stream)));
            let data: Vec<EventData> = part
                .iter()
                .map(|e| event_data(e))
                .collect::<Result<_, _>>()?;
            return match self
                .client
                .append_to_stream(self.names.outside(stream), &options, data)
                .await
            {
                Ok(_) => Ok(Sent::Stored),
                Err(kurrentdb::Error::WrongExpectedVersion { .. }) => Ok(Sent::Moved),
                Err(e) => Err(store_error(e)),
            };
        }
        let session = parts
            .iter()
            .map(|(stream, part)| v2::AppendRequest {
                stream: self.names.outside(stream),
                records: part
                    .iter()
                    .map(|e| v2::record(e.id, &e.event_type, &e.data, &Envelope::of(e).to_json()))
                    .collect(),
                expected_revision: Some(mapping::expected_revision(version_read(stream))),
            })
            .collect();
        match v2::append_session(self.v2.clone(), self.authorization.clone(), session).await {
            Ok(_) => Ok(Sent::Stored),
            Err(status) => match v2::refusal(status) {
                v2::Refusal::Conflict { stream } => {
                    tracing::debug!(%stream, "a stream moved before the session; planning again");
                    Ok(Sent::Moved)
                }
                v2::Refusal::Unsupported => Err(StoreError::backend(
                    BACKEND,
                    "this KurrentDB has no multi-stream append (protocol v2's AppendSession): \
                     KurrentDB 25.1 or later is needed",
                )),
                v2::Refusal::Other(status) if mapping::grpc_transient(status.code()) => {
                    Err(StoreError::Unavailable {
                        backend: BACKEND,
                        detail: status.message().to_owned(),
                    })
                }
                v2::Refusal::Other(status) => Err(StoreError::backend(
                    BACKEND,
                    format!("{:?}: {}", status.code(), status.message()),
                )),
            },
        }
    }

    /// The stream's last event as a head, `None` when the stream does not exist.
    async fn last_event(&self, stream: &StreamId) -> Result<Option<StreamHead>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .max_count(1);
        let events = self.read_stream_with(stream, &options).await?;
        Ok(events.into_iter().next().map(|e| StreamHead {
            stream: e.stream,
            version: e.version,
            hash: e.hash,
        }))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default()
            .position(mapping::stream_start(from_version))
            .forwards()
            .max_count(max);
        self.read_stream_with(stream, &options).await
    }

    async fn read_stream_with(
        &self,
        stream: &StreamId,
        options: &ReadStreamOptions,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut read = match self
            .client
            .read_stream(self.names.outside(stream), options)
            .await
        {
            Ok(read) => read,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(e)),
        };
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(event) = resolved.event
                        && let Some(event) = decode(&self.names, Stored::from(&event))?
                    {
                        events.push(event);
                    }
                }
                Ok(None) => return Ok(events),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    /// The position of this installation's last event, 0 when it has none.
    async fn last_position(&self) -> Result<u64, StoreError> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .backwards()
            .filter(self.names.everything())
            .max_count(1);
        let mut read = self.client.read_all(&options).await.map_err(store_error)?;
        loop {
            match read.next().await.map_err(store_error)? {
                Some(resolved) => {
                    if let Some(event) = resolved.event
                        && self.names.inside(event.stream_id()).is_some()
                    {
                        return engine_position(event.position);
                    }
                }
                None => return Ok(0),
            }
        }
    }

    /// Calls `each` with every event of this installation from `from` on, in log order, until it
    /// answers `false` or the log ends. Reads ask the server for `batch` events at a time.
    async fn scan(
        &self,
        query: &ReadAll,
        from: u64,
        batch: usize,
        mut each: impl FnMut(u64, Option<RecordedEvent>) -> bool,
    ) -> Result<(), StoreError> {
        let filter = self.names.filter(query);
        let mut start = from;
        loop {
            let options = ReadAllOptions::default()
                .position(mapping::read_start(start))
                .forwards()
                .filter(filter.clone())
                .max_count(batch);
            let mut read = self.client.read_all(&options).await.map_err(store_error)?;
            let mut count = 0;
            while let Some(resolved) = read.next().await.map_err(store_error)? {
                let Some(raw) = resolved.event else { continue };
                count += 1;
                let position = engine_position(raw.position)?;
                if position < start {
                    // The read starts at the event before `start` when asked for what follows it.
                    continue;
                }
                let event = decode(&self.names, Stored::from(&raw))?;
                start = position + 1;
                if !each(position, event) {
                    return Ok(());
                }
            }
            if count < batch {
                return Ok(());
            }
        }
    }
}

fn event_data(event: &RecordedEvent) -> Result<EventData, StoreError> {
    let payload: &serde_json::value::RawValue =
        serde_json::from_str(&event.data).map_err(|e| StoreError::backend(BACKEND, e))?;
    EventData::json(&event.event_type, &payload)
        .and_then(|data| data.metadata_as_json(&Envelope::of(event)))
        .map(|data| data.id(event.id))
        .map_err(|e| StoreError::backend(BACKEND, e))
}

#[async_trait]
impl EventStore for KurrentStore {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn dense_positions(&self) -> bool {
        false
    }

    fn queue_all(
        &self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<QueuedAppend, StoreError> {
        let requests = requests_of(appends)?;
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable {
            backend: BACKEND,
            detail: "the store's writer has stopped".into(),
        };
        self.jobs
            .send(Job { requests, reply })
            .map_err(|_| stopped())?;
        Ok(Box::pin(async move {
            answer.await.unwrap_or_else(|_| Err(stopped()))
        }))
    }

    async fn read_stream_page(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.shared.read_stream(stream, from_version, max).await
    }

    async fn read_range(
        &self,
        query: &ReadAll,
        from: u64,
        until: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::new();
        let mut next = from;
        // Read pages until the range is done; the caller asked for all of it.
        while next < until {
            let (page, after) = self.read_page(query, next, until, READ_BATCH).await?;
            events.extend(page);
            next = after;
        }
        Ok(events)
    }

    async fn read_page(
        &self,
        query: &ReadAll,
        from: u64,
        until: u64,
        max: usize,
    ) -> Result<(Vec<RecordedEvent>, u64), StoreError> {
        let mut events = Vec::new();
        let mut next = until;
        self.shared
            .scan(query, from, max.clamp(1, READ_BATCH), |position, event| {
                if position >= until {
                    return false;
                }
                if let Some(event) = event.filter(|e| query.matches(e)) {
                    events.push(event);
                }
                if events.len() >= max {
                    next = position + 1;
                    return false;
                }
                true
            })
            .await?;
        Ok((events, next))
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let head = self.shared.last_position().await?;
        self.shared.advance(head);
        Ok(head)
    }

    async fn streams_page(
        &self,
        after: Option<&StreamId>,
        max: usize,
    ) -> Result<Vec<StreamHead>, StoreError> {
        // No listing of streams by name: one pass over the log keeps the `max` smallest names
        // after `after`, each with its last event (memory stays at `max` entries).
        let mut heads: BTreeMap<StreamId, StreamHead> = BTreeMap::new();
        self.shared
            .scan(&ReadAll::default(), 1, READ_BATCH, |_, event| {
                let Some(event) = event else { return true };
                if after.is_some_and(|a| event.stream <= *a) {
                    return true;
                }
                let full = heads.len() >= max;
                if full
                    && heads
                        .last_key_value()
                        .is_some_and(|(last, _)| event.stream > *last)
                {
                    return true;
                }
                heads.insert(
                    event.stream.clone(),
                    StreamHead {
                        stream: event.stream,
                        version: event.version,
                        hash: event.hash,
                    },
                );
                if heads.len() > max {
                    heads.pop_last();
                }
                true
            })
            .await?;
        Ok(heads.into_values().collect())
    }

    async fn wait_for_append(&self, position: u64, timeout: Duration) {
        let mut head = self.shared.head.subscribe();
        let _ = tokio::time::timeout(timeout, head.wait_for(|head| *head > position)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_url_and_never_reach_a_message() {
        let url = "kurrentdb://admin:chan%40ge%3Ait@db.example:2113/?tls=true";
        assert_eq!(
            credentials(url),
            Some(("admin".into(), "chan@ge:it".into()))
        );
        assert_eq!(credentials("kurrentdb://db.example:2113?tls=false"), None);
        let shown = sportello_config::SecretUrl::new(url).to_string();
        assert!(
            !shown.contains("chan") && shown.contains("db.example:2113"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn a_malformed_url_is_refused_before_any_connection() {
        let Err(err) = KurrentStore::connect("kurrentdb://").await else {
            panic!("a URL without a host was accepted");
        };
        assert_eq!(err.code(), "store_url_malformed", "{err}");
        let Err(err) =
            KurrentStore::connect_with_prefix("kurrentdb://localhost:2113?tls=false", "Bad-").await
        else {
            panic!("a malformed prefix was accepted");
        };
        assert_eq!(err.code(), "filter_malformed", "{err}");
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_unavailable_with_its_address() {
        // Port 9 (discard) on the loopback: nothing listens there.
        let url = "kurrentdb://admin:secret@127.0.0.1:9?tls=false&maxDiscoverAttempts=1&gossipTimeout=500&discoveryInterval=10";
        let Err(err) = KurrentStore::connect(url).await else {
            panic!("connected to nothing");
        };
        assert!(err.is_transient(), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("127.0.0.1:9") && !text.contains("secret"),
            "{text}"
        );
    }
}
