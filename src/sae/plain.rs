//! The plain training engine: candle tensor ops only, dense, on any device and dtype. It is the
//! path for CUDA and Metal, and the reference the fast CPU engine is tested against. Same maths
//! as [`crate::sae::step`], written with whole-tensor ops; a gated SAE's forward and gradients
//! are in [`super::plain_gated`].

use candle_core::{DType, Device, Tensor, D};

use super::model::Sae;
use super::optim::{clip_coefficient, AdamState, AdamStep};
use super::plain_gated::{self, Forward};
use super::step::{Engine, Reconstruction, StepConfig, StepStats};

pub struct PlainEngine {
    device: Device,
    dtype: DType,
    cfg: StepConfig,
    d_in: usize,
    d_sae: usize,
    apply_b_dec_to_input: bool,
    /// `w_enc [S, d]`, `b_enc [S]`, `w_dec [S, d]`, `b_dec [d]`, and for a gated SAE
    /// `r_mag [S]`, `b_mag [S]` (`PARAM_NAMES` order).
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: u64,
}

fn upload(
    v: &[f32],
    shape: &[usize],
    device: &Device,
    dtype: DType,
) -> candle_core::Result<Tensor> {
    Tensor::from_slice(v, shape, device)?.to_dtype(dtype)
}

fn download(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

impl PlainEngine {
    /// Parameters and moments moved to `device` in `dtype` (f32 for training; f64 in tests).
    pub fn new(
        sae: &Sae,
        adam: &AdamState,
        cfg: StepConfig,
        device: &Device,
        dtype: DType,
    ) -> crate::sae::Result<PlainEngine> {
        Ok(PlainEngine {
            device: device.clone(),
            dtype,
            cfg,
            d_in: sae.d_in,
            d_sae: sae.d_sae,
            apply_b_dec_to_input: sae.apply_b_dec_to_input,
            params: Self::upload_all(sae, &sae.params(), device, dtype)?,
            m: Self::upload_moments(sae, &adam.m, device, dtype)?,
            v: Self::upload_moments(sae, &adam.v, device, dtype)?,
            t: adam.t,
        })
    }

    fn gated(&self) -> bool {
        self.params.len() == 6
    }

    fn upload_moments(
        sae: &Sae,
        moments: &[Vec<f32>; 6],
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Vec<Tensor>> {
        let slices: [&[f32]; 6] = std::array::from_fn(|k| &moments[k][..]);
        Self::upload_all(sae, &slices, device, dtype)
    }

    fn shapes(sae: &Sae) -> [Vec<usize>; 6] {
        let (s, d) = (sae.d_sae, sae.d_in);
        [vec![s, d], vec![s], vec![s, d], vec![d], vec![s], vec![s]]
    }

    /// The SAE's parameters (four, six when gated) as tensors. Moments of an evaluation-only
    /// engine are empty: they are zeros then.
    fn upload_all(
        sae: &Sae,
        vals: &[&[f32]; 6],
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Vec<Tensor>> {
        let n = if sae.is_gated() { 6 } else { 4 };
        Self::shapes(sae)
            .iter()
            .zip(vals)
            .take(n)
            .map(|(shape, v)| {
                if v.is_empty() {
                    Tensor::zeros(shape.as_slice(), dtype, device)
                } else {
                    upload(v, shape, device, dtype)
                }
            })
            .collect()
    }

    fn input(&self, x: &[f32], rows: usize) -> candle_core::Result<Tensor> {
        upload(x, &[rows, self.d_in], &self.device, self.dtype)
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Forward> {
        if self.gated() {
            return plain_gated::forward(&self.params, x, self.apply_b_dec_to_input);
        }
        let [w_enc, b_enc, w_dec, b_dec] = &self.params[..] else {
            candle_core::bail!("a standard SAE has four parameters")
        };
        let xin = if self.apply_b_dec_to_input {
            x.broadcast_sub(b_dec)?
        } else {
            x.clone()
        };
        let pre = xin.matmul(&w_enc.t()?)?.broadcast_add(b_enc)?; // [B, S]
        let mask = pre.gt(0.0)?.to_dtype(self.dtype)?; // [B, S]
        let f = pre.relu()?;
        let x_hat = f.matmul(w_dec)?.broadcast_add(b_dec)?; // [B, d]
        let weights = if self.cfg.decoder_norm_l1 {
            w_dec.sqr()?.sum(D::Minus1)?.sqrt()? // [S]
        } else {
            Tensor::ones(self.d_sae, self.dtype, &self.device)?
        };
        Ok(Forward {
            xin,
            mask,
            l1_acts: f.clone(),
            f,
            x_hat,
            weights,
            pre,
        })
    }

    fn stats(&self, x: &Tensor, fw: &Forward, rows: usize) -> candle_core::Result<StepStats> {
        let sq_err = (&fw.x_hat - x)?.sqr()?.sum_all()?;
        let l1 = fw.l1_acts.broadcast_mul(&fw.weights)?.sum_all()?;
        let fired = fw.mask.sum(0)?; // [S]
        let fired: Vec<u32> = download(&fired)?.into_iter().map(|v| v as u32).collect();
        Ok(StepStats {
            rows,
            sq_err: sq_err.to_dtype(DType::F64)?.to_scalar::<f64>()?,
            l1_sum: l1.to_dtype(DType::F64)?.to_scalar::<f64>()?,
            active: fired.iter().map(|&n| n as u64).sum(),
            fired,
            grad_norm: 0.0,
        })
    }

    /// Hand-written gradients, in `PARAM_NAMES` order (four, six when gated), and the
    /// statistics.
    pub fn gradients(
        &self,
        x: &[f32],
        rows: usize,
        l1_coefficient: f32,
    ) -> candle_core::Result<(Vec<Tensor>, StepStats)> {
        let x = self.input(x, rows)?;
        let fw = self.forward(&x)?;
        if self.gated() {
            let grads = plain_gated::gradients(
                &self.params,
                &x,
                &fw,
                l1_coefficient,
                self.apply_b_dec_to_input,
            )?;
            let stats = self.stats(&x, &fw, rows)?;
            return Ok((grads, stats));
        }
        let (w_enc, w_dec) = (&self.params[0], &self.params[2]);
        let b = rows as f64;
        let g = ((&fw.x_hat - &x)? * (2.0 / b))?; // [B, d]
        let lam_w = (&fw.weights * (l1_coefficient as f64 / b))?; // [S]
        let dpre = (g.matmul(&w_dec.t()?)?.broadcast_add(&lam_w)? * &fw.mask)?; // [B, S]
        let mut g_wdec = fw.f.t()?.matmul(&g)?; // [S, d]
        if self.cfg.decoder_norm_l1 {
            // (λ/B)(Σ_t f_ti) W_dec,i / ‖W_dec,i‖; rows that never fired get 0.
            let fsum = fw.f.sum(0)?; // [S]
            let coef =
                ((fsum * (l1_coefficient as f64 / b))? / fw.weights.clamp(1e-30, f64::MAX)?)?;
            g_wdec = (g_wdec + w_dec.broadcast_mul(&coef.unsqueeze(1)?)?)?;
        }
        let g_wenc = dpre.t()?.matmul(&fw.xin)?; // [S, d]
        let g_benc = dpre.sum(0)?;
        let mut g_bdec = g.sum(0)?;
        if self.apply_b_dec_to_input {
            g_bdec = (g_bdec - dpre.matmul(w_enc)?.sum(0)?)?;
        }
        let stats = self.stats(&x, &fw, rows)?;
        Ok((vec![g_wenc, g_benc, g_wdec, g_bdec], stats))
    }
}

impl Engine for PlainEngine {
    fn step(
        &mut self,
        x: &[f32],
        rows: usize,
        lr: f32,
        l1_coefficient: f32,
    ) -> crate::sae::Result<StepStats> {
        let (mut grads, mut stats) = self.gradients(x, rows, l1_coefficient)?;
        let w_dec = &self.params[2];
        if self.cfg.unit_norm_decoder {
            let par = (&grads[2] * w_dec)?.sum_keepdim(1)?; // [S, 1]
            let nn = w_dec.sqr()?.sum_keepdim(1)?.clamp(1e-30, f64::MAX)?;
            grads[2] = (&grads[2] - w_dec.broadcast_mul(&(par / nn)?)?)?;
        }
        let mut sq = 0f64;
        for g in &grads {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        stats.grad_norm = sq.sqrt();
        let coef = clip_coefficient(stats.grad_norm, self.cfg.clip_norm);
        self.t += 1;
        let st = AdamStep::new(&self.cfg.adam, lr, self.t, coef);
        let a = self.cfg.adam;
        #[allow(clippy::needless_range_loop)] // k indexes four parallel arrays
        for k in 0..self.params.len() {
            let g = (&grads[k] * st.grad_scale as f64)?;
            let m = (&self.m[k] + ((&g - &self.m[k])? * (1.0 - a.beta1 as f64))?)?;
            let v = ((&self.v[k] * a.beta2 as f64)? + (g.sqr()? * (1.0 - a.beta2 as f64))?)?;
            let denom = ((v.sqrt()? / st.bias_correction2_sqrt as f64)? + a.eps as f64)?;
            let p = (&self.params[k] - ((&m / denom)? * st.step_size as f64)?)?;
            self.params[k] = p;
            self.m[k] = m;
            self.v[k] = v;
        }
        if self.cfg.unit_norm_decoder {
            let w = &self.params[2];
            let n = w.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-30, f64::MAX)?;
            self.params[2] = w.broadcast_div(&n)?;
        }
        Ok(stats)
    }

    fn reconstruct(&mut self, x: &[f32], rows: usize) -> crate::sae::Result<Reconstruction> {
        let x = self.input(x, rows)?;
        let fw = self.forward(&x)?;
        let stats = self.stats(&x, &fw, rows)?;
        Ok(Reconstruction {
            x_hat: download(&fw.x_hat)?,
            stats,
        })
    }

    fn snapshot(&self) -> crate::sae::Result<(Sae, AdamState)> {
        // Missing gated parameters download as empty vectors.
        let host = |ts: &[Tensor]| -> crate::sae::Result<[Vec<f32>; 6]> {
            let mut out: [Vec<f32>; 6] = Default::default();
            for (o, t) in out.iter_mut().zip(ts) {
                *o = download(t)?;
            }
            Ok(out)
        };
        let [w_enc, b_enc, w_dec, b_dec, r_mag, b_mag] = host(&self.params)?;
        let sae = Sae {
            d_in: self.d_in,
            d_sae: self.d_sae,
            w_enc,
            b_enc,
            w_dec,
            b_dec,
            apply_b_dec_to_input: self.apply_b_dec_to_input,
            r_mag,
            b_mag,
        };
        let adam = AdamState {
            m: host(&self.m)?,
            v: host(&self.v)?,
            t: self.t,
        };
        Ok((sae, adam))
    }

    fn restore(&mut self, sae: &Sae, adam: &AdamState) -> crate::sae::Result<()> {
        self.params = Self::upload_all(sae, &sae.params(), &self.device, self.dtype)?;
        self.m = Self::upload_moments(sae, &adam.m, &self.device, self.dtype)?;
        self.v = Self::upload_moments(sae, &adam.v, &self.device, self.dtype)?;
        self.t = adam.t;
        self.apply_b_dec_to_input = sae.apply_b_dec_to_input;
        Ok(())
    }

    fn name(&self) -> String {
        format!("plain-{}", crate::device::device_name(&self.device))
    }
}
