//! Correlation distillation learning for one run: a teacher and a student head per modality,
//! and the weighted sum of their losses for a training batch:
//! `L_CDL = Σ_m (w^hol_m L^hol_m + w^dis_m L^dis_m)` with `(w^hol_m, w^dis_m) = (α, β)` for every
//! modality (paper) unless `student.weights` sets a modality's own. `code_faithful` reproduces
//! the released code's cross-wiring: the first modality's two losses are both weighted by α and
//! the second's both by β (with the released config α = 4, β = 0.5).

use super::student::{BatchPairs, CdlHead, PairIndex, PairTargets, StudentConfig, TargetCache};
use super::teacher::Teacher;
use crate::data::batch::Batch;
use crate::model::params::ParamStore;
use candle_core::{Device, Result, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub struct Cdl {
    pub names: Vec<String>,
    pub teachers: Vec<Teacher>,
    heads: Vec<CdlHead>,
    /// Per modality, the teacher's targets of the pairs seen so far.
    caches: Vec<TargetCache>,
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

/// One modality's correlation terms on a batch, unweighted, with what the diagnostics read.
pub struct ModalityTerms {
    /// (holistic, dissected) weights.
    pub weights: (f64, f64),
    pub holistic: Option<Tensor>,
    pub dissected: Option<Tensor>,
    /// Student holistic scores `s^S` [P] and the teacher's targets `s^T` (same pairs).
    pub scores: Option<Tensor>,
    pub targets: Vec<f32>,
    /// Dissected logits [P', K] and the teacher's codes.
    pub logits: Option<Tensor>,
    pub codes: Vec<u32>,
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
        let (mut heads, mut ts, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (name, t) in teachers {
            heads.push(CdlHead::new(t.dim(), t.codebook.k, code_faithful, vb.pp(format!("cdl.{name}")))?);
            ts.push(t);
            names.push(name);
        }
        let caches = ts.iter().map(|_| TargetCache::default()).collect();
        Ok(Self { names, teachers: ts, heads, caches, cfg, code_faithful, rng: ChaCha8Rng::seed_from_u64(seed) })
    }

    /// The pair-sampling stream's word position (to resume a run exactly).
    pub fn rng_position(&self) -> u128 {
        self.rng.get_word_pos()
    }

    pub fn set_rng_position(&mut self, pos: u128) {
        self.rng.set_word_pos(pos);
    }

    fn weights(&self, m: usize) -> (f64, f64) {
        let (a, b) = (self.cfg.alpha, self.cfg.beta);
        match (self.code_faithful, m) {
            (true, 0) => (a, a),
            (true, _) => (b, b),
            (false, _) => self.cfg.weights_of(&self.names[m]),
        }
    }

    /// `W e` for modality `m`'s table `e` [rows, d]: the projection its holistic head scores.
    pub fn project(&self, m: usize, e: &Tensor) -> Result<Tensor> {
        self.heads[m].project(e)
    }

    /// The batch's supervised pairs, shared by every modality; their items (`items`) are the
    /// rows each modality's terms score.
    pub fn pairs(&self, batch: &Batch) -> BatchPairs {
        BatchPairs::from_sequences(batch.sequences(), self.code_faithful)
    }

    /// The batch's pairs and each modality's rows at their items (`tables[m]` is [N+1, d_m]);
    /// `None` when the batch has no supervised pair.
    fn rows_of(&self, batch: &Batch, tables: &[Tensor]) -> Result<Option<(BatchPairs, Vec<Tensor>)>> {
        let pairs = self.pairs(batch);
        if pairs.is_empty() {
            return Ok(None);
        }
        let idx = Tensor::from_slice(&pairs.items, pairs.items.len(), tables[0].device())?;
        let rows = tables.iter().map(|t| crate::ops::gather_rows(t, &idx)).collect::<Result<Vec<_>>>()?;
        Ok(Some((pairs, rows)))
    }

    /// Every modality's terms on `batch` given the current tables, with the dissected logits
    /// (for diagnostics); empty when the batch has no supervised pair.
    pub fn terms(&mut self, batch: &Batch, tables: &[Tensor]) -> Result<Vec<ModalityTerms>> {
        match self.rows_of(batch, tables)? {
            Some((pairs, rows)) => self.terms_on(&pairs, &rows, true),
            None => Ok(Vec::new()),
        }
    }

    /// Every modality's terms on `pairs` given each modality's rows at `pairs.items`
    /// (`rows[m]` is [U, d_m]), with the dissected logits when `logits` (diagnostics); empty
    /// when there is no pair.
    pub fn terms_on(&mut self, pairs: &BatchPairs, rows: &[Tensor], logits: bool) -> Result<Vec<ModalityTerms>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let dev = rows[0].device().clone();
        let index = PairIndex::new(pairs, &dev)?;
        let mut out = Vec::new();
        for (m, e) in rows.iter().enumerate().take(self.teachers.len()) {
            let (teacher, head) = (&self.teachers[m], &self.heads[m]);
            let targets = PairTargets::cached(pairs, teacher, self.cfg.max_pairs, &mut self.rng, &mut self.caches[m]);
            // e: [U, d_m], this modality's rows at pairs.items
            let (holistic, scores) = if self.cfg.holistic {
                let (l, s) = head.holistic_loss(e, &index, &targets, teacher, &self.cfg, self.code_faithful)?;
                (Some(l), Some(s))
            } else {
                (None, None)
            };
            let dissected =
                if self.cfg.dissected { head.dissected_loss(e, pairs, &targets, self.code_faithful)? } else { None };
            let logits = match dissected {
                Some(_) if logits => Some(head.dissected_logits(e, pairs, &targets, self.code_faithful)?),
                _ => None,
            };
            out.push(ModalityTerms {
                weights: self.weights(m),
                holistic,
                dissected,
                scores,
                targets: targets.holistic,
                logits,
                codes: targets.codes,
            });
        }
        Ok(out)
    }

    /// The weighted correlation loss of `batch` given the current tables (`tables[m]` is
    /// [N+1, d_m]); `None` when the batch has no supervised pair.
    pub fn loss(&mut self, batch: &Batch, tables: &[Tensor]) -> Result<Option<(Tensor, CdlParts)>> {
        match self.rows_of(batch, tables)? {
            Some((pairs, rows)) => self.loss_on(&pairs, &rows),
            None => Ok(None),
        }
    }

    /// [`Self::loss`] on `pairs` given each modality's rows at `pairs.items` (`rows[m]` is
    /// [U, d_m], e.g. from [`crate::model::Recommender::forward_sharing`]).
    pub fn loss_on(&mut self, pairs: &BatchPairs, rows: &[Tensor]) -> Result<Option<(Tensor, CdlParts)>> {
        let terms = self.terms_on(pairs, rows, false)?;
        Self::weighted(terms)
    }

    /// `Σ_m (w^hol_m L^hol_m + w^dis_m L^dis_m)` and its unweighted parts.
    fn weighted(terms: Vec<ModalityTerms>) -> Result<Option<(Tensor, CdlParts)>> {
        let mut total: Option<Tensor> = None;
        let mut parts = CdlParts::default();
        for t in terms {
            for (term, w, part) in
                [(&t.holistic, t.weights.0, &mut parts.holistic), (&t.dissected, t.weights.1, &mut parts.dissected)]
            {
                let Some(l) = term else { continue };
                *part += l.to_scalar::<f32>()? as f64;
                let l = (l * w)?;
                total = Some(match total.take() {
                    Some(acc) => (acc + l)?,
                    None => l,
                });
            }
        }
        Ok(total.map(|t| (t, parts)))
    }
}
