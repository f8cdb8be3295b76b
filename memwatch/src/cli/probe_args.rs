//! The flags that choose which kernel probes run, shared by `serve`, `top` and `check`.
use clap::Args;
use memwatch::probes::ProbeOptions;
use memwatch_common::DEFAULT_SLOTS;

#[derive(Args, Debug, Clone)]
pub(crate) struct ProbeArgs {
    /// Count user page faults per event in the kernel (a few tens of ns per fault). Without it,
    /// page faults come from the kernel's own per-cgroup counters (memory.stat pgfault), free
    #[arg(long)]
    pub ebpf_page_faults: bool,
    /// Where fexit is unavailable, count mmap/munmap/brk/mremap on the syscalls:sys_exit_*
    /// tracepoints. These slow down every syscall of every process on the node
    #[arg(long)]
    pub syscall_tracepoints: bool,
    /// Memory cgroups whose memory css id is below this are counted in the kernel; the array
    /// takes 128 bytes per slot per CPU
    #[arg(long, default_value_t = DEFAULT_SLOTS, value_parser = clap::value_parser!(u32).range(16..=65536))]
    pub ebpf_cgroup_slots: u32,
    #[arg(long, value_enum, default_value_t = memwatch::probes::stacks::Mode::AtRisk, help = stacks_help())]
    pub stacks: memwatch::probes::stacks::Mode,
    /// The sampler takes one user page fault in this many (rounded up to a power of two)
    #[arg(long, default_value_t = memwatch::probes::DEFAULT_STACK_PERIOD, value_parser = clap::value_parser!(u32).range(1..=1048576))]
    pub stack_period: u32,
}

/// `--stacks`' help, with the definition of at risk read from `memwatch::risk`.
fn stacks_help() -> String {
    format!(
        "When to sample user stacks at page faults (which code faulted memory in): `at-risk` attaches the sampler only while some \
         container is at risk ({}) and counts only those; `always` counts every container; `off` loads nothing of it",
        memwatch::risk::describe()
    )
}

impl ProbeArgs {
    pub(crate) fn options(&self) -> ProbeOptions {
        ProbeOptions {
            page_faults: self.ebpf_page_faults,
            syscall_tracepoints: self.syscall_tracepoints,
            slots: self.ebpf_cgroup_slots,
            stacks: self.stacks,
            stack_period: self.stack_period,
        }
    }
}
