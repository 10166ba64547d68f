//! Placeholder until the fast kernels land: candle's own GELU.
use candle_core::{Result, Tensor};

pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    x.gelu()
}

pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.gelu_erf()
}
