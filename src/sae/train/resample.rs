//! Resampling dead features (the unit-norm recipe).

use rand::{Rng, SeedableRng};

use super::source::Batches;
use crate::sae::config::TrainConfig;
use crate::sae::metrics::FeatureTracker;
use crate::sae::step::Engine;
use crate::sae::Result;

/// Towards Monosemanticity's resampling: features dead over the window get new directions
/// drawn from inputs the SAE reconstructs badly (probability ∝ loss²): decoder row = the unit
/// input direction (minus b_dec when centring), encoder row = that direction × 0.2 × the mean
/// encoder norm of live features, b_enc = 0, and their Adam moments reset. Returns how many.
pub(super) fn resample_dead(
    engine: &mut dyn Engine,
    features: &mut FeatureTracker,
    loader: &mut Batches,
    cfg: &TrainConfig,
    scale: f32,
    step: u64,
) -> Result<usize> {
    let dead: Vec<usize> = features
        .dead()
        .iter()
        .enumerate()
        .filter(|(_, &d)| d)
        .map(|(i, _)| i)
        .collect();
    if dead.is_empty() {
        return Ok(0);
    }
    let d = cfg.d_in;
    // Score inputs by squared reconstruction error.
    let mut xs = vec![];
    let mut losses = vec![];
    while losses.len() < cfg.resample_inputs {
        let Some((mut x, rows)) = loader.next_rows()? else {
            break;
        };
        x.iter_mut().for_each(|v| *v *= scale);
        let r = engine.reconstruct(&x, rows)?;
        for t in 0..rows {
            let e: f64 = (0..d)
                .map(|j| ((r.x_hat[t * d + j] - x[t * d + j]) as f64).powi(2))
                .sum();
            losses.push(e * e);
        }
        xs.extend_from_slice(&x);
    }
    let (mut sae, mut adam) = engine.snapshot()?;
    let total: f64 = losses.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return Ok(0);
    }
    let alive: Vec<usize> = (0..cfg.d_sae)
        .filter(|i| dead.binary_search(i).is_err())
        .collect();
    let enc_norm = if alive.is_empty() {
        1.0
    } else {
        alive
            .iter()
            .map(|&i| {
                sae.w_enc[i * d..(i + 1) * d]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f32>()
                    .sqrt()
            })
            .sum::<f32>()
            / alive.len() as f32
    };
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(crate::store::mix_seed(&[cfg.seed, 0x7265, step]));
    for &i in &dead {
        // Draw an input with probability ∝ loss².
        let mut u = rng.random::<f64>() * total;
        let mut pick = losses.len() - 1;
        for (k, l) in losses.iter().enumerate() {
            if u < *l {
                pick = k;
                break;
            }
            u -= l;
        }
        let mut v: Vec<f32> = xs[pick * d..(pick + 1) * d].to_vec();
        if sae.apply_b_dec_to_input {
            v.iter_mut().zip(&sae.b_dec).for_each(|(a, b)| *a -= b);
        }
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
        for (j, &vj) in v.iter().enumerate() {
            sae.w_dec[i * d + j] = vj / n;
            sae.w_enc[i * d + j] = vj / n * 0.2 * enc_norm;
        }
        sae.b_enc[i] = 0.0;
        for (k, range) in [
            (0, i * d..(i + 1) * d),
            (2, i * d..(i + 1) * d),
            (1, i..i + 1),
        ] {
            adam.m[k][range.clone()].fill(0.0);
            adam.v[k][range].fill(0.0);
        }
        features.reset_feature(i);
    }
    engine.restore(&sae, &adam)?;
    Ok(dead.len())
}
