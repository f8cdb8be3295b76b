//! Pass: each cgroup's effective memory limit, the tightest of its own and its ancestors'.

use super::tree::Tree;

/// Per cgroup (tree order): the tightest limit on its path from the root, if any.
pub fn effective(tree: &Tree, own: &[Option<u64>]) -> Vec<Option<u64>> {
    let mut limit: Vec<Option<u64>> = vec![None; tree.len()];
    for i in 0..tree.len() {
        let inherited = tree.parents[i].and_then(|p| limit[p]);
        limit[i] = tightest(own[i], inherited);
    }
    limit
}

/// The tighter of two limits, either of which may be absent.
pub fn tightest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The limit a container answers to: the effective one when it is below the machine's memory,
/// else the machine's (the bool says which).
pub fn or_machine(effective: Option<u64>, machine: u64) -> (u64, bool) {
    match effective {
        Some(l) if l < machine || machine == 0 => (l, false),
        _ => (machine, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tree::tests::small;

    #[test]
    fn the_tightest_on_the_path_wins() {
        // root(1) -> a(2) -> b(3); root -> c(4). a limits to 100, b to 500, c nothing.
        let l = effective(&small(), &[None, Some(100), Some(500), None]);
        assert_eq!(l, vec![None, Some(100), Some(100), None]);
        let l = effective(&small(), &[None, Some(500), Some(100), None]);
        assert_eq!(l[2], Some(100));
    }

    #[test]
    fn no_limit_means_the_machine() {
        assert_eq!(or_machine(None, 1000), (1000, true));
        assert_eq!(or_machine(Some(2000), 1000), (1000, true), "a limit above the machine's memory");
        assert_eq!(or_machine(Some(500), 1000), (500, false));
        assert_eq!(or_machine(Some(500), 0), (500, false), "machine memory unknown");
    }
}
