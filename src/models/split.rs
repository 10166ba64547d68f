//! Data-parallel forward on the CPU: each thread runs whole sequences of the batch on its own.
//!
//! Why: splitting every op across threads (GEMM tiles, attention heads, rows of LayerNorm) puts a
//! barrier after each op, and on a shared host a thread that loses its core for a moment stalls
//! the others at every one of those barriers. Giving each thread its own sequences leaves one
//! join per batch. Measured at batch 8 × 128 on 2 threads, alternating both paths in one loop:
//! +15–20% tokens/s on GPT-2 small, +24–31% on DistilBERT-base (BENCHMARKS.md).
//!
//! Each group runs inside a single-thread rayon pool, so every rayon-parallel op inside the
//! forward (our fused kernels, the `gemm` calls) runs serially on that pool's thread. `extract`
//! goes one step further: it runs its own workers on these pools ([`threads`], [`on_thread`])
//! with no join between batches at all.

use std::sync::OnceLock;

use candle_core::{Result, Tensor};
use rayon::{ThreadPool, ThreadPoolBuilder};

use super::ForwardOutput;

/// One single-thread pool per thread of rayon's global pool, built on first use.
fn pools() -> &'static [ThreadPool] {
    static POOLS: OnceLock<Vec<ThreadPool>> = OnceLock::new();
    POOLS.get_or_init(|| {
        let threads = rayon::current_num_threads();
        (0..threads)
            .map_while(|i| {
                ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("unravel-forward-{i}"))
                    .build()
                    .ok()
            })
            .collect()
    })
}

/// How many forward threads there are: callers that pipeline their own work (extract) run one
/// worker per thread, each on its own sequences, with [`on_thread`].
pub fn threads() -> usize {
    pools().len().max(1)
}

/// Runs `f` on forward thread `i` (`i < threads()`): inside it every rayon-parallel op runs
/// serially on that thread, and [`crate::models::Model::forward`] does not split the batch again.
pub fn on_thread<R: Send>(i: usize, f: impl FnOnce() -> R + Send) -> R {
    match pools().get(i) {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Contiguous `(start, len)` groups of `b` sequences, sizes differing by at most one.
pub(crate) fn groups(b: usize, parts: usize) -> Vec<(usize, usize)> {
    let (base, extra) = (b / parts, b % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let group = (start, len);
            start += len;
            group
        })
        .collect()
}

/// Runs `forward` on groups of the batch's sequences, one group per thread, and joins the
/// outputs along the batch axis. `None` when there is nothing to gain: one thread, or fewer
/// sequences than threads (then the ops themselves run in parallel instead), or already on a
/// single forward thread (see [`on_thread`]).
pub(crate) fn by_sequence(
    ids: &Tensor,
    mask: &[Vec<u8>],
    forward: impl Fn(&Tensor, &[Vec<u8>]) -> Result<ForwardOutput> + Sync,
) -> Option<Result<ForwardOutput>> {
    if rayon::current_num_threads() < 2 {
        return None;
    }
    on_pools(pools(), ids, mask, forward)
}

fn on_pools(
    pools: &[ThreadPool],
    ids: &Tensor,
    mask: &[Vec<u8>],
    forward: impl Fn(&Tensor, &[Vec<u8>]) -> Result<ForwardOutput> + Sync,
) -> Option<Result<ForwardOutput>> {
    let b = mask.len();
    if pools.len() < 2 || b < pools.len() || !ids.device().is_cpu() {
        return None;
    }
    let run = |(start, len): (usize, usize)| -> Result<ForwardOutput> {
        forward(&ids.narrow(0, start, len)?, &mask[start..start + len])
    };
    let groups = groups(b, pools.len());
    let outputs: Vec<Result<ForwardOutput>> = std::thread::scope(|s| {
        let others: Vec<_> = groups[1..]
            .iter()
            .zip(&pools[1..])
            .map(|(&group, pool)| s.spawn(move || pool.install(|| run(group))))
            .collect();
        let mut outputs = vec![pools[0].install(|| run(groups[0]))];
        for handle in others {
            outputs.push(handle.join().unwrap_or_else(|_| {
                Err(candle_core::Error::Msg("a forward thread panicked".into()))
            }));
        }
        outputs
    });
    Some(
        outputs
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .and_then(join),
    )
}

/// Concatenates per-group outputs along the batch axis; every group recorded the same hooks.
fn join(parts: Vec<ForwardOutput>) -> Result<ForwardOutput> {
    let cat = |tensors: Vec<&Tensor>| Tensor::cat(&tensors, 0);
    let first = &parts[0];
    let hooks = first
        .hooks
        .iter()
        .enumerate()
        .map(|(i, (point, _))| Ok((*point, cat(parts.iter().map(|p| &p.hooks[i].1).collect())?)))
        .collect::<Result<Vec<_>>>()?;
    let logits = first
        .logits
        .as_ref()
        .map(|_| cat(parts.iter().filter_map(|p| p.logits.as_ref()).collect()))
        .transpose()?;
    Ok(ForwardOutput { hooks, logits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubOptions;
    use crate::models::hooks::{HookPoint, HookSet};
    use crate::models::load;
    use crate::models::{Model, ModelOptions};

    /// The split forward equals the whole-batch forward on every hook and the logits, for a
    /// right-padded batch whose groups have different sizes (3 sequences on 2 threads).
    #[test]
    fn split_batch_matches_the_whole_batch() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-gpt2");
        let files = load::resolve(dir, &HubOptions::default(), true).unwrap();
        let model = Model::load(&files, &ModelOptions::default()).unwrap();
        let Model::Gpt2(gpt2) = &model else {
            panic!("tiny-gpt2 is a GPT-2")
        };
        let hooks = HookSet::new(HookPoint::all(model.n_layers()));
        let (b, t) = (3, 7);
        let ids: Vec<u32> = (0..b * t).map(|i| (i * 13 % 50) as u32).collect();
        let ids = Tensor::from_vec(ids, (b, t), &candle_core::Device::Cpu).unwrap();
        let mask = vec![
            vec![1u8; t],
            vec![1, 1, 1, 1, 0, 0, 0],
            vec![1, 1, 1, 1, 1, 1, 0],
        ];
        let whole = gpt2.forward(&ids, &mask, &hooks, true).unwrap();
        let pools: Vec<ThreadPool> = (0..2)
            .map(|_| ThreadPoolBuilder::new().num_threads(1).build().unwrap())
            .collect();
        let split = on_pools(&pools, &ids, &mask, |ids, mask| {
            gpt2.forward(ids, mask, &hooks, true)
        })
        .expect("3 sequences on 2 threads are split")
        .unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
            assert_eq!(a.dims(), b.dims());
            let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
            d.max(0).unwrap().to_scalar::<f32>().unwrap()
        };
        assert_eq!(split.hooks.len(), whole.hooks.len());
        for ((p, a), (q, b)) in split.hooks.iter().zip(&whole.hooks) {
            assert_eq!(p, q);
            assert!(max_diff(a, b) <= 1e-5, "{p}: {}", max_diff(a, b));
        }
        let (a, b) = (split.logits.unwrap(), whole.logits.unwrap());
        assert!(max_diff(&a, &b) <= 1e-5, "logits: {}", max_diff(&a, &b));
        // One thread, or fewer sequences than threads: not split.
        assert!(on_pools(&pools[..1], &ids, &mask, |_, _| unreachable!()).is_none());
        let one = ids.narrow(0, 0, 1).unwrap();
        assert!(on_pools(&pools, &one, &mask[..1], |_, _| unreachable!()).is_none());
    }

    #[test]
    fn groups_cover_the_batch_in_order() {
        assert_eq!(groups(8, 2), vec![(0, 4), (4, 4)]);
        assert_eq!(groups(9, 2), vec![(0, 5), (5, 4)]);
        assert_eq!(groups(5, 3), vec![(0, 2), (2, 2), (4, 1)]);
        assert_eq!(groups(3, 3), vec![(0, 1), (1, 1), (2, 1)]);
    }
}
