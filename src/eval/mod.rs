//! The "eval" stage: full-ranking evaluation over all items.
//!
//! Instances are grouped into windows (one forward pass per user where the history fits, see
//! [`crate::data::batch`]), packed several per row by default, scored against every item
//! (`[M, D] x [D, N]`; on CPU a block of rows at a time into one reused buffer, ranked while in
//! cache, so the `[M, N]` scores never exist), and each row's target rank is counted in
//! parallel with rayon.

pub mod metrics;
pub mod rank;

use crate::data::batch::{eval_batch, eval_windows, Layout};
use crate::data::split::Instance;
use crate::model::{Ctx, Popularity, Recommender, SeqBatch};
use crate::ops::catalogue::ScoreCatalogue;
use candle_core::{Device, Result};
use rayon::prelude::*;

pub use metrics::{Metric, MetricKind, Metrics};

/// What scores the candidates.
pub enum Scorer<'a> {
    Model(&'a Recommender),
    Pop(&'a Popularity),
}

#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub max_len: usize,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// Remove the user's earlier items from the ranking (off by default, as in the paper).
    pub mask_history: bool,
    /// How windows are laid out in a forward pass's rows.
    pub layout: Layout,
    /// One window serves all instances of a user (valid for causal backbones only); otherwise
    /// each instance gets its own window.
    pub merge: bool,
}

/// The item catalogue as the ranking reads it.
enum Candidates {
    /// CPU f32: scored block by block, never materialising the `[M, N]` scores.
    Fused(ScoreCatalogue),
    /// Elsewhere: `Eᵀ` [D, N] for one `H Eᵀ` product per forward pass.
    Transposed(candle_core::Tensor),
}

/// Rank of each instance's target among all items (1 = best), in instance order.
pub fn rank_instances(
    scorer: &Scorer,
    seqs: &[Vec<u32>],
    instances: &[Instance],
    opts: &EvalOptions,
    device: &Device,
) -> Result<Vec<u32>> {
    let history = |inst: &Instance| -> Vec<usize> {
        if opts.mask_history {
            seqs[inst.user as usize][..inst.pos as usize].iter().map(|&i| i as usize - 1).collect()
        } else {
            Vec::new()
        }
    };
    let target = |inst: &Instance| seqs[inst.user as usize][inst.pos as usize] as usize - 1;
    let mut ranks = vec![0u32; instances.len()];
    match scorer {
        Scorer::Pop(pop) => {
            ranks.par_iter_mut().zip(instances).for_each(|(r, inst)| {
                *r = rank::rank_of(&pop.counts, target(inst), &history(inst));
            });
        }
        Scorer::Model(model) => {
            let cand = model.candidates(&mut crate::model::Ctx::eval())?.contiguous()?; // [N, D]
            let (n_items, d) = cand.dims2()?;
            let fused = cand.device().is_cpu() && cand.dtype() == candle_core::DType::F32;
            let candidates = match fused {
                true => {
                    Candidates::Fused(crate::ops::with_f32(&cand, "rank", |e| ScoreCatalogue::new(e, (n_items, d)))?)
                }
                false => Candidates::Transposed(cand.t()?.contiguous()?), // [D, N]
            };
            let windows = eval_windows(instances, opts.max_len, opts.merge);
            for chunk in windows.chunks(opts.batch_size.max(1)) {
                let (batch, reads) = eval_batch(seqs, chunk, opts.layout);
                let (cells, inst_idx): (Vec<u32>, Vec<u32>) = reads.into_iter().unzip();
                let h = model.forward_at(&SeqBatch::new(&batch, device)?, &cells, &mut Ctx::eval())?; // [M, D]
                let rank_row = |i: usize, row: &[f32]| {
                    let inst = &instances[inst_idx[i] as usize];
                    rank::rank_of(row, target(inst), &history(inst))
                };
                let got: Vec<u32> = match &candidates {
                    Candidates::Fused(catalogue) => {
                        crate::ops::with_f32(&h, "rank", |h| catalogue.for_each_score_row(h, inst_idx.len(), rank_row))?
                    }
                    Candidates::Transposed(cand_t) => {
                        let scores = h.matmul(cand_t)?.to_device(&Device::Cpu)?; // [M, N]
                        crate::ops::with_f32(&scores, "rank", |scores| {
                            scores.par_chunks(n_items).enumerate().map(|(i, row)| rank_row(i, row)).collect()
                        })?
                    }
                };
                for (&k, r) in inst_idx.iter().zip(got) {
                    ranks[k as usize] = r;
                }
            }
        }
    }
    Ok(ranks)
}
