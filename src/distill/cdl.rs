//! Correlation distillation learning for one run: a teacher and a student head per modality,
//! and the weighted sum of their losses for a training batch:
//! `L_CDL = Σ_m (w^hol_m L^hol_m + w^dis_m L^dis_m)` with `(w^hol_m, w^dis_m) = (α, β)` for every
//! modality (paper). `code_faithful` reproduces the released code's cross-wiring: the first
//! modality's two losses are both weighted by α and the second's both by β (with the released
//! config α = 4, β = 0.5).

use super::student::{BatchPairs, CdlHead, PairIndex, PairTargets, StudentConfig};
use super::teacher::Teacher;
use crate::data::batch::Batch;
use crate::model::params::ParamStore;
use candle_core::{Device, Result, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct Cdl {
    pub teachers: Vec<Teacher>,
    heads: Vec<CdlHead>,
    pub cfg: StudentConfig,
    pub code_faithful: bool,
    rng: ChaCha8Rng,
}

/// Loss values of one batch (for logging).
#[derive(Debug, Clone, Copy, Default)]
pub struct CdlParts {
    pub holistic: f64,
    pub dissected: f64,
}

impl Cdl {
    /// Heads are created in `params` under `cdl.<name>.*`.
    pub fn new(
        teachers: Vec<(String, Teacher)>,
        cfg: StudentConfig,
        code_faithful: bool,
        params: &ParamStore,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let vb = params.var_builder(device);
        let mut heads = Vec::new();
        let mut ts = Vec::new();
        for (name, t) in teachers {
            heads.push(CdlHead::new(t.dim, t.codebook.k, code_faithful, vb.pp(format!("cdl.{name}")))?);
            ts.push(t);
        }
        Ok(Self { teachers: ts, heads, cfg, code_faithful, rng: ChaCha8Rng::seed_from_u64(seed) })
    }

    fn weights(&self, m: usize) -> (f64, f64) {
        let (a, b) = (self.cfg.alpha, self.cfg.beta);
        match (self.code_faithful, m) {
            (true, 0) => (a, a),
            (true, _) => (b, b),
            (false, _) => (a, b),
        }
    }

    /// The weighted correlation loss of `batch` given the current tables (`tables[m]` is
    /// [N+1, d_m]); `None` when the batch has no supervised pair.
    pub fn loss(&mut self, batch: &Batch, tables: &[Tensor]) -> Result<Option<(Tensor, CdlParts)>> {
        let pairs = BatchPairs::from_batch(&batch.items, batch.rows, batch.width, self.code_faithful);
        if pairs.is_empty() {
            return Ok(None);
        }
        let dev = tables[0].device().clone();
        let idx = Tensor::from_slice(&pairs.items, pairs.items.len(), &dev)?;
        let index = PairIndex::new(&pairs, &dev)?;
        let mut total: Option<Tensor> = None;
        let mut parts = CdlParts::default();
        let mut add = |t: Tensor, w: f64| -> Result<()> {
            let t = (t * w)?;
            total = Some(match total.take() {
                Some(acc) => (acc + t)?,
                None => t,
            });
            Ok(())
        };
        for (m, ((teacher, head), table)) in self.teachers.iter().zip(&self.heads).zip(tables).enumerate() {
            let targets = PairTargets::new(&pairs, teacher, self.cfg.max_pairs, &mut self.rng);
            let e = table.index_select(&idx, 0)?; // [U, d]
            let (w_hol, w_dis) = self.weights(m);
            if self.cfg.holistic {
                let l = head.holistic_loss(&e, &index, &targets, teacher, &self.cfg, self.code_faithful)?;
                parts.holistic += l.to_scalar::<f32>()? as f64;
                add(l, w_hol)?;
            }
            if self.cfg.dissected {
                if let Some(l) = head.dissected_loss(&e, &pairs, &targets, self.code_faithful)? {
                    parts.dissected += l.to_scalar::<f32>()? as f64;
                    add(l, w_dis)?;
                }
            }
        }
        Ok(total.map(|t| (t, parts)))
    }
}
