//! Sealed personal data on PostgreSQL: the clear text is in no table, and erasure leaves no key
//! and no document.

use sportello_engine::store::postgres::{PostgresStore, with_scratch_database};
use sportello_engine::vault::{MasterKey, PostgresKeyStore, Unsealed, Vault};
use sportello_engine::{EventLog, ExpectedVersion, NewEvent, StreamId};
use std::sync::Arc;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_on_postgres_leaves_neither_clear_text_nor_key() {
    with_scratch_database("sportello_vault", |url| async move {
        let store = PostgresStore::connect(&url).await.unwrap();
        let pool = store.pool().clone();
        let log = EventLog::new(Arc::new(store));
        let vault = Vault::new(
            &MasterKey::generate(),
            Arc::new(PostgresKeyStore::connect(pool.clone()).await.unwrap()),
        );
        let subject = Uuid::now_v7();
        let citizen = "Pasqualina Carrieri";
        let sealed = vault.seal(subject, citizen).await.unwrap();
        log.append(
            StreamId::new("subject", subject).unwrap(),
            ExpectedVersion::Any,
            vec![NewEvent::new("ContactRecorded", &serde_json::json!({ "name": sealed })).unwrap()],
        )
        .await
        .unwrap();
        let rows_with_name: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM events e WHERE e::text LIKE '%' || $1 || '%') + \
                    (SELECT count(*) FROM subject_keys k WHERE k::text LIKE '%' || $1 || '%')",
        )
        .bind(citizen)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(rows_with_name, 0, "the name is never stored in clear");
        assert_eq!(vault.unseal(&sealed).await.unwrap().clear(), Some(citizen));

        let document = vault
            .keep_document(subject, b"carta d'identita di Pasqualina Carrieri")
            .await
            .unwrap();
        assert_eq!(
            vault.document(document).await.unwrap().as_deref(),
            Some(&b"carta d'identita di Pasqualina Carrieri"[..])
        );
        let documents_with_name: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM subject_documents WHERE position(convert_to($1, 'UTF8') in sealed) > 0",
        )
        .bind(citizen)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(documents_with_name, 0, "documents are kept sealed");

        assert!(vault.erase(subject).await.unwrap());
        let documents_left: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_documents")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(documents_left, 0, "the subject's documents go with the key");
        assert_eq!(vault.document(document).await.unwrap(), None);
        let keys_left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM subject_keys WHERE wrapped IS NOT NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(keys_left, 0);
        assert_eq!(vault.unseal(&sealed).await.unwrap(), Unsealed::Erased);
    })
    .await;
}
