//! f32 slice kernels of the sparse autoencoder: `dot` (encoding one feature, cosine
//! similarities in synth) and `axpy` (decoding, per-feature gradients), in the widest vectors
//! the CPU has ([`super::simd::dispatch`]). Each is one plain-Rust body, so every instruction set
//! gives the same bits (no fused multiply-add: Rust never contracts `a * b + c`).

use super::simd::dispatch;

/// Independent partial sums of [`dot`]: four 16-wide chains, so a 768-long dot waits on 12
/// dependent adds instead of 96 (the sparse step and the screen's recomputation run tens of
/// thousands per batch).
const LANES: usize = 64;

/// `Σ a_i b_i`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dispatch!(dot_avx512, dot_avx2, dot_body, (a, b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    // A fixed pairwise tree over the lanes.
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            acc[l] += acc[l + width];
        }
    }
    let mut s = acc[0];
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y += a·x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    dispatch!(axpy_avx512, axpy_avx2, axpy_body, (a, x, y))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn axpy_avx512(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_body(a, x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_body(a, x, y)
}

#[inline(always)]
fn axpy_body(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_axpy_match_plain_loops() {
        for n in [0usize, 1, 7, 63, 64, 65, 768, 1000] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) / 4.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) / 8.0).collect();
            // Small integers over powers of two: every sum is exact, in any order.
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot(&a, &b), want, "n = {n}");
            assert_eq!(dot(&a, &b).to_bits(), dot_body(&a, &b).to_bits());
            let mut y = b.clone();
            axpy(0.5, &a, &mut y);
            let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| y + 0.5 * x).collect();
            assert_eq!(y, want);
        }
    }
}
