//! Modality embeddings fused into a backbone's input.
//!
//! Each modality `m` has an embedding table `E_m` ([N+1, d_m], initialised from the teacher's
//! autoencoder codes) and a projection `P_m: d_m -> D`. The backbone's input embedding of item
//! `i` becomes `id_i + Σ_m P_m E_m[i]` (sum fusion at the input; scores stay dot products with
//! the ID embeddings, as in the released code), or, for backbones that take each modality as
//! its own stream (NOVA, DIF-SR), each `P_m E_m[i]` separately, or each table row `E_m[i]`
//! itself, with no projection (the released KDSR network, [`Inputs::Tables`]). The tables are fixed ([`ModalityMode::Frozen`],
//! the two-stage baseline), trained with the recommendation loss only ([`ModalityMode::Tuned`])
//! or trained with the correlation losses as well ([`ModalityMode::Cdl`], KDSR).

use super::layers::{linear, Ctx, Linear};
use super::params::ParamStore;
use super::{Backbone, Inputs, SeqBatch, Side};
use candle_core::{Device, Result, Tensor};
use candle_nn::{Init, Module};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum ModalityMode {
    Frozen,
    Tuned,
    /// Tuned with correlation distillation learning (KDSR).
    #[default]
    Cdl,
}

/// Parameter-name prefix of the trainable modality tables (their own optimiser group).
pub const TABLE_PREFIX: &str = "modality_table.";

#[derive(Debug, Clone)]
pub struct ModalityEmbeddings {
    /// Per modality: [N+1, d_m]
    pub tables: Vec<Tensor>,
    /// Per modality `P_m` (None: the backbone takes the table rows themselves,
    /// [`Inputs::Tables`]).
    projections: Vec<Option<Linear>>,
}

impl ModalityEmbeddings {
    /// `inits[m] = (name, values [N+1, d], d)`. Trainable tables are created in `params`
    /// under `modality_table.<name>`; frozen tables are constants. `inputs` is how the backbone
    /// takes them: with [`Inputs::Tables`] there are no projections and each table's width
    /// must be `hidden`.
    pub fn new(
        inits: &[(String, Vec<f32>, usize)],
        rows: usize,
        hidden: usize,
        mode: ModalityMode,
        inputs: Inputs,
        params: &ParamStore,
        device: &Device,
    ) -> Result<Self> {
        let vb = params.var_builder(device);
        let mut tables = Vec::new();
        let mut projections = Vec::new();
        for (name, values, dim) in inits {
            if inputs == Inputs::Tables && *dim != hidden {
                candle_core::bail!("the {name} table is {dim} wide; a backbone reading the raw tables needs {hidden}");
            }
            let init = Tensor::from_slice(values, (rows, *dim), device)?;
            let table = match mode {
                ModalityMode::Frozen => init,
                _ => {
                    let key = format!("{TABLE_PREFIX}{name}");
                    vb.get_with_hints((rows, *dim), &key, Init::Const(0.0))?;
                    params.set(&key, &init)?;
                    vb.get((rows, *dim), &key)?
                }
            };
            let b = 1.0 / (*dim as f64).sqrt();
            let u = Init::Uniform { lo: -b, up: b };
            projections.push(match inputs {
                Inputs::Tables => None,
                _ => Some(linear(*dim, hidden, u, Some(u), vb.pp(format!("modality_proj.{name}")))?),
            });
            tables.push(table);
        }
        Ok(Self { tables, projections })
    }

    /// Per modality `P_m E_m[items]` (`E_m[items]` without projections): [B, T] -> M × [B, T, D]
    pub fn streams(&self, items: &Tensor) -> Result<Vec<Tensor>> {
        Ok(self.streams_sharing(items, None)?.0)
    }

    /// [`Self::streams`], and with `shared` ids [U] also each table's raw rows `E_m[shared]`
    /// (M × [U, d_m]) from the same lookup ([`crate::ops::gather_rows_pair`]: one table
    /// gradient per step where two lookups would need two and their sum).
    pub fn streams_sharing(&self, items: &Tensor, shared: Option<&Tensor>) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let (b, t) = items.dims2()?;
        let flat = items.flatten_all()?;
        let (mut streams, mut rows) = (Vec::new(), Vec::new());
        for (table, proj) in self.tables.iter().zip(&self.projections) {
            let e = match shared {
                Some(ids) => {
                    let (e, r) = crate::ops::gather_rows_pair(table, &flat, ids)?;
                    rows.push(r);
                    e
                }
                None => crate::ops::gather_rows(table, &flat)?,
            };
            let e = match proj {
                Some(p) => p.forward(&e)?, // [B*T, D]
                None => e,
            };
            let d = e.dim(1)?;
            streams.push(e.reshape((b, t, d))?);
        }
        Ok((streams, rows))
    }

    /// Σ_m P_m E_m[items]: [B, T] -> [B, T, D]
    pub fn forward(&self, items: &Tensor) -> Result<Tensor> {
        sum_streams(self.streams(items)?)
    }
}

/// Σ of the streams: M × [B, T, D] -> [B, T, D]
fn sum_streams(streams: Vec<Tensor>) -> Result<Tensor> {
    let mut out: Option<Tensor> = None;
    for e in streams {
        out = Some(match out {
            Some(acc) => (acc + e)?,
            None => e,
        });
    }
    out.ok_or_else(|| candle_core::Error::Msg("no modality tables".into()))
}

/// A backbone with optional fused modality embeddings: what training and evaluation call.
#[derive(Debug, Clone)]
pub struct Recommender {
    pub backbone: Backbone,
    pub modality: Option<ModalityEmbeddings>,
}

impl Recommender {
    /// [B, T] -> [B, T, D]
    pub fn forward(&self, input: &SeqBatch, ctx: &mut Ctx) -> Result<Tensor> {
        self.backbone.forward(input, &self.side(input)?, ctx)
    }

    /// The states at the flat cells `cells` only: [M, D] (see [`super::SeqModel::forward_at`]).
    pub fn forward_at(&self, input: &SeqBatch, cells: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        self.backbone.forward_at(input, &self.side(input)?, cells, ctx)
    }

    /// [`Self::forward`], and each modality table's rows at `shared` ids [U] read in the same
    /// lookup as the input's (M × [U, d_m]; empty without modality tables): what the
    /// correlation losses score, without a second table gradient.
    pub fn forward_sharing(&self, input: &SeqBatch, shared: &Tensor, ctx: &mut Ctx) -> Result<(Tensor, Vec<Tensor>)> {
        let (side, rows) = self.side_sharing(input, Some(shared))?;
        Ok((self.backbone.forward(input, &side, ctx)?, rows))
    }

    /// The modality inputs of `input`'s items, as the backbone takes them.
    fn side(&self, input: &SeqBatch) -> Result<Side> {
        Ok(self.side_sharing(input, None)?.0)
    }

    fn side_sharing(&self, input: &SeqBatch, shared: Option<&Tensor>) -> Result<(Side, Vec<Tensor>)> {
        let Some(m) = &self.modality else { return Ok((Side::default(), Vec::new())) };
        let (streams, rows) = m.streams_sharing(&input.items, shared)?;
        let side = match self.backbone.traits.inputs {
            Inputs::Summed => Side { summed: Some(sum_streams(streams)?), streams: Vec::new() },
            Inputs::Streams | Inputs::Tables => Side { summed: None, streams },
        };
        Ok((side, rows))
    }

    /// Candidate item embeddings for ids 1..=N: [N, D] (`ctx`: the training step's or
    /// evaluation's, for item towers with dropout).
    pub fn candidates(&self, ctx: &mut Ctx) -> Result<Tensor> {
        let all = match (&self.modality, self.backbone.traits.item_tower) {
            (Some(m), true) => {
                let rows = m.tables.first().map(|t| t.dim(0)).transpose()?.unwrap_or(1);
                let ids = Tensor::arange(1u32, rows as u32, m.tables[0].device())?.unsqueeze(1)?; // [N, 1]
                m.streams(&ids)?.iter().map(|s| s.squeeze(1)).collect::<Result<Vec<_>>>()?
            }
            (None, true) => candle_core::bail!("an item-tower model needs modality embeddings"),
            _ => Vec::new(),
        };
        self.backbone.candidates(&all, ctx)
    }
}
