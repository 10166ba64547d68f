//! Downstream evaluation: splice the SAE's reconstruction into the model at its hook and measure
//! what the model loses (GPT-2).
//!
//! Over the stored contexts of the chosen shards (token ids read back from the shards):
//! - CE clean / with SAE / zero-ablated: mean next-token cross-entropy (nats) over every real
//!   position that has a next token;
//! - CE loss recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean);
//! - KL score = 1 − KL_sae / KL_zero, KL = mean over the same positions of
//!   KL(p_clean ‖ p_patched) of the next-token distributions.
//!
//! Special-token rows (BOS) keep their clean value under both patches, as they are excluded from
//! training; padding is masked.

use arrow_array::{Array, BooleanArray, UInt32Array, UInt64Array};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use super::model::Sae;
use super::{Result, SaeError};
use crate::models::hooks::HookPoint;
use crate::models::{Model, Splice};
use crate::store::Dataset;

/// The downstream numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownstreamReport {
    pub contexts: usize,
    /// Positions scored.
    pub tokens: u64,
    pub ce_clean: f64,
    pub ce_sae: f64,
    pub ce_zero: f64,
    /// `None` (JSON null) when zero-ablation does not raise the loss (CE_zero ≤ CE_clean): the
    /// ratio then measures nothing.
    pub ce_recovered: Option<f64>,
    pub kl_sae: f64,
    pub kl_zero: f64,
    pub kl_score: f64,
}

/// CE loss recovered, `(CE_zero − CE_sae) / (CE_zero − CE_clean)`; undefined (`None`) unless
/// zero-ablation raises the loss.
pub fn ce_recovered(ce_clean: f64, ce_sae: f64, ce_zero: f64) -> Option<f64> {
    (ce_zero > ce_clean).then(|| (ce_zero - ce_sae) / (ce_zero - ce_clean))
}

/// One stored context: token ids and special flags, in position order.
struct StoredContext {
    ids: Vec<u32>,
    special: Vec<bool>,
}

/// Reads up to `max` contexts of `shards` (whole contexts, file order).
fn read_contexts(dataset: &Dataset, shards: &[usize], max: usize) -> Result<Vec<StoredContext>> {
    let mut out: Vec<StoredContext> = vec![];
    let mut current: Option<u64> = None;
    'shards: for &s in shards {
        let reader = dataset.shard_reader(s)?;
        for rg in 0..reader.row_groups().len() {
            for batch in reader.read_columns(rg, &["context_id", "token_id", "special"])? {
                let col = |i: usize| batch.column(i).clone();
                let (c0, c1, c2) = (col(0), col(1), col(2));
                let ctx = c0.as_any().downcast_ref::<UInt64Array>();
                let tok = c1.as_any().downcast_ref::<UInt32Array>();
                let spe = c2.as_any().downcast_ref::<BooleanArray>();
                let (Some(ctx), Some(tok), Some(spe)) = (ctx, tok, spe) else {
                    return Err(SaeError::Data(format!(
                        "{}: unexpected column types",
                        reader.path().display()
                    )));
                };
                for r in 0..batch.num_rows() {
                    let id = ctx.value(r);
                    if current != Some(id) {
                        if out.len() == max {
                            break 'shards;
                        }
                        current = Some(id);
                        out.push(StoredContext {
                            ids: vec![],
                            special: vec![],
                        });
                    }
                    if let Some(c) = out.last_mut() {
                        c.ids.push(tok.value(r));
                        c.special.push(spe.value(r));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Per-position log-probabilities `[rows, vocab]` → (CE at each scored position, and the log-probs).
fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let lp = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    Ok(lp.to_vec2::<f32>()?)
}

/// Evaluates `sae` (raw-activation space) spliced at `hook` of `model`, over up to `max_contexts`
/// stored contexts of `shards`, `batch` contexts per forward pass.
pub fn downstream(
    model: &Model,
    dataset: &Dataset,
    shards: &[usize],
    hook: HookPoint,
    sae: &Sae,
    max_contexts: usize,
    batch: usize,
) -> Result<DownstreamReport> {
    check_model(model, hook, sae)?;
    let contexts = read_contexts(dataset, shards, max_contexts)?;
    if contexts.is_empty() {
        return Err(SaeError::Data(
            "no contexts to evaluate in the chosen shards".into(),
        ));
    }
    let vocab = model.vocab_size() as u32;
    if let Some(bad) = contexts.iter().flat_map(|c| &c.ids).find(|&&t| t >= vocab) {
        return Err(SaeError::Config(format!(
            "--model: token id {bad} in the shards is outside the model's vocabulary ({vocab}); use the model the shards were extracted with"
        )));
    }
    let weights = SaeTensors::new(sae, &model.device())?;
    let mut totals = Totals::default();
    for chunk in contexts.chunks(batch.max(1)) {
        totals.add_chunk(model, hook, &weights, chunk)?;
    }
    let Totals { ce, kl, n } = totals;
    let nf = n.max(1) as f64;
    let [ce_clean, ce_sae, ce_zero] = ce.map(|v| v / nf);
    let [kl_sae, kl_zero] = kl.map(|v| v / nf);
    Ok(DownstreamReport {
        contexts: contexts.len(),
        tokens: n,
        ce_clean,
        ce_sae,
        ce_zero,
        ce_recovered: ce_recovered(ce_clean, ce_sae, ce_zero),
        kl_sae,
        kl_zero,
        kl_score: 1.0 - kl_sae / kl_zero,
    })
}

/// Refuses a model without logits, a hook outside the blocks, or a width the SAE does not read.
fn check_model(model: &Model, hook: HookPoint, sae: &Sae) -> Result<()> {
    if !model.has_logits() {
        return Err(SaeError::Config(
            "--model: CE/KL evaluation needs a GPT-2 model (DistilBERT has no language-model head here)".into(),
        ));
    }
    if matches!(
        hook,
        HookPoint::Embed | HookPoint::PosEmbed | HookPoint::LnFinal
    ) {
        return Err(SaeError::Config(format!(
            "CE/KL evaluation splices block hooks (blocks.N.*); {} is not one",
            hook.name()
        )));
    }
    if model.hook_dim(hook) != sae.d_in {
        return Err(SaeError::Config(format!(
            "--model: hook {} has d = {} in this model, the SAE reads d_in = {}",
            hook.name(),
            model.hook_dim(hook),
            sae.d_in
        )));
    }
    Ok(())
}

/// The SAE's weights on the model's device.
struct SaeTensors<'a> {
    sae: &'a Sae,
    /// `[d, S]`, from our feature-major rows.
    w_enc: Tensor,
    b_enc: Tensor,
    w_dec: Tensor,
    b_dec: Tensor,
}

impl<'a> SaeTensors<'a> {
    fn new(sae: &'a Sae, device: &Device) -> Result<Self> {
        let (d, s) = (sae.d_in, sae.d_sae);
        let w_enc = Tensor::from_slice(&sae.w_enc, (s, d), device)?
            .t()?
            .contiguous()?;
        let b_enc = Tensor::from_slice(&sae.b_enc, s, device)?;
        let w_dec = Tensor::from_slice(&sae.w_dec, (s, d), device)?;
        let b_dec = Tensor::from_slice(&sae.b_dec, d, device)?;
        Ok(Self {
            sae,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
        })
    }

    /// `x [b, t, d]` with the SAE's reconstruction on the rows where `keep_mask [b, t, 1]` is 1.
    fn splice(
        &self,
        x: &Tensor,
        keep_mask: &Tensor,
        b: usize,
        t: usize,
    ) -> candle_core::Result<Tensor> {
        let d = self.sae.d_in;
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?.reshape((b * t, d))?;
        if self.sae.is_gated() {
            // A gated SAE goes through the host's encode (the one definition of its gate).
            let xv = xf.flatten_all()?.to_vec1::<f32>()?;
            let xh = self.sae.decode(&self.sae.encode(&xv));
            let xh = Tensor::from_vec(xh, (b, t, d), x.device())?;
            let xf = xf.reshape((b, t, d))?;
            return (&xf + (xh - &xf)?.broadcast_mul(keep_mask)?)?.to_dtype(dtype);
        }
        let xin = if self.sae.apply_b_dec_to_input {
            xf.broadcast_sub(&self.b_dec)?
        } else {
            xf.clone()
        };
        let f = xin
            .matmul(&self.w_enc)?
            .broadcast_add(&self.b_enc)?
            .relu()?;
        let xh = f
            .matmul(&self.w_dec)?
            .broadcast_add(&self.b_dec)?
            .reshape((b, t, d))?;
        let xf = xf.reshape((b, t, d))?;
        (&xf + (xh - &xf)?.broadcast_mul(keep_mask)?)?.to_dtype(dtype)
    }
}

/// Running sums: CE of clean / SAE / zero, KL of SAE / zero, positions scored.
#[derive(Default)]
struct Totals {
    ce: [f64; 3],
    kl: [f64; 2],
    n: u64,
}

impl Totals {
    /// Runs one batch of contexts clean, with the SAE and zero-ablated, and adds its scores.
    fn add_chunk(
        &mut self,
        model: &Model,
        hook: HookPoint,
        weights: &SaeTensors,
        chunk: &[StoredContext],
    ) -> Result<()> {
        let device = model.device();
        let vocab = model.vocab_size();
        let t = chunk.iter().map(|c| c.ids.len()).max().unwrap_or(0);
        let b = chunk.len();
        let pad = model.pad_token_id();
        let mut ids = vec![pad; b * t];
        let mut mask = vec![vec![0u8; t]; b];
        let mut replace = vec![0f32; b * t];
        for (i, c) in chunk.iter().enumerate() {
            for (j, (&id, &sp)) in c.ids.iter().zip(&c.special).enumerate() {
                ids[i * t + j] = id;
                mask[i][j] = 1;
                replace[i * t + j] = if sp { 0.0 } else { 1.0 };
            }
        }
        let ids_t = Tensor::from_vec(ids.clone(), (b, t), &device)?;
        let keep_mask = Tensor::from_vec(replace, (b, t, 1), &Device::Cpu)?.to_device(&device)?;
        let sae_fn = |x: &Tensor| weights.splice(x, &keep_mask, b, t);
        let zero_fn = |x: &Tensor| -> candle_core::Result<Tensor> {
            let m = (1.0 - &keep_mask)?.to_dtype(x.dtype())?;
            x.broadcast_mul(&m)
        };
        let run = |splice: Option<&Splice>| -> Result<Vec<Vec<f32>>> {
            let logits = model.logits_with_splice(&ids_t, &mask, splice)?; // [b, t, V]
            log_softmax_rows(&logits.reshape((b * t, vocab))?)
        };
        let clean = run(None)?;
        let with_sae = run(Some(&Splice {
            point: hook,
            replace: &sae_fn,
        }))?;
        let zero = run(Some(&Splice {
            point: hook,
            replace: &zero_fn,
        }))?;
        self.add_scores(chunk, t, [&clean, &with_sae, &zero]);
        Ok(())
    }

    /// Adds CE and KL at every position with a next token (`lp`: clean, SAE, zero log-probs).
    fn add_scores(&mut self, chunk: &[StoredContext], t: usize, lp: [&Vec<Vec<f32>>; 3]) {
        let [clean, with_sae, zero] = lp;
        for (i, c) in chunk.iter().enumerate() {
            for j in 0..c.ids.len().saturating_sub(1) {
                let row = i * t + j;
                let target = c.ids[j + 1] as usize;
                for (k, lp) in [clean, with_sae, zero].iter().enumerate() {
                    self.ce[k] -= lp[row][target] as f64;
                }
                for (k, lp) in [with_sae, zero].iter().enumerate() {
                    let mut div = 0f64;
                    for (a, q) in clean[row].iter().zip(&lp[row]) {
                        let p = (*a as f64).exp();
                        if p > 0.0 {
                            div += p * (*a as f64 - *q as f64);
                        }
                    }
                    self.kl[k] += div;
                }
                self.n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ce_recovered_is_undefined_unless_zero_ablation_hurts() {
        assert_eq!(super::ce_recovered(2.0, 2.5, 4.0), Some(0.75));
        assert_eq!(super::ce_recovered(2.0, 2.5, 2.0), None);
        assert_eq!(super::ce_recovered(2.0, 1.5, 1.8), None);
    }
}
