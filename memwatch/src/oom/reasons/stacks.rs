//! Which code grew: the stack that faulted in most in the window before the kill, by the
//! program's own frame (`main.handleExport → encoding/json.Marshal`), from the fault-stack
//! sampler.

use super::{Finding, ReasonKind, h, reason};
use crate::oom::event::{Event, Reason};

pub struct GrowthStack;

/// A share of short stacks (at most two frames) from which the finding says why.
const SHORT: f64 = 0.5;

/// Samples standing for less than this share of what the container grew over the window are
/// partial: the sampler started after most of the growth. Half, because what a complete
/// sampling attributes already falls short of the growth for good reasons (one fault in 64 is
/// an estimate; a transparent huge page is one fault for 2 MiB: measured here, 0.6–0.8 of what a
/// Go program kept), and below half most of the growth was not seen.
pub const PARTIAL: f64 = 0.5;

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
        let event = if e.is_kill() { "kill" } else { "warning" };
        let mut text = match (s.share_of_growth(), s.growth_bytes) {
            (Some(of_growth), Some(grown)) if of_growth < PARTIAL => format!(
                "Partial: the fault-stack sampler counted the container only for the last {} before the {event}, after most of its \
                 growth, so its samples stand for {} of the {} it grew in the {:.0} s before ({}); of those, {} were faulted in \
                 {under} ({share:.0}%, 1 fault in {}). That is where it grew last, not necessarily where it grew.",
                crate::units::human_secs(s.first_sampled_seconds_before.unwrap_or(0.0)),
                h(s.bytes),
                h(grown),
                s.window_seconds,
                crate::units::percent(of_growth),
                h(bytes),
                s.period
            ),
            _ => format!(
                "{} faulted in {under} in the {:.0} s before the {event} ({share:.0}% of the {} sampled there, 1 fault in {}).",
                h(bytes),
                s.window_seconds,
                h(s.bytes),
                s.period
            ),
        };
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

    /// The case seen in the field: a JVM grew 159 MiB in 11 s, the sampler attached after most
    /// of it and sampled 768 KiB: not "the" answer.
    #[test]
    fn a_stack_sampled_late_is_said_to_be_partial() {
        let mut e = event(1, 10);
        e.stacks = Some(EventStacks {
            period: 64,
            window_seconds: 30.0,
            samples: 3,
            bytes: 768 << 10,
            short_share: 0.0,
            top: vec![StackUse { bytes: 768 << 10, samples: 3, frames: vec!["PerfLongVariant::sample()".into()], own: None, path: vec![] }],
            victim: None,
            first_sampled_seconds_before: Some(2.0),
            growth_bytes: Some(159 * MIB),
        });
        let t = &GrowthStack.find(&e, None)[0].text;
        assert!(t.starts_with("Partial: the fault-stack sampler counted the container only for the last 2s before the kill"), "{t}");
        assert!(t.contains("768.0 KiB of the 159.0 MiB it grew in the 30 s before (0.5%)"), "{t}");
        assert!(t.ends_with("not necessarily where it grew."), "{t}");
    }

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
            first_sampled_seconds_before: Some(28.0),
            growth_bytes: Some(160 * MIB),
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
