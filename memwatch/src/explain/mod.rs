//! `memwatch explain`: where a process's VSZ and RSS are, by class ([`crate::runtime::layout`], pure), and the
//! reports for a process or a container ([`report`]) with what of it counts against the
//! container's limit.
pub mod report;
