//! Ids and dependencies between the items of one batch: repeated ids, unknown ids, cycles, and
//! the graph the scheduler follows.

use std::collections::HashMap;

use crate::condition::{self, Condition, Unsupported};
use crate::error::BatchError;
use crate::item::Item;

/// Dependencies between items: who waits for whom.
#[derive(Debug)]
pub(crate) struct Graph {
    pub(crate) dependents: Vec<Vec<usize>>,
    pub(crate) remaining: Vec<usize>,
    /// What an item that was not run because of a failure before it is answered with.
    pub(crate) not_run: &'static str,
    /// The items with a condition (OData's `if`), if any: what it is, and which of the item's
    /// dependencies it governs (its `dependsOn` and the items it names). A failure of any other
    /// dependency (the item before it, in a batch that stops at its first failure) still fails
    /// it.
    pub(crate) conditions: HashMap<usize, Conditional>,
}

/// An item's condition, ready to evaluate.
#[derive(Debug)]
pub(crate) struct Conditional {
    pub(crate) text: String,
    pub(crate) condition: Result<Condition<usize>, Unsupported>,
    pub(crate) governs: Vec<usize>,
    /// The outcomes of the governed dependencies answered so far: item, and whether it
    /// succeeded.
    pub(crate) outcomes: Vec<(usize, bool)>,
}

impl Conditional {
    /// Whether the item may run, now that everything it waits for is answered; if not, the
    /// words of its answer.
    pub(crate) fn verdict(&self) -> Result<(), String> {
        match &self.condition {
            Ok(c) => {
                let succeeded = |j: &usize| self.outcomes.iter().any(|&(k, ok)| k == *j && ok);
                if c.holds(&succeeded) {
                    Ok(())
                } else {
                    Err(format!(
                        "its condition `{}` does not hold, so it was not run",
                        self.text
                    ))
                }
            }
            Err(why) => Err(format!(
                "its condition `{}` cannot be evaluated here ({why}), so it was not run",
                self.text
            )),
        }
    }
}

/// The answer of an item whose dependency did not succeed.
pub(crate) const DEPENDENCY_FAILED: &str =
    "an item this one depends on did not succeed, so it was not run";

/// The change sets of a batch: each one's members, a run of adjacent items, in batch order.
pub(crate) type Sets = [std::ops::Range<usize>];

/// The change set item `i` belongs to, if any.
pub(crate) fn set_of(sets: &Sets, i: usize) -> Option<usize> {
    let k = sets.partition_point(|s| s.end <= i);
    sets.get(k).filter(|s| s.contains(&i)).map(|_| k)
}

/// What names an item, or a change set as a whole, for dependencies and `$` references.
pub(crate) struct Ids<'a> {
    /// Each id, with the item it names (for a change set: its first member).
    index: HashMap<&'a str, usize>,
}

impl<'a> Ids<'a> {
    /// The ids of the batch; a repeated id (of an item or of a change set) is refused. The map
    /// from ids to items is built only when something may look an id up: a dependency, a
    /// change set, or a `$` reference (`references`).
    pub(crate) fn new(
        items: &'a [Item],
        sets: &Sets,
        references: bool,
    ) -> Result<Self, BatchError> {
        if let Some(i) = first_duplicate(items) {
            let id = items[i].id().unwrap_or("");
            return Err(BatchError::DuplicateId { id: id.to_owned() });
        }
        let named_sets = sets
            .iter()
            .filter(|s| items[s.start].change_set_id().is_some());
        let wanted = references
            || !sets.is_empty()
            || items
                .iter()
                .any(|i| !i.depends_on().is_empty() || i.condition().is_some());
        let mut index = HashMap::new();
        if !wanted {
            return Ok(Ids { index });
        }
        index.reserve(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(id) = item.id() {
                index.insert(id, i);
            }
        }
        for set in named_sets {
            let id = items[set.start].change_set_id().unwrap_or("");
            if index.insert(id, set.start).is_some() {
                return Err(BatchError::DuplicateId { id: id.to_owned() });
            }
        }
        Ok(Ids { index })
    }

    /// The item that `id` names (for a change set, its first member).
    pub(crate) fn get(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }
}

/// Builds the dependency graph: each item's `depends_on`, the `$` references (`refs`: the
/// referring item and the item it names), and, with `chain`, each item after the one before
/// it (a batch that stops at its first failure). Returns `None` when nothing waits for
/// anything.
///
/// Within a change set, members run one after another, so a member's dependency on an earlier
/// member is already met, and one on a later member can never be; a dependency on any member
/// from outside is on the change set's outcome (its members are answered together, when it has
/// committed or rolled back). Cycles are looked for with each change set as one node.
pub(crate) fn build(
    items: &[Item],
    ids: &Ids<'_>,
    sets: &Sets,
    refs: &[(usize, usize)],
    chain: bool,
) -> Result<Option<Graph>, BatchError> {
    let n = items.len();
    let plain = items
        .iter()
        .all(|i| i.depends_on().is_empty() && i.condition().is_none());
    if plain && refs.is_empty() && !chain {
        return Ok(None);
    }
    let mut dependents = vec![Vec::new(); n];
    let mut remaining = vec![0usize; n];
    // The graph the cycle search walks: node `n + k` stands for change set `k`.
    let node = |i: usize| set_of(sets, i).map_or(i, |k| n + k);
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n + sets.len()];
    let mut edge = |j: usize,
                    i: usize,
                    dependents: &mut Vec<Vec<usize>>|
     -> Result<(), BatchError> {
        let (from, to) = (node(j), node(i));
        if from == to && from >= n {
            if j >= i {
                return Err(BatchError::Malformed {
                    reason: format!(
                        "request {} (counting from 0) depends on request {j} of its own change                          set, which runs after it; a request of a change set may depend only on                          the requests before it",
                        i
                    ),
                });
            }
            return Ok(());
        }
        if j != i && !dependents[j].contains(&i) {
            dependents[j].push(i);
            remaining[i] += 1;
        }
        if !deps[to].contains(&from) {
            deps[to].push(from);
        }
        Ok(())
    };
    for (i, item) in items.iter().enumerate() {
        for dep in item.depends_on() {
            let Some(j) = ids.get(dep) else {
                return Err(BatchError::UnknownDependency {
                    id: item.id().unwrap_or("").to_owned(),
                    depends_on: dep.clone(),
                });
            };
            edge(j, i, &mut dependents)?;
        }
    }
    let mut conditions = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Some(text) = item.condition() else {
            continue;
        };
        let conditional = conditional(items, ids, i, text)?;
        for &j in &conditional.governs {
            edge(j, i, &mut dependents)?;
        }
        conditions.insert(i, conditional);
    }
    for &(i, j) in refs {
        edge(j, i, &mut dependents)?;
    }
    if chain {
        for i in 1..n {
            edge(i - 1, i, &mut dependents)?;
        }
    }
    if let Some(cycle) = find_cycle(&deps) {
        let name = |i: usize| match i.checked_sub(n) {
            None => items[i].id().unwrap_or("?").to_owned(),
            Some(k) => items[sets[k].start]
                .change_set_id()
                .map_or_else(|| format!("change set {}", k + 1), str::to_owned),
        };
        return Err(BatchError::DependencyCycle {
            cycle: cycle.into_iter().map(name).collect(),
        });
    }
    Ok(Some(Graph {
        dependents,
        remaining,
        not_run: if chain { NOT_RUN } else { DEPENDENCY_FAILED },
        conditions,
    }))
}

/// Item `i`'s condition `text`, with the items it names found by their ids. A name that is no
/// id of the batch refuses the batch, as an unknown `dependsOn` does; a condition this crate
/// cannot evaluate is kept as such, for the item's own answer.
fn conditional(
    items: &[Item],
    ids: &Ids<'_>,
    i: usize,
    text: &str,
) -> Result<Conditional, BatchError> {
    let unknown = |name: &str| BatchError::UnknownDependency {
        id: items[i].id().unwrap_or("").to_owned(),
        depends_on: name.to_owned(),
    };
    let mut governs = Vec::new();
    for dep in items[i].depends_on() {
        governs.push(ids.get(dep).ok_or_else(|| unknown(dep))?);
    }
    let condition = match condition::parse(text) {
        Ok(parsed) => {
            let mut names = Vec::new();
            parsed.names(&mut names);
            for name in &names {
                let j = ids.get(name).ok_or_else(|| unknown(name))?;
                if !governs.contains(&j) {
                    governs.push(j);
                }
            }
            Ok(parsed.map(&mut |name: String| ids.get(&name).unwrap_or(usize::MAX)))
        }
        Err(why) => Err(why),
    };
    Ok(Conditional {
        text: text.to_owned(),
        condition,
        governs,
        outcomes: Vec::new(),
    })
}

/// The answer of an item that did not run because an item before it failed.
pub(crate) const NOT_RUN: &str = "not run: an earlier item of the batch failed, and the batch \
     did not ask to go on (send `Prefer: odata.continue-on-error` to run every item)";

/// Checks ids and dependencies of a batch without change sets; returns the dependency graph
/// when any item has dependencies.
#[cfg(test)]
pub(crate) fn check_items(items: &[Item]) -> Result<Option<Graph>, BatchError> {
    let ids = Ids::new(items, &[], false)?;
    build(items, &ids, &[], &[], false)
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
