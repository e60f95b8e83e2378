//! The Prometheus text exposition format (0.0.4), or OpenMetrics 1.0 when the scraper asks for it.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A body being written: families one after the other, each family's samples together. With a
/// sink, what is written goes out in chunks as families start, so a scrape of a large fleet never
/// holds the whole answer in memory.
pub struct Text {
    pub out: String,
    openmetrics: bool,
    family: String,
    kind: Kind,
    sink: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
}

/// A chunk goes out once the buffer holds this much.
const CHUNK: usize = 256 * 1024;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

impl Text {
    pub fn new(openmetrics: bool, capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            openmetrics,
            family: String::new(),
            kind: Kind::Gauge,
            sink: None,
        }
    }

    /// A writer whose output goes to `sink` in chunks.
    pub fn streaming(openmetrics: bool, sink: tokio::sync::mpsc::Sender<bytes::Bytes>) -> Self {
        Self {
            out: String::with_capacity(CHUNK * 2),
            openmetrics,
            family: String::new(),
            kind: Kind::Gauge,
            sink: Some(sink),
        }
    }

    /// Sends the buffer when it is large enough (always with `force`). False once the reader is gone.
    pub async fn flush(&mut self, force: bool) -> bool {
        let Some(sink) = &self.sink else {
            return true;
        };
        if self.out.is_empty() || (!force && self.out.len() < CHUNK) {
            return true;
        }
        let chunk = std::mem::replace(&mut self.out, String::with_capacity(CHUNK * 2));
        sink.send(bytes::Bytes::from(chunk)).await.is_ok()
    }

    /// Starts a family. In OpenMetrics a counter family is named without its `_total` suffix, which
    /// its samples carry; the classic format keeps the name as given (postgres_exporter's counters,
    /// `pg_stat_database_xact_commit`, have none).
    pub async fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.flush(false).await;
        let base = if self.openmetrics && kind == Kind::Counter {
            name.strip_suffix("_total").unwrap_or(name)
        } else {
            name
        };
        let t = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {base} {help}");
        let _ = writeln!(self.out, "# TYPE {base} {t}");
        self.family = base.to_string();
        self.kind = kind;
    }

    /// One sample of the current family (`suffix` for histogram parts: `_bucket`, `_sum`, `_count`).
    pub fn sample_with(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(&self.family);
        if self.openmetrics && self.kind == Kind::Counter {
            self.out.push_str("_total");
        }
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape(v, &mut self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        if value.is_nan() {
            self.out.push_str("NaN");
        } else if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = write!(self.out, "{}", value as i64);
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }

    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.sample_with("", labels, value);
    }

    /// A sample when there is a value.
    /// A family with one unlabelled sample.
    pub async fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help).await;
        self.sample(&[], value);
    }

    pub fn maybe(&mut self, labels: &[(&str, &str)], value: Option<f64>) {
        if let Some(v) = value {
            self.sample(labels, v);
        }
    }

    pub fn finish(mut self) -> String {
        if self.openmetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }

    /// Ends a streamed body.
    pub async fn close(mut self) {
        if self.openmetrics {
            self.out.push_str("# EOF\n");
        }
        self.flush(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_labels_and_values_as_prometheus_reads_them() {
        let mut t = Text::new(false, 0);
        t.family("pg_stat_database_xact_commit", Kind::Counter, "Commits.")
            .await;
        t.sample(&[("server", "a\"b\\c\nd"), ("datname", "x")], 42.0);
        t.family("pgmon_ratio", Kind::Gauge, "A ratio.").await;
        t.sample(&[], 0.25);
        t.sample(&[], f64::INFINITY);
        assert_eq!(
            t.finish(),
            "# HELP pg_stat_database_xact_commit Commits.\n# TYPE pg_stat_database_xact_commit counter\n\
             pg_stat_database_xact_commit{server=\"a\\\"b\\\\c\\nd\",datname=\"x\"} 42\n\
             # HELP pgmon_ratio A ratio.\n# TYPE pgmon_ratio gauge\npgmon_ratio 0.25\npgmon_ratio +Inf\n"
        );
        let mut t = Text::new(true, 0);
        t.family("pg_stat_bgwriter_buffers_alloc_total", Kind::Counter, "Buffers.")
            .await;
        t.sample(&[], 7.0);
        assert_eq!(
            t.finish(),
            "# HELP pg_stat_bgwriter_buffers_alloc Buffers.\n# TYPE pg_stat_bgwriter_buffers_alloc counter\n\
             pg_stat_bgwriter_buffers_alloc_total 7\n# EOF\n"
        );
    }
}
