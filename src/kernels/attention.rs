//! Fused multi-head attention: reads q/k/v in place from the `[b, t, 3d]` projection (strided),
//! applies scale, mask and softmax per (batch, head) on a `t × t` scratch buffer, and writes
//! each head straight into its columns of `[b, t, d]`.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::{f32_slice, fast_path, rows};

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

    // size: about 100 lines, most of them the arguments of its two `gemm` calls.
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
    use crate::kernels::testing::{max_diff, randn};

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
