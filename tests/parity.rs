//! Parity of the backbones with PyTorch: same fixed weights, same input, same outputs.
//!
//! Expected numbers come from `bench/torch_ref.py parity` (RecBole-equivalent PyTorch modules
//! with RecBole's parameter names), run with torch 2.15.0:
//!
//! ```python
//! items = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0]])
//! sas = SASRec(n_items=10, max_len=5, d=8, n_layers=2, n_heads=2, inner=16).eval()
//! gru = GRU4Rec(n_items=10, emb=8, hidden=6).eval()
//! # every parameter p (sorted by name), element j: 0.1 * sin(0.37 * (j + 1) + 1.3 * p)
//! h = model(items); scores = h @ model.item_embedding.weight[1:].T
//! ```

use candle_core::{Device, Tensor};
use kdsr::model::params::ParamStore;
use kdsr::model::{Backbone, Ctx, Dims, Gru4RecConfig, ModelKind, ModelSpec, SasRecConfig, SeqBatch, Side};

fn fill_pattern(params: &ParamStore) {
    for (p, (_, var)) in params.vars().iter().enumerate() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n).map(|j| (0.1 * (0.37 * (j as f64 + 1.0) + 1.3 * p as f64).sin()) as f32).collect();
        var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
    }
}

fn outputs(kind: ModelKind) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let params = ParamStore::new(0);
    let sas = SasRecConfig { hidden: 8, n_layers: 2, n_heads: 2, inner: 16, ..Default::default() };
    let gru = Gru4RecConfig { embedding: 8, hidden: 6, ..Default::default() };
    let spec = match kind {
        ModelKind::Sasrec => ModelSpec::Sasrec(sas),
        _ => ModelSpec::Gru4rec(gru),
    };
    let model = Backbone::new(&spec, &Dims::ids(10, 5), params.var_builder(&Device::Cpu)).unwrap().unwrap();
    fill_pattern(&params);
    let items = Tensor::new(&[[3u32, 1, 4, 1, 5], [9, 2, 6, 0, 0]], &Device::Cpu).unwrap();
    let h = model.forward(&SeqBatch::left_aligned(items).unwrap(), &Side::default(), &mut Ctx::eval()).unwrap(); // [2, 5, 8]
    let scores = h
        .matmul(
            &model
                .candidates(&[], &mut Ctx::eval())
                .unwrap()
                .t()
                .unwrap()
                .unsqueeze(0)
                .unwrap()
                .broadcast_as((2, 8, 10))
                .unwrap()
                .contiguous()
                .unwrap(),
        )
        .unwrap();
    let get = |t: &Tensor, b: usize, i: usize| t.get(b).unwrap().get(i).unwrap().to_vec1::<f32>().unwrap();
    (get(&h, 0, 4), get(&h, 1, 2), get(&scores, 1, 2))
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() < 1e-5, "{what}[{k}]: candle {g} vs torch {w}\n  got {got:?}");
    }
}

#[test]
fn sasrec_forward_matches_pytorch() {
    let (h04, h12, s12) = outputs(ModelKind::Sasrec);
    assert_close(
        &h04,
        &[
            0.15834055840969086,
            0.1472175121307373,
            0.0917581170797348,
            0.07997751235961914,
            0.11139385402202606,
            0.10350538045167923,
            0.044413819909095764,
            -0.03732246160507202,
        ],
        "sasrec h[0,4]",
    );
    assert_close(
        &h12,
        &[
            0.10825982689857483,
            0.1464737355709076,
            0.08036308735609055,
            0.06160071864724159,
            0.12722089886665344,
            0.11106038838624954,
            0.044312894344329834,
            -0.035154975950717926,
        ],
        "sasrec h[1,2]",
    );
    assert_close(
        &s12,
        &[
            0.02780156582593918,
            -0.019418228417634964,
            0.010396314784884453,
            -0.0010325154289603233,
            -0.008365238085389137,
            0.017487898468971252,
            -0.026035461574792862,
            0.03372684121131897,
            -0.04030910134315491,
            0.04556577652692795,
        ],
        "sasrec scores[1,2]",
    );
}

#[test]
fn gru4rec_forward_matches_pytorch() {
    let (h04, h12, s12) = outputs(ModelKind::Gru4rec);
    assert_close(
        &h04,
        &[
            0.037803467363119125,
            0.06727488338947296,
            0.08811403065919876,
            0.10150224715471268,
            0.09526892751455307,
            0.07878050953149796,
            0.054322246462106705,
            0.016616828739643097,
        ],
        "gru4rec h[0,4]",
    );
    assert_close(
        &h12,
        &[
            0.03456256911158562,
            0.06774351000785828,
            0.09078831225633621,
            0.09780013561248779,
            0.09707088768482208,
            0.0803038626909256,
            0.05067839473485947,
            0.019499272108078003,
        ],
        "gru4rec h[1,2]",
    );
    assert_close(
        &s12,
        &[
            -0.013367884792387486,
            0.005875694565474987,
            0.001809720299206674,
            -0.0094356220215559,
            0.016751229763031006,
            -0.023515965789556503,
            0.02950737066566944,
            -0.03452841565012932,
            0.03841397911310196,
            -0.04103628545999527,
        ],
        "gru4rec scores[1,2]",
    );
}
