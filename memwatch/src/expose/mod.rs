//! The exposition readers see: the Prometheus text and OpenMetrics rendering of a snapshot
//! ([`render`], pure) and memwatch's own instrumentation ([`selfmetrics`]).
pub mod render;
pub mod selfmetrics;
