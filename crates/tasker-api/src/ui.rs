//! The web dashboard's files, embedded in the binary (plain HTML, CSS and JavaScript modules
//! under `crates/tasker-api/ui/`, no build step, nothing fetched from elsewhere at run time).
//! The pages call the API with the session cookie `POST /session` sets (docs/dashboard.md).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::error::ApiError;

/// Every file: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../ui/app.js")),
    ("api.js", JS, include_str!("../ui/api.js")),
    ("dom.js", JS, include_str!("../ui/dom.js")),
    ("json.js", JS, include_str!("../ui/json.js")),
    ("pages.js", JS, include_str!("../ui/pages.js")),
    ("svg.js", JS, include_str!("../ui/svg.js")),
    ("task.js", JS, include_str!("../ui/task.js")),
    ("tasks.js", JS, include_str!("../ui/tasks.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("../ui/index.html");

/// Only this origin's scripts, styles and connections; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The dashboard under `/ui`, calling the API mounted at `api_prefix` (e.g. `/v1`).
pub(crate) fn router(api_prefix: &str) -> Router {
    let index = INDEX.replace("{{API_PREFIX}}", &escape_attribute(api_prefix));
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(move || {
                let index = index.clone();
                async move { file("text/html; charset=utf-8", index) }
            }),
        )
        .route("/ui/{file}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => file(content_type, (*body).to_owned()),
        None => ApiError::not_found("no such dashboard file").into_response(),
    }
}

fn file(content_type: &'static str, body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The files change only with the binary; revalidate so an upgrade is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn escape_attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_pages_import_is_served() {
        let import = regex_lite_imports();
        for (name, _, body) in ASSETS {
            for target in import(body) {
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == target),
                    "{name} imports {target}, which is not served"
                );
            }
        }
        assert!(INDEX.contains("src=\"app.js\"") && INDEX.contains("href=\"style.css\""));
    }

    /// The `./x.js` targets of `from './x.js'` in a module.
    fn regex_lite_imports() -> impl Fn(&str) -> Vec<String> {
        |body: &str| {
            body.split("from './")
                .skip(1)
                .filter_map(|rest| rest.split('\'').next())
                .map(str::to_owned)
                .collect()
        }
    }

    #[test]
    fn nothing_is_loaded_from_another_origin() {
        for (name, _, body) in ASSETS.iter().chain([&("index.html", "", INDEX)]) {
            for needle in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<&str> = body
                    .lines()
                    .filter(|l| l.contains(needle) && !l.contains("http://www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{name} references {needle}: {hits:?}");
            }
        }
    }

    #[test]
    fn the_prefix_is_escaped_into_the_page() {
        assert_eq!(escape_attribute("/v1\"><x"), "/v1&quot;&gt;&lt;x");
    }
}
