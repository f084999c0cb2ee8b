//! Iterative k-core filtering and conversion of interactions into per-user sequences.

use std::collections::HashMap;
use std::hash::Hash;

/// One user-item interaction with its timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction<T> {
    pub user: T,
    pub item: T,
    pub ts: f64,
}

/// Per-user, time-ordered sequences with dense item ids `1..=n_items` (0 is padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Sequences<T> {
    pub sequences: Vec<Vec<u32>>,
    /// Original token of each item: `item_tokens[id - 1]`.
    pub item_tokens: Vec<T>,
    /// Original token of each user, in the order of `sequences`.
    pub user_tokens: Vec<T>,
}

/// Iteratively removes users and items with fewer than `k` interactions until every
/// remaining user and item has at least `k` (the "k-core" of the bipartite graph).
/// Duplicated (user, item) pairs count as separate interactions, as in the paper's data.
pub fn k_core<T: Eq + Hash + Clone>(inters: &[Interaction<T>], k: usize) -> Vec<Interaction<T>> {
    let (users, items) = index_tokens(inters);
    let mut alive = vec![true; inters.len()];
    loop {
        let mut ucount = vec![0usize; users.len()];
        let mut icount = vec![0usize; items.len()];
        for (n, it) in inters.iter().enumerate() {
            if alive[n] {
                ucount[users[&it.user]] += 1;
                icount[items[&it.item]] += 1;
            }
        }
        let mut removed = false;
        for (n, it) in inters.iter().enumerate() {
            if alive[n] && (ucount[users[&it.user]] < k || icount[items[&it.item]] < k) {
                alive[n] = false;
                removed = true;
            }
        }
        if !removed {
            break;
        }
    }
    inters.iter().zip(alive).filter(|(_, a)| *a).map(|(it, _)| it.clone()).collect()
}

fn index_tokens<T: Eq + Hash + Clone>(inters: &[Interaction<T>]) -> (HashMap<T, usize>, HashMap<T, usize>) {
    let mut users = HashMap::new();
    let mut items = HashMap::new();
    for it in inters {
        let n = users.len();
        users.entry(it.user.clone()).or_insert(n);
        let n = items.len();
        items.entry(it.item.clone()).or_insert(n);
    }
    (users, items)
}

/// Groups interactions into per-user sequences sorted by timestamp (a stable sort: equal
/// timestamps keep file order). Users are numbered in order of first appearance in the input;
/// items in order of first appearance when reading the sequences user by user.
pub fn to_sequences<T: Eq + Hash + Clone>(inters: &[Interaction<T>]) -> Sequences<T> {
    let mut user_index: HashMap<T, usize> = HashMap::new();
    let mut per_user: Vec<Vec<(f64, &T)>> = Vec::new();
    let mut user_tokens = Vec::new();
    for it in inters {
        let u = *user_index.entry(it.user.clone()).or_insert_with(|| {
            per_user.push(Vec::new());
            user_tokens.push(it.user.clone());
            per_user.len() - 1
        });
        per_user[u].push((it.ts, &it.item));
    }
    let mut item_index: HashMap<&T, u32> = HashMap::new();
    let mut item_tokens = Vec::new();
    let sequences = per_user
        .iter_mut()
        .map(|events| {
            events.sort_by(|a, b| a.0.total_cmp(&b.0));
            events
                .iter()
                .map(|(_, item)| {
                    *item_index.entry(item).or_insert_with(|| {
                        item_tokens.push((*item).clone());
                        item_tokens.len() as u32
                    })
                })
                .collect()
        })
        .collect();
    Sequences { sequences, item_tokens, user_tokens }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(u: &str, i: &str, ts: f64) -> Interaction<String> {
        Interaction { user: u.into(), item: i.into(), ts }
    }

    #[test]
    fn k_core_is_iterative() {
        // Item z has 2 interactions; removing it leaves user c with 1, which then goes, which
        // leaves item y with 1 -> also removed. Only the a/b x-block (2-core) survives.
        let data = vec![
            it("a", "x", 1.0),
            it("a", "x", 2.0),
            it("b", "x", 1.0),
            it("b", "w", 2.0),
            it("a", "w", 3.0),
            it("c", "y", 1.0),
            it("c", "z", 2.0),
            it("d", "y", 1.0),
        ];
        let core = k_core(&data, 2);
        assert_eq!(core.len(), 5);
        assert!(core.iter().all(|i| i.user == "a" || i.user == "b"));
        // A 1-core keeps everything.
        assert_eq!(k_core(&data, 1).len(), data.len());
    }

    #[test]
    fn sequences_are_time_ordered_with_dense_first_seen_ids() {
        let data =
            vec![it("u2", "b", 5.0), it("u1", "c", 2.0), it("u2", "a", 1.0), it("u1", "b", 1.0), it("u2", "c", 5.0)];
        let s = to_sequences(&data);
        assert_eq!(s.user_tokens, vec!["u2".to_string(), "u1".to_string()]);
        // u2: a(1), b(5), c(5; tie keeps file order) -> ids 1, 2, 3. u1: b(1), c(2) -> 2, 3.
        assert_eq!(s.sequences, vec![vec![1, 2, 3], vec![2, 3]]);
        assert_eq!(s.item_tokens, vec!["a".to_string(), "b".to_string(), "c".to_string()]);
    }
}
