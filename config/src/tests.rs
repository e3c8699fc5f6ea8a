use super::*;
use std::fs;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn empty_workdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn the_embedded_default_describes_the_union_and_its_three_comuni() {
    let dir = empty_workdir();
    let s = Settings::load_from(dir.path(), None, env(&[])).unwrap();
    let names: Vec<_> = s.comuni.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Crispiano", "Massafra", "Statte"]);
    let massafra = s.comune(&IstatCode::parse("073015").unwrap()).unwrap();
    assert_eq!(massafra.cadastral.as_str(), "F027");
    assert_eq!(massafra.ipa, "c_f027");
    assert_eq!(s.union.seat.as_str(), "073015");
    assert_eq!(s.store.url.expose(), "sqlite://data/sportello.db");
}

#[test]
fn the_repository_default_file_is_the_embedded_one() {
    // Running from the workspace root reads config/default.toml from disk: it must parse the same.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let s = Settings::load_from(root, None, env(&[])).unwrap();
    assert_eq!(s.comuni.len(), 3);
}

#[test]
fn an_overlay_file_and_then_the_environment_override_the_default() {
    let dir = empty_workdir();
    let overlay = dir.path().join("local.toml");
    fs::write(
        &overlay,
        "[store]\nurl = \"sqlite:///var/lib/sportello/urp.db\"\n",
    )
    .unwrap();
    let s = Settings::load_from(dir.path(), Some(&overlay), env(&[])).unwrap();
    assert_eq!(s.store.url.expose(), "sqlite:///var/lib/sportello/urp.db");

    let s = Settings::load_from(
        dir.path(),
        Some(&overlay),
        env(&[
            ("SPORTELLO__STORE__URL", "postgres://postgres@127.0.0.1/urp"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(s.store.url.expose(), "postgres://postgres@127.0.0.1/urp");
}

#[test]
fn an_istat_code_from_the_environment_keeps_its_leading_zero() {
    let dir = empty_workdir();
    let s = Settings::load_from(
        dir.path(),
        None,
        env(&[("SPORTELLO__UNION__SEAT", "073004")]),
    )
    .unwrap();
    assert_eq!(s.union.seat.as_str(), "073004");
}

#[test]
fn a_bad_value_names_the_key_and_the_variable() {
    let dir = empty_workdir();
    let err = Settings::load_from(
        dir.path(),
        None,
        env(&[("SPORTELLO__UNION__SEAT", "73015")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("seat"), "{err}");
    assert!(err.contains("SPORTELLO__UNION__SEAT"), "{err}");
    assert!(err.contains("6 digits"), "{err}");
}

#[test]
fn a_bad_value_in_a_file_names_the_key_and_the_file() {
    let dir = empty_workdir();
    let overlay = dir.path().join("broken.toml");
    fs::write(&overlay, "[store]\nurl = \"mysql://nope\"\n").unwrap();
    let err = Settings::load_from(dir.path(), Some(&overlay), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.url"), "{err}");
    assert!(err.contains("broken.toml"), "{err}");
}

#[test]
fn a_missing_value_names_the_key() {
    let dir = empty_workdir();
    fs::create_dir_all(dir.path().join("config")).unwrap();
    fs::write(
        dir.path().join("config/default.toml"),
        DEFAULT_TOML.replace("url = \"sqlite://data/sportello.db\"", ""),
    )
    .unwrap();
    let err = Settings::load_from(dir.path(), None, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("url"), "{err}");
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn an_ipa_code_that_contradicts_the_cadastral_code_is_refused() {
    let dir = empty_workdir();
    fs::create_dir_all(dir.path().join("config")).unwrap();
    fs::write(
        dir.path().join("config/default.toml"),
        DEFAULT_TOML.replace("ipa = \"c_f027\"", "ipa = \"c_x999\""),
    )
    .unwrap();
    let err = Settings::load_from(dir.path(), None, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("comuni[1].ipa"), "{err}");
    assert!(err.contains("default.toml"), "{err}");
}

#[test]
fn a_seat_outside_the_union_is_refused() {
    let dir = empty_workdir();
    let err = Settings::load_from(
        dir.path(),
        None,
        env(&[("SPORTELLO__UNION__SEAT", "058091")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("union.seat") && err.contains("058091"),
        "{err}"
    );
}

#[test]
fn a_missing_overlay_file_is_an_error() {
    let dir = empty_workdir();
    let err = Settings::load_from(dir.path(), Some(&dir.path().join("nope.toml")), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn the_calendar_lists_the_national_holidays_and_each_patron() {
    let dir = empty_workdir();
    let s = Settings::load_from(dir.path(), None, env(&[])).unwrap();
    assert_eq!(s.calendar.national.len(), 11);
    let francis = s
        .calendar
        .national
        .iter()
        .find(|h| h.date == MonthDay::parse("10-04").unwrap())
        .unwrap();
    assert_eq!(francis.since, Some(2026));
    for comune in &s.comuni {
        let patron = comune
            .patron
            .as_ref()
            .expect("every comune has its patron feast");
        assert!(
            patron.source.as_ref().is_some_and(|s| !s.is_empty()),
            "{}",
            comune.name
        );
    }
}

#[test]
fn a_malformed_holiday_date_is_refused_with_its_key() {
    let dir = empty_workdir();
    fs::create_dir_all(dir.path().join("config")).unwrap();
    fs::write(
        dir.path().join("config/default.toml"),
        DEFAULT_TOML.replace("date = \"12-26\"", "date = \"12-32\""),
    )
    .unwrap();
    let err = Settings::load_from(dir.path(), None, env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("12-32") && err.contains("calendar"), "{err}");
}

#[test]
fn a_kurrentdb_log_needs_a_database_for_the_rest_and_only_it_takes_one() {
    let dir = empty_workdir();
    let load = |pairs: &[(&str, &str)]| Settings::load_from(dir.path(), None, env(pairs));
    let kurrent = (
        "SPORTELLO__STORE__URL",
        "kurrentdb://127.0.0.1:2113?tls=false",
    );
    let err = load(&[kurrent]).unwrap_err().to_string();
    assert!(
        err.contains("store.data_url") && err.contains("SPORTELLO__STORE__DATA_URL"),
        "{err}"
    );
    let s = load(&[
        kurrent,
        ("SPORTELLO__STORE__DATA_URL", "sqlite://data/urp.db"),
    ])
    .unwrap();
    assert_eq!(s.data_url().expose(), "sqlite://data/urp.db");
    assert_eq!(s.beside_store("opendata"), Path::new("data/opendata"));
    let err = load(&[kurrent, ("SPORTELLO__STORE__DATA_URL", "esdb://x:2113")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("store.data_url"), "{err}");
    let err = load(&[("SPORTELLO__STORE__DATA_URL", "sqlite://data/other.db")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("leave store.data_url unset"), "{err}");
    let s = load(&[]).unwrap();
    assert_eq!(
        s.data_url().expose(),
        "sqlite://data/sportello.db",
        "the log's own database"
    );
}

#[test]
fn the_kurrentdb_clients_url_schemes_are_recognised_and_others_are_not() {
    for url in [
        "kurrentdb://localhost:2113?tls=false",
        "esdb://admin:changeit@localhost:2113",
        "kurrentdb+discover://cluster.example:2113",
    ] {
        assert!(is_kurrentdb_url(url), "{url}");
    }
    for url in [
        "postgres://x/y",
        "sqlite://events.db",
        "kurrentdb",
        "http://x",
    ] {
        assert!(!is_kurrentdb_url(url), "{url}");
    }
}
