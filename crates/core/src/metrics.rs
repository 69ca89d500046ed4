//! A small Prometheus registry: counters, gauges and one histogram, in the
//! text exposition format. Label values are escaped per the format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<(String, String), f64>,
    gauges: BTreeMap<(String, String), f64>,
    histograms: BTreeMap<(String, String), Histogram>,
}

/// `(name, type, help)` for every metric a registry may render, in order.
pub type MetricHelp = &'static [(&'static str, &'static str, &'static str)];

#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    help: MetricHelp,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl Metrics {
    pub fn new(help: MetricHelp) -> Metrics {
        Metrics {
            inner: Mutex::default(),
            help,
        }
    }

    pub fn inc(&self, name: &str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    pub fn add(&self, name: &str, pairs: &[(&str, &str)], v: f64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.counters
                .entry((name.to_string(), labels(pairs)))
                .or_insert(0.0) += v;
        }
    }

    pub fn gauge_add(&self, name: &str, pairs: &[(&str, &str)], v: f64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.gauges
                .entry((name.to_string(), labels(pairs)))
                .or_insert(0.0) += v;
        }
    }

    pub fn gauge_set(&self, name: &str, pairs: &[(&str, &str)], v: f64) {
        if let Ok(mut m) = self.inner.lock() {
            m.gauges.insert((name.to_string(), labels(pairs)), v);
        }
    }

    /// Drops every series of a gauge (before re-publishing a new set).
    pub fn gauge_clear(&self, name: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.gauges.retain(|(n, _), _| n != name);
        }
    }

    pub fn observe(&self, name: &str, pairs: &[(&str, &str)], seconds: f64) {
        if let Ok(mut m) = self.inner.lock() {
            let h = m
                .histograms
                .entry((name.to_string(), labels(pairs)))
                .or_default();
            if h.buckets.is_empty() {
                h.buckets = vec![0; DURATION_BUCKETS.len()];
            }
            for (i, le) in DURATION_BUCKETS.iter().enumerate() {
                if seconds <= *le {
                    h.buckets[i] += 1;
                }
            }
            h.sum += seconds;
            h.count += 1;
        }
    }

    /// A counter's current value, for tests and `--json` summaries.
    pub fn counter(&self, name: &str, pairs: &[(&str, &str)]) -> f64 {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.counters.get(&(name.to_string(), labels(pairs))).copied())
            .unwrap_or(0.0)
    }

    pub fn render(&self) -> String {
        let Ok(m) = self.inner.lock() else {
            return String::new();
        };
        let mut out = String::new();
        for (name, kind, help) in self.help {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let series = |map: &BTreeMap<(String, String), f64>, out: &mut String| {
                for ((n, l), v) in map.iter().filter(|((n, _), _)| n == name) {
                    if l.is_empty() {
                        let _ = writeln!(out, "{n} {v}");
                    } else {
                        let _ = writeln!(out, "{n}{{{l}}} {v}");
                    }
                }
            };
            match *kind {
                "counter" => series(&m.counters, &mut out),
                "gauge" => series(&m.gauges, &mut out),
                _ => {
                    for ((n, l), h) in m.histograms.iter().filter(|((n, _), _)| n == name) {
                        let sep = if l.is_empty() {
                            String::new()
                        } else {
                            format!("{l},")
                        };
                        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
                            let _ =
                                writeln!(out, "{n}_bucket{{{sep}le=\"{le}\"}} {}", h.buckets[i]);
                        }
                        let _ = writeln!(out, "{n}_bucket{{{sep}le=\"+Inf\"}} {}", h.count);
                        let braces = if l.is_empty() {
                            String::new()
                        } else {
                            format!("{{{l}}}")
                        };
                        let _ = writeln!(out, "{n}_sum{braces} {}", h.sum);
                        let _ = writeln!(out, "{n}_count{braces} {}", h.count);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const HELP: MetricHelp = &[
        ("symbolon_gateway_handshakes_total", "counter", "h"),
        (
            "symbolon_gateway_handshake_duration_seconds",
            "histogram",
            "d",
        ),
        (
            "symbolon_gateway_certificate_expiry_timestamp_seconds",
            "gauge",
            "e",
        ),
    ];

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new(crate::metrics::tests::HELP);
        m.inc(
            "symbolon_gateway_handshakes_total",
            &[("result", "error"), ("reason", "unknown_ca")],
        );
        m.inc(
            "symbolon_gateway_handshakes_total",
            &[("result", "error"), ("reason", "unknown_ca")],
        );
        m.observe("symbolon_gateway_handshake_duration_seconds", &[], 0.003);
        m.gauge_set(
            "symbolon_gateway_certificate_expiry_timestamp_seconds",
            &[("kind", "server"), ("subject", "CN=\"x\"")],
            5.0,
        );
        let text = m.render();
        assert!(
            text.contains(
                "symbolon_gateway_handshakes_total{result=\"error\",reason=\"unknown_ca\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("symbolon_gateway_handshake_duration_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("symbolon_gateway_handshake_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("symbolon_gateway_handshake_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("subject=\"CN=\\\"x\\\"\""), "{text}");
        assert_eq!(
            m.counter(
                "symbolon_gateway_handshakes_total",
                &[("result", "error"), ("reason", "unknown_ca")]
            ),
            2.0
        );
    }
}
