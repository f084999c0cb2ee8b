//! Fused CPU kernels with their own backward passes, for the ops where candle's composite
//! versions dominate a training step (see reports/bench/): the softmax cross-entropy over the
//! item catalogue (fused with its logits product), layer normalisation, the causal masked softmax
//! of self-attention and the softmax of scores under an additive mask, GELU, bias addition,
//! dropout, a GRU layer's recurrence and the correlation losses' row-pair gathers.
//!
//! Each public function runs the fused kernel on CPU and falls back to composite candle ops
//! on other devices, so `--features cuda` builds and runs without CUDA kernels of our own.
//! Kernels split work into fixed-size chunks of rows and reduce partial sums in chunk order,
//! so results do not depend on the number of threads (same seed, same metrics).

/// Defines a kernel function whose body is compiled twice, for the crate's baseline target
/// (x86-64 with SSE2) and for AVX2 + FMA, and runs the second where the processor has those
/// features (detected once, then a cached load per call). Rust never contracts `a * b + c` into
/// an FMA and never reorders float sums on its own, so both copies compute the same bits: only
/// the vector width differs. Call it per chunk or per row, not per element.
macro_rules! simd_kernel {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the processor supports the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use simd_kernel;

pub mod bias;
pub mod biased_softmax;
pub mod catalogue;
pub mod cross_entropy;
pub mod dropout;
pub mod fastmath;
pub mod gather;
pub mod gelu;
pub mod gru;
pub mod layer_norm;
pub mod pair_codes;
pub mod pairs;
pub mod softmax;

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};

pub use bias::add_bias;
pub use biased_softmax::biased_softmax;
pub use catalogue::catalogue_cross_entropy;
pub use cross_entropy::cross_entropy;
pub use dropout::dropout;
pub use gather::{gather_rows, gather_rows_pair};
pub use gelu::gelu;
pub use gru::gru_sequence;
pub use layer_norm::layer_norm;
pub use pair_codes::{pair_code_cross_entropy, pair_code_logits};
pub use pairs::{pair_diff_relu, pair_dot};
pub use softmax::causal_softmax;

/// Rows per parallel work item; fixed so that reductions are deterministic.
pub(crate) const CHUNK_ROWS: usize = 64;

/// Elements per parallel work item of the elementwise kernels (GELU, dropout, the Adam update).
pub(crate) const CHUNK_ELEMS: usize = 1 << 14;

/// The contiguous f32 slice behind a CPU storage and layout.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{op}: only f32 is supported") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("{op}: input must be contiguous") };
    Ok(&v[a..b])
}

/// Calls `f` with the f32 data of a CPU tensor (copied to contiguous memory if needed).
pub(crate) fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else { candle_core::bail!("{op}: expected a CPU tensor") };
    Ok(f(f32_slice(cpu, layout, op)?))
}

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Tensor, Var};

    /// Max relative difference between two tensors' values.
    pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = b.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-12);
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max) / scale
    }

    /// The gradient of `Σ wts ⊙ fused()` with respect to `x` matches the composite op's
    /// (`composite` computed from `x`) and central finite differences at `coords`.
    pub fn assert_grads_match(x: &Var, wts: &Tensor, fused: &dyn Fn() -> Tensor, composite: &Tensor, coords: &[usize]) {
        let g1 = (fused() * wts).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (composite * wts).unwrap().sum_all().unwrap().backward().unwrap();
        let (g1, g2) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(rel_err(g1, g2) < 1e-4, "{}", rel_err(g1, g2));
        let f = || (fused() * wts).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        let g = g1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for &k in coords {
            let fd = finite_diff(x, k, &f);
            assert!((fd - g[k] as f64).abs() < 2e-2 * (g[k].abs() as f64).max(0.05), "k {k}: fd {fd} vs {}", g[k]);
        }
    }

    /// Central finite difference of `f` at coordinate `k` of `var` (f64 accumulation).
    pub fn finite_diff(var: &Var, k: usize, f: &dyn Fn() -> f64) -> f64 {
        let orig = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let h = 1e-2f32;
        let set = |delta: f32| {
            let mut v = orig.clone();
            v[k] += delta;
            var.set(&Tensor::from_vec(v, var.shape(), var.device()).unwrap()).unwrap();
        };
        set(h);
        let up = f();
        set(-h);
        let down = f();
        set(0.0);
        (up - down) / (2.0 * h as f64)
    }
}
