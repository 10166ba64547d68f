//! The toy model and its batched training: every instance of every configuration in one graph.
//!
//! h = W x, x̂ = ReLU(Wᵀh + b) (or without the ReLU when linear); loss of an instance =
//! Σ_i I_i (x_i − x̂_i)², mean over the batch; the optimised loss is the sum over instances, so
//! instances do not interact. W [instances, d_max, n] with the rows past an instance's own d held
//! at zero by a mask; b [instances, n]. AdamW (candle-nn), W ~ N(0, 2/(n+d)) as torch's
//! `xavier_normal_`, b = 0.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use super::data::sample_batch;
use super::error::ToyError;
use super::settings::{ToyConfig, ToySettings};

/// Stream offsets, so that init, training data and evaluation data never share draws.
const DATA_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;
const EVAL_STREAM: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// Loss checkpoints kept in [`Trained::curve`].
const CURVE_POINTS: usize = 100;

/// One trained instance.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedInstance {
    /// Index into the configurations.
    pub config: usize,
    /// Which initialisation of that configuration.
    pub replica: usize,
    pub hidden: usize,
    /// W, [hidden, n] row-major (column i = feature i's embedding).
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// Loss on the evaluation batches before and after training.
    pub initial_loss: f64,
    pub loss: f64,
}

/// A finished batched run.
#[derive(Debug, Clone, Serialize)]
pub struct Trained {
    pub n: usize,
    pub instances: Vec<TrainedInstance>,
    /// (step, mean over instances of the training-batch loss), about [`CURVE_POINTS`] of them.
    pub curve: Vec<(usize, f64)>,
    pub seconds: f64,
}

/// Per-instance data of the batched run, host side.
struct Layout {
    n: usize,
    d_max: usize,
    /// Per instance: (config index, replica).
    owner: Vec<(usize, usize)>,
    hidden: Vec<usize>,
    density: Vec<f64>,
}

impl Layout {
    fn new(n: usize, configs: &[ToyConfig], replicas: usize) -> Layout {
        let mut l = Layout {
            n,
            d_max: configs.iter().map(|c| c.hidden).max().unwrap_or(1),
            owner: Vec::new(),
            hidden: Vec::new(),
            density: Vec::new(),
        };
        for (ci, c) in configs.iter().enumerate() {
            for r in 0..replicas {
                l.owner.push((ci, r));
                l.hidden.push(c.hidden);
                l.density.push(c.density);
            }
        }
        l
    }

    fn len(&self) -> usize {
        self.owner.len()
    }
}

/// The graph: parameters, their mask and the importance weights.
struct Model {
    w: Var,
    /// [instances, 1, n]
    b: Var,
    /// [instances, d_max, n], 1 on an instance's own rows; None when every d is d_max.
    mask: Option<Tensor>,
    /// [instances, batch, n]: the importance of each element, materialised once so that the
    /// weighting is a plain elementwise product (candle's broadcasts are slow on CPU).
    importance: Tensor,
    /// [instances, batch, 1] of ones: adds b through a matmul, whose backward is a matmul too
    /// (cheaper than a broadcast add and its reduction over the batch).
    ones: Tensor,
    linear: bool,
}

impl Model {
    fn effective_w(&self) -> candle_core::Result<Tensor> {
        match &self.mask {
            Some(m) => self.w.as_tensor().mul(m),
            None => Ok(self.w.as_tensor().clone()),
        }
    }

    /// Importance-weighted squared errors of x [instances, batch, n], same shape.
    fn errors(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w = self.effective_w()?; // [instances, d, n]
        let h = x.matmul(&w.t()?)?; // [instances, batch, d]
        let bias = self.ones.matmul(self.b.as_tensor())?; // [instances, batch, n]
        let out = (h.matmul(&w)? + bias)?; // [instances, batch, n]
        let out = if self.linear { out } else { out.relu()? };
        (x - out)?.sqr()?.mul(&self.importance) // [instances, batch, n]
    }
}

/// Trains every configuration `settings.instances` times; `on_step(done, loss)` after each step
/// (loss: the mean training loss over instances, only at curve checkpoints).
pub fn train(
    settings: &ToySettings,
    configs: &[ToyConfig],
    device: &Device,
    on_step: &mut dyn FnMut(usize, Option<f64>),
) -> Result<Trained, ToyError> {
    let start = Instant::now();
    let n = settings.features;
    let lay = Layout::new(n, configs, settings.instances);
    let count = lay.len();
    let model = build(settings, configs, &lay, device)?;
    let mut opt = AdamW::new(
        vec![model.w.clone(), model.b.clone()],
        ParamsAdamW {
            lr: settings.lr,
            beta1: settings.beta1,
            beta2: settings.beta2,
            eps: settings.eps,
            weight_decay: settings.weight_decay,
        },
    )?;
    let initial = evaluate(settings, &lay, &model, device)?;

    let mut rng = SmallRng::seed_from_u64(settings.seed ^ DATA_STREAM);
    let mut buf = Vec::new();
    let every = settings.steps.div_ceil(CURVE_POINTS).max(1);
    let mut curve = Vec::new();
    for step in 1..=settings.steps {
        sample_batch(&mut rng, &lay.density, settings.batch, n, &mut buf);
        let x = Tensor::from_slice(&buf, (count, settings.batch, n), device)?; // [instances, batch, n]
                                                                               // Σ over instances of each instance's mean-over-batch loss.
        let loss = (model.errors(&x)?.sum_all()? / settings.batch as f64)?;
        opt.backward_step(&loss)?;
        let logged = if step == 1 || step % every == 0 || step == settings.steps {
            let mean = loss.to_scalar::<f32>()? as f64 / count as f64;
            if !mean.is_finite() {
                return Err(ToyError::Diverged { step, loss: mean });
            }
            curve.push((step, mean));
            Some(mean)
        } else {
            None
        };
        on_step(step, logged);
    }
    let last = evaluate(settings, &lay, &model, device)?;

    let w = model
        .effective_w()?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let b = model.b.as_tensor().flatten_all()?.to_vec1::<f32>()?; // [instances · n]
    let per_w = lay.d_max * n;
    let instances = (0..count)
        .map(|k| {
            let (config, replica) = lay.owner[k];
            let hidden = lay.hidden[k];
            TrainedInstance {
                config,
                replica,
                hidden,
                // The first `hidden` rows are the instance's own; the rest are masked zeros.
                w: w[k * per_w..k * per_w + hidden * n].to_vec(),
                b: b[k * n..(k + 1) * n].to_vec(),
                initial_loss: initial[k],
                loss: last[k],
            }
        })
        .collect();
    Ok(Trained {
        n,
        instances,
        curve,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Parameters on the host from the seed, then onto the device.
fn build(
    settings: &ToySettings,
    configs: &[ToyConfig],
    lay: &Layout,
    device: &Device,
) -> Result<Model, ToyError> {
    let (n, d_max, count) = (lay.n, lay.d_max, lay.len());
    let mut rng = SmallRng::seed_from_u64(settings.seed);
    let mut w = vec![0f32; count * d_max * n];
    let mut mask = vec![0f32; count * d_max * n];
    let mut importance = Vec::with_capacity(count * settings.batch * n);
    for k in 0..count {
        let d = lay.hidden[k];
        let normal = Normal::new(0.0, (2.0 / (n + d) as f64).sqrt())?;
        for r in 0..d {
            for i in 0..n {
                w[(k * d_max + r) * n + i] = normal.sample(&mut rng) as f32;
                mask[(k * d_max + r) * n + i] = 1.0;
            }
        }
        let imp = &configs[lay.owner[k].0].importance;
        for _ in 0..settings.batch {
            importance.extend(imp.iter().map(|&v| v as f32));
        }
    }
    let ragged = lay.hidden.iter().any(|&d| d != d_max);
    Ok(Model {
        w: Var::from_tensor(&Tensor::from_vec(w, (count, d_max, n), device)?)?,
        b: Var::from_tensor(&Tensor::zeros((count, 1, n), DType::F32, device)?)?,
        mask: if ragged {
            Some(Tensor::from_vec(mask, (count, d_max, n), device)?)
        } else {
            None
        },
        importance: Tensor::from_vec(importance, (count, settings.batch, n), device)?,
        ones: Tensor::ones((count, settings.batch, 1), DType::F32, device)?,
        linear: settings.linear,
    })
}

/// Mean per-instance loss over `eval_batches` batches from the evaluation stream (the same
/// batches every call, so initial and final losses compare).
fn evaluate(
    settings: &ToySettings,
    lay: &Layout,
    model: &Model,
    device: &Device,
) -> Result<Vec<f64>, ToyError> {
    let mut rng = SmallRng::seed_from_u64(settings.seed ^ EVAL_STREAM);
    let mut buf = Vec::new();
    let mut sum = vec![0f64; lay.len()];
    for _ in 0..settings.eval_batches {
        sample_batch(&mut rng, &lay.density, settings.batch, lay.n, &mut buf);
        let x = Tensor::from_slice(&buf, (lay.len(), settings.batch, lay.n), device)?;
        let err = model.errors(&x)?.detach(); // [instances, batch, n]
        let l = err
            .reshape((lay.len(), settings.batch * lay.n))?
            .sum(1)?
            .to_vec1::<f32>()?; // [instances]
        for (s, v) in sum.iter_mut().zip(l) {
            *s += v as f64 / settings.batch as f64;
        }
    }
    Ok(sum
        .into_iter()
        .map(|s| s / settings.eval_batches as f64)
        .collect())
}
