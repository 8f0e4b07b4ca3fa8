//! The server's metrics, rendered in the Prometheus text format (version 0.0.4) by hand.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `wasmtx_invocations_total` | counter | `rule`, `mode`, `outcome` (`ok` or the error kind) |
//! | `wasmtx_invocation_duration_seconds` | histogram | `rule`, `mode` |
//! | `wasmtx_lock_wait_seconds` | histogram | `rule` (lock mode: time spent waiting for locks) |
//! | `wasmtx_lock_timeouts_total` | counter | `rule` |
//! | `wasmtx_conflicts_total` | counter | `rule` (optimistic runs that found a model changed) |
//! | `wasmtx_retries_total` | counter | `rule`, `mode` (extra attempts after retryable failures) |
//! | `wasmtx_http_requests_total` | counter | `method`, `route`, `status` |
//! | `wasmtx_http_request_duration_seconds` | histogram | `route` |
//! | `wasmtx_http_requests_in_flight` | gauge | |
//! | `wasmtx_registry_epoch` | gauge | |
//! | `wasmtx_rules_compiled_total`, `wasmtx_rules_loaded_precompiled_total`, `wasmtx_registry_refreshes_total` | counter | |
//! | `wasmtx_rules_cached` | gauge | |
//! | `wasmtx_snapshot_cache_hits_total`, `_misses_total`, `_stale_hits_total`, `_evictions_total`, `_drops_total`, `_invalidations_total` | counter | |
//! | `wasmtx_snapshot_cache_entries`, `wasmtx_snapshot_cache_bytes` | gauge | |
//! | `wasmtx_adaptive_optimistic_attempts_total`, `_lock_attempts_total`, `_conflicts_total`, `_marked_hot_total` | counter | |
//! | `wasmtx_adaptive_hot_models` | gauge | |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::Error;
use crate::invocation::{Mode, Outcome};
use crate::registry::RegistryStats;
use crate::txn::{AdaptiveStats, CacheStats};

/// One metric family the server exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricFamily {
    /// Its name (a histogram's series add `_bucket`, `_sum` and `_count`).
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Its `# HELP` text.
    pub help: &'static str,
}

const fn family(name: &'static str, kind: &'static str, help: &'static str) -> MetricFamily {
    MetricFamily { name, kind, help }
}

/// Every metric family `/metrics` can show (a family shows once it has a sample; the gauges
/// and registry counters always do): what dashboards and alerts may name.
pub const FAMILIES: &[MetricFamily] = &[
    family("wasmtx_invocations_total", "counter", "Rule invocations by rule, mode and outcome (ok or the error kind)."),
    family("wasmtx_invocation_duration_seconds", "histogram", "Wall time of rule invocations, retries included."),
    family("wasmtx_lock_wait_seconds", "histogram", "Time lock-mode invocations waited for their locks."),
    family("wasmtx_lock_timeouts_total", "counter", "Invocations that gave up waiting for a lock."),
    family("wasmtx_conflicts_total", "counter", "Optimistic attempts that found a model changed since it was loaded."),
    family("wasmtx_retries_total", "counter", "Extra attempts after retryable failures."),
    family("wasmtx_http_requests_total", "counter", "HTTP requests by method, route and status."),
    family("wasmtx_http_request_duration_seconds", "histogram", "Wall time of HTTP requests."),
    family("wasmtx_http_requests_in_flight", "gauge", "HTTP requests being served."),
    family("wasmtx_registry_epoch", "gauge", "The registry epoch this instance runs."),
    family("wasmtx_rules_cached", "gauge", "Compiled rules held in memory."),
    family("wasmtx_rules_compiled_total", "counter", "Rules compiled from their bytes."),
    family("wasmtx_rules_loaded_precompiled_total", "counter", "Rules loaded from the precompiled cache."),
    family("wasmtx_registry_refreshes_total", "counter", "Registry snapshots read."),
    family(
        "wasmtx_snapshot_cache_hits_total",
        "counter",
        "Invocations that found every model in the snapshot cache and ran without loading.",
    ),
    family("wasmtx_snapshot_cache_misses_total", "counter", "Invocations that had to load a model first."),
    family(
        "wasmtx_snapshot_cache_stale_hits_total",
        "counter",
        "Commits on cached state refused because a model had moved (one extra round trip each).",
    ),
    family("wasmtx_snapshot_cache_evictions_total", "counter", "Cache entries pushed out by the bounds."),
    family("wasmtx_snapshot_cache_drops_total", "counter", "Times the whole cache was dropped (a reconnect)."),
    family("wasmtx_snapshot_cache_entries", "gauge", "Models the snapshot cache keeps."),
    family("wasmtx_snapshot_cache_bytes", "gauge", "Bytes the snapshot cache keeps, as counted against its bound."),
    family(
        "wasmtx_snapshot_cache_invalidations_total",
        "counter",
        "Cache entries dropped because Redis said another client changed the model (client tracking).",
    ),
    family("wasmtx_adaptive_optimistic_attempts_total", "counter", "Attempts of adaptive invocations run optimistic."),
    family("wasmtx_adaptive_lock_attempts_total", "counter", "Attempts of adaptive invocations run in lock mode."),
    family("wasmtx_adaptive_conflicts_total", "counter", "Optimistic attempts of adaptive invocations refused."),
    family("wasmtx_adaptive_marked_hot_total", "counter", "Times adaptive mode sent a model to lock mode."),
    family("wasmtx_adaptive_hot_models", "gauge", "Models adaptive mode runs in lock mode now."),
];

/// What the engine behind the server reports besides the server's own counters.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct EngineGauges {
    /// The rule registry's counters.
    pub registry: RegistryStats,
    /// The snapshot cache's.
    pub cache: CacheStats,
    /// Adaptive mode's.
    pub adaptive: AdaptiveStats,
}

impl EngineGauges {
    /// The three sets of counters.
    pub fn new(registry: RegistryStats, cache: CacheStats, adaptive: AdaptiveStats) -> Self {
        Self { registry, cache, adaptive }
    }
}

/// Upper bounds of the histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, value: Duration) {
        let secs = value.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&mut self.counts) {
            if secs <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, u64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

impl Families {
    fn add(&mut self, name: &'static str, labels: Labels, n: u64) {
        *self.counters.entry(name).or_default().entry(labels).or_default() += n;
    }

    fn observe(&mut self, name: &'static str, labels: Labels, value: Duration) {
        self.histograms.entry(name).or_default().entry(labels).or_default().observe(value);
    }
}

/// Counters and histograms of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
    in_flight: AtomicI64,
}

impl Metrics {
    /// Records one invocation: its outcome, how long it took, its lock wait, retries and
    /// conflicts.
    pub fn record_invocation(&self, rule: &str, mode: Mode, elapsed: Duration, result: Result<&Outcome, &Error>) {
        let mode_label = mode.as_str();
        let rule_labels = || vec![("rule", rule.to_owned())];
        let rule_mode = || vec![("rule", rule.to_owned()), ("mode", mode_label.to_owned())];
        let mut f = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        let mut labels = rule_mode();
        labels.push(("outcome", outcome.to_owned()));
        f.add("wasmtx_invocations_total", labels, 1);
        f.observe("wasmtx_invocation_duration_seconds", rule_mode(), elapsed);
        match result {
            Ok(outcome) => {
                let retries = u64::from(outcome.attempts.saturating_sub(1));
                f.add("wasmtx_retries_total", rule_mode(), retries);
                if matches!(mode, Mode::Lock | Mode::Adaptive) {
                    f.observe("wasmtx_lock_wait_seconds", rule_labels(), outcome.timings.wait);
                }
                if matches!(mode, Mode::Optimistic | Mode::Adaptive) {
                    f.add("wasmtx_conflicts_total", rule_labels(), retries);
                }
            }
            Err(Error::LockTimeout { waited, .. }) => {
                f.add("wasmtx_lock_timeouts_total", rule_labels(), 1);
                f.observe("wasmtx_lock_wait_seconds", rule_labels(), *waited);
            }
            Err(Error::Conflict { attempts, .. }) => {
                f.add("wasmtx_conflicts_total", rule_labels(), u64::from(*attempts));
                f.add("wasmtx_retries_total", rule_mode(), u64::from(attempts.saturating_sub(1)));
            }
            Err(_) => {}
        }
    }

    /// Records one HTTP request.
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut f = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let labels = vec![("method", method.to_owned()), ("route", route.to_owned()), ("status", status.to_string())];
        f.add("wasmtx_http_requests_total", labels, 1);
        f.observe("wasmtx_http_request_duration_seconds", vec![("route", route.to_owned())], elapsed);
    }

    /// Counts a request in or out of flight.
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    /// Everything, in the Prometheus text format, with the engine's counters.
    pub fn render(&self, engine: EngineGauges) -> String {
        let EngineGauges { registry, cache, adaptive } = engine;
        let f = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, series) in &f.counters {
            header(&mut out, name, "counter");
            for (labels, value) in series {
                let _ = writeln!(out, "{name}{} {value}", render_labels(labels, None));
            }
        }
        for (name, series) in &f.histograms {
            header(&mut out, name, "histogram");
            for (labels, h) in series {
                for (bound, count) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(out, "{name}_bucket{} {count}", render_labels(labels, Some(&bound.to_string())));
                }
                let _ = writeln!(out, "{name}_bucket{} {}", render_labels(labels, Some("+Inf")), h.count);
                let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels, None), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", render_labels(labels, None), h.count);
            }
        }
        let gauges = [
            ("wasmtx_http_requests_in_flight", "gauge", self.in_flight.load(Ordering::Relaxed).max(0).unsigned_abs()),
            ("wasmtx_registry_epoch", "gauge", registry.epoch),
            ("wasmtx_rules_cached", "gauge", registry.cached),
            ("wasmtx_rules_compiled_total", "counter", registry.compiled),
            ("wasmtx_rules_loaded_precompiled_total", "counter", registry.loaded_precompiled),
            ("wasmtx_registry_refreshes_total", "counter", registry.refreshes),
            ("wasmtx_snapshot_cache_hits_total", "counter", cache.hits),
            ("wasmtx_snapshot_cache_misses_total", "counter", cache.misses),
            ("wasmtx_snapshot_cache_stale_hits_total", "counter", cache.stale_hits),
            ("wasmtx_snapshot_cache_evictions_total", "counter", cache.evictions),
            ("wasmtx_snapshot_cache_drops_total", "counter", cache.drops),
            ("wasmtx_snapshot_cache_entries", "gauge", cache.entries),
            ("wasmtx_snapshot_cache_bytes", "gauge", cache.bytes),
            ("wasmtx_snapshot_cache_invalidations_total", "counter", cache.invalidations),
            ("wasmtx_adaptive_optimistic_attempts_total", "counter", adaptive.optimistic_attempts),
            ("wasmtx_adaptive_lock_attempts_total", "counter", adaptive.lock_attempts),
            ("wasmtx_adaptive_conflicts_total", "counter", adaptive.conflicts),
            ("wasmtx_adaptive_marked_hot_total", "counter", adaptive.marked_hot),
            ("wasmtx_adaptive_hot_models", "gauge", adaptive.hot_now),
        ];
        for (name, kind, value) in gauges {
            header(&mut out, name, kind);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str) {
    let help = FAMILIES.iter().find(|f| f.name == name).map_or("", |f| f.help);
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.record_request("GET", "/v1/rules", 200, Duration::from_millis(3));
        m.record_request("GET", "/v1/rules", 200, Duration::from_millis(30));
        let text = m.render(EngineGauges::default());
        assert!(text.contains("wasmtx_http_requests_total{method=\"GET\",route=\"/v1/rules\",status=\"200\"} 2"));
        assert!(text.contains("wasmtx_http_request_duration_seconds_bucket{route=\"/v1/rules\",le=\"0.005\"} 1"));
        assert!(text.contains("wasmtx_http_request_duration_seconds_bucket{route=\"/v1/rules\",le=\"0.05\"} 2"));
        assert!(text.contains("wasmtx_http_request_duration_seconds_count{route=\"/v1/rules\"} 2"));
        assert!(text.contains("# TYPE wasmtx_registry_epoch gauge"));
    }

    /// Every family rendered is listed in [`FAMILIES`], with its kind and a help text.
    #[test]
    fn every_rendered_family_is_listed() {
        let m = Metrics::default();
        m.record_request("POST", "/v1/invoke/{rule}", 409, Duration::from_millis(3));
        let timeout = Error::LockTimeout {
            lock: crate::model::ids::LockId { model: crate::model::ids::ModelId::new("T", "k"), action: "run".into() },
            waited: Duration::from_millis(5),
        };
        m.record_invocation("r", Mode::Lock, Duration::from_millis(6), Err(&timeout));
        let text = m.render(EngineGauges::default());
        let mut seen = 0;
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').expect("a TYPE line names a kind");
            let listed = FAMILIES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} is not listed"));
            assert_eq!(listed.kind, kind, "{name}");
            assert!(!listed.help.is_empty(), "{name}");
            seen += 1;
        }
        assert!(seen >= 10, "{text}");
    }

    /// The snapshot cache's and adaptive mode's counters show with their values (and none is
    /// the other's).
    #[test]
    fn renders_the_cache_and_adaptive_counters() {
        let cache = CacheStats {
            hits: 11,
            misses: 12,
            stale_hits: 13,
            evictions: 14,
            drops: 15,
            entries: 16,
            bytes: 17,
            invalidations: 18,
        };
        let adaptive =
            AdaptiveStats { optimistic_attempts: 21, lock_attempts: 22, conflicts: 23, marked_hot: 24, hot_now: 25 };
        let text = Metrics::default().render(EngineGauges::new(RegistryStats::default(), cache, adaptive));
        for line in [
            "wasmtx_snapshot_cache_hits_total 11",
            "wasmtx_snapshot_cache_misses_total 12",
            "wasmtx_snapshot_cache_stale_hits_total 13",
            "wasmtx_snapshot_cache_evictions_total 14",
            "wasmtx_snapshot_cache_drops_total 15",
            "wasmtx_snapshot_cache_entries 16",
            "wasmtx_snapshot_cache_bytes 17",
            "wasmtx_snapshot_cache_invalidations_total 18",
            "wasmtx_adaptive_optimistic_attempts_total 21",
            "wasmtx_adaptive_lock_attempts_total 22",
            "wasmtx_adaptive_conflicts_total 23",
            "wasmtx_adaptive_marked_hot_total 24",
            "wasmtx_adaptive_hot_models 25",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.contains("# TYPE wasmtx_snapshot_cache_entries gauge"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
