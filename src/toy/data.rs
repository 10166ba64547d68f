//! The toy data: x_i = Bernoulli(p)·U(0, 1), every feature independent, drawn on the host from a
//! seeded generator so that a seed gives the same batches on every device. The generator is
//! rand's `SmallRng` (fast; its stream may change with a new rand version).

use rand::rngs::SmallRng;
use rand::RngCore;

/// 2^-32: a u32 to [0, 1).
const UNIT: f32 = 1.0 / 4_294_967_296.0;

/// Fills `out` ([instances, batch, n], row-major) with one batch per instance; instance k's
/// features are each non-zero with probability `density[k]`.
pub fn sample_batch(
    rng: &mut SmallRng,
    density: &[f64],
    batch: usize,
    n: usize,
    out: &mut Vec<f32>,
) {
    out.clear();
    out.reserve(density.len() * batch * n);
    for &p in density {
        // Fires when the high 32 bits fall below p·2^32; the low 32 bits give the magnitude.
        let threshold = (p * 4_294_967_296.0).min(u64::MAX as f64) as u64;
        for _ in 0..batch * n {
            let r = rng.next_u64();
            let v = if r >> 32 < threshold {
                (r as u32 >> 8) as f32 * (UNIT * 256.0)
            } else {
                0.0
            };
            out.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn density_and_mean_match() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut x = Vec::new();
        sample_batch(&mut rng, &[0.1, 1.0], 20000, 5, &mut x);
        assert_eq!(x.len(), 2 * 20000 * 5);
        let (sparse, dense) = x.split_at(100000);
        let frac = sparse.iter().filter(|v| **v > 0.0).count() as f64 / 1e5;
        assert!((frac - 0.1).abs() < 0.01, "{frac}");
        let mean = dense.iter().map(|v| *v as f64).sum::<f64>() / 1e5;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
    }
}
