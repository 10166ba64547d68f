//! The row kernels of the fast engine ([`super::fast`]): the sparse layouts of the active
//! (token, feature) pairs, the residual gradient, column sums and counts. Every reduction runs
//! over fixed chunks of [`ROW_CHUNK`] rows in a fixed order, so results are deterministic.

use rayon::prelude::*;

use super::step::StepStats;
use crate::kernels::axpy;

/// Rows per task in row-parallel loops and reductions.
pub(super) const ROW_CHUNK: usize = 64;

/// CSR of the active pairs of `pre [rows, s]`: per row, feature indices and values.
pub(super) fn active_by_row(pre: &[f32], s: usize) -> Vec<(Vec<u32>, Vec<f32>)> {
    pre.par_chunks(s)
        .map(|r| {
            let mut idx = vec![];
            let mut val = vec![];
            for (i, &v) in r.iter().enumerate() {
                if v > 0.0 {
                    idx.push(i as u32);
                    val.push(v);
                }
            }
            (idx, val)
        })
        .collect()
}

/// `pre [rows, s]` holding the CSR `per_row`'s values and zeros elsewhere (what the dense step
/// reads after its ReLU).
pub(super) fn scatter_rows(pre: &mut Vec<f32>, per_row: &[(Vec<u32>, Vec<f32>)], s: usize) {
    grow(pre, per_row.len() * s);
    pre[..per_row.len() * s]
        .par_chunks_mut(s)
        .zip(per_row.par_iter())
        .for_each(|(row, (idx, val))| {
            row.fill(0.0);
            for (&i, &v) in idx.iter().zip(val) {
                row[i as usize] = v;
            }
        });
}

/// CSC of the CSR `per_row`: for each feature, its (token, f) entries in token order, as
/// (column pointers `[s + 1]`, tokens, values).
pub(super) fn by_feature(
    per_row: &[(Vec<u32>, Vec<f32>)],
    s: usize,
) -> (Vec<usize>, Vec<u32>, Vec<f32>) {
    let mut col_ptr = vec![0usize; s + 1];
    for (idx, _) in per_row {
        for &i in idx {
            col_ptr[i as usize + 1] += 1;
        }
    }
    for i in 0..s {
        col_ptr[i + 1] += col_ptr[i];
    }
    let nnz = col_ptr[s];
    let mut e_tok = vec![0u32; nnz];
    let mut e_f = vec![0f32; nnz];
    let mut fill = col_ptr.clone();
    for (t, (idx, val)) in per_row.iter().enumerate() {
        for (&i, &f) in idx.iter().zip(val) {
            let p = &mut fill[i as usize];
            e_tok[*p] = t as u32;
            e_f[*p] = f;
            *p += 1;
        }
    }
    (col_ptr, e_tok, e_f)
}

/// Turns `g = x̂ [rows, d]` into G = two_b·(x̂ − x) in place; returns Σ (x̂ − x)² (fixed
/// chunks, deterministic).
pub(super) fn residual_gradient(g: &mut [f32], x: &[f32], two_b: f32, d: usize) -> f64 {
    g.par_chunks_mut(d * ROW_CHUNK)
        .zip(x.par_chunks(d * ROW_CHUNK))
        .map(|(g, xr)| {
            let mut sq = 0f64;
            for (gi, &xi) in g.iter_mut().zip(xr) {
                let e = *gi - xi;
                sq += (e as f64) * (e as f64);
                *gi = two_b * e;
            }
            sq
        })
        .collect::<Vec<f64>>()
        .into_iter()
        .sum()
}

/// Per feature, the rows of `f [rows, s]` where it is positive (fixed chunks, deterministic).
pub(super) fn fired_counts(f: &[f32], s: usize) -> Vec<u32> {
    let parts: Vec<Vec<u32>> = f
        .par_chunks(s * ROW_CHUNK)
        .map(|c| {
            let mut n = vec![0u32; s];
            for r in c.chunks(s) {
                for (ni, &v) in n.iter_mut().zip(r) {
                    *ni += (v > 0.0) as u32;
                }
            }
            n
        })
        .collect();
    let mut n = vec![0u32; s];
    for p in parts {
        n.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    n
}

/// Column sums of `x [rows, n]` in f32 over fixed row chunks (deterministic).
pub(super) fn col_sums(x: &[f32], n: usize) -> Vec<f32> {
    let parts: Vec<Vec<f32>> = x
        .par_chunks(n * ROW_CHUNK)
        .map(|chunk| {
            let mut s = vec![0f32; n];
            for row in chunk.chunks(n) {
                s.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            s
        })
        .collect();
    let mut total = vec![0f32; n];
    for p in parts {
        total.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    total
}

/// A reconstruction's statistics from its rows: (squared error, L1 term, active features).
pub(super) fn reconstruction_stats(rows: usize, s: usize, per_row: Vec<RowStats>) -> StepStats {
    let mut stats = StepStats {
        rows,
        sq_err: 0.0,
        l1_sum: 0.0,
        active: 0,
        fired: vec![0; s],
        grad_norm: 0.0,
    };
    for (sq, l1, on) in per_row {
        stats.sq_err += sq;
        stats.l1_sum += l1;
        stats.active += on.len() as u64;
        for i in on {
            stats.fired[i as usize] += 1;
        }
    }
    stats
}

/// One row of [`reconstruction_stats`].
pub(super) type RowStats = (f64, f64, Vec<u32>);

/// `Σ (a − b)²` in f64.
pub(super) fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

pub(super) fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// `out −= Σ_i c_i · rows_i` (rows `[len(c), d]`), summed over fixed chunks of rows.
pub(super) fn subtract_weighted_rows(out: &mut [f32], c: &[f32], rows: &[f32], d: usize) {
    let parts: Vec<Vec<f32>> = rows
        .par_chunks(d * ROW_CHUNK)
        .zip(c.par_chunks(ROW_CHUNK))
        .map(|(r, c)| {
            let mut acc = vec![0f32; d];
            for (row, &ci) in r.chunks(d).zip(c) {
                axpy(ci, row, &mut acc);
            }
            acc
        })
        .collect();
    for p in parts {
        out.iter_mut().zip(&p).for_each(|(o, v)| *o -= v);
    }
}
