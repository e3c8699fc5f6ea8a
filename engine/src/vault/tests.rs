use super::*;

fn sqlite_vault(dir: &std::path::Path) -> (Vault, Arc<SqliteKeyStore>) {
    let keys = Arc::new(SqliteKeyStore::open(dir.join("vault.db")).unwrap());
    (Vault::new(&MasterKey::generate(), keys.clone()), keys)
}

#[tokio::test]
async fn a_sealed_value_unseals_to_its_clear_text_and_hides_it() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = sqlite_vault(dir.path());
    let subject = Uuid::now_v7();
    let sealed = vault.seal(subject, "Addolorata Semeraro").await.unwrap();
    assert_eq!(
        vault.unseal(&sealed).await.unwrap(),
        Unsealed::Clear("Addolorata Semeraro".into())
    );
    let json = serde_json::to_string(&sealed).unwrap();
    assert!(
        !json.contains("Addolorata") && !json.contains("Semeraro"),
        "{json}"
    );
    let again = vault.seal(subject, "Addolorata Semeraro").await.unwrap();
    assert_ne!(
        again.ciphertext, sealed.ciphertext,
        "a fresh nonce every time"
    );
}

#[tokio::test]
async fn after_erasure_reads_yield_the_erased_marker_and_sealing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = sqlite_vault(dir.path());
    let (erased, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let gone = vault.seal(erased, "via Roma 12, Statte").await.unwrap();
    let other = vault.seal(kept, "Cosimo Lippolis").await.unwrap();
    assert!(vault.erase(erased).await.unwrap());
    assert_eq!(vault.unseal(&gone).await.unwrap(), Unsealed::Erased);
    assert_eq!(
        vault.unseal(&other).await.unwrap().clear(),
        Some("Cosimo Lippolis")
    );
    assert!(
        matches!(vault.seal(erased, "again").await, Err(VaultError::SubjectErased(s)) if s == erased)
    );
    assert!(!vault.erase(erased).await.unwrap(), "nothing left to erase");
}

#[tokio::test]
async fn altered_ciphertext_or_another_master_key_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, keys) = sqlite_vault(dir.path());
    let subject = Uuid::now_v7();
    let mut sealed = vault.seal(subject, "RSSMRA80A01L049X").await.unwrap();
    let other_master = Vault::new(&MasterKey::generate(), keys);
    assert!(
        matches!(other_master.unseal(&sealed).await, Err(VaultError::Tampered(s)) if s == subject)
    );
    let mut bytes = B64.decode(&sealed.ciphertext).unwrap();
    bytes[0] ^= 1;
    sealed.ciphertext = B64.encode(bytes);
    assert!(matches!(
        vault.unseal(&sealed).await,
        Err(VaultError::Tampered(_))
    ));
}

#[test]
fn a_master_key_is_32_bytes_of_base64_and_never_printed() {
    let key = MasterKey::generate();
    let text = key.to_base64();
    assert_eq!(MasterKey::from_base64(&text).unwrap().to_base64(), text);
    assert!(!format!("{key:?}").contains(&text));
    assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    assert!(MasterKey::from_base64("not base64!").is_err());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn file_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

#[tokio::test]
async fn no_byte_of_the_sqlite_files_holds_the_clear_text_or_an_erased_key() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = sqlite_vault(dir.path());
    let subject = Uuid::now_v7();
    let name = "Immacolata Quaranta";
    let sealed = vault.seal(subject, name).await.unwrap();
    // The sealed value goes into the log, like every personal field.
    let store = crate::store::sqlite::SqliteStore::open(dir.path().join("vault.db"))
        .await
        .unwrap();
    let log = crate::EventLog::new(Arc::new(store));
    log.append(
        crate::StreamId::new("subject", subject).unwrap(),
        crate::ExpectedVersion::Any,
        vec![
            crate::NewEvent::new("ContactRecorded", &serde_json::json!({ "name": sealed }))
                .unwrap(),
        ],
    )
    .await
    .unwrap();
    let wrapped = match vault.keys.get(subject).await.unwrap() {
        Some(StoredKey::Wrapped(w)) => w,
        other => panic!("{other:?}"),
    };
    let bytes = file_bytes(dir.path());
    assert!(
        !contains(&bytes, name.as_bytes()),
        "the name is never stored in clear"
    );
    assert!(
        contains(&bytes, &wrapped[12..]),
        "the wrapped key is stored before erasure"
    );

    vault.erase(subject).await.unwrap();
    let bytes = file_bytes(dir.path());
    assert!(
        !contains(&bytes, &wrapped[12..]),
        "no copy of the wrapped key survives erasure"
    );
    assert_eq!(vault.unseal(&sealed).await.unwrap(), Unsealed::Erased);
}

#[tokio::test]
async fn a_kept_document_reads_back_whole_and_is_gone_with_its_subject() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, keys) = sqlite_vault(dir.path());
    let (subject, other) = (Uuid::now_v7(), Uuid::now_v7());
    let content = b"%PDF-1.7 planimetria dell'immobile di Giuseppina Lentini".repeat(200);
    let id = vault.keep_document(subject, &content).await.unwrap();
    let kept = vault.keep_document(other, b"altro").await.unwrap();
    assert_eq!(vault.document(id).await.unwrap(), Some(content.clone()));
    assert!(
        !contains(&file_bytes(dir.path()), b"Giuseppina Lentini"),
        "the content is stored sealed"
    );
    // Sealed content moved under another id does not open.
    let (_, sealed) = keys.get_document(id).await.unwrap().unwrap();
    let moved = Uuid::now_v7();
    keys.put_document(moved, subject, sealed.clone())
        .await
        .unwrap();
    assert!(matches!(
        vault.document(moved).await,
        Err(VaultError::Tampered(_))
    ));

    vault.erase(subject).await.unwrap();
    assert_eq!(vault.document(id).await.unwrap(), None);
    assert!(keys.get_document(id).await.unwrap().is_none(), "deleted");
    assert!(
        !contains(&file_bytes(dir.path()), &sealed[12..200]),
        "no sealed byte of it survives in the files"
    );
    assert_eq!(vault.document(kept).await.unwrap(), Some(b"altro".to_vec()));
    assert!(matches!(
        vault.keep_document(subject, b"again").await,
        Err(VaultError::SubjectErased(_))
    ));
    assert_eq!(vault.document(Uuid::now_v7()).await.unwrap(), None);
}
