//! Building blocks shared by the hooked models: linear, LayerNorm, embeddings, activations.
//!
//! Matrices are stored `[in, out]` (GPT-2's Conv1D layout; `nn.Linear` weights are transposed once
//! at load) so every linear layer is one 2-D matmul over all tokens of the batch.

use candle_core::{Module, Result, Tensor};

use super::load::{Init, LoadError, Weights};
use crate::kernels;

/// `y = x W + b` with `W` stored `[in, out]`.
pub struct Linear {
    weight: Tensor, // [in, out]
    bias: Tensor,   // [out]
}

impl Linear {
    /// GPT-2 Conv1D: weight stored `[in, out]`.
    pub fn load_conv1d(
        w: &Weights,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        std: f32,
    ) -> std::result::Result<Self, LoadError> {
        Ok(Linear {
            weight: w.get(
                &format!("{prefix}.weight"),
                &[d_in, d_out],
                Init::Normal(std),
            )?,
            bias: w.get(&format!("{prefix}.bias"), &[d_out], Init::Zeros)?,
        })
    }

    /// `nn.Linear`: weight stored `[out, in]`, transposed here once.
    pub fn load_linear(
        w: &Weights,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        std: f32,
    ) -> std::result::Result<Self, LoadError> {
        let weight = w.get(
            &format!("{prefix}.weight"),
            &[d_out, d_in],
            Init::Normal(std),
        )?;
        Ok(Linear {
            weight: weight.t()?.contiguous()?,
            bias: w.get(&format!("{prefix}.bias"), &[d_out], Init::Zeros)?,
        })
    }
}

impl Linear {
    /// One layer computing several with the same input (outputs side by side): one wider GEMM
    /// instead of several narrow ones (DistilBERT's q/k/v).
    pub fn concat(parts: &[Linear]) -> Result<Linear> {
        let w: Vec<&Tensor> = parts.iter().map(|l| &l.weight).collect();
        let b: Vec<&Tensor> = parts.iter().map(|l| &l.bias).collect();
        Ok(Linear {
            weight: Tensor::cat(&w, 1)?.contiguous()?,
            bias: Tensor::cat(&b, 0)?.contiguous()?,
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::linear(x, &self.weight, &self.bias)
    }
}

/// LayerNorm over the last dimension, computed in f32 whatever the model dtype.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(
        w: &Weights,
        prefix: &str,
        d: usize,
        eps: f64,
    ) -> std::result::Result<Self, LoadError> {
        Ok(LayerNorm {
            weight: w.get(&format!("{prefix}.weight"), &[d], Init::Ones)?,
            bias: w.get(&format!("{prefix}.bias"), &[d], Init::Zeros)?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// The MLP non-linearities these models use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`)
    GeluTanh,
    /// exact erf GELU (`gelu`)
    GeluErf,
    Relu,
}

impl Activation {
    /// Maps a Hugging Face `activation_function` / `hidden_act` name.
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Activation::GeluTanh),
            "gelu" => Some(Activation::GeluErf),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::GeluTanh => kernels::gelu_tanh(x),
            Activation::GeluErf => kernels::gelu_erf(x),
            Activation::Relu => x.relu(),
        }
    }
}

/// Token embedding lookup: `ids [b, t]` → `[b, t, d]`.
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let d = table.dim(1)?;
    table
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((b, t, d))
}
