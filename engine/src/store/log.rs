//! [`EventLog`]: reading, following and verifying the log on top of any [`EventStore`].

use super::chain::{GENESIS, event_hash};
use super::{
    AppendOutcome, EventStore, ExpectedVersion, NewEvent, QueuedAppend, ReadAll, RecordedEvent,
    StoreError, StreamId,
};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events per page: large enough to amortise a query, small enough that a reader's memory stays
/// a few megabytes whatever the size of the log.
const PAGE_SIZE: usize = 2048;
/// How long a follower sleeps before re-reading when no wake-up arrives (another process may
/// append without being able to notify this one).
const FOLLOW_POLL: Duration = Duration::from_millis(250);
const STREAMS_PAGE: usize = 500;
/// Pages of the log read concurrently ahead of the caller.
const READ_AHEAD: usize = 2;
/// A short read of at least twice this many events is read as two halves at once.
const SPLIT_AT: u64 = 256;

/// The handle the rest of the program holds: cheap to clone, backend-agnostic.
#[derive(Clone)]
pub struct EventLog {
    store: Arc<dyn EventStore>,
}

impl EventLog {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    pub fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }

    #[tracing::instrument(skip_all, fields(stream = %stream), err(level = "debug"))]
    pub async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.store.append(stream, expected, events).await
    }

    /// Appends to several streams in one commit, all or nothing (see [`EventStore::append_all`]).
    #[tracing::instrument(skip_all, fields(streams = appends.len()), err(level = "debug"))]
    pub async fn append_all(
        &self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.store.append_all(appends).await
    }

    /// Queues an append to several streams, answered later (see [`EventStore::queue_all`]).
    pub fn queue_all(
        &self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<QueuedAppend, StoreError> {
        self.store.queue_all(appends)
    }

    pub async fn head(&self) -> Result<u64, StoreError> {
        self.store.head().await
    }

    /// Returns once the head is past `position`, or after `timeout`.
    pub async fn wait_for_append(&self, position: u64, timeout: Duration) {
        self.store.wait_for_append(position, timeout).await
    }

    /// The events of one stream from `from_version` on, read a page at a time.
    pub fn read_stream(
        &self,
        stream: StreamId,
        from_version: u64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let store = self.store.clone();
        let pages = stream::try_unfold(Some(from_version.max(1)), move |next| {
            let store = store.clone();
            let stream = stream.clone();
            async move {
                let Some(from) = next else { return Ok(None) };
                let page = store.read_stream_page(&stream, from, PAGE_SIZE).await?;
                let next = match page.last() {
                    Some(last) if page.len() == PAGE_SIZE => Some(last.version + 1),
                    _ => None,
                };
                if page.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some((page, next)))
                }
            }
        });
        flatten_pages(pages.boxed())
    }

    /// The whole log (or the slice `query` selects) in global order, ending at the head as it was
    /// when the last page was read. The next page is fetched while the caller handles this one.
    pub fn read_all(
        &self,
        query: ReadAll,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        match query.limit {
            // A short read of everything fits one range; a snapshot of a dense log is a prefix of
            // it, so the range is read at once, without asking for the head first.
            Some(limit)
                if limit <= PAGE_SIZE as u64
                    && query.selects_all()
                    && self.store.dense_positions() =>
            {
                let store = self.store.clone();
                let from = query.from.max(1);
                let until = from.saturating_add(limit);
                if limit < 2 * SPLIT_AT {
                    let page = async move { store.read_range(&query, from, until).await };
                    return flatten_pages(stream::once(page).boxed());
                }
                // Its two halves on two readers at once: a page read alone uses both cores.
                let middle = from + limit / 2;
                let halves = async move {
                    let (first, second) = futures::try_join!(
                        store.read_range(&query, from, middle),
                        store.read_range(&query, middle, until)
                    )?;
                    let pages = gap_free(first, second, middle - from);
                    Ok::<_, StoreError>(stream::iter(pages.into_iter().map(Ok)))
                };
                flatten_pages(stream::once(halves).try_flatten().boxed())
            }
            _ => self.pages(query, false),
        }
    }

    /// Like [`EventLog::read_all`], then keeps following new appends. The same paging loop serves
    /// catch-up and live, so the switch can neither skip nor repeat an event.
    pub fn subscribe(
        &self,
        query: ReadAll,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        self.pages(query, true)
    }

    fn pages(
        &self,
        query: ReadAll,
        follow: bool,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let (tx, rx) = mpsc::channel::<Result<Vec<RecordedEvent>, StoreError>>(2);
        let store = self.store.clone();
        tokio::spawn(async move {
            let query = Arc::new(query);
            let mut from = query.from.max(1);
            let mut remaining = query.limit.unwrap_or(u64::MAX);
            while remaining > 0 && !tx.is_closed() {
                let head = match store.head().await {
                    Ok(head) => head,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                if from > head {
                    if !follow {
                        return;
                    }
                    store.wait_for_append(from - 1, FOLLOW_POLL).await;
                    continue;
                }
                if !store.dense_positions() {
                    // Gaps between positions: page by count, one page after the other.
                    let step = PAGE_SIZE.min(usize::try_from(remaining).unwrap_or(PAGE_SIZE));
                    match store.read_page(&query, from, head + 1, step).await {
                        Ok((events, next)) => {
                            remaining -= events.len() as u64;
                            if !events.is_empty() && tx.send(Ok(events)).await.is_err() {
                                return;
                            }
                            from = next;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                    continue;
                }
                // Every range below the head is final, so consecutive ones can be read at once:
                // two in flight keep a reader busy while the caller handles the previous one.
                // A limit under a page reads ranges no longer than it; without filters (the
                // positions are dense) the first of them holds it all, and nothing is read ahead.
                let step = PAGE_SIZE.min(usize::try_from(remaining).unwrap_or(PAGE_SIZE));
                let ahead = if query.selects_all() && step as u64 == remaining {
                    1
                } else {
                    READ_AHEAD
                };
                let ranges = (from..=head).step_by(step).map(|start| {
                    let (store, query) = (store.clone(), query.clone());
                    let end = (start + step as u64).min(head + 1);
                    async move { store.read_range(&query, start, end).await }
                });
                let mut pages = stream::iter(ranges).buffered(ahead);
                while let Some(page) = pages.next().await {
                    let mut events = match page {
                        Ok(events) => events,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    if events.len() as u64 > remaining {
                        events.truncate(remaining as usize);
                    }
                    remaining -= events.len() as u64;
                    if !events.is_empty() && tx.send(Ok(events)).await.is_err() {
                        return;
                    }
                    if remaining == 0 {
                        return;
                    }
                }
                from = head + 1;
            }
        });
        let pages = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) });
        flatten_pages(pages.boxed())
    }

    /// Recomputes every stream's hash chain and compares it with what is stored, one stream at a
    /// time (memory stays flat). Stops at the first break.
    pub async fn verify(&self) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let mut after: Option<StreamId> = None;
        loop {
            let heads = self
                .store
                .streams_page(after.as_ref(), STREAMS_PAGE)
                .await?;
            let Some(last) = heads.last() else { break };
            after = Some(last.stream.clone());
            for head in heads {
                report.streams += 1;
                if let Some(broken) = self.verify_stream(&head, &mut report.events).await? {
                    report.first_break = Some(broken);
                    return Ok(report);
                }
            }
        }
        // With dense positions the head counts the log's events: none may be outside a stream.
        let log_head = self.store.head().await?;
        if self.store.dense_positions() && report.events != log_head {
            report.first_break = Some(ChainBreak {
                stream: "(log)".into(),
                version: 0,
                reason: format!(
                    "the streams hold {} events but the log's head is at position {log_head}",
                    report.events
                ),
            });
        }
        Ok(report)
    }

    async fn verify_stream(
        &self,
        head: &super::StreamHead,
        events_seen: &mut u64,
    ) -> Result<Option<ChainBreak>, StoreError> {
        let broken = |version: u64, reason: String| {
            Ok(Some(ChainBreak {
                stream: head.stream.to_string(),
                version,
                reason,
            }))
        };
        let mut previous = GENESIS;
        let mut expected_version = 1;
        let mut events = self.read_stream(head.stream.clone(), 1);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(StoreError::Corrupt {
                    version, detail, ..
                }) => return broken(version, detail),
                Err(e) => return Err(e),
            };
            *events_seen += 1;
            if event.version != expected_version {
                return broken(
                    expected_version,
                    format!("version {expected_version} is missing"),
                );
            }
            if event_hash(&previous, &event) != event.hash {
                return broken(
                    event.version,
                    "the stored event does not match its hash".into(),
                );
            }
            previous = event.hash;
            expected_version += 1;
        }
        let last = expected_version - 1;
        if last != head.version || previous != head.hash {
            return broken(
                last.max(head.version),
                format!(
                    "the stream's recorded head (version {}) does not match its last event (version {last})",
                    head.version
                ),
            );
        }
        Ok(None)
    }
}

/// Two consecutive ranges of a dense log read as two snapshots: the second follows the first only
/// when the first is whole (`first_span` events). A short first one ended at the head of its
/// snapshot; anything the second found was committed later, past a hole the first left.
fn gap_free<T>(first: Vec<T>, second: Vec<T>, first_span: u64) -> Vec<Vec<T>> {
    if first.len() as u64 == first_span {
        vec![first, second]
    } else {
        vec![first]
    }
}

fn flatten_pages(
    pages: BoxStream<'static, Result<Vec<RecordedEvent>, StoreError>>,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    pages
        .flat_map(|page| match page {
            Ok(events) => stream::iter(events.into_iter().map(Ok)).left_stream(),
            Err(e) => stream::iter([Err(e)]).right_stream(),
        })
        .boxed()
}

/// The outcome of `verify`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    pub first_break: Option<ChainBreak>,
}

/// Where a hash chain stops holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub stream: String,
    pub version: u64,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::gap_free;

    #[test]
    fn a_second_half_read_after_a_short_first_is_dropped() {
        // The first snapshot saw the head at 12 of a range 10..20; the second, later, saw 20..23.
        assert_eq!(
            gap_free(vec![10, 11, 12], vec![20, 21, 22], 10),
            [vec![10, 11, 12]]
        );
        assert_eq!(
            gap_free(vec![1, 2], vec![3], 2),
            [vec![1, 2], vec![3]],
            "a whole first half is followed by the second"
        );
    }
}
