//! MMSR's heterogeneous graph of one window (the reference's `data_utils.Data.__getitem__`).
//!
//! Nodes, in this order: the window's unique items (sorted), then for each modality `m` its
//! unique modality nodes (sorted keys). A modality node's key is a cluster id (each item links
//! to its `link_k` nearest k-means centroids of its modality) or, with modality nodes per item,
//! the item id itself. Relations (`adj[u * n + v]`: what node `u` attends to):
//! - [`SELF`] on every node; [`OUT`] / [`IN`] / [`BI`] for transitions between the nodes of
//!   consecutive cells within one node type (item → next item, each linked cluster → each of the
//!   next item's linked clusters);
//! - [`CROSS`] between an item and its modality nodes, and between the modality nodes of one
//!   cell of different modalities (the reference's relations 5-10, which its attention treats
//!   alike).
//!
//! As the reference, a step whose two items are the same node or already bidirectional adds no
//! modality transitions either.

/// No edge.
pub const NONE: u8 = 0;
/// Self-loop (homogeneous and heterogeneous attention).
pub const SELF: u8 = 1;
/// `u` precedes `v` (homogeneous).
pub const OUT: u8 = 2;
/// `u` follows `v` (homogeneous).
pub const IN: u8 = 3;
/// Both directions (homogeneous).
pub const BI: u8 = 4;
/// Between node types (heterogeneous).
pub const CROSS: u8 = 5;

/// The modality keys of an item: cluster links, or the item's own modality node.
#[derive(Debug, Clone, Copy)]
pub enum Bundles<'a> {
    /// Per modality: `links[m][item * k .. (item + 1) * k]` are the item's clusters.
    Clusters { links: &'a [Vec<u32>], k: usize },
    /// One node per item and modality, keyed by the item id.
    Items { modalities: usize },
}

impl Bundles<'_> {
    pub fn modalities(&self) -> usize {
        match self {
            Self::Clusters { links, .. } => links.len(),
            Self::Items { modalities } => *modalities,
        }
    }

    fn get(&self, m: usize, item: u32) -> Keys<'_> {
        match self {
            Self::Clusters { links, k } => Keys::Slice(&links[m][item as usize * k..(item as usize + 1) * k]),
            Self::Items { .. } => Keys::One([item]),
        }
    }
}

/// An item's keys in one modality.
enum Keys<'a> {
    Slice(&'a [u32]),
    One([u32; 1]),
}

impl Keys<'_> {
    fn slice(&self) -> &[u32] {
        match self {
            Self::Slice(s) => s,
            Self::One(k) => k,
        }
    }
}

/// One window's graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Per node: 1 = item, `2 + m` = modality `m`.
    pub types: Vec<u8>,
    /// Per node: the item id, cluster id or (per-item modality nodes) item id.
    pub keys: Vec<u32>,
    /// Per node: the first cell (index into the window) where it occurs or is linked.
    pub first_cell: Vec<u32>,
    /// `[n * n]` relation codes.
    pub adj: Vec<u8>,
    /// Per node: the positions of the cells where it occurs or is linked (each once).
    pub positions: Vec<Vec<u32>>,
    /// Per cell: its item's node.
    pub cell_node: Vec<u32>,
}

impl Graph {
    pub fn n(&self) -> usize {
        self.types.len()
    }
}

/// The graph of one window: `items` (no padding) at positions `pos`.
pub fn build(items: &[u32], pos: &[u32], bundles: Bundles) -> Graph {
    let m_count = bundles.modalities();
    let mut by_type: Vec<Vec<u32>> = Vec::with_capacity(m_count + 1);
    let mut it: Vec<u32> = items.to_vec();
    it.sort_unstable();
    it.dedup();
    by_type.push(it);
    for m in 0..m_count {
        let mut keys = Vec::new();
        for &i in items {
            keys.extend_from_slice(bundles.get(m, i).slice());
        }
        keys.sort_unstable();
        keys.dedup();
        by_type.push(keys);
    }
    let mut offsets = vec![0usize; m_count + 2];
    for (t, keys) in by_type.iter().enumerate() {
        offsets[t + 1] = offsets[t] + keys.len();
    }
    let n = offsets[m_count + 1];
    let idx = |t: usize, key: u32| offsets[t] + by_type[t].binary_search(&key).expect("a window key is a node");
    let mut g = Graph {
        types: by_type.iter().enumerate().flat_map(|(t, k)| std::iter::repeat_n(t as u8 + 1, k.len())).collect(),
        keys: by_type.concat(),
        first_cell: vec![u32::MAX; n],
        adj: vec![NONE; n * n],
        positions: vec![Vec::new(); n],
        cell_node: Vec::with_capacity(items.len()),
    };
    let touch = |g: &mut Graph, node: usize, c: usize| {
        g.adj[node * n + node] = SELF;
        g.first_cell[node] = g.first_cell[node].min(c as u32);
        if g.positions[node].last() != Some(&pos[c]) {
            g.positions[node].push(pos[c]);
        }
    };
    for (c, &item) in items.iter().enumerate() {
        let u = idx(0, item);
        touch(&mut g, u, c);
        g.cell_node.push(u as u32);
        for m in 0..m_count {
            for &key in bundles.get(m, item).slice() {
                let v = idx(m + 1, key);
                touch(&mut g, v, c);
                g.adj[u * n + v] = CROSS;
                g.adj[v * n + u] = CROSS;
            }
            for m2 in m + 1..m_count {
                for &a in bundles.get(m, item).slice() {
                    for &b in bundles.get(m2, item).slice() {
                        let (a, b) = (idx(m + 1, a), idx(m2 + 1, b));
                        g.adj[a * n + b] = CROSS;
                        g.adj[b * n + a] = CROSS;
                    }
                }
            }
        }
    }
    let link = |adj: &mut [u8], u: usize, v: usize| {
        if adj[v * n + u] == OUT {
            adj[u * n + v] = BI;
            adj[v * n + u] = BI;
        } else {
            adj[u * n + v] = OUT;
            adj[v * n + u] = IN;
        }
    };
    for c in 0..items.len().saturating_sub(1) {
        let (u, v) = (idx(0, items[c]), idx(0, items[c + 1]));
        if u == v || g.adj[u * n + v] == BI {
            continue;
        }
        link(&mut g.adj, u, v);
        for m in 0..m_count {
            for &a in bundles.get(m, items[c]).slice() {
                for &b in bundles.get(m, items[c + 1]).slice() {
                    let (u, v) = (idx(m + 1, a), idx(m + 1, b));
                    if u == v || g.adj[u * n + v] == BI {
                        continue;
                    }
                    link(&mut g.adj, u, v);
                }
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_as_the_reference_builds_them() {
        // Items 3 -> 1 -> 3 -> 2; one modality, k = 1: item 1 -> cluster 0, 2 -> 0, 3 -> 1.
        let links = vec![vec![9, 0, 0, 1]];
        let g = build(&[3, 1, 3, 2], &[0, 1, 2, 3], Bundles::Clusters { links: &links, k: 1 });
        assert_eq!(g.types, vec![1, 1, 1, 2, 2]);
        assert_eq!(g.keys, vec![1, 2, 3, 0, 1]);
        let at = |u: usize, v: usize| g.adj[u * g.n() + v];
        // Nodes: 0 = item 1, 1 = item 2, 2 = item 3, 3 = cluster 0, 4 = cluster 1.
        assert_eq!((at(2, 0), at(0, 2)), (BI, BI), "3 -> 1 and 1 -> 3");
        assert_eq!((at(2, 1), at(1, 2)), (OUT, IN), "3 -> 2");
        assert_eq!((at(4, 3), at(3, 4)), (BI, BI), "cluster 1 -> 0 -> 1");
        assert_eq!((at(0, 3), at(3, 0), at(2, 4)), (CROSS, CROSS, CROSS));
        assert!((0..5).all(|u| at(u, u) == SELF));
        // Step 3 -> 2 links cluster 1 -> cluster 0, which is already bidirectional.
        assert_eq!(at(1, 4), NONE, "item 2 is not linked to cluster 1");
        assert_eq!(g.positions, vec![vec![1], vec![3], vec![0, 2], vec![1, 3], vec![0, 2]]);
        assert_eq!(g.cell_node, vec![2, 0, 2, 1]);
        assert_eq!(g.first_cell, vec![1, 3, 0, 1, 0]);
    }

    #[test]
    fn a_repeated_item_adds_no_modality_transitions() {
        // 5 -> 5 -> 6, k = 2: item 5 -> clusters {2, 3}, item 6 -> {3, 4}; a second modality
        // links both items to cluster 7. The step 5 -> 5 is skipped, so clusters 2 and 3 (both
        // of item 5) get no transition from it, as in the reference.
        let links = vec![vec![0; 10].into_iter().chain([2, 3, 3, 4]).collect::<Vec<_>>(), vec![7; 14]];
        let g = build(&[5, 5, 6], &[0, 1, 2], Bundles::Clusters { links: &links, k: 2 });
        // Nodes: items 5, 6; modality 0: clusters 2, 3, 4; modality 1: cluster 7.
        assert_eq!(g.types, vec![1, 1, 2, 2, 2, 3]);
        let at = |u: usize, v: usize| g.adj[u * g.n() + v];
        assert_eq!(at(0, 1), OUT);
        // 5 -> 6 links {2, 3} -> {3, 4}: 2 -> 3, 2 -> 4, 3 -> 4 (3 -> 3 is a self pair).
        assert_eq!((at(2, 3), at(3, 2), at(2, 4), at(3, 4), at(3, 3)), (OUT, IN, OUT, OUT, SELF));
        assert_eq!((at(2, 5), at(5, 4)), (CROSS, CROSS), "modalities of one cell are linked");
        assert_eq!(at(2, 1), NONE, "item 6 is not linked to cluster 2");
        let g = build(&[5, 5], &[0, 1], Bundles::Clusters { links: &links, k: 2 });
        // Nodes: item 5; clusters 2, 3; cluster 7.
        assert_eq!(g.adj[g.n() + 2], NONE, "the repeat 5 -> 5 links no clusters");
    }

    #[test]
    fn per_item_modality_nodes() {
        let g = build(&[4, 2, 4], &[0, 1, 2], Bundles::Items { modalities: 1 });
        assert_eq!(g.types, vec![1, 1, 2, 2]);
        assert_eq!(g.keys, vec![2, 4, 2, 4]);
        let at = |u: usize, v: usize| g.adj[u * g.n() + v];
        assert_eq!((at(1, 0), at(0, 1), at(3, 2), at(2, 3)), (BI, BI, BI, BI));
        assert_eq!((at(0, 2), at(1, 3), at(0, 3)), (CROSS, CROSS, NONE));
    }
}
