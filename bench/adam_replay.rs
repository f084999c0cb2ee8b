//! Would an exact lazy Adam make the tuned modality tables cheap? A standalone measurement
//! (issue #12), outside the crate so that it times the update formula alone:
//!
//! `rustc -C opt-level=3 -C target-cpu=native -o /tmp/adam_replay bench/adam_replay.rs && /tmp/adam_replay`
//!
//! Dense Adam (the paper's: `torch.optim.Adam` over `nn.Embedding` tables; `src/optim.rs` here)
//! updates every element of the two 12,102 x 128 tables at every step, also the rows without a
//! gradient (`m <- b1 m`, `v <- b2 v`, `p <- p - lr m_hat / (sqrt(v_hat) + eps)`). An exact lazy
//! Adam defers a row's updates until the row is read and then replays them, one step after
//! another with each step's scalars, which gives the same bits (checked below). It skips the
//! dense gradient and streams each row once instead of once per step, but not the arithmetic:
//! this program times both orders over `STEPS` steps of a zero gradient (the case of a row that
//! no batch touches), one thread, the update formula of `src/optim.rs` (weight decay 0).

use std::time::Instant;

const ROWS: usize = 2 * 12_102;
const WIDTH: usize = 128;
const STEPS: usize = 100;

// lr 1e-3, betas (0.9, 0.999), eps 1e-8, rounded to f32 as `src/optim.rs` rounds them.
const LR: f32 = 1e-3;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const ONE_MINUS_B1: f32 = (1.0 - 0.9f64) as f32;
const ONE_MINUS_B2: f32 = (1.0 - 0.999f64) as f32;
const EPS: f32 = 1e-8;

/// The bias corrections `(1 - b1^t, 1 - b2^t)` of step `t` (from 1).
fn corrections(t: i32) -> (f32, f32) {
    ((1.0 - 0.9f64.powi(t)) as f32, (1.0 - 0.999f64.powi(t)) as f32)
}

#[inline(always)]
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], (bc1, bc2): (f32, f32)) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = BETA1 * *m + ONE_MINUS_B1 * g;
        *v = BETA2 * *v + ONE_MINUS_B2 * g * g;
        *p -= LR * ((*m / bc1) / ((*v / bc2).sqrt() + EPS));
    }
}

/// Parameters and moments as a trained table might hold them.
fn state(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let p = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect();
    let m = (0..n).map(|i| ((i % 13) as f32 - 6.0) * 1e-4).collect();
    let v = (0..n).map(|i| ((i % 7) as f32 + 1.0) * 1e-7).collect();
    (p, m, v)
}

fn main() {
    let n = ROWS * WIDTH;
    let steps: Vec<(f32, f32)> = (1..=STEPS as i32).map(corrections).collect();
    let zero = vec![0f32; n];
    for rep in 0..3 {
        // Dense: every step streams all parameters, moments and the (zero) gradient.
        let (mut p, mut m, mut v) = state(n);
        let t0 = Instant::now();
        for &k in &steps {
            update(&mut p, &zero, &mut m, &mut v, k);
        }
        let dense = t0.elapsed().as_secs_f64() / STEPS as f64;
        // Lazy replay: each row once, all its steps while it sits in L1.
        let (mut lp, mut lm, mut lv) = state(n);
        let t0 = Instant::now();
        for r in 0..ROWS {
            let s = r * WIDTH..(r + 1) * WIDTH;
            let (p, m, v) = (&mut lp[s.clone()], &mut lm[s.clone()], &mut lv[s]);
            for &k in &steps {
                update(p, &zero[..WIDTH], m, v, k);
            }
        }
        let replay = t0.elapsed().as_secs_f64() / STEPS as f64;
        let same = p.iter().zip(&lp).all(|(a, b)| a.to_bits() == b.to_bits())
            && m.iter().zip(&lm).all(|(a, b)| a.to_bits() == b.to_bits())
            && v.iter().zip(&lv).all(|(a, b)| a.to_bits() == b.to_bits());
        println!(
            "rep {rep}: {n} elements, per step: dense {:.3} ms ({:.3} ns/element), lazy replay {:.3} ms ({:.3} ns/element); bit-identical: {same}",
            dense * 1e3,
            dense * 1e9 / n as f64,
            replay * 1e3,
            replay * 1e9 / n as f64
        );
    }
}
