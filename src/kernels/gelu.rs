//! Fast CPU GELU kernels: the tanh approximation (GPT-2 "gelu_new") and the exact erf form
//! (BERT / DistilBERT), packaged as candle custom ops.
//!
//! candle's own `gelu()` / `gelu_erf()` run a single-threaded scalar loop that calls libm per
//! element. Here each element goes through a branch-free polynomial formulation that LLVM
//! auto-vectorises (AVX-512 or AVX2+FMA picked at run time on x86_64) and chunks are spread over the global
//! rayon pool.
//!
//! The arithmetic is done in f64 on purpose: in the negative tail GELU behaves like
//! `x·exp(-v)` with `v` up to ~100, so rounding `v` to f32 alone would cost ~1e-5 relative error.
//! With f64 intermediates the result is within about half an f32 ulp of the exact value. The
//! exception: with FMA, blocks of erf-GELU inputs that all lie in [-3, 3] (nearly all of them)
//! take an f32 form accurate to 5e-7 relative, at twice the lanes.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Error, Layout, Result, Shape, Tensor};
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::PAR_CHUNK;

/// GELU, tanh approximation: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (GPT-2 "gelu_new").
///
/// On CPU tensors of dtype f32/f16/bf16 this runs the vectorised multi-threaded kernel
/// (f16/bf16 are computed in f32 and rounded once); any other device or dtype falls back to
/// candle's `Tensor::gelu`. Inference only: the result carries no gradient.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    apply_gelu(x, GeluKind::Tanh)
}

/// Exact GELU: `0.5·x·(1 + erf(x/√2))` (BERT / DistilBERT).
///
/// On CPU tensors of dtype f32/f16/bf16 this runs the vectorised multi-threaded kernel
/// (f16/bf16 are computed in f32 and rounded once); any other device or dtype falls back to
/// candle's `Tensor::gelu_erf`. Inference only: the result carries no gradient.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    apply_gelu(x, GeluKind::Erf)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GeluKind {
    Tanh,
    Erf,
}

fn apply_gelu(x: &Tensor, kind: GeluKind) -> Result<Tensor> {
    let fast = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16);
    if !fast {
        // The custom op only has a CPU implementation; GPUs already have fused kernels.
        return match kind {
            GeluKind::Tanh => x.gelu(),
            GeluKind::Erf => x.gelu_erf(),
        };
    }
    // Backward is not implemented (inference only), hence `no_bwd`.
    x.contiguous()?.apply_op1_no_bwd(&GeluOp { kind })
}

struct GeluOp {
    kind: GeluKind,
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        match self.kind {
            GeluKind::Tanh => "fast-gelu-tanh",
            GeluKind::Erf => "fast-gelu-erf",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        // The public wrappers make the input contiguous, so strided inputs never reach here.
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("{}: input must be contiguous", self.name())
        };
        let range_err = || Error::msg(format!("{}: layout out of storage bounds", self.name()));
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(gelu_f32(
                self.kind,
                v.get(start..end).ok_or_else(range_err)?,
            )),
            CpuStorage::F16(v) => CpuStorage::F16(gelu_half(
                self.kind,
                v.get(start..end).ok_or_else(range_err)?,
            )),
            CpuStorage::BF16(v) => CpuStorage::BF16(gelu_half(
                self.kind,
                v.get(start..end).ok_or_else(range_err)?,
            )),
            other => bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((out, layout.shape().clone()))
    }
}

/// Elements converted per step for f16/bf16 (two f32 stack buffers of this size).
const HALF_BLOCK: usize = 1024;

fn gelu_f32(kind: GeluKind, xs: &[f32]) -> Vec<f32> {
    let n = xs.len();
    // Written through `MaybeUninit` to skip a zeroing pass over the output (~10% at GPT-2 sizes).
    let mut ys: Vec<f32> = Vec::with_capacity(n);
    let out = &mut ys.spare_capacity_mut()[..n];
    if n <= PAR_CHUNK {
        gelu_slice(kind, xs, out);
    } else {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(xs.par_chunks(PAR_CHUNK))
            .for_each(|(y, x)| gelu_slice(kind, x, y));
    }
    // SAFETY: `gelu_slice` writes every element of `out`, i.e. the first `n` slots of `ys`.
    unsafe { ys.set_len(n) };
    ys
}

fn gelu_half<T>(kind: GeluKind, xs: &[T]) -> Vec<T>
where
    T: Copy + Default + Send + Sync,
    [T]: HalfFloatSliceExt,
{
    let run = |x: &[T], y: &mut [T]| {
        let mut xf = [0f32; HALF_BLOCK];
        let mut yf = [0f32; HALF_BLOCK];
        for (xb, yb) in x.chunks(HALF_BLOCK).zip(y.chunks_mut(HALF_BLOCK)) {
            let n = xb.len();
            xb.convert_to_f32_slice(&mut xf[..n]);
            gelu_slice(kind, &xf[..n], &mut yf[..n]);
            yb.convert_from_f32_slice(&yf[..n]);
        }
    };
    let mut ys = vec![T::default(); xs.len()];
    if xs.len() <= PAR_CHUNK {
        run(xs, &mut ys);
    } else {
        ys.par_chunks_mut(PAR_CHUNK)
            .zip(xs.par_chunks(PAR_CHUNK))
            .for_each(|(y, x)| run(x, y));
    }
    ys
}

/// Single-threaded kernel over a slice, using the best instruction set available.
fn gelu_slice<O: OutElem>(kind: GeluKind, xs: &[f32], ys: &mut [O]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU features this function is compiled for were detected just above.
            unsafe { gelu_slice_avx512(kind, xs, ys) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU features this function is compiled for were detected just above.
            unsafe { gelu_slice_avx2_fma(kind, xs, ys) };
            return;
        }
    }
    // aarch64 always has a fused multiply-add instruction; elsewhere keep separate mul + add.
    gelu_slice_generic::<{ cfg!(target_arch = "aarch64") }, O>(kind, xs, ys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn gelu_slice_avx512<O: OutElem>(kind: GeluKind, xs: &[f32], ys: &mut [O]) {
    gelu_slice_generic::<true, O>(kind, xs, ys)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_slice_avx2_fma<O: OutElem>(kind: GeluKind, xs: &[f32], ys: &mut [O]) {
    gelu_slice_generic::<true, O>(kind, xs, ys)
}

/// The loops LLVM vectorises; the match is outside so each loop body is branch-free.
#[inline(always)]
fn gelu_slice_generic<const FMA: bool, O: OutElem>(kind: GeluKind, xs: &[f32], ys: &mut [O]) {
    match kind {
        GeluKind::Tanh => {
            for (y, &x) in ys.iter_mut().zip(xs) {
                y.put(gelu_tanh_scalar::<FMA>(x));
            }
        }
        GeluKind::Erf if FMA => {
            // Blocks that lie wholly in the f32 form's range take it (8 lanes instead of 4);
            // the rest, NaN and ±inf included, take the f64 form.
            for (yb, xb) in ys.chunks_mut(ERF_F32_BLOCK).zip(xs.chunks(ERF_F32_BLOCK)) {
                if xb
                    .iter()
                    .fold(true, |ok, x| ok & (x.abs() <= ERF_F32_RANGE))
                {
                    for (y, &x) in yb.iter_mut().zip(xb) {
                        y.put(gelu_erf_f32(x));
                    }
                } else {
                    for (y, &x) in yb.iter_mut().zip(xb) {
                        y.put(gelu_erf_scalar::<FMA>(x));
                    }
                }
            }
        }
        GeluKind::Erf => {
            for (y, &x) in ys.iter_mut().zip(xs) {
                y.put(gelu_erf_scalar::<FMA>(x));
            }
        }
    }
}

/// `|x|` up to which [`gelu_erf_f32`] is accurate; it covers nearly all pre-GELU activations.
const ERF_F32_RANGE: f32 = 3.0;
/// Elements checked against [`ERF_F32_RANGE`] at once.
const ERF_F32_BLOCK: usize = 64;

/// Output slot: plain `f32` or not-yet-initialised memory.
trait OutElem {
    fn put(&mut self, v: f32);
}

impl OutElem for f32 {
    #[inline(always)]
    fn put(&mut self, v: f32) {
        *self = v;
    }
}

impl OutElem for MaybeUninit<f32> {
    #[inline(always)]
    fn put(&mut self, v: f32) {
        self.write(v);
    }
}

/// `a·b + c`, fused only when the target has an FMA instruction (otherwise `mul_add` would be
/// a slow libm call that blocks vectorisation).
#[inline(always)]
fn madd<const FMA: bool>(a: f64, b: f64, c: f64) -> f64 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `0.5·x·(1 + tanh(u))` rewritten as `x / (1 + exp(-2u))`: same value, but no cancellation
/// in `1 + tanh(u)` for negative x.
#[inline(always)]
fn gelu_tanh_scalar<const FMA: bool>(x: f32) -> f32 {
    // 2·√(2/π) and 2·√(2/π)·0.044715.
    const K1: f64 = 1.595_769_121_605_730_8;
    const K3: f64 = K1 * 0.044715;
    let x = x as f64;
    // Below -12 the result underflows f32 anyway; clamping keeps -inf from giving -inf/inf = NaN.
    // Written as a select (not `max`) so NaN passes through.
    let xc = if x < -12.0 { -12.0 } else { x };
    let v = -xc * madd::<FMA>(K3, xc * xc, K1);
    // exp(-100) is negligible next to 1; the clamp keeps +inf / huge x inside exp's range.
    let v = if v < -100.0 { -100.0 } else { v };
    (xc / (1.0 + exp_f64::<FMA>(v))) as f32
}

/// `0.5·x·(1 + erf(x/√2))` via `erfc(|x|/√2)`, so the negative tail keeps full relative
/// accuracy: `0.5·x·erfc(t)` for x < 0 and `x·(1 − 0.5·erfc(t))` otherwise.
#[inline(always)]
fn gelu_erf_scalar<const FMA: bool>(x: f32) -> f32 {
    let x = x as f64;
    // gelu_erf(-14.3) is already below the smallest f32 subnormal; the clamp keeps -inf finite.
    let xc = if x < -15.0 { -15.0 } else { x };
    let t = (xc * std::f64::consts::FRAC_1_SQRT_2).abs();
    // erfc(10.6) ≈ 1e-50: plenty for both signs, and keeps t inside the fitted interval.
    let t = if t > 10.6 { 10.6 } else { t };
    let e = erfc_f64::<FMA>(t);
    let neg = 0.5 * xc * e;
    // `x * (1 - e/2)` rather than `x - x*e/2` so that +inf stays +inf instead of NaN.
    let pos = x * madd::<FMA>(-0.5, e, 1.0);
    (if x < 0.0 { neg } else { pos }) as f32
}

/// Exact GELU in f32 for `|x| ≤ 3`, relative error ≤ 5e-7 (half the f64 form's cost: twice the
/// lanes, no f64 division). Needs a fused multiply-add for the exact `x²` split below.
///
/// Same formulation as [`gelu_erf_scalar`], `erfc(t) = exp(-t²)·erfcx(t)` with `t = |x|/√2`,
/// but `t² = x²/2` is taken as `hi + lo` (exact, via FMA) so that `exp(-t²)` does not inherit
/// the rounding of `t`; `erfcx` on [0, 2.13] is a degree-7 polynomial in `s = (t − 2)/(t + 2)`
/// (relative-error fit against mpmath, 1.7e-8).
#[inline(always)]
fn gelu_erf_f32(x: f32) -> f32 {
    const R: [f32; 8] = [
        0.255_395_68,
        -0.427_185_8,
        0.241_664_13,
        -0.078_903_936,
        0.004_107_561,
        0.007_926_58,
        0.000_328_703_14,
        -0.000_340_794_7,
    ];
    let hi = x * x;
    let lo = x.mul_add(x, -hi);
    let e0 = exp_f32_small(-0.5 * hi);
    // exp(-(hi + lo)/2) = exp(-hi/2)·(1 − lo/2) to first order; |lo| ≤ half an ulp of hi.
    let e0 = e0.mul_add(-0.5 * lo, e0);
    let t = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let s = (t - 2.0) / (t + 2.0);
    let mut p = R[7];
    for &c in R[..7].iter().rev() {
        p = p.mul_add(s, c);
    }
    let e = e0 * p;
    if x < 0.0 {
        0.5 * x * e
    } else {
        x * (-0.5f32).mul_add(e, 1.0)
    }
}

/// `exp(v)` in f32 for `v` in [-4.5, 0] (relative error ≈ 1.5e-7): `v = n·ln2 + r` (Cody–Waite,
/// two-part ln2), a degree-5 minimax polynomial for `e^r`, `2^n` from bits.
#[inline(always)]
fn exp_f32_small(v: f32) -> f32 {
    // 1.5 · 2^23: adding it rounds to an integer.
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const C: [f32; 6] = [
        1.000_000_1,
        0.999_999_7,
        0.499_988_94,
        0.166_675_75,
        0.041_915_383,
        0.008_297_654,
    ];
    let kd = v.mul_add(std::f32::consts::LOG2_E, SHIFT);
    let n = kd - SHIFT;
    let r = n.mul_add(-LN2_HI, v);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = C[5];
    for &c in C[..5].iter().rev() {
        p = p.mul_add(r, c);
    }
    // The low bits of kd hold n; shifting n + 127 into the exponent field drops SHIFT's bits
    // (an `as i32` conversion would not vectorise: Rust's saturating cast is a scalar branch).
    p * f32::from_bits(kd.to_bits().wrapping_add(127) << 23)
}

/// `exp(v)` for finite `v` in roughly [-700, 700], relative error ~2e-9.
///
/// Reduction `v = n·ln2 + r` with |r| ≤ ln2/2, a degree-6 minimax polynomial for `e^r`, and
/// `2^n` assembled from bits. `n` is rounded with the 1.5·2^52 trick, so no float→int
/// conversion (which AVX2 lacks for f64 lanes) is needed. A single f64 `ln2` suffices: with
/// |n| ≤ 1024 the reduction error stays below 1e-13.
#[inline(always)]
fn exp_f64<const FMA: bool>(v: f64) -> f64 {
    // 1.5 · 2^52: adding it rounds to an integer and leaves that integer in the low bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    // Relative-error minimax fit of e^r on [-ln2/2, ln2/2] (max error 1.9e-9).
    const C: [f64; 7] = [
        1.000_000_000_554_168_7,
        1.000_000_036_323_190_2,
        0.499_999_920_797_878_25,
        0.166_664_201_698_839_97,
        0.041_668_225_575_733_77,
        0.008_374_815_801_935_581,
        0.001_383_684_565_277_249,
    ];
    let kd = madd::<FMA>(v, std::f64::consts::LOG2_E, SHIFT);
    let n = kd - SHIFT;
    let r = madd::<FMA>(n, -std::f64::consts::LN_2, v);
    let r2 = r * r;
    // Estrin's scheme: shorter dependency chains than Horner, so more elements overlap.
    let p01 = madd::<FMA>(C[1], r, C[0]);
    let p23 = madd::<FMA>(C[3], r, C[2]);
    let p45 = madd::<FMA>(C[5], r, C[4]);
    let p03 = madd::<FMA>(p23, r2, p01);
    let p46 = madd::<FMA>(C[6], r2, p45);
    let p = madd::<FMA>(p46, r2 * r2, p03);
    // The low bits of kd hold n (two's complement); shifting n + 1023 into the exponent field
    // drops the bits of SHIFT.
    let scale = f64::from_bits(kd.to_bits().wrapping_add(1023) << 52);
    p * scale
}

/// `erfc(t)` for t in [0, 10.61], relative error ~4e-9.
///
/// `erfc(t) = exp(-t²)·erfcx(t)`; the smooth, bounded `erfcx` is a degree-10 polynomial in
/// `s = (A·t − K)/(t + K)`, which maps [0, 10.61] onto [-1, 1] (K = 3). Coefficients are a
/// relative-error minimax fit (Lawson iteration against mpmath, max error 1.4e-9).
#[inline(always)]
fn erfc_f64<const FMA: bool>(t: f64) -> f64 {
    const K: f64 = 3.0;
    const A: f64 = 1.565_504_241_281_809_9;
    const P: [f64; 11] = [
        0.264_634_971_699_451_94,
        -0.358_417_374_234_615_5,
        0.223_961_822_039_102_95,
        -0.107_070_369_252_922_67,
        0.037_412_749_840_544_31,
        -0.008_336_111_272_816_44,
        0.000_529_167_902_766_940_5,
        0.000_304_969_475_317_065_64,
        -7.227_952_559_798_502e-5,
        -1.003_386_235_848_280_4e-5,
        4.650_317_941_865_684e-6,
    ];
    let s = madd::<FMA>(A, t, -K) / (t + K);
    // Estrin's scheme, as in `exp_f64`.
    let s2 = s * s;
    let s4 = s2 * s2;
    let q01 = madd::<FMA>(P[1], s, P[0]);
    let q23 = madd::<FMA>(P[3], s, P[2]);
    let q45 = madd::<FMA>(P[5], s, P[4]);
    let q67 = madd::<FMA>(P[7], s, P[6]);
    let q89 = madd::<FMA>(P[9], s, P[8]);
    let q03 = madd::<FMA>(q23, s2, q01);
    let q47 = madd::<FMA>(q67, s2, q45);
    let q810 = madd::<FMA>(P[10], s2, q89);
    let q07 = madd::<FMA>(q47, s4, q03);
    let p = madd::<FMA>(q810, s4 * s4, q07);
    exp_f64::<FMA>(-t * t) * p
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use half::{bf16, f16};

    fn ref_tanh(x: f64) -> f64 {
        // x·sigmoid(2u): identical to 0.5·x·(1 + tanh(u)) but free of cancellation for x < 0.
        let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
        x / (1.0 + (-2.0 * u).exp())
    }

    fn ref_erf(x: f64) -> f64 {
        0.5 * x * candle_core::cpu::erf::erfc_f64(-x * std::f64::consts::FRAC_1_SQRT_2)
    }

    /// Points to check: a dense sweep of [-20, 20], the f32 values around a few breakpoints,
    /// tiny and huge magnitudes.
    fn sweep_points() -> Vec<f32> {
        let mut xs: Vec<f32> = (-(20 << 14)..=(20 << 14))
            .map(|i| i as f32 / (1 << 14) as f32)
            .collect();
        for c in [-15.0f32, -14.3, -12.0, -10.5, -1.0, 0.0, 1.0, 7.5] {
            let b = c.to_bits();
            xs.extend((0..2000u32).map(|d| f32::from_bits(b.wrapping_add(d))));
            xs.extend((0..2000u32).map(|d| f32::from_bits(b.wrapping_sub(d))));
        }
        for e in -149..=127 {
            let p = 2f64.powi(e) as f32;
            xs.extend([p, -p, 1.7 * p, -1.7 * p]);
        }
        xs.extend([f32::MAX, -f32::MAX, f32::MIN_POSITIVE, -f32::MIN_POSITIVE]);
        xs.retain(|x| x.is_finite());
        xs
    }

    /// Returns (max abs error for |x| ≤ 1, max rel error elsewhere) and asserts the bounds.
    fn check(name: &str, xs: &[f32], ys: &[f32], reference: fn(f64) -> f64) -> (f64, f64) {
        let (mut max_abs, mut max_rel) = (0f64, 0f64);
        for (&x, &y) in xs.iter().zip(ys) {
            let r = reference(x as f64);
            let err = (y as f64 - r).abs();
            if x.abs() <= 1.0 {
                max_abs = max_abs.max(err);
                assert!(err <= 1e-6, "{name}: x={x:e} got {y:e} want {r:e}");
            } else if r.abs() >= f32::MIN_POSITIVE as f64 {
                let rel = err / r.abs();
                max_rel = max_rel.max(rel);
                assert!(
                    rel <= 1e-6,
                    "{name}: x={x:e} got {y:e} want {r:e} rel {rel:e}"
                );
            } else {
                // Subnormal / underflowing results: within one subnormal step.
                assert!(
                    err <= 2f64.powi(-149),
                    "{name}: x={x:e} got {y:e} want {r:e}"
                );
            }
        }
        (max_abs, max_rel)
    }

    fn run_generic<const FMA: bool>(kind: GeluKind, xs: &[f32]) -> Vec<f32> {
        let mut ys = vec![0f32; xs.len()];
        gelu_slice_generic::<FMA, f32>(kind, xs, &mut ys);
        ys
    }

    #[test]
    fn reference_is_sane() {
        // The cancellation-free tanh reference matches the literal formula where the latter is
        // well conditioned.
        for i in -3000..=3000 {
            let x = i as f64 / 1000.0;
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            let lit = 0.5 * x * (1.0 + u.tanh());
            assert!(
                (ref_tanh(x) - lit).abs() <= 1e-12 * lit.abs().max(1e-3),
                "x={x}"
            );
        }
        assert!((ref_erf(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
    }

    /// The f32 form on every 2^-16 step of [-3, 3] plus the f32 values around 0 and ±3,
    /// against the f64 reference, tighter than the sweep's bound.
    #[test]
    fn erf_f32_form_is_accurate_on_its_range() {
        let mut xs: Vec<f32> = (-(3 << 16)..=(3 << 16))
            .map(|i| i as f32 / (1 << 16) as f32)
            .collect();
        for c in [-3.0f32, 0.0, 3.0] {
            xs.extend((0..5000u32).map(|d| f32::from_bits(c.to_bits().wrapping_add(d))));
            xs.extend((0..5000u32).map(|d| f32::from_bits(c.to_bits().wrapping_sub(d))));
        }
        xs.retain(|x| x.abs() <= ERF_F32_RANGE);
        let mut max_rel = 0f64;
        for &x in &xs {
            let (y, r) = (gelu_erf_f32(x) as f64, ref_erf(x as f64));
            let err = (y - r).abs();
            if r.abs() < f32::MIN_POSITIVE as f64 {
                // Subnormal results (tiny x): within one subnormal step.
                assert!(err <= 2f64.powi(-149), "x={x:e} got {y:e} want {r:e}");
                continue;
            }
            max_rel = max_rel.max(err / r.abs());
            assert!(err <= 5e-7 * r.abs(), "x={x:e} got {y:e} want {r:e}");
        }
        eprintln!(
            "erf f32 form: max rel {max_rel:.3e} over {} points",
            xs.len()
        );
    }

    /// A block wholly inside the f32 range takes the f32 form; one value outside sends the
    /// whole block to the f64 form.
    #[test]
    fn erf_blocks_pick_their_form() {
        let inside: Vec<f32> = (0..ERF_F32_BLOCK).map(|i| i as f32 / 11.0 - 2.9).collect();
        let want: Vec<f32> = inside.iter().map(|&x| gelu_erf_f32(x)).collect();
        assert_eq!(run_generic::<true>(GeluKind::Erf, &inside), want);
        let mut outside = inside.clone();
        outside[17] = 3.5;
        let want: Vec<f32> = outside
            .iter()
            .map(|&x| gelu_erf_scalar::<true>(x))
            .collect();
        assert_eq!(run_generic::<true>(GeluKind::Erf, &outside), want);
        // The two forms differ somewhere, so the comparisons above can tell them apart.
        assert!(inside
            .iter()
            .any(|&x| gelu_erf_f32(x) != gelu_erf_scalar::<true>(x)));
    }

    #[test]
    fn accuracy_sweep() {
        let xs = sweep_points();
        type Reference = fn(f64) -> f64;
        let cases: [(&str, GeluKind, Reference); 2] = [
            ("tanh", GeluKind::Tanh, ref_tanh),
            ("erf", GeluKind::Erf, ref_erf),
        ];
        for (name, kind, reference) in cases {
            let dispatched = gelu_f32(kind, &xs);
            let (a, r) = check(name, &xs, &dispatched, reference);
            eprintln!("{name} dispatched: max abs (|x|<=1) {a:.3e}, max rel {r:.3e}");
            let plain = run_generic::<false>(kind, &xs);
            let (a, r) = check(name, &xs, &plain, reference);
            eprintln!("{name} no-fma:     max abs (|x|<=1) {a:.3e}, max rel {r:.3e}");
            let fused = run_generic::<true>(kind, &xs);
            let (a, r) = check(name, &xs, &fused, reference);
            eprintln!("{name} fma:        max abs (|x|<=1) {a:.3e}, max rel {r:.3e}");
        }
    }

    #[test]
    fn special_values() -> Result<()> {
        let xs = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            0.0,
            -0.0,
            -1e30,
            1e30,
        ];
        let t = Tensor::new(&xs[..], &Device::Cpu)?;
        for f in [gelu_tanh, gelu_erf] {
            let y = f(&t)?.to_vec1::<f32>()?;
            assert_eq!(y[0], f32::INFINITY);
            assert_eq!(y[1], 0.0);
            assert!(y[2].is_nan());
            assert_eq!(y[3].to_bits(), 0f32.to_bits());
            assert_eq!(y[4], 0.0);
            assert_eq!(y[5], 0.0);
            assert_eq!(y[6], 1e30);
        }
        Ok(())
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        let d = (a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?;
        d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn matches_candle_on_random_normal() -> Result<()> {
        // Large enough to take the parallel path.
        let x = Tensor::randn(0f32, 3.0, (257, 1031), &Device::Cpu)?;
        assert!(max_abs_diff(&gelu_tanh(&x)?, &x.gelu()?)? <= 1e-5);
        assert!(max_abs_diff(&gelu_erf(&x)?, &x.gelu_erf()?)? <= 1e-5);
        let small = Tensor::randn(0f32, 1.0, (3, 7), &Device::Cpu)?;
        assert!(max_abs_diff(&gelu_tanh(&small)?, &small.gelu()?)? <= 1e-5);
        assert!(max_abs_diff(&gelu_erf(&small)?, &small.gelu_erf()?)? <= 1e-5);
        Ok(())
    }

    #[test]
    fn non_contiguous_input() -> Result<()> {
        let x = Tensor::randn(0f32, 2.0, (96, 70), &Device::Cpu)?.t()?;
        assert!(!x.is_contiguous());
        let xc = x.contiguous()?;
        for f in [gelu_tanh, gelu_erf] {
            let (a, b) = (f(&x)?, f(&xc)?);
            assert_eq!(a.dims(), &[70, 96]);
            assert_eq!(max_abs_diff(&a, &b)?, 0.0);
        }
        assert!(max_abs_diff(&gelu_tanh(&x)?, &x.gelu()?)? <= 1e-5);
        assert!(max_abs_diff(&gelu_erf(&x)?, &x.gelu_erf()?)? <= 1e-5);
        Ok(())
    }

    #[test]
    fn half_inputs() -> Result<()> {
        // 40_000 elements: crosses both the block and the parallel-chunk sizes.
        let x32 = Tensor::randn(0f32, 2.0, (200, 200), &Device::Cpu)?;
        for dtype in [DType::F16, DType::BF16] {
            let x = x32.to_dtype(dtype)?;
            // Computing in f32 and rounding once must equal our f32 kernel rounded.
            let want = gelu_tanh(&x.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
            assert_eq!(max_abs_diff(&gelu_tanh(&x)?, &want)?, 0.0);
            let want = gelu_erf(&x.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
            assert_eq!(max_abs_diff(&gelu_erf(&x)?, &want)?, 0.0);
            // candle evaluates tanh-GELU in half arithmetic, so allow a few half ulps of |x|.
            let tol = if dtype == DType::F16 { 2e-2 } else { 1e-1 };
            assert!(max_abs_diff(&gelu_tanh(&x)?, &x.gelu()?)? <= tol);
            assert!(max_abs_diff(&gelu_erf(&x)?, &x.gelu_erf()?)? <= tol);
            assert_eq!(gelu_tanh(&x)?.dtype(), dtype);
        }
        // Exact spot check against a correctly rounded value.
        let x = Tensor::new(&[f16::from_f32(1.0)], &Device::Cpu)?;
        assert_eq!(
            gelu_erf(&x)?.to_vec1::<f16>()?[0],
            f16::from_f64(0.841_344_746_068_542_9)
        );
        let x = Tensor::new(&[bf16::from_f32(1.0)], &Device::Cpu)?;
        assert_eq!(
            gelu_erf(&x)?.to_vec1::<bf16>()?[0],
            bf16::from_f64(0.841_344_746_068_542_9)
        );
        Ok(())
    }

    #[test]
    fn empty_tensor() -> Result<()> {
        for shape in [vec![0usize], vec![0, 5], vec![3, 0, 2]] {
            let x = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?;
            assert_eq!(gelu_tanh(&x)?.dims(), shape.as_slice());
            assert_eq!(gelu_erf(&x)?.dims(), shape.as_slice());
        }
        Ok(())
    }

    #[test]
    fn other_dtypes_fall_back_to_candle() -> Result<()> {
        let x = Tensor::new(&[-1.5f64, 0.25, 3.0], &Device::Cpu)?;
        let d = (gelu_tanh(&x)? - x.gelu()?)?
            .abs()?
            .max(0)?
            .to_scalar::<f64>()?;
        assert_eq!(d, 0.0);
        Ok(())
    }
}
