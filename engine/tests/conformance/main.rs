//! One conformance suite for every event-store backend: each case is written once in `cases` and
//! run against SQLite, PostgreSQL and (with the `kurrentdb` feature) KurrentDB by the `suite!`
//! macro below. The cases compare positions by their rank in the log, so that they hold where
//! positions leave gaps (KurrentDB), and check density where the backend promises it.
//!
//! PostgreSQL cases create a uniquely named database on the server at `SPORTELLO_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and drop it afterwards. KurrentDB cases
//! run on the server at `SPORTELLO_TEST_KURRENTDB_URL` (`cargo test -p sportello-engine --features
//! kurrentdb --test conformance kurrentdb::`), each behind a stream prefix of its own. They fail,
//! never skip, when the server is not reachable.

mod backends;
mod cases;

use backends::Fixture;
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

async fn run<F, Fut, C, CFut>(factory: F, case: C)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Fixture>,
    C: FnOnce(Fixture) -> CFut,
    CFut: Future<Output = ()>,
{
    let fixture = factory().await;
    let cleanup = fixture.cleanup.clone();
    let outcome = AssertUnwindSafe(case(fixture)).catch_unwind().await;
    cleanup.run().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        suite!(@backend sqlite, $($case),*);
        suite!(@backend postgres, $($case),*);
        #[cfg(feature = "kurrentdb")]
        suite!(@backend kurrentdb, $($case),*);
    };
    (@backend $backend:ident, $($case:ident),*) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::run(crate::backends::$backend, crate::cases::$case).await
                }
            )*
        }
    };
}

suite!(
    a_new_stream_numbers_versions_and_positions_from_one,
    a_stale_expected_version_is_a_conflict_carrying_the_actual_version,
    no_stream_and_any_expectations_behave_as_named,
    a_repeated_append_returns_the_original_outcome_and_stores_nothing,
    reusing_an_event_id_for_other_content_is_refused,
    a_multi_event_append_is_all_or_nothing,
    a_stream_reads_forwards_from_a_version,
    the_log_reads_in_global_order_with_filters_and_a_limit,
    a_subscription_catches_up_then_follows_without_gap_or_duplicate,
    concurrent_writers_are_seen_once_each_in_increasing_position,
    pages_read_while_a_writer_appends_leave_no_hole,
    concurrent_appends_at_the_same_version_let_exactly_one_win,
    long_streams_read_back_across_pages,
    unicode_payloads_and_metadata_round_trip_exactly,
    bad_input_is_refused_clearly_and_changes_nothing,
    verify_passes_on_an_intact_log_and_names_a_changed_byte,
    an_append_to_several_streams_stores_every_part_or_none,
    a_register_and_what_it_numbers_commit_together_under_concurrency,
    queued_appends_are_planned_in_the_order_queued,
    two_processes_on_one_store_never_act_on_what_the_other_changed,
);
