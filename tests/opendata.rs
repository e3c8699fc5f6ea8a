//! `sportello export` as an analyst or the IT office runs it: every dataset as CSV and JSON with a
//! Frictionless descriptor that the real validator (`frictionless`, installed by
//! `scripts/python-tools.sh`) accepts; the same bytes twice; a new version only when the data
//! changed; no personal data; no published count of 1 or 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::{Server, Store};

fn sportello(store: &str, args: &[&str]) -> String {
    support::run(&sqlite(store), args)
}

fn sqlite(url: &str) -> Store {
    Store {
        url: url.to_owned(),
        dir: None,
    }
}

/// Every file under `dir`, by path relative to it.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_owned(), bytes);
            }
        }
    }
    files
}

fn export(store: &str, out: &Path, from: &str, to: &str) -> String {
    sportello(
        store,
        &[
            "export",
            "--period",
            from,
            "--to",
            to,
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

const COUNT_COLUMNS: &[&str] = &[
    "contatti",
    "aperte",
    "chiuse",
    "chiuse_nei_termini",
    "valutazioni",
    "punteggio_1",
    "punteggio_2",
    "punteggio_3",
    "punteggio_4",
    "punteggio_5",
];

#[test]
fn export_writes_every_dataset_the_same_twice_and_a_new_version_only_for_changed_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    sportello(&store, &["demo", "--cases", "400", "--seed", "11"]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let first = export(&store, &a, "2025-09", "2025-10");
    assert_eq!(first.matches("\twritten").count(), 8, "{first}");
    let files = tree(&a);
    for dataset in [
        "contatti-urp",
        "soddisfazione-utenti",
        "tempi-di-risposta",
        "procedimenti-e-moduli",
    ] {
        for ext in ["csv", "json"] {
            let path = PathBuf::from(format!("{dataset}/2025-09/v1/{dataset}-2025-09.{ext}"));
            assert!(files.contains_key(&path), "{path:?} missing");
        }
        for name in ["datapackage.json", "manifest.json"] {
            assert!(files.contains_key(&PathBuf::from(format!("{dataset}/2025-10/v1/{name}"))));
        }
    }
    for name in ["manifest.json", "catalog.ttl", "catalog.jsonld"] {
        assert!(files.contains_key(&PathBuf::from(name)), "{name} missing");
    }

    // Reproducible: the same log gives the same bytes.
    export(&store, &b, "2025-09", "2025-10");
    assert_eq!(tree(&b), files, "two exports of the same log differ");

    // Unchanged data: nothing written, not even the index.
    let again = export(&store, &a, "2025-09", "2025-10");
    assert_eq!(again.matches("\tunchanged").count(), 8, "{again}");
    assert_eq!(tree(&a), files);

    // The manifest's checksums are the files'.
    let manifest: serde_json::Value =
        serde_json::from_slice(&files[&PathBuf::from("manifest.json")]).unwrap();
    for file in manifest["files"].as_array().unwrap() {
        let bytes = &files[&PathBuf::from(file["path"].as_str().unwrap())];
        let sum = sha256_hex(bytes);
        assert_eq!(file["sha256"], sum.as_str(), "{}", file["path"]);
    }

    // No personal data in any file.
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        for clear in [
            "Semeraro",
            "Carrieri",
            "Lippolis",
            "Quaranta",
            "example.it",
            "@example",
        ] {
            assert!(!text.contains(clear), "{clear} in {path:?}");
        }
    }

    // No published count of 1 or 2, and every empty count is named in the flag column.
    let mut suppressed = 0;
    for (path, bytes) in files
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "csv"))
    {
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let headers = reader.headers().unwrap().clone();
        for record in reader.records() {
            let record = record.unwrap();
            let flagged = headers
                .iter()
                .position(|h| h == "valori_soppressi")
                .map(|i| record[i].to_owned())
                .unwrap_or_default();
            for (column, value) in headers.iter().zip(record.iter()) {
                if !COUNT_COLUMNS.contains(&column) {
                    continue;
                }
                assert!(
                    !matches!(value, "1" | "2"),
                    "{path:?}: {column}={value} published"
                );
                if value.is_empty()
                    && !(column.starts_with("punteggio_") && record.iter().any(|v| v == "faces"))
                {
                    assert!(
                        flagged.split(',').any(|f| f == column),
                        "{path:?}: {column} empty, not flagged"
                    );
                    suppressed += 1;
                }
            }
        }
    }
    assert!(suppressed > 0, "a demo month has small cells to suppress");

    // The real validator accepts every descriptor.
    let python = support::python_tools("the open-data tests need frictionless and pyshacl");
    let frictionless = Path::new(&python).with_file_name("frictionless");
    for path in files.keys().filter(|p| p.ends_with("datapackage.json")) {
        let out = Command::new(&frictionless)
            .arg("validate")
            .arg(a.join(path))
            .output()
            .expect("frictionless runs");
        assert!(
            out.status.success(),
            "{path:?} invalid: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // The catalogue conforms to the EU DCAT-AP 3.0.0 shapes (pyshacl, with RDFS inference).
    let pyshacl = Path::new(&python).with_file_name("pyshacl");
    for catalog in ["catalog.ttl", "catalog.jsonld"] {
        let out = Command::new(&pyshacl)
            .args([
                "-s",
                "tests/fixtures/dcat-ap-3.0.0/dcat-ap_3_shacl_shapes.ttl",
                "-i",
                "rdfs",
            ])
            .args([
                "-df",
                if catalog.ends_with("ttl") {
                    "turtle"
                } else {
                    "json-ld"
                },
            ])
            .arg(a.join(catalog))
            .output()
            .expect("pyshacl runs");
        assert!(
            out.status.success(),
            "{catalog} does not conform: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let turtle = String::from_utf8(files[&PathBuf::from("catalog.ttl")].clone()).unwrap();
    for expected in [
        "dcatapit:Catalog",
        "dcat:Catalog",
        "dcatapit:Dataset",
        "dcatapit:Distribution",
        "dcatapit:Agent",
        "\"c_f027:contatti-urp\"",
        "<http://publications.europa.eu/resource/authority/frequency/MONTHLY>",
        "<http://publications.europa.eu/resource/authority/licence/CC_BY_4_0>",
        "<http://publications.europa.eu/resource/authority/file-type/CSV>",
        "<http://publications.europa.eu/resource/authority/data-theme/GOVE>",
        "contatti-urp/2025-10/v1/contatti-urp-2025-10.csv>",
    ] {
        assert!(
            turtle.contains(expected),
            "{expected} missing from the catalogue:\n{turtle}"
        );
    }

    // Late data for a published month: a new version beside the old one.
    sportello(&store, &["demo", "--cases", "400", "--seed", "12"]);
    let late = export(&store, &a, "2025-09", "2025-09");
    assert!(
        late.contains("contatti-urp\t2025-09\tv2\twritten"),
        "{late}"
    );
    let after = tree(&a);
    assert_eq!(
        after[&PathBuf::from("contatti-urp/2025-09/v1/contatti-urp-2025-09.csv")],
        files[&PathBuf::from("contatti-urp/2025-09/v1/contatti-urp-2025-09.csv")],
        "the old version stays as it was"
    );
    let index: serde_json::Value =
        serde_json::from_slice(&after[&PathBuf::from("manifest.json")]).unwrap();
    assert!(
        index["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["dataset"] == "contatti-urp"
                && d["period"] == "2025-09"
                && d["version"] == 2),
        "{index}"
    );
    let turtle = String::from_utf8(after[&PathBuf::from("catalog.ttl")].clone()).unwrap();
    assert!(
        turtle.contains("contatti-urp/2025-09/v2/contatti-urp-2025-09.csv>"),
        "{turtle}"
    );
    assert!(
        !turtle.contains("contatti-urp/2025-09/v1/"),
        "the catalogue points to the current version"
    );
}

/// `serve` publishes the files under `/opendata/` as a portal reads them.
#[test]
fn serve_publishes_the_files_with_validators_cors_and_an_index_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(&format!("sqlite://{}", dir.path().join("urp.db").display()));
    support::run(&store, &["demo", "--cases", "300", "--seed", "3"]);
    support::run(&store, &["export", "--period", "2025-10"]);
    let mut serve = support::command(&store);
    serve.args(["serve", "--bind", "127.0.0.1:0", "--no-workers"]);
    let server = Server::spawn(serve, &[]);
    let agent = Server::agent();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = agent.get(format!("{}{path}", server.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = request.call().expect("the server answers");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let seen = (
            header("content-type"),
            header("etag"),
            header("last-modified"),
            header("access-control-allow-origin"),
        );
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, seen, body)
    };
    let (status, (kind, _, _, cors), page) = get("/opendata/", &[]);
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert_eq!(cors, "*");
    assert!(
        page.contains("Contatti con gli Uffici Relazioni con il Pubblico"),
        "{page}"
    );
    assert!(page.contains("ottobre 2025"), "{page}");

    let csv = "/opendata/contatti-urp/2025-10/v1/contatti-urp-2025-10.csv";
    let (status, (kind, etag, modified, cors), body) = get(csv, &[]);
    assert_eq!(status, 200);
    assert_eq!(kind, "text/csv; charset=utf-8");
    assert!(body.starts_with("mese,livello,codice_comune"), "{body}");
    assert!(etag.starts_with('"') && !modified.is_empty() && cors == "*");
    let (status, _, body) = get(csv, &[("If-None-Match", &etag)]);
    assert_eq!((status, body.as_str()), (304, ""));
    let (status, _, _) = get(csv, &[("If-Modified-Since", &modified)]);
    assert_eq!(status, 304);

    for (path, kind) in [
        ("/opendata/catalog.ttl", "text/turtle; charset=utf-8"),
        ("/opendata/catalog.jsonld", "application/ld+json"),
        ("/opendata/manifest.json", "application/json"),
    ] {
        let (status, (seen, ..), _) = get(path, &[]);
        assert_eq!((status, seen.as_str()), (200, kind), "{path}");
    }
    for outside in [
        "/opendata/../urp.db",
        "/opendata/%2e%2e/urp.db",
        "/opendata/contatti-urp/2025-10/v1/nothing.csv",
        "/opendata/contatti-urp/2025-10/.v9.1/contatti-urp-2025-10.csv",
        "/opendata/urp.db",
    ] {
        let (status, ..) = get(outside, &[]);
        assert_eq!(status, 404, "{outside}");
    }
    server.kill();
}

#[test]
fn export_refuses_a_bad_period_or_dataset_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("urp.db").display());
    for (args, expected) in [
        (vec!["export", "--period", "2025-13"], "not a month"),
        (
            vec!["export", "--period", "2025-09", "--to", "2025-01"],
            "comes before",
        ),
        (
            vec!["export", "--period", "2025-09", "--dataset", "nomi"],
            "no dataset 'nomi'",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sportello"))
            .arg("--store")
            .arg(&store)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The datasets come from the read models, whichever database keeps them: the same history on
/// PostgreSQL gives the same data files, byte for byte.
#[test]
fn the_same_history_on_postgres_gives_the_same_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("sqlite"), dir.path().join("postgres"));
    let export_to = |store: &Store, out: &Path| {
        support::run(store, &["demo", "--cases", "300", "--seed", "3"]);
        support::run(
            store,
            &[
                "export",
                "--period",
                "2025-10",
                "--out",
                out.to_str().unwrap(),
            ],
        );
    };
    export_to(
        &sqlite(&format!("sqlite://{}", dir.path().join("urp.db").display())),
        &a,
    );
    support::with_scratch_postgres("sportello_opendata", |url| {
        let store = Store {
            url: url.to_owned(),
            dir: None,
        };
        export_to(&store, &b);
    });
    let data = |tree: BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
        tree.into_iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "csv" || e == "json"))
            .filter(|(p, _)| !p.ends_with("manifest.json") && !p.ends_with("datapackage.json"))
            .collect()
    };
    let (on_sqlite, on_postgres) = (data(tree(&a)), data(tree(&b)));
    assert_eq!(on_sqlite.len(), 8, "{:?}", on_sqlite.keys());
    for (path, bytes) in &on_sqlite {
        assert_eq!(
            on_postgres
                .get(path)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            Some(String::from_utf8_lossy(bytes).into_owned()),
            "{path:?} differs"
        );
    }
}
