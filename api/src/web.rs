//! pgmon's web UI (`web/`), served from `api.web_dir` on the API's own origin.
//!
//! The UI's pages have shareable URLs (`/servers/x?from=...`), some of which are also API paths of
//! the original's first layout. A browser's navigation asks for `text/html` first; API clients
//! (axios, fetch, curl, Prometheus) never do. So a GET whose `Accept` puts `text/html` before any JSON
//! is answered with the UI's `index.html`, and everything else reaches the API unchanged. The UI's
//! own scripts and styles are under `/assets/`, which is no API path.
//!
//! The folder is read at each request (the index is a few hundred bytes; assets are hashed names the
//! browser keeps for a year), so a rebuilt UI is served without restarting the API. Without a built
//! UI, `/` answers a page that says how to build it.

use poem::error::StaticFileError;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::web::StaticFileRequest;
use poem::{Endpoint, FromRequest, IntoResponse, Request, Response};
use std::path::Path;
use std::sync::Arc;

/// The UI's policy: everything from this origin, nothing from elsewhere (no CDN; works offline).
/// uPlot sizes its canvas with inline `style` attributes, hence `'unsafe-inline'` for styles only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgmon</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto;line-height:1.5">
<h1>pgmon</h1>
<p>The API runs, but its web UI is not built, or <code>api.web_dir</code> does not point at it.</p>
<p>Build it with Node.js 18 or later (<code>apt install nodejs npm</code>):</p>
<pre>cd web &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>then set <code>web_dir = "/path/to/web/dist"</code> under <code>[api]</code> in the config and restart
pgmon-api. <code>./scripts/quickstart.sh</code> does all of this.</p>
<p>The API's documentation is at <a href="/docs">/docs</a>.</p>
</body></html>
"#;

/// Paths that always belong to the API or its documentation, whatever the client accepts.
fn reserved(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || matches!(path, "/docs" | "/openapi.json" | "/metrics")
}

/// A browser navigating: `text/html` is asked for, ahead of (or without) JSON.
fn wants_html(req: &Request) -> bool {
    let Some(accept) = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let html = accept.find("text/html");
    let json = accept.find("application/json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// What the UI serves for this request, if anything.
enum Hit {
    Index,
    Asset(String),
    /// Under `/assets/` but no name the build writes.
    Missing,
}

fn route(req: &Request) -> Option<Hit> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let path = req.uri().path();
    if let Some(name) = path.strip_prefix("/assets/") {
        // Flat folder of hashed names: anything else (`..`, `/`, `%2e`) is no asset.
        let ok = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        return Some(if ok {
            Hit::Asset(name.to_string())
        } else {
            Hit::Missing
        });
    }
    if path == "/" || path == "/index.html" || (!reserved(path) && wants_html(req)) {
        return Some(Hit::Index);
    }
    None
}

async fn index(dir: &Path) -> Response {
    let page = tokio::fs::read(dir.join("index.html")).await;
    let (status, body) = match page {
        Ok(b) => (StatusCode::OK, b),
        Err(_) => (StatusCode::OK, NOT_BUILT.as_bytes().to_vec()),
    };
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "same-origin")
        .body(body)
}

async fn asset(dir: &Path, name: &str, req: &Request) -> poem::Result<Response> {
    let file = dir.join("assets").join(name);
    let sfr = StaticFileRequest::from_request(req, &mut poem::RequestBody::default()).await?;
    let mut resp = match sfr.create_response(&file, true, false) {
        Ok(r) => r.into_response(),
        Err(StaticFileError::NotFound) => return Ok(missing()),
        Err(e) => return Err(e.into()),
    };
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(resp)
}

fn missing() -> Response {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .content_type("application/json")
        .body(r#"{"detail":"no such asset"}"#)
}

/// Middleware: the UI's requests are answered here, the rest go on to the API.
pub async fn serve<E: Endpoint>(next: Arc<E>, req: Request, dir: Arc<Path>) -> poem::Result<Response> {
    match route(&req) {
        Some(Hit::Index) => Ok(index(&dir).await),
        Some(Hit::Asset(name)) => asset(&dir, &name, &req).await,
        Some(Hit::Missing) => Ok(missing()),
        None => Ok(next.call(req).await?.into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, accept: &str) -> Request {
        Request::builder()
            .uri(path.parse().expect("uri"))
            .header(header::ACCEPT, accept)
            .finish()
    }

    #[test]
    fn browsers_get_the_ui_and_clients_the_api() {
        let nav = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(matches!(route(&req("/servers/db1", nav)), Some(Hit::Index)));
        assert!(matches!(route(&req("/", "*/*")), Some(Hit::Index)));
        // axios, curl, fetch and Prometheus reach the API.
        assert!(route(&req("/servers/db1", "application/json, text/plain, */*")).is_none());
        assert!(route(&req("/servers", "*/*")).is_none());
        // The API's own pages stay the API's, even for a browser.
        assert!(route(&req("/docs", nav)).is_none());
        assert!(route(&req("/api/servers", nav)).is_none());
        assert!(route(&req("/metrics", nav)).is_none());
        assert!(matches!(route(&req("/assets/app-1.js", "*/*")), Some(Hit::Asset(n)) if n == "app-1.js"));
        assert!(matches!(route(&req("/assets/..%2fx", "*/*")), Some(Hit::Missing)));
    }
}
