//! Full ranking over the catalogue without sorting.
//!
//! Tie rule (pessimistic): the target's rank is `1 + #{j : s_j > s_t} + #{j != t : s_j = s_t}`,
//! i.e. the target is placed after every item that scores the same. A model that gives all
//! items one score therefore ranks every target last, never first; the rule does not depend on
//! item ids. A NaN target score ranks last; NaN scores of other items are never counted as
//! higher. With history masking, masked items are removed from the count, and a target that is
//! itself masked (a repeat consumption) ranks last.

/// Rank (1-based) of `target` (0-based index into `scores`), skipping the 0-based indices in
/// `masked`.
pub fn rank_of(scores: &[f32], target: usize, masked: &[usize]) -> u32 {
    let n = scores.len() as u32;
    let st = scores[target];
    if st.is_nan() || masked.contains(&target) {
        return n;
    }
    let above = count_at_least(scores, st);
    // `above` counted the target itself once (s_t >= s_t).
    let mut rank = above;
    let mut seen = Vec::with_capacity(masked.len());
    for &j in masked {
        if !seen.contains(&j) {
            seen.push(j);
            if scores[j] >= st {
                rank -= 1;
            }
        }
    }
    rank.max(1)
}

crate::ops::simd_kernel! {
    /// `#{j : s_j >= t}`.
    fn count_at_least(scores: &[f32], t: f32) -> u32 {
        let mut above = 0u32;
        for &s in scores {
            above += (s >= t) as u32;
        }
        above
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_ties() {
        let s = [0.1f32, 0.9, 0.5, 0.5, 0.2];
        assert_eq!(rank_of(&s, 1, &[]), 1);
        assert_eq!(rank_of(&s, 0, &[]), 5);
        // tie between index 2 and 3: both get rank 3 (pessimistic), independent of id
        assert_eq!(rank_of(&s, 2, &[]), 3);
        assert_eq!(rank_of(&s, 3, &[]), 3);
        // all equal -> last
        assert_eq!(rank_of(&[1.0; 4], 0, &[]), 4);
    }

    #[test]
    fn masking_and_nan() {
        let s = [0.1f32, 0.9, 0.5, 0.5, 0.2];
        assert_eq!(rank_of(&s, 2, &[1]), 2);
        assert_eq!(rank_of(&s, 2, &[1, 1, 3]), 1); // duplicates in the history count once
        assert_eq!(rank_of(&s, 2, &[2]), 5); // masked target ranks last
        assert_eq!(rank_of(&[f32::NAN, 0.3], 0, &[]), 2);
        assert_eq!(rank_of(&[f32::NAN, 0.3], 1, &[]), 1);
    }
}
