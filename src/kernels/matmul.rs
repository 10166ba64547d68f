//! GEMM wrappers: a strided `matmul` on f32 slices (the sparse SAE engine and the analyses call
//! it directly) and `linear`, a linear layer whose bias is written into the GEMM destination
//! before accumulation (one pass over memory fewer than matmul then add).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use gemm::{gemm, Parallelism};

use super::{f32_slice, fast_path};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{max_diff, randn};

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
}
