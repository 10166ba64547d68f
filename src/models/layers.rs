//! Building blocks shared by the hooked models: linear, LayerNorm, attention, activations.
//!
//! Matrices are stored `[in, out]` (GPT-2's Conv1D layout; `nn.Linear` weights are transposed once
//! at load) so every linear layer is one 2-D matmul over all tokens of the batch.

use candle_core::{DType, Module, Result, Tensor, D};

use super::kernels;
use super::load::{Init, LoadError, Weights};

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

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, d_in) = flat_rows(x)?;
        let y = x.reshape((rows, d_in))?.matmul(&self.weight)?; // [rows, out]
        let y = y.broadcast_add(&self.bias)?;
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("flat_rows checked rank") = self.weight.dim(1)?;
        y.reshape(dims)
    }
}

/// Number of rows and the last dimension of a tensor viewed as a matrix.
fn flat_rows(x: &Tensor) -> Result<(usize, usize)> {
    let d = x.dim(D::Minus1)?;
    Ok((x.elem_count() / d.max(1), d))
}

/// LayerNorm over the last dimension, computed in f32 whatever the model dtype.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
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
            eps: eps as f32,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x32 = x.to_dtype(DType::F32)?.contiguous()?;
        let y = candle_nn::ops::layer_norm(
            &x32,
            &self.weight.to_dtype(DType::F32)?,
            &self.bias.to_dtype(DType::F32)?,
            self.eps,
        )?;
        y.to_dtype(dtype)
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

/// Additive attention mask in f32, `0` where attention is allowed and a large negative number
/// where not (finite, so a fully masked padding row stays finite).
/// `causal` gives `[b, 1, t, t]`; otherwise a key-padding mask `[b, 1, 1, t]`.
pub fn attention_mask(
    mask: &[Vec<u8>],
    causal: bool,
    device: &candle_core::Device,
) -> Result<Tensor> {
    const BLOCKED: f32 = -1e30;
    let b = mask.len();
    let t = mask.first().map_or(0, |m| m.len());
    if causal {
        let mut m = vec![0f32; b * t * t];
        for (bi, row) in mask.iter().enumerate() {
            for i in 0..t {
                for (j, &keep) in row.iter().enumerate() {
                    if j > i || keep == 0 {
                        m[(bi * t + i) * t + j] = BLOCKED;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, t, t), device)
    } else {
        let m: Vec<f32> = mask
            .iter()
            .flat_map(|row| row.iter().map(|&k| if k == 0 { BLOCKED } else { 0.0 }))
            .collect();
        Tensor::from_vec(m, (b, 1, 1, t), device)
    }
}

/// Multi-head scaled dot-product attention. `q, k, v`: `[b, h, t, hd]` contiguous;
/// `mask`: additive f32, broadcastable to `[b, h, t, t]`. Returns `[b, t, h * hd]`.
/// Scores and softmax are computed in f32.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, h, t, hd) = q.dims4()?;
    let dtype = q.dtype();
    let scale = 1.0 / (hd as f64).sqrt();
    let scores = q.matmul(&k.t()?)?; // [b, h, t, t]
    let scores = (scores.to_dtype(DType::F32)? * scale)?.broadcast_add(mask)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    let out = probs.matmul(v)?; // [b, h, t, hd]
    out.transpose(1, 2)?.contiguous()?.reshape((b, t, h * hd))
}

/// Splits `[b, t, h * hd]` into heads `[b, h, t, hd]` (contiguous).
pub fn split_heads(x: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    x.reshape((b, t, n_heads, d / n_heads))?
        .transpose(1, 2)?
        .contiguous()
}
