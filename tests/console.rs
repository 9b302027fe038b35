//! The web console is served by the binary itself: `/` leads to it, its
//! page and every file it loads come from this server with the right types,
//! under a policy that allows only same-origin scripts (no inline ones).
//! What the console does in a browser is tested by tests/browser/run.sh.
mod common;

use common::{spawn_app, Stack};
use reqwest::Method;

/// The module files a script imports (`from "./x.js"`).
fn imports(script: &str) -> Vec<String> {
    script
        .split("from \"./")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|file| format!("/app/{file}"))
        .collect()
}

/// The `src`/`href` values of a page that point into the console.
fn page_files(html: &str) -> Vec<String> {
    html.split(['"', '\''])
        .filter(|part| part.starts_with("/app/"))
        .map(str::to_owned)
        .collect()
}

async fn console_served(stack: Stack) {
    let app = spawn_app(stack).await;

    let root = app.send(app.req(Method::GET, "/", None)).await;
    root.expect(200, "GET / (following its redirect)");
    assert!(root.url.ends_with("/app"), "/ led to {}", root.url);

    let page = app.send(app.req(Method::GET, "/app", None)).await;
    page.expect(200, "GET /app");
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    let html = page.text();
    // Every script is a file: the policy refuses inline ones.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script type=\"module\" src=\"/app/").count(),
        "{html}"
    );

    // The page's files and, transitively, every module they import.
    let mut pending = page_files(&html);
    assert!(pending.iter().any(|f| f.ends_with(".js")), "{html}");
    let mut seen = std::collections::BTreeSet::new();
    while let Some(file) = pending.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let asset = app.send(app.req(Method::GET, &file, None)).await;
        asset.expect(200, &format!("GET {file}"));
        let content_type = asset.header("content-type").unwrap_or_default();
        let expected = match file.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected console file type {other:?}"),
        };
        assert!(content_type.starts_with(expected), "{file}: {content_type}");
        assert_eq!(
            asset.header("content-security-policy").as_deref(),
            Some(policy.as_str())
        );
        if file.ends_with(".js") {
            pending.extend(imports(&asset.text()));
        }
    }
    assert!(seen.len() >= 8, "the console loads only {seen:?}");

    let missing = app.send(app.req(Method::GET, "/app/nope.js", None)).await;
    missing.expect(404, "an unknown console file");
    assert_eq!(
        missing.header("content-type").as_deref(),
        Some("application/problem+json")
    );

    // The API keeps its own, stricter policy.
    let health = app.send(app.req(Method::GET, "/healthz", None)).await;
    assert_eq!(
        health.header("content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
}
both_stacks!(console_served, console_embedded, console_full_stack);
