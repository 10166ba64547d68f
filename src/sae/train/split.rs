//! The held-out split: which trailing shards a new run evaluates on, and the line that says so.

use super::source::Input;
use crate::sae::checkpoint::RunInfo;
use crate::sae::config::TrainConfig;
use crate::sae::{Result, SaeError};
use crate::store::Dataset;

/// Rows of a shard that the run reads (special-token rows are skipped unless included).
pub(super) fn usable_rows(s: &crate::store::ShardInfo, cfg: &TrainConfig) -> u64 {
    if cfg.include_special {
        s.rows
    } else {
        s.rows - s.special_rows
    }
}

/// Largest share of the rows held out beyond the `--eval-shards` asked for.
const MAX_HELD_OUT_SHARE: f64 = 0.1;

/// How many trailing shards to hold out: `eval_shards`, plus more while they hold fewer than
/// `eval_tokens` rows (a dataset's last shard is often a small remainder) and one more still
/// holds out at most a tenth of the rows.
fn held_out_count(dataset: &Dataset, cfg: &TrainConfig) -> usize {
    let shards = &dataset.manifest().shards;
    let n = shards.len();
    let total: u64 = shards.iter().map(|s| usable_rows(s, cfg)).sum();
    let tail = |k: usize| -> u64 { shards[n - k..].iter().map(|s| usable_rows(s, cfg)).sum() };
    let mut k = cfg.eval_shards;
    while k + 1 < n
        && tail(k) < cfg.eval_tokens
        && tail(k + 1) as f64 <= MAX_HELD_OUT_SHARE * total as f64
    {
        k += 1;
    }
    k
}

/// The line said before training: the training set's size and the held-out set's, with a
/// warning when the held-out set is more than a tenth of the data or smaller than asked.
pub(super) fn split_note(input: &Input, cfg: &TrainConfig, info: &RunInfo) -> String {
    let dataset = match input {
        Input::Store(dataset) => dataset,
        Input::Stream(source) => {
            return format!(
                "training set: streamed from {}, rows 0..{} (no shards written); held out for \
                 evaluation: {} rows from index 2^62 on (a disjoint range)",
                source.describe(),
                cfg.tokens,
                cfg.eval_tokens
            )
        }
    };
    let shards = &dataset.manifest().shards;
    let rows = |set: &[usize]| -> u64 {
        set.iter()
            .filter_map(|&i| shards.get(i))
            .map(|s| usable_rows(s, cfg))
            .sum()
    };
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let (train, eval) = (rows(&info.train_shards), rows(&info.eval_shards));
    let mut note = format!(
        "training set: {train} rows in {} shard{}",
        info.train_shards.len(),
        plural(info.train_shards.len())
    );
    if info.eval_shards.is_empty() {
        note.push_str(if cfg.eval_shards == 0 {
            "; evaluations use training rows (--eval-shards 0)"
        } else {
            "; the dataset has one shard, so nothing is held out: evaluations use training rows \
             (write more shards with --shard-tokens to hold some out)"
        });
        return note;
    }
    let share = eval as f64 / (train + eval).max(1) as f64;
    note.push_str(&format!(
        "; held out for evaluation: {eval} rows in {} shard{} ({:.1}% of the data)",
        info.eval_shards.len(),
        plural(info.eval_shards.len()),
        share * 100.0
    ));
    if share > MAX_HELD_OUT_SHARE {
        note.push_str(
            " — more than a tenth of the data; --eval-shards 0 evaluates on training rows instead",
        );
    } else if eval < cfg.eval_tokens {
        note.push_str(&format!(
            "; evaluations use all {eval}, fewer than --eval-tokens {}",
            cfg.eval_tokens
        ));
    }
    note
}

/// (training shards, held-out shards) of a new run. A one-shard dataset (a small extract) has
/// nothing to hold out: it trains and evaluates on its one shard, and the split note says so.
pub(super) fn choose_split(
    dataset: &Dataset,
    cfg: &TrainConfig,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if cfg.eval_shards == 0 || dataset.shard_count() == 1 {
        Ok(((0..dataset.shard_count()).collect(), vec![]))
    } else if cfg.eval_shards >= dataset.shard_count() {
        Err(SaeError::Config(format!(
            "{} has {} shard(s): cannot hold out {} for evaluation; pass --eval-shards 0 to evaluate on training data",
            cfg.acts.display(), dataset.shard_count(), cfg.eval_shards
        )))
    } else {
        Ok(dataset.split(held_out_count(dataset, cfg))?)
    }
}
