//! [`TrainConfig`]'s checks, run once by [`TrainConfig::resolve`]: each names the flag or key
//! at fault.

use super::TrainConfig;
use crate::sae::{Result, SaeError};

impl TrainConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let err = |m: &str| Err(SaeError::Config(m.to_string()));
        if self.d_sae == 0 {
            return err("--d-sae must be at least 1");
        }
        if self.batch == 0 {
            return err("--batch must be at least 1");
        }
        if self.tokens < self.batch as u64 {
            return err("--tokens must be at least one batch (--batch)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return err("--lr must be a positive number");
        }
        if !(self.l1_coefficient >= 0.0 && self.l1_coefficient.is_finite()) {
            return err("--l1-coefficient must be a non-negative number");
        }
        if self.target_l0.is_none() {
            for (flag, v) in [
                ("--target-l0-from", self.target_l0_from),
                ("--target-l0-anneal", self.target_l0_anneal),
            ] {
                if v.is_some() {
                    return err(&format!(
                        "{flag} shapes --target-l0's steering: give --target-l0 K too"
                    ));
                }
            }
        }
        if let Some(k) = self.target_l0 {
            if !(k > 0.0 && k.is_finite()) {
                return err("--target-l0 must be a positive number");
            }
            if self.l1_coefficient == 0.0 {
                return err("--target-l0 scales λ, which cannot start at --l1-coefficient 0");
            }
        }
        for (name, v) in [
            ("lr_warmup_frac", self.lr_warmup_frac),
            ("lr_decay_frac", self.lr_decay_frac),
            ("l1_warmup_frac", self.l1_warmup_frac),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(SaeError::Config(format!(
                    "{name} must be in [0, 1], got {v}"
                )));
            }
        }
        if self.lr_warmup_frac + self.lr_decay_frac > 1.0 {
            return err("lr_warmup_frac + lr_decay_frac must be at most 1");
        }
        if self.log_every == 0 {
            return err("--log-every must be at least 1");
        }
        if self.eval_tokens == 0 {
            return err("--eval-tokens must be at least 1");
        }
        if self.shuffle_buffer == 0 {
            return err("--shuffle-buffer must be at least 1");
        }
        if self.scale_tokens == 0 || self.resample_inputs == 0 {
            return err("scale_tokens and resample_inputs must be at least 1");
        }
        if !((0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return err("beta1 and beta2 must be in [0, 1)");
        }
        if !(self.adam_eps > 0.0 && self.adam_eps.is_finite()) {
            return err("adam_eps must be a positive number");
        }
        if !(self.dec_init_norm > 0.0 && self.dec_init_norm.is_finite()) {
            return err("dec_init_norm must be a positive number");
        }
        if let Some(c) = self.clip_norm {
            if !(c > 0.0 && c.is_finite()) {
                return err("clip_norm must be a positive number (leave it out for no clipping)");
            }
        }
        if self.dead_window == 0 {
            return err("dead_window must be at least 1 token");
        }
        Ok(())
    }
}
