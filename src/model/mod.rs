//! The "model" stage: sequential backbones, registered in one place ([`registry`]).
//!
//! Every neural backbone maps a [`SeqBatch`] (item ids `[B, T]` with each cell's position in
//! its own sequence; several sequences may share a row) to hidden states `[B, T, D]`. For a
//! causal backbone the state of a cell depends only on the cells of its own sequence up to
//! itself. Items are scored by the dot product with the backbone's item table (row 0 =
//! padding is never a candidate). [`Popularity`] is the non-neural reference.

pub mod difsr;
pub mod fusion;
pub mod gru4rec;
pub mod kdsr_rgat;
pub mod layers;
pub mod limits;
pub mod mmsr;
pub mod mmsrec;
pub mod nova;
pub mod params;
pub mod registry;
pub mod sasrec;
pub mod sasrm;
pub mod srgnn;
pub mod trans2d;

use crate::data::batch::Batch;
use candle_core::{Device, Result, Tensor};

pub use fusion::{ModalityEmbeddings, ModalityMode, Recommender};
pub use gru4rec::{Gru4Rec, Gru4RecConfig};
pub use layers::Ctx;
pub use registry::{
    Backbone, Clustering, Dims, Inputs, ModalityClusters, ModalityUse, ModelKind, ModelSpec, SeqModel, Side, Traits,
};
pub use sasrec::{SasRec, SasRecConfig};

/// A batch as the backbones see it (see [`Batch`] for the layout).
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// [B, T] u32, 0 = padding.
    pub items: Tensor,
    /// [B * T]: each cell's position within its own sequence; a sequence starts at position 0.
    pub pos: Vec<u32>,
    /// [B * T] in cloze batches (masked-item training), else empty: whether the cell's input is
    /// the mask token. Only backbones with [`Traits::cloze`] get such batches.
    pub masked: Vec<bool>,
}

impl SeqBatch {
    pub fn new(batch: &Batch, device: &Device) -> Result<Self> {
        let items = Tensor::from_slice(&batch.items, (batch.rows, batch.width), device)?;
        Ok(Self { items, pos: batch.pos.clone(), masked: batch.masked.clone() })
    }

    /// One left-aligned sequence per row (positions `0..len`, padding after it).
    pub fn left_aligned(items: Tensor) -> Result<Self> {
        let pos = items
            .to_vec2::<u32>()?
            .iter()
            .flat_map(|r| r.iter().enumerate().map(|(i, &v)| if v == 0 { 0 } else { i as u32 }))
            .collect();
        Ok(Self { items, pos, masked: Vec::new() })
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

/// The rows of `hidden` [B, T, D] at the flat cells `cells` (`row * T + column`): [M, D].
pub(crate) fn select_cells(hidden: &Tensor, cells: &[u32]) -> Result<Tensor> {
    let (b, t, d) = hidden.dims3()?;
    let idx = Tensor::from_slice(cells, cells.len(), hidden.device())?;
    crate::ops::gather_rows(&hidden.reshape((b * t, d))?, &idx)
}

/// A non-causal backbone's output laid out as `[B, T, D]`: row `r`'s state `out[r]` ([B, D]) at
/// its cell `cells[r]` (an index into the row, `None` for an empty row), zero elsewhere.
pub(crate) fn at_cells(out: &Tensor, cells: &[Option<usize>], t: usize) -> Result<Tensor> {
    let flat: Vec<Option<usize>> = cells.iter().enumerate().map(|(r, c)| c.map(|c| r * t + c)).collect();
    place_cells(out, &flat, (cells.len(), t))
}

/// Bucketed states laid out as `[B, T, D]`: `sorted[k]` ([B, D], the batch's rows in the order
/// `order`) at row `order[k]`'s last cell `lens[order[k]] - 1` (not placed for an empty row),
/// zero elsewhere.
pub(crate) fn sorted_at_last_cells(sorted: &Tensor, order: &[usize], lens: &[usize], t: usize) -> Result<Tensor> {
    let cells: Vec<Option<usize>> = order.iter().map(|&r| lens[r].checked_sub(1).map(|c| r * t + c)).collect();
    place_cells(sorted, &cells, (order.len(), t))
}

/// States `out` [K, D] laid out as `[B, T, D]`: `out[k]` at the flat cell `cells[k]` (`None`:
/// not placed), zero elsewhere.
pub(crate) fn place_cells(out: &Tensor, cells: &[Option<usize>], (b, t): (usize, usize)) -> Result<Tensor> {
    let (k, d) = out.dims2()?;
    let zero = Tensor::zeros((1, d), out.dtype(), out.device())?;
    let padded = Tensor::cat(&[out, &zero], 0)?; // [K + 1, D]
    let mut pick = vec![k as u32; b * t];
    for (i, c) in cells.iter().enumerate() {
        if let Some(c) = c {
            pick[*c] = i as u32;
        }
    }
    crate::ops::gather_rows(&padded, &Tensor::from_vec(pick, b * t, out.device())?)?.reshape((b, t, d))
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
