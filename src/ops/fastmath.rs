//! Branch-free f32 `exp` and normal CDF that the compiler vectorises (libm's `expf` and
//! `erff` are scalar calls), for the elementwise loops of the fused kernels.
//!
//! - [`exp`]: Cody-Waite range reduction `x = k ln2 + r`, `|r| <= ln2 / 2`, then Cephes'
//!   degree-6 polynomial for `e^r`, scaled by `2^k` built in the exponent bits. Relative error
//!   below 3e-7 on [-87, 88] (tested against f64); inputs are clamped to that range (below it
//!   the result is 2^-126 instead of a subnormal or 0, above it e^88 instead of infinity).
//! - [`normal_cdf`]: `Φ(x) = (1 + erf(x / √2)) / 2` with Abramowitz & Stegun 7.1.26,
//!   `erf(z) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) e^{-z²}`, `t = 1 / (1 + p z)`,
//!   absolute error below 3e-7 (tested). It returns `e^{-x²/2}` too, which GELU's gradient
//!   needs.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

/// 1.5 · 2^23: adding it to `v` (|v| < 2^22) rounds `v` to the nearest integer, which then
/// sits in the low mantissa bits of the sum.
const MAGIC: f32 = 12_582_912.0;

/// Round-to-nearest by the [`MAGIC`] trick (valid for |v| < 2^22): the rounded value as f32,
/// and as an integer read from the sum's bits (`v as i32` is a saturating cast that the
/// compiler does not vectorise; this is plain integer arithmetic and does).
#[inline(always)]
fn round(v: f32) -> (f32, i32) {
    let shifted = v + MAGIC;
    (shifted - MAGIC, shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32)
}

/// `e^x` (see the module docs for accuracy).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // ln 2 split into a part exact in f32 and the remainder (Cody-Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.0);
    let (k, ki) = round(x * LOG2_E);
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    er * f32::from_bits(((ki + 127) as u32) << 23)
}

/// `(Φ(x), e^{-x²/2})` for the standard normal CDF `Φ`.
#[inline(always)]
pub fn normal_cdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_72, 1.421_413_8, -1.453_152, 1.061_405_4];
    let z = (x * FRAC_1_SQRT_2).abs();
    let e = exp(-0.5 * x * x); // = e^{-z²}
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf_abs = 1.0 - poly * e;
    let erf = if x < 0.0 { -erf_abs } else { erf_abs };
    (0.5 * (1.0 + erf), e)
}

/// Logistic sigmoid `1 / (1 + e^{-x})`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 - 2 / (e^{2x} + 1)` (absolute error below 1e-6, tested).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Lanes of the reductions below: independent accumulators the compiler keeps in vector
/// registers; combined in a fixed order, so results do not depend on the machine.
const LANES: usize = 8;

/// `max(row)` (`-inf` for an empty row).
#[inline(always)]
pub fn max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    rest.iter().chain(&acc).copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Replaces every `v` of `row` by `exp(v - shift)` and returns their sum.
#[inline(always)]
pub fn exp_in_place(row: &mut [f32], shift: f32) -> f32 {
    map_sum_in_place(row, |v| exp(v - shift))
}

/// Replaces every `v` of `row` by `f(v)` and returns their sum, in [`LANES`] partial sums.
#[inline(always)]
pub fn map_sum_in_place(row: &mut [f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = f(*v);
            *a += *v;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for v in chunks.into_remainder() {
        *v = f(*v);
        sum += *v;
    }
    sum
}

/// `Σ_j a_j b_j` in [`LANES`] partial sums.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = a.len() - ca.remainder().len();
    for (x, y) in ca.zip(cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    acc.iter().sum::<f32>() + a[tail..].iter().zip(&b[tail..]).map(|(u, v)| u * v).sum::<f32>()
}

/// Writes `exp(row - shift)` into `out` and returns its sum.
pub fn exp_into(row: &[f32], shift: f32, out: &mut [f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (chunks, outs) = (row.chunks_exact(LANES), out.chunks_exact_mut(LANES));
    let rest = chunks.remainder().len();
    for (c, o) in chunks.zip(outs) {
        for ((a, &v), ov) in acc.iter_mut().zip(c).zip(o.iter_mut()) {
            let e = exp(v - shift);
            *ov = e;
            *a += e;
        }
    }
    let tail = row.len() - rest;
    let mut sum = acc.iter().sum::<f32>();
    for (ov, &v) in out[tail..].iter_mut().zip(&row[tail..]) {
        *ov = exp(v - shift);
        sum += *ov;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_3e7_relative() {
        let mut worst = 0f64;
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1.2e-38 && exp(1000.0).is_finite());
    }

    #[test]
    fn normal_cdf_is_within_3e7_absolute() {
        let mut worst = 0f64;
        for i in 0..=400_000 {
            let x = -10.0 + 20.0 * i as f32 / 400_000.0;
            let (phi, e) = normal_cdf(x);
            let want = 0.5 * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2));
            worst = worst.max((phi as f64 - want).abs());
            let want_e = ((-0.5 * x * x) as f64).exp(); // same f32 argument
            assert!(((e as f64) - want_e).abs() <= 3e-7 * want_e + 1e-37, "e at {x}");
        }
        assert!(worst < 3e-7, "max absolute error {worst}");
        assert!((normal_cdf(0.0).0 - 0.5).abs() < 3e-7);
    }

    #[test]
    fn sigmoid_and_tanh_are_within_1e6_absolute() {
        for i in 0..=200_000 {
            let x = -30.0 + 60.0 * i as f32 / 200_000.0;
            let xd = x as f64;
            assert!((sigmoid(x) as f64 - 1.0 / (1.0 + (-xd).exp())).abs() < 1e-6, "sigmoid({x})");
            assert!((tanh(x) as f64 - xd.tanh()).abs() < 1e-6, "tanh({x})");
        }
    }

    #[test]
    fn reductions_match_plain_loops() {
        let row: Vec<f32> = (0..37).map(|i| ((i * 13) % 11) as f32 / 3.0 - 2.0).collect();
        assert_eq!(max(&row), row.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        let want: f64 = row.iter().map(|&v| (v as f64 - 1.5).exp()).sum();
        let mut out = vec![0f32; row.len()];
        assert!((exp_into(&row, 1.5, &mut out) as f64 - want).abs() < 1e-6 * want);
        let mut in_place = row.clone();
        assert_eq!(exp_in_place(&mut in_place, 1.5), exp_into(&row, 1.5, &mut out));
        assert_eq!(in_place, out);
        for (o, &v) in out.iter().zip(&row) {
            assert!((*o as f64 - (v as f64 - 1.5).exp()).abs() < 1e-6 * (v as f64 - 1.5).exp());
        }
    }
}
