//! One training step's loss: next-item cross-entropy over the batch's targets, plus with CDL
//! the weighted correlation losses `L = L_CE + Σ_m (w^hol_m L^hol_m + w^dis_m L^dis_m)`
//! ([`crate::distill::cdl`]) on the modality rows of the batch's pair items, read in the same
//! table lookup as the model's input ([`Recommender::forward_sharing`]).

use crate::data::batch::Batch;
use crate::distill::cdl::{Cdl, CdlParts};
use crate::model::{Ctx, Recommender, SeqBatch};
use candle_core::{Device, Result, Tensor};

/// The parts of one step's loss.
pub struct StepLoss {
    /// What the step differentiates: `ce` plus the weighted correlation losses.
    pub total: Tensor,
    /// Mean next-item cross-entropy (plus the backbone's auxiliary loss, if any).
    pub ce: Tensor,
    /// Training targets in the batch.
    pub targets: usize,
    /// The unweighted correlation losses; `None` without CDL or without a supervised pair.
    pub cdl: Option<CdlParts>,
}

/// The loss of one training step on `batch` (see the module docs).
pub fn step_loss(
    model: &Recommender,
    cdl: Option<&mut Cdl>,
    batch: &Batch,
    ctx: &mut Ctx,
    device: &Device,
) -> Result<StepLoss> {
    let plain = |(ce, targets): (Tensor, usize)| StepLoss { total: ce.clone(), ce, targets, cdl: None };
    let Some(cdl) = cdl else { return Ok(plain(batch_loss(model, batch, ctx, device)?)) };
    let pairs = cdl.pairs(batch);
    if pairs.is_empty() {
        return Ok(plain(batch_loss(model, batch, ctx, device)?));
    }
    let (ce, targets, rows) = batch_loss_sharing(model, batch, &pairs.items, ctx, device)?;
    if rows.is_empty() {
        candle_core::bail!("correlation losses need modality tables, and the model has none");
    }
    Ok(match cdl.loss_on(&pairs, &rows)? {
        Some((l, parts)) => StepLoss { total: (&ce + l)?, ce, targets, cdl: Some(parts) },
        None => plain((ce, targets)),
    })
}

/// Mean cross-entropy over the target positions of `batch` (plus the backbone's auxiliary
/// loss, if any); returns (loss, targets).
///
/// A model that is not causal trains on prefix samples, one per row padded to the batch's
/// longest: its rows are run in groups of similar length instead ([`by_width`]: widths 8, 16
/// and the batch's). Rows do not interact, so the loss and gradients are those
/// of the whole batch up to float rounding (and the order of dropout draws).
pub fn batch_loss(model: &Recommender, batch: &Batch, ctx: &mut Ctx, device: &Device) -> Result<(Tensor, usize)> {
    let traits = model.backbone.traits;
    let groups = if traits.causal || traits.own_row_groups { Vec::new() } else { by_width(batch) };
    if groups.len() <= 1 {
        return whole_batch_loss(model, batch, ctx, device);
    }
    let (mut states, mut targets) = (Vec::with_capacity(groups.len()), Vec::new());
    for sub in &groups {
        let hidden = model.forward(&SeqBatch::new(sub, device)?, ctx)?;
        let (h, t) = target_states(sub, &hidden, device)?;
        states.push(h);
        targets.extend(t);
    }
    loss_of(model, &Tensor::cat(&states, 0)?, targets, ctx, device)
}

/// [`batch_loss`] with the batch run as one, at its full width.
pub fn whole_batch_loss(model: &Recommender, batch: &Batch, ctx: &mut Ctx, device: &Device) -> Result<(Tensor, usize)> {
    let hidden = model.forward(&SeqBatch::new(batch, device)?, ctx)?; // [B, T, D]
    loss_at_targets(model, batch, &hidden, ctx, device)
}

/// The rows of a padded batch of one left-aligned sequence per row, grouped by the width their
/// length needs ([`crate::data::batch::group_width`]), each group a batch of that width; empty
/// for a packed or cloze batch (rows holding several sequences, or masked cells).
pub fn by_width(batch: &Batch) -> Vec<Batch> {
    let (b, t) = (batch.rows, batch.width);
    if !batch.masked.is_empty() || batch.sequences().count() != b {
        return Vec::new();
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for r in 0..b {
        let row = &batch.items[r * t..(r + 1) * t];
        let len = row.iter().rposition(|&v| v != 0).map_or(1, |c| c + 1);
        if row[..len].contains(&0) || batch.pos[r * t] != 0 {
            return Vec::new();
        }
        groups.entry(crate::data::batch::group_width(len, t)).or_default().push(r);
    }
    let cells = |v: &[u32], rows: &[usize], w: usize| -> Vec<u32> {
        rows.iter().flat_map(|&r| v[r * t..r * t + w].iter().copied()).collect()
    };
    groups
        .into_iter()
        .map(|(w, rows)| Batch {
            rows: rows.len(),
            width: w,
            items: cells(&batch.items, &rows, w),
            targets: cells(&batch.targets, &rows, w),
            pos: cells(&batch.pos, &rows, w),
            masked: Vec::new(),
        })
        .collect()
}

/// The states of `hidden` [B, T, D] at `batch`'s target cells [M, D], and the targets (0-based).
fn target_states(batch: &Batch, hidden: &Tensor, device: &Device) -> Result<(Tensor, Vec<u32>)> {
    let d = hidden.dim(2)?;
    let (rows, targets): (Vec<u32>, Vec<u32>) =
        batch.targets.iter().enumerate().filter(|(_, &t)| t > 0).map(|(i, &t)| (i as u32, t - 1)).unzip();
    let m = rows.len();
    let rows = Tensor::from_vec(rows, m, device)?;
    Ok((hidden.reshape((batch.rows * batch.width, d))?.index_select(&rows, 0)?, targets))
}

/// The cross-entropy (and auxiliary loss) of `hidden` [B, T, D] at `batch`'s target cells.
fn loss_at_targets(
    model: &Recommender,
    batch: &Batch,
    hidden: &Tensor,
    ctx: &mut Ctx,
    device: &Device,
) -> Result<(Tensor, usize)> {
    let (h, targets) = target_states(batch, hidden, device)?;
    loss_of(model, &h, targets, ctx, device)
}

/// The cross-entropy of the target states `h` [M, D] (plus the auxiliary loss); (loss, M).
fn loss_of(
    model: &Recommender,
    h: &Tensor,
    targets: Vec<u32>,
    ctx: &mut Ctx,
    device: &Device,
) -> Result<(Tensor, usize)> {
    let m = targets.len();
    let loss = crate::ops::catalogue_cross_entropy(h, &model.candidates(ctx)?, &targets)?;
    let ids: Vec<u32> = targets.iter().map(|&t| t + 1).collect();
    let loss = match model.backbone.aux_loss(h, &Tensor::from_vec(ids, m, device)?)? {
        Some(aux) => (loss + aux)?,
        None => loss,
    };
    Ok((loss, m))
}

/// [`batch_loss`], and each modality table's rows at item ids `shared` [U], read in the same
/// lookup as the model's input: (loss, targets, M × [U, d_m]).
pub fn batch_loss_sharing(
    model: &Recommender,
    batch: &Batch,
    shared: &[u32],
    ctx: &mut Ctx,
    device: &Device,
) -> Result<(Tensor, usize, Vec<Tensor>)> {
    let ids = Tensor::from_slice(shared, shared.len(), device)?;
    let (hidden, rows) = model.forward_sharing(&SeqBatch::new(batch, device)?, &ids, ctx)?;
    let (loss, m) = loss_at_targets(model, batch, &hidden, ctx, device)?;
    Ok((loss, m, rows))
}
