//! The API description (`docs/openapi.json`, served at `/v1.1/openapi.json`) against the server:
//! every route the router declares is documented with its methods, every documented operation is
//! routed (read from the `.route(...)` calls in `src/`, and asked of a live server), the
//! document is OpenAPI 3.1 whose `$ref`s all resolve, and `docs/api.md` is its current rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

/// Route prefixes that are not API and not documented: the web console is a client of the API.
const UNDOCUMENTED_PREFIXES: &[&str] = &["/console"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    let text =
        std::fs::read_to_string(root().join("docs/openapi.json")).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// `/v1.1/instances/` and `/v1.1/instances` are one route (the server trims trailing slashes).
fn normalize(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Drops `//` comments (outside string literals) so that commented-out routes do not count.
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut cut = line.len();
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// `(path, methods)` of every `.route("...", get(..).post(..))` call in `source`, whatever the
/// line breaks: the path literal, then the method routers named in the call's second argument.
fn routes_in(source: &str, file: &Path) -> Vec<(String, BTreeSet<String>)> {
    let source = strip_comments(source);
    let mut routes = Vec::new();
    let mut rest = source.as_str();
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        let call = call.trim_start();
        let Some(literal) = call.strip_prefix('"') else {
            panic!("{}: a .route( call without a literal path", file.display());
        };
        let end = literal.find('"').expect("end of the path literal");
        let path = literal[..end].to_owned();
        // The second argument runs to the parenthesis that closes `.route(`.
        let args = &literal[end + 1..];
        let mut depth = 1;
        let mut close = args.len();
        for (i, c) in args.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let chain = &args[..close];
        let mut methods = BTreeSet::new();
        let chars: Vec<char> = chain.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if !(chars[i].is_alphabetic() || chars[i] == '_') {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let before = chars[..start].iter().rev().find(|c| !c.is_whitespace());
            let after = chars[i..].iter().find(|c| !c.is_whitespace());
            // A method router is called bare (`get(`, `routing::get(`) or chained (`.post(`).
            if after == Some(&'(')
                && METHODS.contains(&word.as_str())
                && matches!(before, None | Some('.' | ',' | ':'))
            {
                methods.insert(word.to_uppercase());
            }
        }
        assert!(
            !methods.is_empty(),
            "{}: no methods found for route {path}",
            file.display()
        );
        routes.push((path, methods));
        rest = &args[close..];
    }
    routes
}

/// Every route the source declares, normalized, with its methods.
fn declared_routes() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("read source");
        for (path, methods) in routes_in(&source, &file) {
            routes.entry(normalize(&path)).or_default().extend(methods);
        }
    }
    routes
}

/// Every documented path, normalized, with its methods.
fn documented_routes(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods = item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| METHODS.contains(&k.as_str()))
            .map(|k| k.to_uppercase());
        routes.entry(normalize(path)).or_default().extend(methods);
    }
    routes
}

#[test]
fn the_route_parser_reads_every_layout() {
    let source = r#"
        Router::new()
            .route("/a", get(list).post(create))
            .route(
                "/a/{id}",
                get(show::<X>)
                    .put(update)
                    // .delete(remove) is not routed
                    .patch(update),
            )
            .route("/b", post(get_thing))
    "#;
    let routes = routes_in(source, Path::new("example.rs"));
    let as_strings: Vec<(String, Vec<String>)> = routes
        .into_iter()
        .map(|(p, m)| (p, m.into_iter().collect()))
        .collect();
    assert_eq!(
        as_strings,
        vec![
            ("/a".to_owned(), vec!["GET".to_owned(), "POST".to_owned()]),
            (
                "/a/{id}".to_owned(),
                vec!["GET".to_owned(), "PATCH".to_owned(), "PUT".to_owned()]
            ),
            ("/b".to_owned(), vec!["POST".to_owned()]),
        ]
    );
}

#[test]
fn every_route_is_documented_and_every_documented_route_is_declared() {
    let declared = declared_routes();
    let documented = documented_routes(&document());
    assert!(
        declared.len() >= 36,
        "the route parser found only {} routes",
        declared.len()
    );
    let mut problems = Vec::new();
    for (path, methods) in &declared {
        if UNDOCUMENTED_PREFIXES.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        match documented.get(path) {
            None => problems.push(format!(
                "route {path} ({methods:?}) is not in docs/openapi.json"
            )),
            Some(doc_methods) => {
                for method in methods.difference(doc_methods) {
                    problems.push(format!("{method} {path} is routed but not documented"));
                }
            }
        }
    }
    for (path, methods) in &documented {
        match declared.get(path) {
            None => problems.push(format!("documented path {path} has no .route(...) in src/")),
            Some(routed) => {
                for method in methods.difference(routed) {
                    problems.push(format!("{method} {path} is documented but not routed"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(target)) => out.push((at.clone(), target)),
                    _ => refs(item, format!("{at}/{key}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                refs(item, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_openapi_3_1_and_every_ref_resolves() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "openapi is {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(found.len() > 100, "only {} $refs", found.len());
    for (at, target) in found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: $ref {target} is not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{at}: $ref {target} resolves to nothing"
        );
    }
    // Operation ids name operations for code generators: they must be unique.
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for (method, operation) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                let id = operation["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                assert!(
                    operation["responses"]
                        .as_object()
                        .is_some_and(|r| !r.is_empty()),
                    "{id} has no responses"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_key() {
    let app = TestApp::spawn().await;
    let resp = app.get("/v1.1/openapi.json", None).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let file = std::fs::read_to_string(root().join("docs/openapi.json")).expect("file");
    assert_eq!(
        resp.text, file,
        "the server serves docs/openapi.json as it is"
    );
    // Clients call paths with the trailing slash too.
    assert_eq!(app.get("/v1.1/openapi.json/", None).await.status, 200);
}

/// A value for a path parameter that addresses something that exists in the test instance.
fn fill(path: &str) -> String {
    path.replace("{instance}", "alpha")
        .replace("{channel}", "default")
        .replace("{class}", "user_profile")
        .replace("{id}", "1")
        .replace("{member}", "1")
}

#[tokio::test]
async fn every_documented_operation_is_routed_on_a_live_server() {
    let app = TestApp::spawn_with(|a| a.poll_timeout = std::time::Duration::from_secs(1)).await;
    app.create_instance("alpha").await;
    let doc = document();
    let mut problems = Vec::new();
    let mut asked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // Without a key nothing changes: each request stops at a check, or reads.
            let resp = app
                .send(
                    app.request(method.clone(), &fill(path), None)
                        .json(&json!({})),
                )
                .await;
            asked += 1;
            let route_missing = resp.status == 405
                || (resp.status == 404 && resp.json == json!({"detail": "Not found."}));
            if route_missing {
                problems.push(format!("{method} {path}: {} {}", resp.status, resp.text));
            }
        }
    }
    assert!(asked > 70, "only {asked} operations asked");
    assert!(problems.is_empty(), "not routed:\n{}", problems.join("\n"));
}

#[test]
fn the_rendered_reference_is_up_to_date() {
    let python = std::env::var("HERALD_TEST_PYTHON3").unwrap_or_else(|_| "python3".to_owned());
    let output = match std::process::Command::new(&python)
        .arg(root().join("docs/render_api.py"))
        .arg("--check")
        .output()
    {
        Ok(output) => output,
        Err(err) => {
            println!("skipped: cannot run {python} ({err}); docs/api.md was not checked");
            return;
        }
    };
    assert!(
        output.status.success(),
        "docs/api.md is not the rendering of docs/openapi.json: run `python3 docs/render_api.py`\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
