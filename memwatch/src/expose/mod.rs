//! The exposition readers see: the Prometheus text and OpenMetrics rendering of a snapshot
//! ([`render`], pure), memwatch's own instrumentation written in either format (from
//! [`crate::selfmetrics`]), and the history as a Perfetto trace ([`trace`]).
pub mod render;
pub mod trace;
