//! Shared CPU kernels: the hot loops of the forward pass, of SAE training and of the analyses,
//! written once and used by every stage (models, sae, synth, analysis). The ground floor: it
//! imports nothing else of unravel.
//!
//! - [`matmul`] and [`linear`] (matmul.rs): the GEMM wrappers.
//! - [`add`] (add.rs): residual add with a repeated operand (position embeddings).
//! - [`layer_norm`] (layer_norm.rs): LayerNorm with the variance in two passes.
//! - [`attention`] and [`AttnMask`] (attention.rs): fused multi-head attention.
//! - [`gelu_tanh`] and [`gelu_erf`] (gelu.rs): fast GELU.
//! - [`layer_norm_rows`] and [`masked_softmax_rows`] (rows.rs): vectorised row kernels.
//! - [`dot`] and [`axpy`] (vector.rs): f32 slice kernels of the sparse autoencoder.
//! - [`screened::Screen`] (screened.rs, on [`amx`]): a ReLU encoder's pre-activations from
//!   bf16 AMX tiles, recomputed in f32 wherever they may be positive.
//! - `simd.rs`: the run-time choice of instruction set the row kernels (and the store) use.
//!
//! Why fused ops: at GPT-2-small sizes the matmuls already run at the CPU's limit, so the forward
//! pass is only as fast as everything around them; these ops remove whole passes over memory.
//!
//! Each candle op has a CPU f32 fast path and a plain candle-ops path that runs on every device
//! and dtype; tests check that the two agree. Inference only: no backward.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Result, Tensor};

mod add;
pub mod amx;
mod attention;
mod gelu;
mod layer_norm;
mod matmul;
mod rows;
pub mod screened;
pub(crate) mod simd;
#[cfg(test)]
mod testing;
mod vector;

pub use add::add;
pub use attention::{attention, AttnMask};
pub use gelu::{gelu_erf, gelu_tanh};
pub use layer_norm::layer_norm;
pub use matmul::{linear, matmul};
pub use rows::{layer_norm_rows, masked_softmax_rows};
pub use vector::{axpy, dot};

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
pub(crate) const PAR_CHUNK: usize = 16 * 1024;

/// Whether `x` can take the f32 CPU fast path of an op.
pub(crate) fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The f32 values of a CPU storage (`name`: the operand, for the message).
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, name: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        _ => candle_core::bail!("{name}: fused kernel expects f32, got {:?}", s.dtype()),
    }
}
