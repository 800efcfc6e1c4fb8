//! Ids and dependencies between the items of one batch: repeated ids, unknown ids, cycles, and
//! the graph the scheduler follows.

use std::collections::HashMap;

use crate::error::BatchError;
use crate::item::Item;

/// Dependencies between items: who waits for whom.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) dependents: Vec<Vec<usize>>,
    pub(crate) remaining: Vec<usize>,
    /// What an item that was not run because of a failure before it is answered with.
    pub(crate) not_run: &'static str,
}

/// The answer of an item whose dependency did not succeed.
pub(crate) const DEPENDENCY_FAILED: &str =
    "an item this one depends on did not succeed, so it was not run";

/// Checks ids and dependencies; returns the dependency graph when any item has dependencies.
pub(crate) fn check_items(items: &[Item]) -> Result<Option<Graph>, BatchError> {
    if let Some(i) = first_duplicate(items) {
        let id = items[i].id().unwrap_or("");
        return Err(BatchError::DuplicateId { id: id.to_owned() });
    }
    if items.iter().all(|i| i.depends_on().is_empty()) {
        return Ok(None);
    }
    // The ids are unique now, so each names one item.
    let index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item.id().map(|id| (id, i)))
        .collect();
    let n = items.len();
    let mut dependents = vec![Vec::new(); n];
    let mut remaining = vec![0usize; n];
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, item) in items.iter().enumerate() {
        for dep in item.depends_on() {
            let Some(&j) = index.get(dep.as_str()) else {
                return Err(BatchError::UnknownDependency {
                    id: item.id().unwrap_or("").to_owned(),
                    depends_on: dep.clone(),
                });
            };
            if !deps[i].contains(&j) {
                deps[i].push(j);
                dependents[j].push(i);
                remaining[i] += 1;
            }
        }
    }
    if let Some(cycle) = find_cycle(&deps) {
        let name = |i: usize| items[i].id().unwrap_or("?").to_owned();
        return Err(BatchError::DependencyCycle {
            cycle: cycle.into_iter().map(name).collect(),
        });
    }
    Ok(Some(Graph {
        dependents,
        remaining,
        not_run: DEPENDENCY_FAILED,
    }))
}

/// The index of the first item whose id an earlier item already has, if any.
///
/// Ids are the client's to choose, so they are not hashed with a fixed hash. Ids of up to 15
/// bytes (the usual `item12`, `1`, ...) are packed into one integer each, bytes first and the
/// length last, and sorted: O(n log n) whatever they are, with one integer compare a step.
/// Only when that finds a repeat, or an id is longer, does the general pass below run: a
/// randomly seeded hash map, which also says which item repeats first.
fn first_duplicate(items: &[Item]) -> Option<usize> {
    let mut keys: Vec<u128> = Vec::with_capacity(items.len());
    let mut packed = true;
    for id in items.iter().filter_map(Item::id) {
        let bytes = id.as_bytes();
        if bytes.len() > 15 {
            packed = false;
            break;
        }
        let mut buf = [0u8; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        buf[15] = bytes.len() as u8;
        keys.push(u128::from_be_bytes(buf));
    }
    if packed {
        keys.sort_unstable();
        if keys.windows(2).all(|w| w[0] != w[1]) {
            return None;
        }
    }
    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(items.len());
    items
        .iter()
        .enumerate()
        .find(|(_, item)| item.id().is_some_and(|id| seen.insert(id, ()).is_some()))
        .map(|(i, _)| i)
}

/// A cycle in the "depends on" graph, as item indexes with the first repeated at the end.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    // Iterative depth-first search with three colours, so deep chains cannot overflow the stack.
    let n = deps.len();
    let mut colour = vec![0u8; n]; // 0 new, 1 on the path, 2 finished
    for root in 0..n {
        if colour[root] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                *next += 1;
                match colour[dep] {
                    0 => {
                        colour[dep] = 1;
                        path.push((dep, 0));
                    }
                    1 => {
                        let start = path
                            .iter()
                            .position(|(n, _)| *n == dep)
                            .expect("on the path");
                        let mut cycle: Vec<usize> = path[start..].iter().map(|(n, _)| *n).collect();
                        cycle.push(dep);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Request;

    fn item(id: &str, deps: &[&str]) -> Item {
        Item::new(Request::new(Bytes::new()))
            .with_id(id)
            .with_depends_on(deps.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn duplicate_ids() {
        let err = check_items(&[item("a", &[]), item("a", &[])]).unwrap_err();
        assert_eq!(err, BatchError::DuplicateId { id: "a".into() });
    }

    #[test]
    fn first_repeat_is_named_for_short_and_long_ids() {
        let long = "an-id-longer-than-fifteen-bytes";
        for ids in [
            ["b", "a", "c", "a", "b"],
            [long, "x", "x", long, "y"],
            ["a\0", "a", "", "b", "a"],
        ] {
            let items: Vec<Item> = ids.iter().map(|id| item(id, &[])).collect();
            let first = (1..ids.len())
                .find(|&i| !ids[i].is_empty() && ids[..i].contains(&ids[i]))
                .unwrap();
            assert_eq!(first_duplicate(&items), Some(first), "{ids:?}");
        }
        let distinct = ["a", "a\0", "\0a", long, &long[1..], "0123456789abcde"];
        let items: Vec<Item> = distinct.iter().map(|id| item(id, &[])).collect();
        assert_eq!(first_duplicate(&items), None);
        let items: Vec<Item> = (0..1000).map(|i| item(&format!("item{i}"), &[])).collect();
        assert_eq!(first_duplicate(&items), None);
    }

    #[test]
    fn unknown_dependency() {
        let err = check_items(&[item("a", &["zz"])]).unwrap_err();
        assert!(matches!(err, BatchError::UnknownDependency { .. }));
    }

    #[test]
    fn cycle_is_named() {
        let err =
            check_items(&[item("a", &["c"]), item("b", &["a"]), item("c", &["b"])]).unwrap_err();
        let BatchError::DependencyCycle { cycle } = err else {
            panic!("{err:?}")
        };
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = check_items(&[item("a", &["a"])]).unwrap_err();
        assert_eq!(
            err,
            BatchError::DependencyCycle {
                cycle: vec!["a".into(), "a".into()]
            }
        );
    }

    #[test]
    fn chain_and_fan_in_are_fine() {
        let g = check_items(&[item("a", &[]), item("b", &["a"]), item("c", &["a", "b"])])
            .unwrap()
            .unwrap();
        assert_eq!(g.remaining, vec![0, 1, 2]);
        assert_eq!(g.dependents[0], vec![1, 2]);
    }
}
