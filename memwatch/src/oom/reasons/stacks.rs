//! Which code grew: the stack that faulted in most in the window before the kill, by the
//! program's own frame (`main.handleExport → encoding/json.Marshal`), from the fault-stack
//! sampler.

use super::{Finding, ReasonKind, h, reason};
use crate::oom::event::{Event, Reason};

pub struct GrowthStack;

/// A share of short stacks (at most two frames) from which the finding says why.
const SHORT: f64 = 0.5;

impl Finding for GrowthStack {
    fn find(&self, e: &Event, _: Option<u64>) -> Vec<Reason> {
        let Some(s) = &e.stacks else { return vec![] };
        // The stack with the program's own code that faulted in most; else the top one.
        let Some(top) = s.top.iter().find(|t| !t.path.is_empty()).or(s.top.first()) else { return vec![] };
        let under = if top.path.is_empty() {
            match top.frames.first() {
                Some(f) => format!("under {f} (no frame of the program's own code named)"),
                None => "with no user stack".into(),
            }
        } else {
            format!("under {}", top.path.join(" → "))
        };
        // Every listed stack through the same code counts (other lines of the same functions).
        let bytes: u64 = if top.path.is_empty() { top.bytes } else { s.top.iter().filter(|t| t.path == top.path).map(|t| t.bytes).sum() };
        let share = if s.bytes > 0 { 100.0 * bytes as f64 / s.bytes as f64 } else { 0.0 };
        let mut text = format!(
            "{} faulted in {under} in the {:.0} s before the {} ({share:.0}% of the {} sampled there, 1 fault in {}).",
            h(bytes),
            s.window_seconds,
            if e.is_kill() { "kill" } else { "warning" },
            h(s.bytes),
            s.period
        );
        if s.short_share >= SHORT {
            text.push_str(&format!(
                " {:.0}% of the sampled stacks had at most two frames: code built without frame pointers (most distributions' C and C++, JIT-compiled code) shows only where it faulted; build with -fno-omit-frame-pointer (a JVM: -XX:+PreserveFramePointer) for whole stacks.",
                100.0 * s.short_share
            ));
        }
        vec![reason(ReasonKind::GrowthStack, text)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oom::event::{EventStacks, StackUse, tests::event};

    const MIB: u64 = 1 << 20;

    #[test]
    fn names_the_programs_own_frame_of_the_top_stack() {
        let mut e = event(1, 10);
        assert!(GrowthStack.find(&e, None).is_empty(), "not sampled: nothing said");
        let runtime_only =
            StackUse { bytes: 80 * MIB, samples: 320, frames: vec!["runtime.memclrNoHeapPointers".into()], own: None, path: vec![] };
        let own = StackUse {
            bytes: 63 * MIB,
            samples: 252,
            frames: vec!["runtime.mallocgc".into(), "encoding/json.Marshal".into(), "main.handleExport".into()],
            own: Some("main.handleExport".into()),
            path: vec!["main.handleExport".into(), "encoding/json.Marshal".into()],
        };
        e.stacks = Some(EventStacks {
            period: 64,
            window_seconds: 30.0,
            samples: 600,
            bytes: 150 * MIB,
            short_share: 0.0,
            top: vec![runtime_only.clone(), own],
            victim: None,
        });
        let r = GrowthStack.find(&e, None);
        assert_eq!(
            r[0].text,
            "63.0 MiB faulted in under main.handleExport → encoding/json.Marshal in the 30 s before the kill (42% of the 150.0 MiB sampled there, 1 fault in 64)."
        );
        e.stacks.as_mut().unwrap().short_share = 0.7;
        let r = GrowthStack.find(&e, None);
        assert!(r[0].text.ends_with("70% of the sampled stacks had at most two frames: code built without frame pointers (most distributions' C and C++, JIT-compiled code) shows only where it faulted; build with -fno-omit-frame-pointer (a JVM: -XX:+PreserveFramePointer) for whole stacks."), "{}", r[0].text);
        e.stacks.as_mut().unwrap().short_share = 0.0;
        e.stacks.as_mut().unwrap().top = vec![runtime_only];
        assert!(
            GrowthStack.find(&e, None)[0].text.contains("under runtime.memclrNoHeapPointers (no frame"),
            "{:?}",
            GrowthStack.find(&e, None)
        );
    }
}
