//! Vectorised row kernels for the forward pass: LayerNorm rows and masked softmax rows.
//!
//! Why: `iter().sum::<f32>()` is one serial chain of dependent adds (the compiler may not reorder
//! float adds), and `f32::exp` is a scalar libm call. At GPT-2 / DistilBERT sizes those loops
//! cost several percent of the forward pass once the matmuls run at full speed. Here every
//! reduction keeps 16 independent lanes and `exp` is a polynomial the compiler vectorises. Each
//! kernel body is compiled three times (AVX-512, AVX2 + FMA, baseline) and picked at run time,
//! so one binary runs everywhere.

/// Independent accumulators per reduction: one AVX-512 register, or two AVX2 registers.
const LANES: usize = 16;

use super::simd::dispatch;

// ---- LayerNorm ---------------------------------------------------------------------------------

/// LayerNorm of each `w.len()`-wide row of `x` into `out`: two-pass mean and variance (as
/// PyTorch), then `(x − mean) / √(var + eps) · w + b`.
pub fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    dispatch!(
        layer_norm_avx512,
        layer_norm_avx2,
        layer_norm_body,
        (x, w, b, eps, out)
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn layer_norm_avx512(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_body(x, w, b, eps, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn layer_norm_avx2(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_body(x, w, b, eps, out)
}

#[inline(always)]
fn layer_norm_body(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    if d == 0 {
        return;
    }
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = sum_lanes(row, |v| v) / d as f32;
        let var = sum_lanes(row, |v| (v - mean) * (v - mean)) / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &w), &b) in o.iter_mut().zip(row).zip(w).zip(b) {
            *o = (v - mean) * inv * w + b;
        }
    }
}

/// `Σ f(x)` over 16 independent lanes (vectorisable, and more accurate than one serial chain).
#[inline(always)]
fn sum_lanes(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|&v| f(v)).sum::<f32>()
}

// ---- softmax -----------------------------------------------------------------------------------

/// In-place softmax of the `t`-wide rows of `scores` (one attention head's `[t, t]` block).
///
/// `key_bias[j]` is 0 for a visible key and −∞ for a padding key; with `causal`, row `i` sees
/// keys `0..=i` only. Hidden entries come out exactly 0; a row that sees nothing becomes all 0.
pub fn masked_softmax_rows(scores: &mut [f32], key_bias: &[f32], causal: bool) {
    dispatch!(
        softmax_avx512,
        softmax_avx2,
        softmax_body,
        (scores, key_bias, causal)
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn softmax_avx512(scores: &mut [f32], key_bias: &[f32], causal: bool) {
    softmax_body(scores, key_bias, causal)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_avx2(scores: &mut [f32], key_bias: &[f32], causal: bool) {
    softmax_body(scores, key_bias, causal)
}

#[inline(always)]
fn softmax_body(scores: &mut [f32], key_bias: &[f32], causal: bool) {
    let t = key_bias.len();
    if t == 0 {
        return;
    }
    for (i, row) in scores.chunks_exact_mut(t).enumerate() {
        let seen = if causal { i + 1 } else { t };
        let (live, future) = row.split_at_mut(seen);
        future.fill(0.0);
        for (s, &m) in live.iter_mut().zip(key_bias) {
            *s += m;
        }
        let max = max_lanes(live);
        if max == f32::NEG_INFINITY {
            live.fill(0.0); // a padding query with nothing visible: output 0
            continue;
        }
        let mut acc = [0f32; LANES];
        let mut chunks = live.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (a, s) in acc.iter_mut().zip(c.iter_mut()) {
                *s = exp(*s - max);
                *a += *s;
            }
        }
        let mut sum = 0f32;
        for s in chunks.into_remainder() {
            *s = exp(*s - max);
            sum += *s;
        }
        let inv = 1.0 / (sum + acc.iter().sum::<f32>());
        live.iter_mut().for_each(|s| *s *= inv);
    }
}

/// Largest element (−∞ for an empty slice or all −∞), over 16 lanes.
#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            // A select, not `f32::max`: it compiles to one vector max instruction.
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// `eˣ` in f32 for softmax (x ≤ 0 there, but any x below 88 works), within 2 ulp; exactly 0
/// below −87.3 and for −∞. Cephes' reduction `x = n·ln2 + r` (ln2 split in two parts so the
/// reduction is exact), a degree-5 polynomial for `eʳ`, and `2ⁿ` built from bits. `n` is
/// rounded with the 1.5·2²³ trick so the loop has no libm call and vectorises.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let under = x < -87.3;
    let xc = if under { -87.3 } else { x };
    let n = (xc * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if under {
        0.0
    } else {
        er * two_n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64_and_zero_in_the_tail() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.000_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn layer_norm_rows_match_f64_reference() {
        let d = 37; // not a multiple of the lane count
        let x: Vec<f32> = (0..3 * d)
            .map(|i| 1000.0 + (i as f32 * 0.7).sin())
            .collect();
        let w: Vec<f32> = (0..d).map(|i| 1.0 + i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..d).map(|i| i as f32 * -0.02).collect();
        let mut out = vec![0f32; x.len()];
        layer_norm_rows(&x, &w, &b, 1e-5, &mut out);
        for (row, o) in x.chunks(d).zip(out.chunks(d)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want = (row[j] as f64 - mean) / (var + 1e-5).sqrt() * w[j] as f64 + b[j] as f64;
                assert!((o[j] as f64 - want).abs() < 2e-4, "{} vs {want}", o[j]);
            }
        }
    }

    #[test]
    fn masked_softmax_matches_f64_reference_with_padding_and_causality() {
        let t = 21;
        let key_bias: Vec<f32> = (0..t)
            .map(|j| if j >= 17 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        for causal in [false, true] {
            let base: Vec<f32> = (0..t * t).map(|i| (i as f32 * 0.37).sin() * 6.0).collect();
            let mut s = base.clone();
            masked_softmax_rows(&mut s, &key_bias, causal);
            for i in 0..t {
                let seen = |j: usize| j < 17 && (!causal || j <= i);
                let max = (0..t)
                    .filter(|&j| seen(j))
                    .map(|j| base[i * t + j] as f64)
                    .fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = (0..t)
                    .filter(|&j| seen(j))
                    .map(|j| (base[i * t + j] as f64 - max).exp())
                    .sum();
                for j in 0..t {
                    let want = if seen(j) {
                        (base[i * t + j] as f64 - max).exp() / z
                    } else {
                        0.0
                    };
                    let got = s[i * t + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-6,
                        "row {i} col {j}: {got} vs {want}"
                    );
                    if !seen(j) {
                        assert_eq!(got, 0.0);
                    }
                }
            }
        }
        // All keys padding: the row is all zeros, not NaN.
        let mut s = vec![1.0f32; 4];
        masked_softmax_rows(&mut s, &[f32::NEG_INFINITY; 2], false);
        assert_eq!(s, vec![0.0; 4]);
    }
}
