//! The web console (docs/api.md §11.6): plain HTML, CSS and JavaScript from the repository's
//! `console/` folder, compiled into the binary and served at `/console/`.
//!
//! The console is a client of the public API and nothing else: this module serves files, never
//! data. It runs in front of the API router, before trailing slashes are trimmed, because
//! `/console` (which redirects) and `/console/` (the page) must be told apart. Every answer
//! carries a Content-Security-Policy that allows the page's own origin only, so the console
//! makes no request anywhere else and runs no inline script.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// What the page may load: its own scripts, styles and API, a `data:` favicon, nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Path, content type and bytes of every file the console has.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/console/",
        HTML,
        include_bytes!("../../console/index.html"),
    ),
    (
        "/console/style.css",
        CSS,
        include_bytes!("../../console/style.css"),
    ),
    (
        "/console/app.js",
        JS,
        include_bytes!("../../console/app.js"),
    ),
    (
        "/console/api.js",
        JS,
        include_bytes!("../../console/api.js"),
    ),
    ("/console/ui.js", JS, include_bytes!("../../console/ui.js")),
    (
        "/console/instance.js",
        JS,
        include_bytes!("../../console/instance.js"),
    ),
    (
        "/console/channel.js",
        JS,
        include_bytes!("../../console/channel.js"),
    ),
    (
        "/console/server.js",
        JS,
        include_bytes!("../../console/server.js"),
    ),
];

/// Middleware: answers the console's paths when `enabled`, passes everything else on (an
/// unknown file under `/console/` gets the API's JSON 404, as does the console when disabled).
pub async fn serve(State(enabled): State<bool>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !enabled
        || !(request.method() == Method::GET || request.method() == Method::HEAD)
        || !(path == "/console" || path.starts_with("/console/"))
    {
        return next.run(request).await;
    }
    if path == "/console" {
        return redirect_to_console();
    }
    match ASSETS.iter().find(|(asset, _, _)| *asset == path) {
        Some((_, content_type, bytes)) => asset_response(content_type, bytes),
        None => next.run(request).await,
    }
}

fn redirect_to_console() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/console/"));
    response
}

fn asset_response(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // The files change with the binary: always ask again (they are small).
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(path, _, _)| *path).collect();
        for (_, content_type, bytes) in ASSETS {
            let text = std::str::from_utf8(bytes).expect("assets are UTF-8");
            for import in imports(text) {
                let path = format!("/console/{}", import.trim_start_matches("./"));
                assert!(
                    served.contains(&path.as_str()),
                    "{path} is imported but not served"
                );
            }
            if *content_type == HTML {
                assert!(
                    !text.contains("<script>") && !text.contains(" style="),
                    "the CSP forbids inline scripts and styles"
                );
            }
        }
    }

    /// `from "./x.js"` and `src="/console/x.js"` / `href="/console/x.css"` references.
    fn imports(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for marker in ["from \"", "src=\"/console/", "href=\"/console/"] {
            let mut rest = text;
            while let Some(start) = rest.find(marker) {
                rest = &rest[start + marker.len()..];
                let end = rest.find('"').unwrap_or(rest.len());
                found.push(rest[..end].to_owned());
            }
        }
        found
    }
}
