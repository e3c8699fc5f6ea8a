//! Files a citizen sends for a case (the documents the office asked for): checked, sealed under
//! the case's data subject and kept beside the data keys, never in the log; the log records their
//! sealed names, types, sizes and digests ([`DocumentFile`]). An erasure deletes them.

use super::{AppError, Refusal, Urp};
use crate::domain::case::{CaseError, CaseStatus, DocumentFile};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Largest file, and most files in one sending.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_DOCUMENTS: usize = 5;
/// Longest file name kept, in characters.
const MAX_NAME: usize = 120;

/// A file as it arrived.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// The name the citizen's device gave it.
    pub name: String,
    pub content: Vec<u8>,
}

/// The media types accepted, recognised by their first bytes (what the browser declares is not
/// trusted): PDF, JPEG and PNG, what an office can open without risk.
pub fn media_type_of(content: &[u8]) -> Option<&'static str> {
    if content.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if content.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if content.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else {
        None
    }
}

/// The last part of a path, without control characters, shortened: what is kept of a file name.
fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        "documento".to_owned()
    } else {
        clean.to_owned()
    }
}

/// Refuses an empty sending, too many files, an empty or oversized file, or a type not accepted;
/// the message names the file.
pub fn check_documents(files: &[NewDocument]) -> Result<(), Refusal> {
    let refuse = |code, message: String| Err(Refusal::field("documents", code, message));
    if files.is_empty() {
        return refuse(
            "required",
            "Allega almeno un documento (PDF, JPEG o PNG).".into(),
        );
    }
    if files.len() > MAX_DOCUMENTS {
        return refuse(
            "too_many",
            format!("Puoi allegare al massimo {MAX_DOCUMENTS} documenti per volta."),
        );
    }
    for file in files {
        let name = clean_name(&file.name);
        if file.content.is_empty() {
            return refuse("empty", format!("Il file «{name}» è vuoto."));
        }
        if file.content.len() > MAX_DOCUMENT_BYTES {
            return refuse(
                "too_large",
                format!(
                    "Il file «{name}» supera i {} MB.",
                    MAX_DOCUMENT_BYTES / 1024 / 1024
                ),
            );
        }
        if media_type_of(&file.content).is_none() {
            return refuse(
                "type_not_allowed",
                format!("Il file «{name}» non è un PDF, un'immagine JPEG o PNG."),
            );
        }
    }
    Ok(())
}

impl Urp {
    /// Checks and keeps the files sent for a case that waits for documents, sealed under the
    /// case's data subject (its citizen's, or the case's own); returns what the
    /// `ReceiveDocuments` command records of them. A case not waiting is refused before anything
    /// is kept.
    pub async fn keep_documents(
        &self,
        case_id: Uuid,
        files: Vec<NewDocument>,
    ) -> Result<Vec<DocumentFile>, AppError> {
        check_documents(&files)?;
        let (case, _) = self.case(case_id).await?;
        if case.status != CaseStatus::Suspended {
            return Err(CaseError::NotSuspended.into());
        }
        let subject = case
            .citizen_subject
            .unwrap_or_else(|| super::urp::case_text_subject(case_id));
        let mut kept = Vec::with_capacity(files.len());
        // Every name sealed with one look-up of the subject's key.
        let names: Vec<String> = files.iter().map(|f| clean_name(&f.name)).collect();
        let names: Vec<Option<&str>> = names.iter().map(|n| Some(n.as_str())).collect();
        let sealed = self.vault().seal_all(subject, false, &names).await?;
        for (file, name) in files.into_iter().zip(sealed) {
            let media_type = media_type_of(&file.content).unwrap_or_default();
            let id = self.vault().keep_document(subject, &file.content).await?;
            kept.push(DocumentFile {
                id,
                name: name.ok_or(CaseError::Empty("nome del documento"))?,
                media_type: media_type.to_owned(),
                bytes: file.content.len() as u64,
                sha256: hex::encode(Sha256::digest(&file.content)),
            });
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &[u8]) -> NewDocument {
        NewDocument {
            name: name.into(),
            content: content.to_vec(),
        }
    }

    #[test]
    fn files_are_recognised_by_their_first_bytes_not_their_names() {
        assert_eq!(media_type_of(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(media_type_of(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(media_type_of(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(media_type_of(b"MZ\x90\x00"), None);
        let disguised = file("planimetria.pdf", b"<html><script>");
        assert!(matches!(
            check_documents(&[disguised]),
            Err(Refusal::Field {
                code: "type_not_allowed",
                ..
            })
        ));
    }

    #[test]
    fn a_sending_must_hold_one_to_five_files_none_empty_none_over_ten_megabytes() {
        assert!(check_documents(&[file("a.pdf", b"%PDF-1.7")]).is_ok());
        let code = |files: &[NewDocument]| match check_documents(files) {
            Err(Refusal::Field { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(&[]), "required");
        assert_eq!(code(&vec![file("a.pdf", b"%PDF-1.7"); 6]), "too_many");
        assert_eq!(code(&[file("vuoto.pdf", b"")]), "empty");
        let mut big = b"%PDF-1.7".to_vec();
        big.resize(MAX_DOCUMENT_BYTES + 1, b' ');
        assert_eq!(code(&[file("grande.pdf", &big)]), "too_large");
    }

    #[test]
    fn a_file_name_keeps_its_last_part_without_control_characters() {
        assert_eq!(clean_name("C:\\Users\\rosa\\carta.pdf"), "carta.pdf");
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("a\u{0}b\nc.png"), "abc.png");
        assert_eq!(clean_name("  "), "documento");
        assert_eq!(clean_name(&"x".repeat(500)).chars().count(), MAX_NAME);
    }
}
