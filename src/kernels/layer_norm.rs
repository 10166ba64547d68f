//! LayerNorm over the last dimension with the variance in two passes like PyTorch: candle's
//! one-pass `E[x²] − mean²` loses precision on GPT-2's large residual dimensions.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use super::{f32_slice, rows};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{max_diff, randn};
    use candle_core::Device;

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
}
