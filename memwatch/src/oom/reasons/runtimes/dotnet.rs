//! .NET's advice: the GC heap's hard limit (read by `crate::runtime::dotnet`) against the
//! container's limit, with the `DOTNET_GCHeapHardLimit` to set.

use crate::{
    oom::{
        event::{Event, Reason},
        reasons::{ReasonKind, h, reason},
    },
    runtime::{
        Facts,
        dotnet::{DEFAULT_SHARE, DotnetFacts},
    },
};

/// The advice for every .NET process of an event.
pub fn advise(e: &Event, limit: Option<u64>) -> Vec<Reason> {
    let Some(limit) = limit else { return vec![] };
    e.runtimes
        .iter()
        .filter_map(|p| match &p.runtime {
            Some(Facts::Dotnet(d)) => one(&p.who(), d, limit),
            _ => None,
        })
        .collect()
}

/// The advice for one .NET process in a container limited to `limit`.
fn one(who: &str, d: &DotnetFacts, limit: u64) -> Option<Reason> {
    let (hard, set) = d.hard_limit(Some(limit))?;
    let advice = (limit as f64 * DEFAULT_SHARE) as u64;
    if hard > limit {
        return Some(reason(
            ReasonKind::DotnetHeapHardLimitAboveLimit,
            format!(
                "{who} is .NET and its GC heap's hard limit is {} (DOTNET_GCHeapHardLimit{}), above the container's {} limit: the GC \
                 lets its heap grow past what the container may use; remove the setting (the default is 75% of the limit) or set \
                 DOTNET_GCHeapHardLimit={advice:#x} ({}, 75% of the limit; the value is hexadecimal).",
                h(hard),
                if d.gc_heap_hard_limit.is_some() { "" } else { "Percent" },
                h(limit),
                h(advice)
            ),
        ));
    }
    Some(reason(
        ReasonKind::DotnetNativeGrowth,
        format!(
            "{who} is .NET and its GC heap cannot pass {} ({}): the rest of the container's {} limit went to memory outside the GC \
             heap (native allocations, thread stacks, the runtime and JIT-compiled code), which the GC does not manage; look for \
             native or unmanaged growth, or raise the limit.",
            h(hard),
            if set { "as set" } else { ".NET's default, 75% of the limit" },
            h(limit)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_hard_limit_above_the_containers_and_the_default() {
        let d = |limit: Option<&str>, pct: Option<&str>| DotnetFacts {
            gc_heap_hard_limit: limit.map(String::from),
            gc_heap_hard_limit_percent: pct.map(String::from),
        };
        // A recorded case: 1 GiB set by hand in a 512 MiB container.
        let r = one("app (pid 7)", &d(Some("0x40000000"), None), 512 * MIB).unwrap();
        assert_eq!(r.kind, ReasonKind::DotnetHeapHardLimitAboveLimit);
        assert!(r.text.contains("1.0 GiB") && r.text.contains("DOTNET_GCHeapHardLimit=0x18000000"), "{}", r.text);
        // The default: the GC stays under 75%, so the rest was native.
        let r = one("app (pid 7)", &d(None, None), 512 * MIB).unwrap();
        assert_eq!(r.kind, ReasonKind::DotnetNativeGrowth);
        assert!(r.text.contains("384.0 MiB") && r.text.contains("75% of the limit"), "{}", r.text);
    }
}
