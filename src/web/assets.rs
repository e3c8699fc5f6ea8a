//! The pages' static files, embedded in the binary: Bootstrap Italia (vendored by
//! `scripts/vendor-bootstrap-italia.sh`), its fonts, and sportello's own stylesheet.
//!
//! They are served under `/static/{version}/`, where the version is a hash of their contents:
//! a browser may keep them for a year, and a new binary with other files changes every URL.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::{LazyLock, OnceLock};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $path:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!($path),
        }
    };
}

const CSS: &str = "text/css; charset=utf-8";
const WOFF2: &str = "font/woff2";

static ASSETS: &[Asset] = &[
    asset!(
        "bootstrap-italia.min.css",
        "../../vendor/bootstrap-italia/css/bootstrap-italia.min.css",
        CSS
    ),
    asset!(
        "bootstrap-italia.bundle.min.js",
        "../../vendor/bootstrap-italia/js/bootstrap-italia.bundle.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "sprites.svg",
        "../../vendor/bootstrap-italia/svg/sprites.svg",
        "image/svg+xml"
    ),
    asset!("fonts.css", "static/fonts.css", CSS),
    asset!("sportello.css", "static/sportello.css", CSS),
    asset!(
        "fonts/titillium-web-300.woff2",
        "../../vendor/bootstrap-italia/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-300.woff2",
        WOFF2
    ),
    asset!(
        "fonts/titillium-web-regular.woff2",
        "../../vendor/bootstrap-italia/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-regular.woff2",
        WOFF2
    ),
    asset!(
        "fonts/titillium-web-italic.woff2",
        "../../vendor/bootstrap-italia/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-italic.woff2",
        WOFF2
    ),
    asset!(
        "fonts/titillium-web-600.woff2",
        "../../vendor/bootstrap-italia/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-600.woff2",
        WOFF2
    ),
    asset!(
        "fonts/titillium-web-700.woff2",
        "../../vendor/bootstrap-italia/fonts/Titillium_Web/titillium-web-v10-latin-ext_latin-700.woff2",
        WOFF2
    ),
    asset!(
        "fonts/lora-regular.woff2",
        "../../vendor/bootstrap-italia/fonts/Lora/lora-v20-latin-ext_latin-regular.woff2",
        WOFF2
    ),
    asset!(
        "fonts/lora-700.woff2",
        "../../vendor/bootstrap-italia/fonts/Lora/lora-v20-latin-ext_latin-700.woff2",
        WOFF2
    ),
    asset!(
        "fonts/roboto-mono-regular.woff2",
        "../../vendor/bootstrap-italia/fonts/Roboto_Mono/roboto-mono-v13-latin-ext_latin-regular.woff2",
        WOFF2
    ),
    asset!(
        "fonts/roboto-mono-700.woff2",
        "../../vendor/bootstrap-italia/fonts/Roboto_Mono/roboto-mono-v13-latin-ext_latin-700.woff2",
        WOFF2
    ),
];

/// The first hex digits of a hash of every asset: part of their URLs.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for asset in ASSETS {
        hash.update(asset.name.as_bytes());
        hash.update(asset.bytes);
    }
    hex::encode(&hash.finalize()[..6])
});

/// Where the pages find the assets.
pub fn root() -> String {
    format!("/static/{}", *VERSION)
}

/// Each asset gzipped once, on its first request by a client that takes gzip.
static GZIPPED: [OnceLock<Vec<u8>>; ASSET_COUNT] = [const { OnceLock::new() }; ASSET_COUNT];
const ASSET_COUNT: usize = 14;

fn gzipped(index: usize) -> &'static [u8] {
    GZIPPED[index].get_or_init(|| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(ASSETS[index].bytes)
            .and_then(|()| encoder.finish())
            .expect("gzip into memory cannot fail")
    })
}

/// `GET /static/{version}/{*name}`.
pub async fn serve(Path((version, name)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "risorsa non trovata").into_response();
    };
    let asset = &ASSETS[index];
    // An old page may ask for an old version: it gets today's file, not kept for long.
    let cache = if version == *VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let takes_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    // WOFF2 is compressed already.
    let (body, encoding) = if takes_gzip && asset.content_type != WOFF2 {
        (gzipped(index), Some("gzip"))
    } else {
        (asset.bytes, None)
    };
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
        ],
        body,
    )
        .into_response();
    if let Some(encoding) = encoding {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_once_and_counted() {
        assert_eq!(ASSETS.len(), ASSET_COUNT);
        let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
    }

    #[test]
    fn the_fonts_stylesheet_names_only_embedded_fonts() {
        let css = std::str::from_utf8(ASSETS.iter().find(|a| a.name == "fonts.css").unwrap().bytes)
            .unwrap();
        let mut named = 0;
        for url in css.split("url(").skip(1) {
            let file = url.split(')').next().unwrap().trim_matches(['"', '\'']);
            assert!(
                ASSETS
                    .iter()
                    .any(|a| a.name == file && a.content_type == WOFF2),
                "{file} is not embedded"
            );
            named += 1;
        }
        assert_eq!(
            named,
            ASSETS.iter().filter(|a| a.content_type == WOFF2).count()
        );
    }
}
