//! The "model" stage: sequential backbones behind one enum.
//!
//! Every neural backbone maps a [`SeqBatch`] (item ids `[B, T]` with each cell's position in
//! its own sequence; several sequences may share a row) to causal hidden states `[B, T, D]`:
//! the state of a cell depends only on the cells of its own sequence up to itself. Items are
//! scored by the dot product with the backbone's item table (row 0 = padding is never a
//! candidate). [`Popularity`] is the non-neural reference.

pub mod fusion;
pub mod gru4rec;
pub mod layers;
pub mod params;
pub mod sasrec;

use crate::data::batch::Batch;
use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use fusion::{ModalityEmbeddings, ModalityMode, Recommender};
pub use gru4rec::{Gru4Rec, Gru4RecConfig};
pub use layers::Ctx;
pub use sasrec::{SasRec, SasRecConfig};

/// A batch as the backbones see it (see [`Batch`] for the layout).
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// [B, T] u32, 0 = padding.
    pub items: Tensor,
    /// [B * T]: each cell's position within its own sequence; a sequence starts at position 0.
    pub pos: Vec<u32>,
}

impl SeqBatch {
    pub fn new(batch: &Batch, device: &Device) -> Result<Self> {
        let items = Tensor::from_slice(&batch.items, (batch.rows, batch.width), device)?;
        Ok(Self { items, pos: batch.pos.clone() })
    }

    /// One left-aligned sequence per row (positions `0..len`, padding after it).
    pub fn left_aligned(items: Tensor) -> Result<Self> {
        let pos = items
            .to_vec2::<u32>()?
            .iter()
            .flat_map(|r| r.iter().enumerate().map(|(i, &v)| if v == 0 { 0 } else { i as u32 }))
            .collect();
        Ok(Self { items, pos })
    }

    /// Per cell: the column where its sequence starts (its first visible cell).
    pub fn starts(&self) -> Result<Vec<u32>> {
        let t = self.items.dim(1)?;
        Ok(self.pos.iter().enumerate().map(|(c, &p)| (c % t) as u32 - p).collect())
    }

    /// Per cell, step-major ([T * B]): whether a sequence starts there.
    pub fn resets_step_major(&self) -> Result<Vec<bool>> {
        let (b, t) = self.items.dims2()?;
        Ok((0..t * b).map(|k| self.pos[(k % b) * t + k / b] == 0).collect())
    }
}

/// The models the harness can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Most popular items in the training data (no training).
    Pop,
    Sasrec,
    Gru4rec,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pop => "pop",
            Self::Sasrec => "sasrec",
            Self::Gru4rec => "gru4rec",
        }
    }
}

/// A trainable sequential backbone.
#[derive(Debug, Clone)]
pub enum Backbone {
    SasRec(SasRec),
    Gru4Rec(Gru4Rec),
}

impl Backbone {
    pub fn new(
        kind: ModelKind,
        sasrec: &SasRecConfig,
        gru4rec: &Gru4RecConfig,
        n_items: usize,
        max_len: usize,
        vb: VarBuilder,
    ) -> Result<Option<Self>> {
        Ok(match kind {
            ModelKind::Pop => None,
            ModelKind::Sasrec => Some(Self::SasRec(SasRec::new(sasrec, n_items, max_len, vb)?)),
            ModelKind::Gru4rec => Some(Self::Gru4Rec(Gru4Rec::new(gru4rec, n_items, vb)?)),
        })
    }

    /// [B, T] (+ optional [B, T, D] added to the item embeddings) -> [B, T, D]
    pub fn forward(&self, input: &SeqBatch, extra: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        match self {
            Self::SasRec(m) => m.forward(input, extra, ctx),
            Self::Gru4Rec(m) => m.forward(input, extra, ctx),
        }
    }

    /// Width of the item embeddings (where modality embeddings are fused).
    pub fn embedding_dim(&self) -> Result<usize> {
        self.candidates()?.dim(1)
    }

    /// Candidate item embeddings for ids 1..=N: [N, D]
    pub fn candidates(&self) -> Result<Tensor> {
        let table = match self {
            Self::SasRec(m) => m.item_table(),
            Self::Gru4Rec(m) => m.item_table(),
        };
        table.narrow(0, 1, table.dim(0)? - 1)
    }
}

/// Popularity: every user gets the same scores, the item's count among training inputs and
/// targets.
#[derive(Debug, Clone)]
pub struct Popularity {
    /// counts[id - 1]
    pub counts: Vec<f32>,
}

impl Popularity {
    pub fn fit(sequences: &[Vec<u32>], train_end: &[u32], n_items: usize) -> Self {
        let mut counts = vec![0f32; n_items];
        for (s, &end) in sequences.iter().zip(train_end) {
            for &i in &s[..end as usize] {
                counts[i as usize - 1] += 1.0;
            }
        }
        Self { counts }
    }
}
