//! Whether the correlation supervision acts: per-epoch diagnostics on a fixed, seeded probe
//! step (the first 256-target step of a seeded shuffle of the training windows), computed in
//! eval mode (no dropout) and never applied to the weights.
//!
//! Per modality `m` (columns of epochs.csv):
//! - `grad_<m>_ce`, `grad_<m>_holistic`, `grad_<m>_dissected`: the L2 norm of the gradient on
//!   the modality table `E_m` of the recommendation cross-entropy and of each *weighted*
//!   correlation term (`w^hol_m L^hol_m`, `w^dis_m L^dis_m`), i.e. what each term contributes to
//!   the table's update direction;
//! - `hol_target_std_<m>`: the standard deviation of the teacher's holistic targets `s^T` over
//!   the probe's pairs (near-constant targets can be fitted by almost any table);
//! - `hol_fit_r2_<m>`: the student's fit, `R² = 1 - Σ(s^S - s^T)² / Σ(s^T - mean s^T)²`;
//! - `dis_acc_<m>`: the share of pairs whose dissected argmax equals the teacher's code.

use super::step::batch_loss;
use crate::data::batch::{steps, train_batch, train_windows, Batch, BatchUnit, Layout, SampleMode};
use crate::data::split::Split;
use crate::distill::cdl::Cdl;
use crate::model::{Ctx, Recommender};
use candle_core::{Device, Result, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct CdlProbe {
    batch: Batch,
}

/// L2 norm of a tensor.
fn norm(t: &Tensor) -> Result<f64> {
    Ok(t.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt() as f64)
}

/// `1 - Σ(s - t)² / Σ(t - mean t)²` (NaN when the targets are constant).
pub fn r_squared(s: &[f32], t: &[f32]) -> f64 {
    let n = t.len() as f64;
    let mean = t.iter().map(|&v| v as f64).sum::<f64>() / n;
    let tot: f64 = t.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
    let res: f64 = s.iter().zip(t).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    if tot > 0.0 {
        1.0 - res / tot
    } else {
        f64::NAN
    }
}

fn std_dev(t: &[f32]) -> f64 {
    let n = t.len() as f64;
    let mean = t.iter().map(|&v| v as f64).sum::<f64>() / n;
    (t.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

impl CdlProbe {
    pub fn new(seqs: &[Vec<u32>], split: &Split, max_len: usize, seed: u64) -> Self {
        let mut windows = train_windows(split, max_len, SampleMode::Sequence);
        windows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let first = steps(&windows, 256, BatchUnit::Targets).into_iter().next().unwrap_or_default();
        Self { batch: train_batch(seqs, &first, Layout::Packed) }
    }

    /// The diagnostic columns for the current weights; `tables` are the trainable modality
    /// tables (in modality order, named `names`).
    pub fn measure(
        &self,
        model: &Recommender,
        cdl: Option<&mut Cdl>,
        tables: &[Tensor],
        names: &[String],
        device: &Device,
    ) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        if self.batch.rows == 0 {
            return Ok(out);
        }
        let grad_norm = |loss: &Tensor, table: &Tensor| -> Result<f64> {
            let g = loss.backward()?;
            g.get(table).map(norm).transpose().map(|v| v.unwrap_or(0.0))
        };
        let (ce, _) = batch_loss(model, &self.batch, &mut Ctx::eval(), device)?;
        let g = ce.backward()?;
        for (name, table) in names.iter().zip(tables) {
            out.push((format!("grad_{name}_ce"), g.get(table).map(norm).transpose()?.unwrap_or(0.0)));
        }
        let Some(cdl) = cdl else { return Ok(out) };
        for ((name, table), t) in names.iter().zip(tables).zip(cdl.terms(&self.batch, tables)?) {
            let weighted = |l: &Option<Tensor>, w: f64| -> Result<f64> {
                match l {
                    Some(l) => grad_norm(&(l * w)?, table),
                    None => Ok(f64::NAN),
                }
            };
            out.push((format!("grad_{name}_holistic"), weighted(&t.holistic, t.weights.0)?));
            out.push((format!("grad_{name}_dissected"), weighted(&t.dissected, t.weights.1)?));
            out.push((format!("hol_target_std_{name}"), std_dev(&t.targets)));
            let r2 = match &t.scores {
                Some(s) => r_squared(&s.to_vec1::<f32>()?, &t.targets),
                None => f64::NAN,
            };
            out.push((format!("hol_fit_r2_{name}"), r2));
            let acc = match &t.logits {
                Some(z) => {
                    let pred = z.argmax(1)?.to_vec1::<u32>()?;
                    pred.iter().zip(&t.codes).filter(|(a, b)| a == b).count() as f64 / t.codes.len().max(1) as f64
                }
                None => f64::NAN,
            };
            out.push((format!("dis_acc_{name}"), acc));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_squared_and_std_by_hand() {
        let t = [1.0f32, 2.0, 3.0];
        assert!((r_squared(&t, &t) - 1.0).abs() < 1e-12);
        // Predicting the mean explains nothing.
        assert!(r_squared(&[2.0, 2.0, 2.0], &t).abs() < 1e-12);
        // Residuals (0.5, 0, -0.5): 1 - 0.5 / 2.
        assert!((r_squared(&[1.5, 2.0, 2.5], &t) - 0.75).abs() < 1e-12);
        assert!(r_squared(&[1.0, 2.0], &[3.0, 3.0]).is_nan());
        assert!((std_dev(&t) - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
