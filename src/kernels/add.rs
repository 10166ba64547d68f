//! Residual add: `a + b` with `b` repeated along `a`'s leading axes, on the caller's rayon pool.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{f32_slice, fast_path, PAR_CHUNK};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{max_diff, randn};

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
}
