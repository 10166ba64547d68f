//! Fused CPU kernels for the forward pass: linear with bias, two-pass LayerNorm, and attention.
//!
//! Why: at GPT-2-small sizes the matmuls already run at the CPU's limit, so the forward pass is
//! only as fast as everything around them. These ops remove whole passes over memory: the bias is
//! written into the GEMM destination before accumulation; attention reads q/k/v in place from the
//! `[b, t, 3d]` projection (strided), applies scale, mask and softmax per (batch, head) on a
//! `t × t` scratch buffer, and writes each head straight into its columns of `[b, t, d]`.
//! LayerNorm computes the variance in two passes like PyTorch (candle's one-pass
//! `E[x²] − mean²` loses precision on GPT-2's large residual dimensions).
//!
//! Each op has a CPU f32 fast path and a plain candle-ops path that runs on every device and
//! dtype; tests check that the two agree. Inference only: no backward.

use std::mem::MaybeUninit;

use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape,
    Tensor, D,
};
use gemm::{gemm, Parallelism};

use super::kernels::PAR_CHUNK;
use super::rows;
use rayon::prelude::*;

/// Which keys each query may attend to: key padding (1 = token, 0 = padding) and causality.
pub struct AttnMask {
    pub causal: bool,
    /// `[b][t]`, 1 = real token.
    pub keys: Vec<Vec<u8>>,
}

impl AttnMask {
    /// The additive f32 mask for the plain path: `[b, 1, t, t]` (causal) or `[b, 1, 1, t]`.
    fn additive(&self, device: &candle_core::Device) -> Result<Tensor> {
        const BLOCKED: f32 = -1e30; // finite, so a fully masked padding row stays finite
        let b = self.keys.len();
        let t = self.keys.first().map_or(0, Vec::len);
        if self.causal {
            let mut m = vec![0f32; b * t * t];
            for (bi, row) in self.keys.iter().enumerate() {
                for i in 0..t {
                    for (j, &keep) in row.iter().enumerate() {
                        if j > i || keep == 0 {
                            m[(bi * t + i) * t + j] = BLOCKED;
                        }
                    }
                }
            }
            Tensor::from_vec(m, (b, 1, t, t), device)
        } else {
            let m: Vec<f32> = self
                .keys
                .iter()
                .flat_map(|row| row.iter().map(|&k| if k == 0 { BLOCKED } else { 0.0 }))
                .collect();
            Tensor::from_vec(m, (b, 1, 1, t), device)
        }
    }
}

fn threads() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// `dst[m,n] (+)= lhs[m,k] · rhs[k,n]` with explicit (row, column) strides of each operand.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(dst.len() >= m * n);
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // Safety: the asserts above keep every strided access inside the slices.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads(),
        );
    }
}

fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

fn f32_slice<'a>(s: &'a CpuStorage, name: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        _ => candle_core::bail!("{name}: fused kernel expects f32, got {:?}", s.dtype()),
    }
}

// ---- linear ------------------------------------------------------------------------------------

/// `x [.., in] · w [in, out] + b [out]`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d_in = x.dim(D::Minus1)?;
    let rows = x.elem_count() / d_in.max(1);
    let x2 = x.reshape((rows, d_in))?;
    let y = if fast_path(x) && fast_path(w) && fast_path(b) {
        x2.apply_op3_no_bwd(w, b, &LinearBias)?
    } else {
        x2.matmul(w)?.broadcast_add(b)?
    };
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = w.dim(1)?;
    }
    y.reshape(dims)
}

struct LinearBias;

impl CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        "linear-bias"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (
            f32_slice(xs, "x")?,
            f32_slice(ws, "w")?,
            f32_slice(bs, "b")?,
        );
        let (m, k) = xl.shape().dims2()?;
        let (k2, n) = wl.shape().dims2()?;
        if k != k2 || bl.shape().dims() != [n] {
            candle_core::bail!(
                "linear-bias: shapes {:?} {:?} {:?}",
                xl.dims(),
                wl.dims(),
                bl.dims()
            );
        }
        let Some((b0, b1)) = bl.contiguous_offsets() else {
            candle_core::bail!("linear-bias: bias must be contiguous")
        };
        let bias = &b[b0..b1];
        // dst starts as the bias rows; the GEMM accumulates x·w on top (read_dst = true).
        let mut dst = Vec::with_capacity(m * n);
        for _ in 0..m {
            dst.extend_from_slice(bias);
        }
        let (xs_, ws_) = (xl.stride(), wl.stride());
        matmul(
            (m, n, k),
            &mut dst,
            true,
            &x[xl.start_offset()..],
            (xs_[0], xs_[1]),
            &w[wl.start_offset()..],
            (ws_[0], ws_[1]),
        );
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

// ---- residual add ------------------------------------------------------------------------------

/// `a + b`, where `b` has `a`'s shape or repeats along `a`'s leading axes (`[1, t, d]` or `[d]` on
/// `[b, t, d]`: position embeddings). Why not candle's `+`: candle runs large elementwise ops on
/// its own pool of spinning threads, behind one lock, which competes for the cores with the
/// per-sequence forward threads (split.rs). This runs on the caller's rayon pool like every other
/// kernel here.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let kept = b.dims().iter().skip_while(|&&d| d == 1).count();
    let repeats = a.dims().ends_with(&b.dims()[b.rank() - kept..]);
    if fast_path(a) && fast_path(b) && a.is_contiguous() && b.is_contiguous() && repeats {
        a.apply_op2_no_bwd(b, &RepeatAdd)
    } else {
        a.broadcast_add(b)
    }
}

struct RepeatAdd;

impl CustomOp2 for RepeatAdd {
    fn name(&self) -> &'static str {
        "repeat-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("repeat-add: operands must be contiguous")
        };
        let (x, y) = (&f32_slice(s1, "a")?[a0..a1], &f32_slice(s2, "b")?[b0..b1]);
        if y.is_empty() || x.len() % y.len() != 0 {
            candle_core::bail!("repeat-add: shapes {:?} {:?}", l1.dims(), l2.dims());
        }
        let n = x.len();
        let mut out: Vec<f32> = Vec::with_capacity(n);
        out.spare_capacity_mut()[..n]
            .par_chunks_mut(PAR_CHUNK)
            .zip(x.par_chunks(PAR_CHUNK))
            .enumerate()
            .for_each(|(i, (o, x))| repeat_add(o, x, y, i * PAR_CHUNK));
        // SAFETY: `repeat_add` writes every element of each chunk, so all `n` slots.
        unsafe { out.set_len(n) };
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `out[i] = x[i] + y[(start + i) % y.len()]`, in runs that the compiler vectorises.
fn repeat_add(out: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32], start: usize) {
    let mut j = start % y.len();
    let mut done = 0;
    while done < out.len() {
        let len = (y.len() - j).min(out.len() - done);
        let runs = out[done..done + len]
            .iter_mut()
            .zip(&x[done..done + len])
            .zip(&y[j..j + len]);
        for ((o, a), b) in runs {
            o.write(a + b);
        }
        done += len;
        j = 0;
    }
}

// ---- LayerNorm ---------------------------------------------------------------------------------

/// LayerNorm over the last dimension, variance in two passes (as PyTorch). Any dtype in, same out;
/// computed in f32.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?;
    let (w32, b32) = (w.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
    let y = if x32.device().is_cpu() {
        x32.contiguous()?
            .apply_op3_no_bwd(&w32, &b32, &TwoPassLayerNorm(eps as f32))?
    } else {
        let mean = x32.mean_keepdim(D::Minus1)?;
        let centred = x32.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + eps)?.sqrt()?)?
            .broadcast_mul(&w32)?
            .broadcast_add(&b32)?
    };
    y.to_dtype(dtype)
}

struct TwoPassLayerNorm(f32);

impl CustomOp3 for TwoPassLayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm-two-pass"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let contiguous = |s: &'_ CpuStorage, l: &Layout, name: &str| -> Result<Vec<f32>> {
            let v = f32_slice(s, name)?;
            match l.contiguous_offsets() {
                Some((a, z)) => Ok(v[a..z].to_vec()),
                None => candle_core::bail!("layer-norm: {name} must be contiguous"),
            }
        };
        let x = f32_slice(xs, "x")?;
        let Some((a, z)) = xl.contiguous_offsets() else {
            candle_core::bail!("layer-norm: input must be contiguous")
        };
        let x = &x[a..z];
        let (w, b) = (contiguous(ws, wl, "weight")?, contiguous(bs, bl, "bias")?);
        let d = w.len();
        let eps = self.0;
        let mut dst = vec![0f32; x.len()];
        // Blocks of rows per rayon task: one row alone is too little work to schedule.
        let block = d.max(1) * 32;
        dst.par_chunks_mut(block)
            .zip(x.par_chunks(block))
            .for_each(|(out, rows)| rows::layer_norm_rows(rows, &w, &b, eps, out));
        Ok((CpuStorage::F32(dst), xl.shape().clone()))
    }
}

// ---- attention ---------------------------------------------------------------------------------

/// Multi-head attention. `q, k, v`: `[b, t, h·hd]`, any row stride (e.g. views into a fused
/// `[b, t, 3d]` projection), last stride 1. Scores are scaled by `scale`, masked by `mask`, and
/// softmaxed in f32. Returns `[b, t, h·hd]` contiguous.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    n_heads: usize,
    scale: f64,
    mask: &AttnMask,
) -> Result<Tensor> {
    let unit_last = |x: &Tensor| x.stride().last() == Some(&1);
    if fast_path(q) && fast_path(k) && fast_path(v) && unit_last(q) && unit_last(k) && unit_last(v)
    {
        return q.apply_op3_no_bwd(
            k,
            v,
            &FusedAttention {
                n_heads,
                scale: scale as f32,
                mask,
            },
        );
    }
    // Plain path: split heads, scores, additive mask, softmax, weighted sum.
    let (b, t, d) = q.dims3()?;
    let hd = d / n_heads;
    let split = |x: &Tensor| {
        x.reshape((b, t, n_heads, hd))?
            .transpose(1, 2)?
            .contiguous()
    }; // [b, h, t, hd]
    let (qh, kh, vh) = (split(q)?, split(k)?, split(v)?);
    let dtype = q.dtype();
    let scores = qh.matmul(&kh.t()?)?.to_dtype(DType::F32)?; // [b, h, t, t]
    let scores = (scores * scale)?.broadcast_add(&mask.additive(q.device())?)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs
        .matmul(&vh)? // [b, h, t, hd]
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, t, d))
}

struct FusedAttention<'a> {
    n_heads: usize,
    scale: f32,
    mask: &'a AttnMask,
}

impl CustomOp3 for FusedAttention<'_> {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, d) = ql.shape().dims3()?;
        if kl.dims() != [b, t, d] || vl.dims() != [b, t, d] {
            candle_core::bail!("fused-attention: q/k/v shapes differ");
        }
        if self.mask.keys.len() != b || self.mask.keys.iter().any(|r| r.len() != t) {
            candle_core::bail!("fused-attention: mask is not [{b}, {t}]");
        }
        let h = self.n_heads;
        let hd = d / h;
        // Base pointers (as addresses, so the closure is Send) and batch/row strides.
        let view = |s: &CpuStorage, l: &Layout, name: &str| -> Result<(usize, usize, usize)> {
            let v = f32_slice(s, name)?;
            let st = l.stride();
            Ok((v[l.start_offset()..].as_ptr() as usize, st[0], st[1]))
        };
        let (qp, qbs, qrs) = view(qs, ql, "q")?;
        let (kp, kbs, krs) = view(ks, kl, "k")?;
        let (vp, vbs, vrs) = view(vs, vl, "v")?;
        let mut out = vec![0f32; b * t * d];
        let op = out.as_mut_ptr() as usize;
        let (causal, scale) = (self.mask.causal, self.scale);
        // Per batch row: 0 for a real key, −∞ for padding (added to the scores before softmax).
        let key_bias: Vec<Vec<f32>> = (self.mask.keys.iter())
            .map(|r| {
                r.iter()
                    .map(|&k| if k == 1 { 0.0 } else { f32::NEG_INFINITY })
                    .collect()
            })
            .collect();
        (0..b * h).into_par_iter().for_each_init(
            || vec![0f32; t * t],
            |scores, bh| {
                let (bi, hi) = (bh / h, bh % h);
                let f = std::mem::size_of::<f32>();
                let q = (qp + (bi * qbs + hi * hd) * f) as *const f32;
                let k = (kp + (bi * kbs + hi * hd) * f) as *const f32;
                let v = (vp + (bi * vbs + hi * hd) * f) as *const f32;
                let o = (op + (bi * t * d + hi * hd) * f) as *mut f32;
                // Safety: every pointer stays inside its storage (shapes checked above); each
                // (batch, head) writes a disjoint block of columns of `out`.
                unsafe {
                    // scores [t, t] = scale · q [t, hd] · kᵀ [hd, t]
                    gemm(
                        t,
                        t,
                        hd,
                        scores.as_mut_ptr(),
                        1,
                        t as isize,
                        false,
                        q,
                        1,
                        qrs as isize,
                        k,
                        krs as isize,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                rows::masked_softmax_rows(scores, &key_bias[bi], causal);
                unsafe {
                    // out [t, hd] (row stride d) = probs [t, t] · v [t, hd]
                    gemm(
                        t,
                        hd,
                        t,
                        o,
                        1,
                        d as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        t as isize,
                        v,
                        1,
                        vrs as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, t, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn add_matches_candle_for_equal_and_repeated_shapes() {
        let a = randn(&[3, 7, 5000], 1); // more than one rayon chunk, not a multiple of one
        for shape in [&[3, 7, 5000][..], &[1, 7, 5000], &[5000], &[1, 1, 1]] {
            let b = randn(shape, 2);
            let ours = add(&a, &b).unwrap();
            assert_eq!(ours.dims(), a.dims());
            assert_eq!(
                max_diff(&ours, &a.broadcast_add(&b).unwrap()),
                0.0,
                "{shape:?}"
            );
        }
        // Not a repeat along leading axes: candle's broadcasting handles it.
        let col = randn(&[3, 7, 1], 3);
        let ours = add(&a, &col).unwrap();
        assert_eq!(max_diff(&ours, &a.broadcast_add(&col).unwrap()), 0.0);
    }

    #[test]
    fn linear_fast_path_matches_plain_ops() {
        let x = randn(&[3, 5, 16], 1);
        let w = randn(&[16, 24], 2);
        let b = randn(&[24], 3);
        let fast = linear(&x, &w, &b).unwrap();
        let plain = x
            .reshape((15, 16))
            .unwrap()
            .matmul(&w)
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert!(max_diff(&fast.reshape((15, 24)).unwrap(), &plain) < 1e-5);
        // Transposed (strided) weights take the same path.
        let wt = randn(&[24, 16], 4);
        let fast = linear(&x, &wt.t().unwrap(), &b).unwrap();
        let plain = x
            .reshape((15, 16))
            .unwrap()
            .matmul(&wt.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        assert!(max_diff(&fast.reshape((15, 24)).unwrap(), &plain) < 1e-5);
    }

    #[test]
    fn two_pass_layer_norm_is_exact_on_large_offsets() {
        // A row with a large common offset: one-pass variance in f32 loses it entirely.
        let x = (randn(&[4, 64], 5) + 3000.0).unwrap();
        let w = Tensor::ones(64, DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(64, DType::F32, &Device::Cpu).unwrap();
        let ours = layer_norm(&x, &w, &b, 1e-5).unwrap();
        let x64 = x.to_dtype(DType::F64).unwrap();
        let mean = x64.mean_keepdim(1).unwrap();
        let c = x64.broadcast_sub(&mean).unwrap();
        let var = c.sqr().unwrap().mean_keepdim(1).unwrap();
        let want = c
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap();
        let want = want.to_dtype(DType::F32).unwrap();
        assert!(max_diff(&ours, &want) < 2e-3, "{}", max_diff(&ours, &want));
    }

    #[test]
    fn fused_attention_matches_plain_path_with_padding_and_strided_views() {
        let (b, t, h, hd) = (2, 7, 3, 4);
        let d = h * hd;
        let qkv = randn(&[b, t, 3 * d], 6);
        let (q, k, v) = (
            qkv.narrow(2, 0, d).unwrap(),
            qkv.narrow(2, d, d).unwrap(),
            qkv.narrow(2, 2 * d, d).unwrap(),
        );
        for causal in [true, false] {
            let mask = AttnMask {
                causal,
                keys: vec![vec![1; t], vec![1, 1, 1, 1, 0, 0, 0]],
            };
            let fast = attention(&q, &k, &v, h, 0.5, &mask).unwrap();
            // Force the plain path with contiguous f64 copies.
            let f64c = |x: &Tensor| x.to_dtype(DType::F64).unwrap().contiguous().unwrap();
            let plain = attention(&f64c(&q), &f64c(&k), &f64c(&v), h, 0.5, &mask)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            // Compare real query rows only (padding rows are defined differently).
            for bi in 0..b {
                let n = mask.keys[bi].iter().filter(|&&m| m == 1).count();
                let a = fast.narrow(0, bi, 1).unwrap().narrow(1, 0, n).unwrap();
                let p = plain.narrow(0, bi, 1).unwrap().narrow(1, 0, n).unwrap();
                assert!(max_diff(&a, &p) < 1e-5, "causal={causal} batch {bi}");
            }
        }
    }
}
