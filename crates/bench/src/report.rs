//! What a run measured: a latency histogram (HdrHistogram, nanoseconds,
//! three significant digits), outcomes counted by reason, and the report
//! printed for people or as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies from 1 ns to one hour; longer ones are clamped to one hour.
const MAX_NANOS: u64 = 3_600_000_000_000;

/// One worker's measurements; merged at the end.
#[derive(Debug)]
pub struct Samples {
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Default for Samples {
    fn default() -> Self {
        Samples::new()
    }
}

impl Samples {
    pub fn new() -> Samples {
        Samples {
            // Valid bounds and precision: construction cannot fail.
            hist: Histogram::new_with_bounds(1, MAX_NANOS, 3)
                .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid")),
            errors: BTreeMap::new(),
        }
    }

    pub fn ok(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(MAX_NANOS);
        self.hist.saturating_record(ns.clamp(1, MAX_NANOS));
    }

    pub fn error(&mut self, reason: impl Into<String>) {
        *self.errors.entry(reason.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Samples) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    pub fn completed(&self) -> u64 {
        self.hist.len()
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    fn latency(&self) -> Option<Latency> {
        if self.hist.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let h = &self.hist;
        Some(Latency {
            min: us(h.min()),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        })
    }

    /// The report for a run that took `elapsed`.
    pub fn report(
        &self,
        benchmark: &'static str,
        target: &str,
        elapsed: Duration,
        settings: BTreeMap<&'static str, serde_json::Value>,
        results: BTreeMap<&'static str, serde_json::Value>,
    ) -> Report {
        let secs = elapsed.as_secs_f64();
        Report {
            benchmark,
            target: target.to_string(),
            settings,
            elapsed_s: secs,
            completed: self.completed(),
            failed: self.failed(),
            rate_per_s: if secs > 0.0 {
                self.completed() as f64 / secs
            } else {
                0.0
            },
            latency_us: self.latency(),
            errors: self.errors.clone(),
            results,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// A finished run (`--json` prints exactly this).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub target: String,
    /// The options the run used.
    pub settings: BTreeMap<&'static str, serde_json::Value>,
    pub elapsed_s: f64,
    /// Operations that succeeded (their latencies are in `latency_us`).
    pub completed: u64,
    /// Operations that failed (by reason in `errors`).
    pub failed: u64,
    /// Completed operations per second of wall time.
    pub rate_per_s: f64,
    pub latency_us: Option<Latency>,
    pub errors: BTreeMap<String, u64>,
    /// Benchmark-specific figures (e.g. how many handshakes resumed).
    pub results: BTreeMap<&'static str, serde_json::Value>,
}

impl Report {
    /// The human-readable form.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} against {}: {:.1} s\n",
            self.benchmark, self.target, self.elapsed_s
        );
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k} {}", plain(v)))
            .collect();
        s += &format!("  settings   {}\n", settings.join(", "));
        s += &format!(
            "  completed  {} ({:.1}/s)\n",
            self.completed, self.rate_per_s
        );
        s += &format!("  failed     {}\n", self.failed);
        if let Some(l) = &self.latency_us {
            s += &format!(
                "  latency    min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}\n",
                ms(l.min),
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max),
                ms(l.mean)
            );
        }
        for (reason, n) in &self.errors {
            s += &format!("  error      {reason}: {n}\n");
        }
        for (k, v) in &self.results {
            s += &format!("  {k:<10} {}\n", plain(v));
        }
        s
    }
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// Counters the workers bump and the progress line reads.
#[derive(Debug, Default)]
pub struct Progress {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    done: AtomicBool,
}

impl Progress {
    pub fn ok(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints one line a second on stderr until [`Progress::finish`]:
    /// elapsed time, completed and failed so far, and the last second's rate.
    pub fn spawn_printer(self: &Arc<Self>, label: &'static str, quiet: bool) {
        if quiet {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                if me.done.load(Ordering::Relaxed) {
                    return;
                }
                let ok = me.ok.load(Ordering::Relaxed);
                let failed = me.failed.load(Ordering::Relaxed);
                eprintln!(
                    "{label}: {:>5.1} s  {ok} completed ({}/s)  {failed} failed",
                    start.elapsed().as_secs_f64(),
                    ok - last
                );
                last = ok;
            }
        });
    }

    pub fn finish(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// When to stop: after a duration, or after a number of operations.
#[derive(Debug)]
pub enum Budget {
    Until(Instant),
    Count(AtomicU64),
}

impl Budget {
    pub fn new(duration: Option<Duration>, count: Option<u64>) -> Budget {
        match (count, duration) {
            (Some(n), _) => Budget::Count(AtomicU64::new(n)),
            (None, d) => Budget::Until(Instant::now() + d.unwrap_or(Duration::from_secs(10))),
        }
    }

    /// Claims one more operation; false once the budget is spent.
    pub fn take(&self) -> bool {
        match self {
            Budget::Until(t) => Instant::now() < *t,
            Budget::Count(n) => n
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut a = Samples::new();
        for us in 1..=1000u64 {
            a.ok(Duration::from_micros(us));
        }
        let mut b = Samples::new();
        b.error("alert_bad_certificate");
        b.error("alert_bad_certificate");
        b.error("timeout");
        a.merge(b);
        let r = a.report(
            "handshake",
            "t",
            Duration::from_secs(2),
            BTreeMap::new(),
            BTreeMap::new(),
        );
        assert_eq!(r.completed, 1000);
        assert_eq!(r.failed, 3);
        assert_eq!(r.errors["alert_bad_certificate"], 2);
        assert!((r.rate_per_s - 500.0).abs() < 1e-9);
        let l = r.latency_us.unwrap();
        // Three significant digits: within 0.1 % of the exact rank.
        assert!((l.p50 - 500.0).abs() <= 1.0, "{}", l.p50);
        assert!((l.p99 - 990.0).abs() <= 1.0, "{}", l.p99);
        assert!((l.max - 1000.0).abs() <= 1.0, "{}", l.max);
        assert!((l.min - 1.0).abs() < 0.01, "{}", l.min);
    }

    #[test]
    fn a_count_budget_hands_out_exactly_that_many() {
        let b = Budget::new(Some(Duration::from_secs(1)), Some(3));
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        assert!(!b.take());
    }

    #[test]
    fn an_empty_run_has_no_latency_and_no_rate() {
        let r = Samples::new().report("x", "t", Duration::ZERO, BTreeMap::new(), BTreeMap::new());
        assert!(r.latency_us.is_none());
        assert_eq!(r.rate_per_s, 0.0);
    }
}
