//! The gated SAE's forward pass and hand-written gradients in candle ops, for the plain engine
//! ([`super::plain`]); the loss is SAELens 6's `GatedTrainingSAE.training_forward_pass`.
//!
//! With `xin = x − b_dec` (when `apply_b_dec_to_input`), `P = xin · W_encᵀ` `[B, S]`:
//! `π_gate = P + b_gate` (`b_gate` is the SAE's `b_enc`), `gate = [π_gate > 0]`,
//! `π_mag = exp(r_mag) ⊙ P + b_mag`, `f = gate ⊙ ReLU(π_mag)`, `x̂ = f · W_dec + b_dec`;
//! the gate path's activations `a = ReLU(π_gate)` reconstruct `x̃ = a · W_dec + b_dec`. Loss for a
//! batch of B, with `n_i = ‖W_dec,i‖`:
//! `L = (1/B) Σ_t ‖x̂_t − x_t‖² + λ (1/B) Σ_t Σ_i a_ti n_i + (1/B) Σ_t ‖x̃_t − x_t‖²`.
//! (SAELens does not detach the decoder in the auxiliary term, unlike the paper: neither do we.)
//!
//! Gradients, with `G = (2/B)(x̂ − x)` and `H = (2/B)(x̃ − x)`:
//! `∂π_mag = (G · W_decᵀ) ⊙ gate ⊙ [π_mag > 0]`, `∂π_gate = (H · W_decᵀ + λ n / B) ⊙ gate`,
//! `∂P = exp(r_mag) ⊙ ∂π_mag + ∂π_gate`; `∂W_enc = ∂Pᵀ · xin`, `∂b_gate = Σ_t ∂π_gate`,
//! `∂b_mag = Σ_t ∂π_mag`, `∂r_mag = exp(r_mag) ⊙ Σ_t ∂π_mag ⊙ P`,
//! `∂W_dec = fᵀ G + aᵀ H + (λ/B) (Σ_t a_ti) W_dec,i / n_i`,
//! `∂b_dec = Σ_t G_t + Σ_t H_t − [apply_b_dec] (Σ_t ∂P_t) · W_enc`.

use candle_core::{Tensor, D};

/// The plain engine's forward pass, either architecture: its intermediate tensors.
pub(super) struct Forward {
    pub xin: Tensor,
    /// `[f > 0]`, `[B, S]`.
    pub mask: Tensor,
    pub f: Tensor,
    pub x_hat: Tensor,
    /// The L1 weights `w_i` `[S]`.
    pub weights: Tensor,
    /// What the L1 term weighs: `f`, or a gated SAE's `ReLU(π_gate)`.
    pub l1_acts: Tensor,
    /// The pre-activations (a gated SAE's `P`, without bias: its gradients need it).
    pub pre: Tensor,
}

/// The gated forward pass, and what its gradients need.
pub(super) fn forward(
    params: &[Tensor],
    x: &Tensor,
    apply_b_dec: bool,
) -> candle_core::Result<Forward> {
    let [w_enc, b_gate, w_dec, b_dec, r_mag, b_mag] = params else {
        candle_core::bail!("a gated SAE has six parameters")
    };
    let dtype = x.dtype();
    let xin = if apply_b_dec {
        x.broadcast_sub(b_dec)?
    } else {
        x.clone()
    };
    let p = xin.matmul(&w_enc.t()?)?; // [B, S]
    let pi_gate = p.broadcast_add(b_gate)?;
    let gate = pi_gate.gt(0.0)?.to_dtype(dtype)?;
    let pi_mag = p.broadcast_mul(&r_mag.exp()?)?.broadcast_add(b_mag)?;
    let f = (&gate * pi_mag.relu()?)?;
    let x_hat = f.matmul(w_dec)?.broadcast_add(b_dec)?;
    Ok(Forward {
        xin,
        mask: f.gt(0.0)?.to_dtype(dtype)?,
        f,
        x_hat,
        weights: w_dec.sqr()?.sum(D::Minus1)?.sqrt()?,
        l1_acts: pi_gate.relu()?,
        pre: p,
    })
}

/// The gradients of the loss above, in `PARAM_NAMES` order, from the forward pass `fw` of `x`.
pub(super) fn gradients(
    params: &[Tensor],
    x: &Tensor,
    fw: &Forward,
    l1_coefficient: f32,
    apply_b_dec: bool,
) -> candle_core::Result<Vec<Tensor>> {
    let [w_enc, b_gate, w_dec, b_dec, r_mag, b_mag] = params else {
        candle_core::bail!("a gated SAE has six parameters")
    };
    let dtype = x.dtype();
    let b = x.dim(0)? as f64;
    let lam_b = l1_coefficient as f64 / b;
    let p = &fw.pre;
    let gate = p.broadcast_add(b_gate)?.gt(0.0)?.to_dtype(dtype)?;
    let e = r_mag.exp()?;
    let mag_on = p
        .broadcast_mul(&e)?
        .broadcast_add(b_mag)?
        .gt(0.0)?
        .to_dtype(dtype)?;
    let a = &fw.l1_acts;
    let x_tilde = a.matmul(w_dec)?.broadcast_add(b_dec)?;
    let g = ((&fw.x_hat - x)? * (2.0 / b))?; // [B, d]
    let h = ((x_tilde - x)? * (2.0 / b))?; // [B, d]
    let d_mag = (g.matmul(&w_dec.t()?)? * (&gate * mag_on)?)?; // [B, S]
    let lam_w = (&fw.weights * lam_b)?; // [S]
    let d_gate = (h.matmul(&w_dec.t()?)?.broadcast_add(&lam_w)? * &gate)?; // [B, S]
    let d_p = (d_mag.broadcast_mul(&e)? + &d_gate)?;
    let g_wenc = d_p.t()?.matmul(&fw.xin)?;
    let g_bgate = d_gate.sum(0)?;
    let g_bmag = d_mag.sum(0)?;
    let g_rmag = ((&d_mag * p)?.sum(0)? * &e)?;
    // (λ/B)(Σ_t a_ti) W_dec,i / n_i (a row of norm 0 is zero: its term stays 0).
    let coef = ((a.sum(0)? * lam_b)? / fw.weights.clamp(1e-30, f64::MAX)?)?;
    let g_wdec = ((fw.f.t()?.matmul(&g)? + a.t()?.matmul(&h)?)?
        + w_dec.broadcast_mul(&coef.unsqueeze(1)?)?)?;
    let mut g_bdec = (g.sum(0)? + h.sum(0)?)?;
    if apply_b_dec {
        g_bdec = (g_bdec - d_p.sum(0)?.unsqueeze(0)?.matmul(w_enc)?.squeeze(0)?)?;
    }
    Ok(vec![g_wenc, g_bgate, g_wdec, g_bdec, g_rmag, g_bmag])
}
