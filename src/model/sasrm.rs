//! SASRM, the paper's "modified SASRec" baseline (Table 2, frozen-feature group): SASRec whose
//! input embedding of item `i` is its ID embedding plus the frozen modality features through
//! trainable projections, `id_i + Σ_m P_m x_m[i]` (sum fusion; the paper does not state the
//! fusion). The features are the teacher's autoencoder codes, kept fixed
//! ([`super::ModalityMode::Frozen`]). The same network as `sasrec` with `modality.mode =
//! "frozen"`, under its own name so that Table 2 can show it.

use super::layers::Ctx;
use super::registry::{Dims, Inputs, ModalityUse, SeqModel, Side, Traits};
use super::sasrec::{SasRec, SasRecConfig};
use super::SeqBatch;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Sasrm(SasRec);

impl SeqModel for Sasrm {
    type Config = SasRecConfig;

    fn traits(_: &SasRecConfig) -> Traits {
        Traits {
            causal: true,
            inputs: Inputs::Summed,
            modality: ModalityUse::Frozen,
            attribute_labels: false,
            clusters: None,
            item_tower: false,
            cloze: false,
            own_row_groups: false,
        }
    }

    fn check(cfg: &SasRecConfig) -> std::result::Result<(), String> {
        SasRec::check(cfg)
    }

    fn width_mut(cfg: &mut SasRecConfig) -> &mut usize {
        &mut cfg.hidden
    }

    fn new(cfg: &SasRecConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        Ok(Self(SasRec::new(cfg, dims, vb)?))
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        self.0.encode(input, Some(fused(side)?), ctx)
    }

    fn forward_at(&self, input: &SeqBatch, side: &Side, cells: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        self.0.encode_at(input, Some(fused(side)?), cells, ctx)
    }

    fn item_table(&self) -> Option<&Tensor> {
        self.0.item_table()
    }
}

/// The summed modality features SASRM adds to its input embeddings.
fn fused(side: &Side) -> Result<&Tensor> {
    side.summed.as_ref().ok_or_else(|| candle_core::Error::Msg("sasrm: no modality features in the input".into()))
}
