//! `GET /metrics`: the fleet in the Prometheus text format (OpenMetrics when asked for), under
//! postgres_exporter's names, and pgmon's own figures. Off unless `[metrics] enabled`; a scrape
//! needs the token of `metrics.token_file` (when set) and a client address in `metrics.allow`.

pub mod fleet;
pub mod own;
pub mod text;

use crate::state::AppState;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};

fn refuse(status: StatusCode, detail: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::json!({ "detail": detail }).to_string())
}

/// The scrape token, read once (a missing or empty file disables access rather than opening it).
fn token(state: &AppState) -> Option<Result<String, ()>> {
    let path = state.cfg.metrics.token_file.as_ref()?;
    static TOKEN: std::sync::OnceLock<Result<String, ()>> = std::sync::OnceLock::new();
    Some(
        TOKEN
            .get_or_init(|| match std::fs::read_to_string(path) {
                Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
                _ => Err(()),
            })
            .clone(),
    )
}

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[handler]
pub async fn scrape(req: &Request, state: Data<&AppState>) -> Response {
    let cfg = &state.cfg.metrics;
    if !cfg.enabled {
        return refuse(
            StatusCode::NOT_FOUND,
            "metrics are disabled ([metrics] enabled = false)",
        );
    }
    let ip = crate::auth::guard::client_ip(req);
    let nets = cfg.allow_nets();
    if !ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this address may not scrape metrics (metrics.allow)",
        );
    }
    if let Some(expected) = token(&state) {
        let given = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = match (&expected, given) {
            (Ok(e), Some(g)) => same(e.as_bytes(), g.as_bytes()),
            _ => false,
        };
        if !ok {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required (metrics.token_file)",
            );
        }
    }
    // OpenMetrics only when asked for alone (or with `?format=openmetrics`): Prometheus offers both
    // and would get OpenMetrics' `_total` names for postgres_exporter's counters, which its
    // dashboards do not know; postgres_exporter itself answers Prometheus in the classic format.
    let accept = req
        .headers()
        .get(poem::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let openmetrics = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "format=openmetrics"))
        || (accept.contains("application/openmetrics-text") && !accept.contains("text/plain"));
    let settings = state.settings().await;
    let collect = settings.collect_interval().as_secs_f64();
    let activity = state.cfg.collector.activity_interval_secs as f64;
    if let Err(e) = sqlx::query("SELECT 1").execute(&state.pool).await {
        tracing::warn!(error = %e, "metrics: cannot reach the store");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the store is unreachable");
    }
    // The body is written as it is read, in chunks: a scrape of a thousand servers is ~100 MB that
    // is never held whole (a store error midway ends the body early, and Prometheus drops the
    // incomplete scrape).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let state = state.0.clone();
    tokio::spawn(async move {
        let mut t = text::Text::streaming(openmetrics, tx);
        if let Err(e) = fleet::write(&state.pool, &mut t, collect, activity).await {
            tracing::warn!(error = %e, "metrics: reading the store failed midway");
            return;
        }
        if let Ok(beats) = pgmon_shared::store::collectors::heartbeats(&state.pool).await {
            own::write_collectors(&beats, &mut t).await;
        }
        own::write_api(&state, &mut t).await;
        t.close().await;
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok::<_, std::io::Error>)));
    Response::builder()
        .content_type(if openmetrics {
            text::OPENMETRICS_TYPE
        } else {
            text::CONTENT_TYPE
        })
        .body(poem::Body::from_bytes_stream(stream))
}
