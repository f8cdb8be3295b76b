//! Pass: each cgroup's effective memory limit, the tightest of its own and its ancestors'.

use super::tree::Tree;
use crate::host::cgroups::LimitWalk;

/// Per cgroup (tree order): the tightest limit on its path from the root, if any.
pub fn effective(tree: &Tree, own: &[Option<u64>]) -> Vec<Option<u64>> {
    let mut walk = LimitWalk::with_capacity(tree.len());
    (0..tree.len()).map(|i| walk.visit(i, tree.parents[i].as_ref(), own[i])).collect()
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
