//! Every probe memwatch has: what it counts, the ways it can attach (in order of preference),
//! and which load-time offsets each way needs. `memwatch check` lists them in this order.
use memwatch_common::{Config, FIELD_ABSENT};

use super::error::{AttachError, FieldError};
use crate::parse::tracefs_format::Format;

/// Every probe, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeId {
    Mmap,
    Munmap,
    Brk,
    Mremap,
    PageFaultUser,
    OomMarkVictim,
    ProcessExec,
    ProcessExit,
    FaultStacks,
}

impl ProbeId {
    /// Its name: the `probe` label, and what `memwatch check` shows.
    pub fn name(self) -> &'static str {
        match self {
            ProbeId::Mmap => "mmap",
            ProbeId::Munmap => "munmap",
            ProbeId::Brk => "brk",
            ProbeId::Mremap => "mremap",
            ProbeId::PageFaultUser => "page_fault_user",
            ProbeId::OomMarkVictim => "oom_mark_victim",
            ProbeId::ProcessExec => "process_exec",
            ProbeId::ProcessExit => "process_exit",
            ProbeId::FaultStacks => "fault_stacks",
        }
    }
}

impl std::fmt::Display for ProbeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One way to attach a probe: a set of programs attached together, all or none.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    /// fexit on a syscall's own entry point, `<arch prefix>sys_<syscall>` (5.5+, where the
    /// kernel allows BPF trampolines). Only that syscall pays.
    Fexit { program: &'static str, syscall: &'static str },
    /// A BTF tracepoint (5.5+).
    BtfTracepoint { program: &'static str, event: &'static str },
    /// A classic tracepoint; its `format` file configures the program.
    Tracepoint { program: &'static str, category: &'static str, event: &'static str },
    /// `syscalls:sys_exit_<syscall>`, with the arguments from `bpf_task_pt_regs` (5.15+).
    /// Puts every task on the slow syscall path, so only used when the operator allows it.
    SyscallExit { program: &'static str, syscall: &'static str },
    /// The perf software page-fault event on every CPU, sampled by its period.
    PerfPageFaults { program: &'static str },
}

impl Method {
    pub fn program(&self) -> &'static str {
        match self {
            Method::Fexit { program, .. }
            | Method::BtfTracepoint { program, .. }
            | Method::Tracepoint { program, .. }
            | Method::SyscallExit { program, .. }
            | Method::PerfPageFaults { program } => program,
        }
    }

    /// The tracepoint whose `format` file this method needs, if any.
    pub fn format(&self) -> Option<(&'static str, String)> {
        match self {
            Method::Tracepoint { category, event, .. } => Some((category, event.to_string())),
            Method::SyscallExit { syscall, .. } => Some(("syscalls", format!("sys_exit_{syscall}"))),
            _ => None,
        }
    }
}

/// Which probes are off unless asked for, and how they are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptIn {
    /// On by default.
    Default,
    /// `--ebpf-page-faults`.
    PageFaults,
    /// `--stacks` other than `off`; with `at-risk`, attached only while a container is.
    Stacks,
}

/// A probe: its id, how to attach it, and what it needs from tracefs.
pub struct ProbeSpec {
    pub id: ProbeId,
    pub opt_in: OptIn,
    /// Counts into per-cgroup slots, so it needs the task -> memory cgroup walk from BTF.
    pub per_cgroup: bool,
    /// In order of preference.
    pub methods: &'static [Method],
    /// Programs attached beside the chosen method where this kernel accepts them.
    pub companions: &'static [Method],
    /// Fills `cfg` from the format of the method's tracepoint (when it has one); Err names
    /// what is missing.
    pub configure: fn(Option<&Format>, &mut Config, &mut Units) -> Result<(), AttachError>,
}

/// Units the formats' print lines reveal, for decoding records in userspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units {
    /// Bytes per unit of `mark_victim`'s size fields: 1024 where the kernel prints them as
    /// `%lukB` (it stores KiB), else the page size.
    pub oom_size: u64,
}

macro_rules! syscall_probe {
    ($id:ident, $name:literal, $fexit:literal, $exit:literal, $ret:ident) => {
        ProbeSpec {
            id: ProbeId::$id,
            opt_in: OptIn::Default,
            per_cgroup: true,
            methods: &[Method::Fexit { program: $fexit, syscall: $name }, Method::SyscallExit { program: $exit, syscall: $name }],
            companions: &[],
            configure: |f, c, _| {
                if let Some(f) = f {
                    c.$ret = need(f, "ret", 8)?;
                }
                Ok(())
            },
        }
    };
}

/// Every probe memwatch has, in the order `memwatch check` lists them.
pub static PROBES: &[ProbeSpec] = &[
    syscall_probe!(Mmap, "mmap", "fexit_mmap", "sys_exit_mmap", mmap_ret),
    syscall_probe!(Munmap, "munmap", "fexit_munmap", "sys_exit_munmap", munmap_ret),
    syscall_probe!(Brk, "brk", "fexit_brk", "sys_exit_brk", brk_ret),
    syscall_probe!(Mremap, "mremap", "fexit_mremap", "sys_exit_mremap", mremap_ret),
    ProbeSpec {
        id: ProbeId::PageFaultUser,
        opt_in: OptIn::PageFaults,
        per_cgroup: true,
        methods: &[Method::BtfTracepoint { program: "page_fault_user", event: "page_fault_user" }],
        companions: &[],
        configure: |_, _, _| Ok(()),
    },
    ProbeSpec {
        id: ProbeId::OomMarkVictim,
        opt_in: OptIn::Default,
        per_cgroup: false,
        methods: &[Method::Tracepoint { program: "mark_victim", category: "oom", event: "mark_victim" }],
        // The victim's own cgroup at the kill, where the kernel passes the victim (6.8+).
        companions: &[Method::BtfTracepoint { program: "mark_victim_task", event: "mark_victim" }],
        configure: |f, c, units| {
            let f = f.ok_or(AttachError::Field(FieldError::NoFormat))?;
            if f.print_fmt.contains("total-vm=%lukB") {
                units.oom_size = 1024;
            }
            c.oom_pid = need(f, "pid", 4)?;
            c.oom_comm = optional(f, "comm", 4);
            c.oom_total_vm = optional(f, "total_vm", 8);
            c.oom_anon_rss = optional(f, "anon_rss", 8);
            c.oom_file_rss = optional(f, "file_rss", 8);
            c.oom_shmem_rss = optional(f, "shmem_rss", 8);
            c.oom_uid = optional(f, "uid", 4);
            c.oom_pgtables = optional(f, "pgtables", 8);
            c.oom_score_adj = optional(f, "oom_score_adj", 2);
            if c.oom_comm != FIELD_ABSENT && !f.field("comm").is_some_and(|x| x.ctype.starts_with("__data_loc")) {
                c.oom_comm = FIELD_ABSENT;
            }
            Ok(())
        },
    },
    ProbeSpec {
        id: ProbeId::ProcessExec,
        opt_in: OptIn::Default,
        per_cgroup: false,
        methods: &[Method::Tracepoint { program: "sched_process_exec", category: "sched", event: "sched_process_exec" }],
        companions: &[],
        configure: |_, _, _| Ok(()),
    },
    ProbeSpec {
        id: ProbeId::ProcessExit,
        opt_in: OptIn::Default,
        per_cgroup: false,
        methods: &[Method::Tracepoint { program: "sched_process_exit", category: "sched", event: "sched_process_exit" }],
        companions: &[],
        configure: |f, c, _| {
            c.exit_group_dead = f.map(|f| optional(f, "group_dead", 1)).unwrap_or(FIELD_ABSENT);
            Ok(())
        },
    },
    ProbeSpec {
        id: ProbeId::FaultStacks,
        opt_in: OptIn::Stacks,
        per_cgroup: true,
        methods: &[
            Method::BtfTracepoint { program: "fault_stacks", event: "page_fault_user" },
            Method::PerfPageFaults { program: "fault_stacks_perf" },
        ],
        companions: &[],
        configure: |_, _, _| Ok(()),
    },
];

/// The program that measures the page-fault hook's own cost (an empty body).
pub const EMPTY_FAULT_PROGRAM: &str = "page_fault_user_empty";

fn need(f: &Format, name: &str, size: u16) -> Result<u16, AttachError> {
    match f.field(name) {
        Some(x) if x.size == size => Ok(x.offset),
        Some(x) => Err(AttachError::Field(FieldError::Size { event: f.name.clone(), field: name.into(), size: x.size, expected: size })),
        None => Err(AttachError::Field(FieldError::Missing { event: f.name.clone(), field: name.into() })),
    }
}

fn optional(f: &Format, name: &str, size: u16) -> u16 {
    need(f, name, size).unwrap_or(FIELD_ABSENT)
}
