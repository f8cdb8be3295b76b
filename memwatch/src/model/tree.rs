//! The cgroup tree of one sample, typed: each cgroup's id and its parent's index, in walk order
//! (a parent before its children), and the one helper every subtree sum uses.

use std::collections::HashMap;

use crate::collector::RawCgroup;

#[derive(Debug, Default)]
pub struct Tree {
    /// The cgroup ids, in walk order.
    pub ids: Vec<u64>,
    /// Each cgroup's parent, by index (None for the root).
    pub parents: Vec<Option<usize>>,
    /// Index by id.
    pub index: HashMap<u64, usize>,
}

impl Tree {
    pub fn new(cgroups: &[RawCgroup]) -> Tree {
        Tree {
            ids: cgroups.iter().map(|c| c.id).collect(),
            parents: cgroups.iter().map(|c| c.parent).collect(),
            index: cgroups.iter().enumerate().map(|(i, c)| (c.id, i)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Each cgroup's (id, parent id), the root's parent None.
    pub fn links(&self) -> Vec<(u64, Option<u64>)> {
        self.ids.iter().zip(&self.parents).map(|(id, p)| (*id, p.map(|p| self.ids[p]))).collect()
    }

    /// Adds each cgroup's value into its parent's, deepest first, so every cgroup ends up with
    /// the sum over its subtree.
    pub fn sum_subtrees<T: Copy>(&self, values: &mut [T], add: impl Fn(&mut T, &T)) {
        for i in (0..self.parents.len()).rev() {
            if let Some(p) = self.parents[i] {
                let child = values[i];
                add(&mut values[p], &child);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// root(1) -> a(2) -> b(3); root -> c(4)
    pub(crate) fn small() -> Tree {
        let cg = |id, parent| RawCgroup { id, parent, ..Default::default() };
        Tree::new(&[cg(1, None), cg(2, Some(0)), cg(3, Some(1)), cg(4, Some(0))])
    }

    #[test]
    fn subtree_sums() {
        let t = small();
        let mut v = [1u64, 10, 100, 1000];
        t.sum_subtrees(&mut v, |p, c| *p += c);
        assert_eq!(v, [1111, 110, 100, 1000]);
        assert_eq!(t.links(), vec![(1, None), (2, Some(1)), (3, Some(2)), (4, Some(1))]);
        assert_eq!(t.index[&3], 2);
    }
}
