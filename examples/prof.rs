use candle_core::{Device, Tensor, Var};
use kdsr::data::batch::{train_batch, train_windows, SampleMode};
use kdsr::data::split::Split;
use kdsr::model::params::ParamStore;
use kdsr::model::{Backbone, Ctx, Gru4RecConfig, ModelKind, SasRecConfig};
use std::time::Instant;
fn t<F: FnMut()>(name: &str, mut f: F) {
    f();
    let t0 = Instant::now();
    for _ in 0..3 {
        f();
    }
    println!("{name}: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3 / 3.0);
}
fn main() {
    let dev = Device::Cpu;
    let ds =
        kdsr::data::Dataset::load(&"beauty".parse().unwrap(), &kdsr::data::DataPaths::resolve(None, None)).unwrap();
    let split = Split::new(&ds.sequences, Default::default());
    let w = train_windows(&split, 50, SampleMode::Sequence);
    let mut w2: Vec<_> = w.iter().filter(|w| w.len() > 30).take(20).cloned().collect();
    w2.extend(w.iter().take(236));
    let batch = train_batch(&ds.sequences, &w2);
    for kind in [ModelKind::Sasrec, ModelKind::Gru4rec] {
        let p = ParamStore::new(1);
        let m = Backbone::new(
            kind,
            &SasRecConfig::default(),
            &Gru4RecConfig::default(),
            ds.n_items,
            50,
            p.var_builder(&dev),
        )
        .unwrap()
        .unwrap();
        let items = Tensor::from_vec(batch.items.clone(), (batch.rows, batch.width), &dev).unwrap();
        let mut ctx = Ctx::train(0);
        t(&format!("{kind:?} backbone fwd"), || {
            m.forward(&items, &mut ctx).unwrap();
        });
        t(&format!("{kind:?} backbone fwd+bwd"), || {
            m.forward(&items, &mut ctx).unwrap().sum_all().unwrap().backward().unwrap();
        });
        t(&format!("{kind:?} loss fwd"), || {
            kdsr::train::fit::batch_loss(&m, &batch, &mut ctx, &dev).unwrap();
        });
        t(&format!("{kind:?} loss fwd+bwd"), || {
            kdsr::train::fit::batch_loss(&m, &batch, &mut ctx, &dev).unwrap().0.backward().unwrap();
        });
        let mut adam =
            kdsr::train::optim::Adam::new(p.vars().into_iter().map(|(_, v)| v).collect(), 1e-3, 0.0).unwrap();
        let g = kdsr::train::fit::batch_loss(&m, &batch, &mut ctx, &dev).unwrap().0.backward().unwrap();
        t(&format!("{kind:?} adam"), || {
            adam.step(&g).unwrap();
        });
    }
    let h = Var::from_tensor(&Tensor::randn(0f32, 1., (1300, 64), &dev).unwrap()).unwrap();
    let e = Var::from_tensor(&Tensor::randn(0f32, 0.02, (12101, 64), &dev).unwrap()).unwrap();
    let tg: Vec<u32> = (0..1300u32).collect();
    t("logits matmul fwd", || {
        h.as_tensor().matmul(&e.as_tensor().t().unwrap()).unwrap();
    });
    t("fused CE fwd+bwd (with matmuls)", || {
        let l = h.as_tensor().matmul(&e.as_tensor().t().unwrap()).unwrap();
        kdsr::ops::cross_entropy(&l, &tg).unwrap().backward().unwrap();
    });
}
