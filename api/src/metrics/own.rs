//! pgmon's own figures: the API's requests by route and status with a latency histogram, its caches
//! and pools (kept here), and each collector's runs, rows and claims (which collectors write to the
//! store with their heartbeat: the collector has no HTTP port, so one scrape of the API covers
//! every process of the installation).

use super::text::{Kind, Text};
use crate::state::AppState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: AtomicU64,
    /// Microseconds.
    sum_us: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
}

/// (route template, method, status).
type Key = (String, String, u16);

/// Requests seen by this API instance, by [`Key`].
#[derive(Clone, Default)]
pub struct Requests(Arc<Mutex<HashMap<Key, Arc<Series>>>>);

impl Requests {
    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        let series = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Routes are templates, methods and statuses few: the map stays small.
            map.entry((route.to_string(), method.to_string(), status))
                .or_default()
                .clone()
        };
        let secs = took.as_secs_f64();
        series.count.fetch_add(1, Ordering::Relaxed);
        series.sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                series.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn snapshot(&self) -> Vec<(Key, Arc<Series>)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

pub async fn write_api(state: &AppState, t: &mut Text) {
    let snap = state.requests.snapshot();
    t.family(
        "pgmon_api_requests_total",
        Kind::Counter,
        "HTTP requests answered by this pgmon-api, by route, method and status.",
    )
    .await;
    for ((route, method, status), s) in &snap {
        let status = status.to_string();
        t.sample(
            &[("route", route), ("method", method), ("status", &status)],
            s.count.load(Ordering::Relaxed) as f64,
        );
    }
    t.family(
        "pgmon_api_request_duration_seconds",
        Kind::Histogram,
        "Time to answer HTTP requests, by route.",
    )
    .await;
    let mut by_route: std::collections::BTreeMap<&str, (Vec<u64>, u64, u64)> = Default::default();
    for ((route, _, _), s) in &snap {
        let e = by_route
            .entry(route.as_str())
            .or_insert_with(|| (vec![0; BUCKETS.len()], 0, 0));
        for (i, b) in s.buckets.iter().enumerate() {
            e.0[i] += b.load(Ordering::Relaxed);
        }
        e.1 += s.count.load(Ordering::Relaxed);
        e.2 += s.sum_us.load(Ordering::Relaxed);
    }
    for (route, (buckets, count, sum_us)) in by_route {
        for (i, le) in BUCKETS.iter().enumerate() {
            let le = le.to_string();
            t.sample_with("_bucket", &[("route", route), ("le", &le)], buckets[i] as f64);
        }
        t.sample_with("_bucket", &[("route", route), ("le", "+Inf")], count as f64);
        t.sample_with("_sum", &[("route", route)], sum_us as f64 / 1e6);
        t.sample_with("_count", &[("route", route)], count as f64);
    }
    t.single(
        "pgmon_api_cache_invalidations_total",
        Kind::Counter,
        "Times the caches of users, tokens, servers and settings were emptied (a change, a NOTIFY).",
        state.cache.invalidations() as f64,
    )
    .await;
    let (h, active) = state.cache.history_stats();
    t.single(
        "pgmon_api_history_answers_served_total",
        Kind::Counter,
        "History answers served from the kept answers.",
        h.hits as f64,
    )
    .await;
    t.single(
        "pgmon_api_history_answers_computed_total",
        Kind::Counter,
        "History answers computed.",
        h.computed as f64,
    )
    .await;
    t.single(
        "pgmon_api_history_answers_bytes",
        Kind::Gauge,
        "Bytes of kept history answers.",
        h.bytes as f64,
    )
    .await;
    t.single(
        "pgmon_api_caches_active",
        Kind::Gauge,
        "1 while the store's notifications are heard and caches are in use.",
        if active { 1.0 } else { 0.0 },
    )
    .await;
    t.family(
        "pgmon_api_remote_pool_connections",
        Kind::Gauge,
        "Connections of this API's pools to monitored servers, by state.",
    )
    .await;
    for p in state.remote.infos() {
        let idle = p.idle as f64;
        t.sample(&[("server", &p.server), ("state", "idle")], idle);
        t.sample(
            &[("server", &p.server), ("state", "busy")],
            (p.size as f64 - idle).max(0.0),
        );
        t.sample(&[("server", &p.server), ("state", "waiting")], p.waiting as f64);
    }
    t.single(
        "pgmon_api_up_seconds",
        Kind::Gauge,
        "Seconds since this pgmon-api started.",
        state.started.elapsed().as_secs_f64(),
    )
    .await;
}

/// Each collector that sent a heartbeat within the last day, from the store.
pub async fn write_collectors(beats: &[pgmon_shared::store::collectors::Heartbeat], t: &mut Text) {
    let now = chrono::Utc::now();
    let label = |b: &pgmon_shared::store::collectors::Heartbeat| (b.instance_id.to_string(), b.host.clone());
    t.family(
        "pgmon_collector_up",
        Kind::Gauge,
        "1 for a collector whose heartbeat is younger than 60 s and that has not stopped.",
    )
    .await;
    for b in beats {
        let (i, h) = label(b);
        let up = b.stopped_at.is_none() && (now - b.last_seen_at).num_seconds() < 60;
        t.sample(&[("instance", &i), ("host", &h)], if up { 1.0 } else { 0.0 });
    }
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    for (name, key, kind, help) in [
        (
            "pgmon_collector_rows_written_total",
            "rows_written",
            Kind::Counter,
            "Rows written to the store.",
        ),
        (
            "pgmon_collector_rows_dropped_total",
            "rows_dropped",
            Kind::Counter,
            "Rows dropped because the buffer was full while the store was unreachable.",
        ),
        (
            "pgmon_collector_rows_pending",
            "rows_pending",
            Kind::Gauge,
            "Rows buffered, not yet written.",
        ),
        (
            "pgmon_collector_claim_takeovers_total",
            "claim_takeovers",
            Kind::Counter,
            "Servers taken over from a collector that stopped answering.",
        ),
        (
            "pgmon_collector_log_entries_pending",
            "log_entries_pending",
            Kind::Gauge,
            "System-log entries waiting for the store.",
        ),
    ] {
        t.family(name, kind, help).await;
        for b in beats {
            let (i, h) = label(b);
            t.maybe(&[("instance", &i), ("host", &h)], num(&b.counters, key));
        }
    }
    t.family("pgmon_collector_task_runs_total", Kind::Counter, "Task runs.")
        .await;
    for b in beats {
        let (i, h) = label(b);
        for (task, v) in b
            .counters
            .get("tasks")
            .and_then(|t| t.as_object())
            .into_iter()
            .flatten()
        {
            t.maybe(&[("instance", &i), ("host", &h), ("task", task)], num(v, "runs"));
        }
    }
    t.family(
        "pgmon_collector_task_run_seconds_total",
        Kind::Counter,
        "Time spent in task runs.",
    )
    .await;
    for b in beats {
        let (i, h) = label(b);
        for (task, v) in b
            .counters
            .get("tasks")
            .and_then(|t| t.as_object())
            .into_iter()
            .flatten()
        {
            t.maybe(
                &[("instance", &i), ("host", &h), ("task", task)],
                num(v, "run_seconds"),
            );
        }
    }
    for (name, key, help) in [
        (
            "pgmon_collector_task_last_servers_up",
            "up",
            "Servers collected without a failure in the last run.",
        ),
        (
            "pgmon_collector_task_last_servers_down",
            "down",
            "Servers that failed in the last run.",
        ),
        (
            "pgmon_collector_task_last_duration_seconds",
            "duration_ms",
            "Duration of the last run.",
        ),
    ] {
        t.family(name, Kind::Gauge, help).await;
        for b in beats {
            let (i, h) = label(b);
            for (task, v) in b.tasks.as_object().into_iter().flatten() {
                let value = num(v, key).map(|x| if key == "duration_ms" { x / 1000.0 } else { x });
                t.maybe(&[("instance", &i), ("host", &h), ("task", task)], value);
            }
        }
    }
    t.family(
        "pgmon_collector_task_last_run_timestamp_seconds",
        Kind::Gauge,
        "When the last run of the task ended.",
    )
    .await;
    for b in beats {
        let (i, h) = label(b);
        for (task, v) in b.tasks.as_object().into_iter().flatten() {
            let at = v
                .get("last_run")
                .and_then(|x| x.as_str())
                .and_then(|x| x.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .map(|x| x.timestamp_micros() as f64 / 1e6);
            t.maybe(&[("instance", &i), ("host", &h), ("task", task)], at);
        }
    }
}
