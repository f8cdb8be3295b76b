//! Why a probe did not attach, as data: each variant keeps what it is about (and the kernel's
//! errno where there is one), and its display is what a person reads in `memwatch check` and
//! the log. Code matches on variants, never on the text.

use std::{fmt, sync::Arc};

use thiserror::Error;

use super::{ProbeError, tracefs::TracefsError};

/// One reason a probe's attach method failed or was not tried.
#[derive(Debug, Clone, Error)]
pub enum AttachError {
    /// `BPF_PROG_LOAD` of an fexit program refused with EPERM: the kernel or its security policy
    /// does not allow BPF trampolines (or memwatch lacks a capability).
    #[error("fexit on {function} refused (EPERM): this kernel or its security policy does not allow BPF trampolines")]
    TrampolineRefused { function: String },
    /// The kernel cannot attach a BPF trampoline at all (ENOTSUPP, 524): on arm64 before Linux
    /// 6.4 the architecture lacks ftrace direct calls, which trampolines need.
    #[error(
        "fexit on {function} is not supported by this kernel (ENOTSUPP): it cannot attach BPF trampolines here{}",
        if cfg!(target_arch = "aarch64") { " (arm64 gained them in Linux 6.4)" } else { "" }
    )]
    TrampolineUnsupported { function: String },
    /// The kernel's BTF has only a forward declaration of the wrapper's `struct pt_regs`.
    #[error(
        "fexit on {function} cannot read the syscall's arguments: this kernel's BTF has only a forward declaration of its `struct pt_regs` \
         argument (Linux 5.10 has this for some syscalls)"
    )]
    PtRegsForwardDeclared { function: String },
    /// fexit and BTF tracepoints need the kernel's BTF.
    #[error("{} the kernel's BTF", if *.fexit { "fexit needs" } else { "BTF tracepoints need" })]
    BtfMissing { fexit: bool },
    #[error("tracepoint {category}:{event} not found on this kernel")]
    TracepointMissing { category: &'static str, event: String },
    /// tracefs could not be found or mounted.
    #[error("{0}")]
    Tracefs(Arc<TracefsError>),
    #[error("format of {category}:{event} is unreadable: {reason}")]
    FormatUnreadable { category: &'static str, event: String, reason: String },
    /// The tracepoint's format lacks a field the program needs, or it has another size.
    #[error("{0}")]
    Field(FieldError),
    /// Per-cgroup counting needs the task -> memory cgroup walk from BTF.
    #[error("needs the memory cgroup of a task from BTF: {0}")]
    NoMemcgWalk(String),
    /// The syscall-tracepoint fallback exists but is off (it taxes every syscall).
    #[error(
        "the fallback, syscalls:sys_exit_{syscall}, slows every syscall on the node (tens of ns each) and is off: allow it with \
         --syscall-tracepoints"
    )]
    FallbackOff { syscall: &'static str },
    #[error("no attach method available")]
    NoMethod,
    #[error("program {0} missing from the object")]
    ProgramMissing(&'static str),
    /// The kernel (or aya) refused a step; `what` says which (e.g. `tp_btf mark_victim`,
    /// `attaching oom:mark_victim`), `errno` the kernel's error number where it gave one.
    #[error("{what}: {}", chain(source.as_ref()))]
    Kernel {
        what: String,
        errno: Option<i32>,
        #[source]
        source: Arc<aya::programs::ProgramError>,
    },
    /// The eBPF object itself could not be loaded, so no probe could.
    #[error("{0}")]
    NotLoaded(Arc<ProbeError>),
    /// A system read failed (the online CPUs).
    #[error("{what}: {source}")]
    Io { what: &'static str, source: Arc<std::io::Error> },
}

impl AttachError {
    /// A step the kernel refused, with its errno kept.
    pub fn kernel(what: impl Into<String>, e: aya::programs::ProgramError) -> Self {
        AttachError::Kernel { what: what.into(), errno: os_error(&e), source: Arc::new(e) }
    }

    /// Whether the kernel said "operation not permitted": a policy, or a missing capability.
    pub fn is_eperm(&self) -> bool {
        match self {
            AttachError::TrampolineRefused { .. } => true,
            AttachError::Kernel { errno, .. } => *errno == Some(libc::EPERM),
            _ => false,
        }
    }
}

/// A tracepoint format field a program needs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("no format")]
    NoFormat,
    #[error("format of {event} has no field `{field}`")]
    Missing { event: String, field: String },
    #[error("field `{field}` of {event} is {size} bytes, expected {expected}")]
    Size { event: String, field: String, size: u16, expected: u16 },
}

/// Why a probe that was asked for is not running: every method's failure, in order, and the
/// capabilities memwatch lacks when the kernel said "not permitted".
#[derive(Debug, Clone)]
pub struct Disabled {
    pub errors: Vec<AttachError>,
    /// Set when a method was refused with EPERM and memwatch lacks capabilities for loading
    /// and attaching (e.g. "CAP_PERFMON").
    pub missing_caps: Option<String>,
}

impl fmt::Display for Disabled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.missing_caps {
            write!(f, "needs {m}, which memwatch lacks: ")?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Disabled {
    pub fn new(errors: Vec<AttachError>) -> Self {
        Disabled { errors, missing_caps: None }
    }

    pub fn one(e: AttachError) -> Self {
        Disabled::new(vec![e])
    }

    /// Whether the probe could run here but by a method the user did not allow (the syscall
    /// tracepoints' fallback, which taxes every syscall): a choice, not trouble.
    pub fn fallback_declined(&self) -> bool {
        self.errors.iter().any(|e| matches!(e, AttachError::FallbackOff { .. }))
    }

    /// Whether any of its methods was refused with EPERM.
    pub fn is_eperm(&self) -> bool {
        self.errors.iter().any(AttachError::is_eperm)
    }
}

/// The OS error number at the bottom of an error chain, if any.
pub(crate) fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

/// An error and its sources, as one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
