//! Aligning two numberings of the same interaction data.
//!
//! Toys exists twice: `toys_sequential_data.txt` (the numbering kdsr uses, with an ASIN map)
//! and `Toys_and_Games.txt` (the numbering of the attribute file). Both hold the same users'
//! histories with users in a different order and items numbered differently. The item map is
//! recovered from the data alone by colour refinement (1-dimensional Weisfeiler-Leman on the
//! user-sequence hypergraph, positions included):
//!
//! - c₀(i) = number of occurrences of item i;
//! - sig_k(s) = H(|s|, c_k(s₁), ..., c_k(s_|s|)) for every sequence s;
//! - c_{k+1}(i) = H(c_k(i), sorted multiset {(sig_k(s), p) : s_p = i});
//!
//! repeated on both files until the number of colour classes stops growing. If every colour
//! is held by exactly one item in each file, f(a) = the item of file B with a's colour. The
//! map is then **verified**: the multiset of mapped sequences {f(s)} must equal file B's
//! sequences exactly, so a hash collision can only cause an error, never a wrong map.

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Order-sensitive hash of a sequence of words.
fn hash_all(seed: u64, words: impl IntoIterator<Item = u64>) -> u64 {
    words.into_iter().fold(mix(seed), |h, w| mix(h.rotate_left(23) ^ w.wrapping_add(0x9e3779b97f4a7c15)))
}

/// Colours of items `0..=n` (0 unused) after refinement to a stable partition.
fn refine(seqs: &[Vec<u32>], n: usize) -> Vec<u64> {
    let mut colour = vec![0u64; n + 1];
    for &i in seqs.iter().flatten() {
        colour[i as usize] += 1;
    }
    let mut classes = count_classes(&colour[1..]);
    for _ in 0..64 {
        let mut occ: Vec<Vec<(u64, u32)>> = vec![Vec::new(); n + 1];
        for s in seqs {
            let sig = hash_all(s.len() as u64, s.iter().map(|&i| colour[i as usize]));
            for (p, &i) in s.iter().enumerate() {
                occ[i as usize].push((sig, p as u32));
            }
        }
        let next: Vec<u64> = occ
            .iter_mut()
            .enumerate()
            .map(|(i, o)| {
                o.sort_unstable();
                hash_all(colour[i], o.iter().flat_map(|&(s, p)| [s, p as u64]))
            })
            .collect();
        let next_classes = count_classes(&next[1..]);
        colour = next;
        if next_classes == classes {
            break;
        }
        classes = next_classes;
    }
    colour
}

fn count_classes(c: &[u64]) -> usize {
    let mut v = c.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// The map `f[a_id] = b_id` (index 0 unused) with {f(s) : s in a} = b as multisets of
/// sequences, or why none could be established. Ids are `1..=n` in both inputs.
pub fn align_numberings(a: &[Vec<u32>], b: &[Vec<u32>]) -> Result<Vec<u32>, String> {
    let n_of = |s: &[Vec<u32>]| s.iter().flatten().max().copied().unwrap_or(0) as usize;
    let (n, nb) = (n_of(a), n_of(b));
    let total = |s: &[Vec<u32>]| s.iter().map(Vec::len).sum::<usize>();
    if a.len() != b.len() || n != nb || total(a) != total(b) {
        return Err(format!(
            "the files do not hold the same histories: {} vs {} users, {n} vs {nb} items, {} vs {} interactions",
            a.len(),
            b.len(),
            total(a),
            total(b)
        ));
    }
    let (ca, cb) = (refine(a, n), refine(b, n));
    let mut by_colour: std::collections::HashMap<u64, Vec<u32>> = std::collections::HashMap::new();
    for (i, &c) in cb.iter().enumerate().skip(1) {
        by_colour.entry(c).or_default().push(i as u32);
    }
    let mut f = vec![0u32; n + 1];
    let mut ambiguous = 0;
    for (i, &c) in ca.iter().enumerate().skip(1) {
        match by_colour.get(&c).map(Vec::as_slice) {
            Some([j]) => f[i] = *j,
            Some(_) => ambiguous += 1,
            None => return Err(format!("item {i} of the first file has no counterpart in the second")),
        }
    }
    if ambiguous > 0 {
        return Err(format!("{ambiguous} items cannot be told apart from the interactions alone"));
    }
    let mut mapped: Vec<Vec<u32>> = a.iter().map(|s| s.iter().map(|&i| f[i as usize]).collect()).collect();
    let mut want = b.to_vec();
    mapped.sort_unstable();
    want.sort_unstable();
    if mapped != want {
        return Err("the recovered item map does not turn one file's sequences into the other's".into());
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_permutation_of_users_and_items() {
        let a = vec![vec![1, 2, 3, 4], vec![2, 5, 3], vec![6, 1, 2], vec![4, 6], vec![5, 5, 1]];
        let perm = [0, 3, 6, 1, 5, 2, 4]; // a-id -> b-id
        let mut b: Vec<Vec<u32>> = a.iter().map(|s| s.iter().map(|&i| perm[i as usize]).collect()).collect();
        b.reverse();
        b.swap(0, 2);
        let f = align_numberings(&a, &b).unwrap();
        assert_eq!(f, perm);
    }

    #[test]
    fn symmetric_items_are_reported_not_guessed() {
        // Items 1 and 2 play the same role: no data can tell them apart.
        let a = vec![vec![1, 3], vec![2, 3]];
        let e = align_numberings(&a, &a).unwrap_err();
        assert!(e.contains("2 items cannot be told apart"), "{e}");
    }

    #[test]
    fn different_histories_are_rejected() {
        let a = vec![vec![1, 2, 3], vec![3, 1]];
        let e = align_numberings(&a, &[vec![1, 2, 3], vec![1, 3]]).unwrap_err();
        assert!(e.contains("no counterpart") || e.contains("does not turn"), "{e}");
        let e = align_numberings(&a, &[vec![1, 2, 3]]).unwrap_err();
        assert!(e.contains("same histories"), "{e}");
    }
}
