//! memwatch's own instrumentation, in a `prometheus` crate registry: the standard `process_*`
//! metrics every exporter has, and histograms of how long samples and scrapes take. (The
//! container series are rendered straight from the snapshot instead: see `render`.)

use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry, core::Collector as _};

/// Bucket bounds in seconds, from a millisecond to ten seconds.
const DURATION_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

pub struct SelfMetrics {
    registry: Registry,
    /// How long one sample of every cgroup took.
    pub sample_seconds: Histogram,
    /// How long answering a scrape of `/metrics` took, by format.
    pub scrape_seconds: HistogramVec,
    /// Connections closed at once because `--max-connections` were open.
    pub connections_refused: prometheus::IntCounter,
    /// Re-reads of `--web.config.file` that changed something, by result (`success`, `failure`:
    /// the last good configuration kept).
    pub web_config_reloads: prometheus::IntCounterVec,
    /// Bytes the allocator has handed out and not had back (set at each gather).
    heap_in_use: prometheus::IntGauge,
}

impl SelfMetrics {
    pub fn new() -> SelfMetrics {
        let registry = Registry::new();
        let sample_seconds = Histogram::with_opts(
            HistogramOpts::new("memwatch_sample_duration_seconds", "How long one sample of every cgroup took.")
                .buckets(DURATION_BUCKETS.to_vec()),
        )
        .expect("valid histogram");
        let scrape_seconds = HistogramVec::new(
            HistogramOpts::new("memwatch_scrape_duration_seconds", "How long answering a scrape of /metrics took, by format.")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["format"],
        )
        .expect("valid histogram");
        let connections_refused = prometheus::IntCounter::new(
            "memwatch_http_connections_refused_total",
            "Connections closed at once because --max-connections were already open.",
        )
        .expect("valid counter");
        let web_config_reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "memwatch_web_config_reloads_total",
                "Re-reads of --web.config.file after it or a file it names changed, by result (failure: the last good configuration is kept).",
            ),
            &["result"],
        )
        .expect("valid counter");
        let heap_in_use = prometheus::IntGauge::new(
            "memwatch_heap_in_use_bytes",
            "Heap memory the daemon holds (glibc's mallinfo2): next to process_resident_memory_bytes, it tells live data from memory the allocator keeps.",
        )
        .expect("valid gauge");
        for c in [
            Box::new(sample_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(scrape_seconds.clone()),
            Box::new(connections_refused.clone()),
            Box::new(web_config_reloads.clone()),
            Box::new(heap_in_use.clone()),
        ] {
            registry.register(c).expect("unique names");
        }
        // The process collector reads /proc/self; a platform without it simply has none.
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if !process.desc().is_empty() {
            let _ = registry.register(Box::new(process));
        }
        SelfMetrics { registry, sample_seconds, scrape_seconds, connections_refused, web_config_reloads, heap_in_use }
    }

    /// Every family, gathered now.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        if let Some(bytes) = crate::allocator::in_use() {
            self.heap_in_use.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.registry.gather()
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        SelfMetrics::new()
    }
}
