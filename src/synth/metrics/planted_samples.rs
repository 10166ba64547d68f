//! Samples with their true codes from a planted dataset made by `unravel synth
//! --save-activations`: the rows of its shards (in file order, which is the order they were
//! drawn in) and the per-token activations its truth file stores (`act_token`, `act_feature`,
//! `act_value`), cut into [`SampleBatch`]es. The last `samples` rows are used — the held-out
//! shards of `unravel train` are the last ones.

use std::path::Path;

use super::samples::SampleBatch;
use crate::store::Dataset;
use crate::synth::planted::SYNTH_HOOK;
use crate::synth::truth::{truth_dir, TRUTH_FILE};

#[derive(Debug, thiserror::Error)]
pub enum SamplesError {
    #[error("{0}: no per-token codes in the truth (make the dataset with `unravel synth --save-activations`)")]
    NoCodes(String),
    #[error("{0}")]
    Read(String),
}

/// The stored codes, sorted by token as written: `(token, feature, value)` columns.
struct Codes {
    token: Vec<i64>,
    feature: Vec<i64>,
    value: Vec<f32>,
}

fn read_codes(dir: &Path) -> Result<Codes, SamplesError> {
    let file = [truth_dir(dir).join(TRUTH_FILE), dir.join(TRUTH_FILE)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| SamplesError::NoCodes(dir.display().to_string()))?;
    let bad = |e: String| SamplesError::Read(format!("{}: {e}", file.display()));
    let t = candle_core::safetensors::load(&file, &candle_core::Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let (Some(tok), Some(feat), Some(val)) =
        (t.get("act_token"), t.get("act_feature"), t.get("act_value"))
    else {
        return Err(SamplesError::NoCodes(file.display().to_string()));
    };
    let codes = Codes {
        token: tok.to_vec1::<i64>().map_err(|e| bad(e.to_string()))?,
        feature: feat.to_vec1::<i64>().map_err(|e| bad(e.to_string()))?,
        value: val.to_vec1::<f32>().map_err(|e| bad(e.to_string()))?,
    };
    if codes.feature.len() != codes.token.len() || codes.value.len() != codes.token.len() {
        return Err(bad(
            "act_token, act_feature and act_value differ in length".into()
        ));
    }
    Ok(codes)
}

/// Hands `sink` the last `samples` rows of the planted dataset in `dir` with their codes, in
/// batches of `batch` rows (the last one shorter); `n_features` bounds the feature indices.
/// Returns the rows handed over.
pub fn planted_batches(
    dir: &Path,
    samples: u64,
    batch: usize,
    n_features: usize,
    sink: &mut dyn FnMut(&SampleBatch),
) -> Result<u64, SamplesError> {
    let codes = read_codes(dir)?;
    let rd = |e: crate::store::StoreError| SamplesError::Read(e.to_string());
    let dataset = Dataset::open(dir).map_err(rd)?;
    let hook = dataset.hook(SYNTH_HOOK).map_err(rd)?.clone();
    let total = dataset.manifest().totals.rows;
    let start = total.saturating_sub(samples);
    let mut handed = 0u64;
    let mut cur = SampleBatch {
        offsets: vec![0],
        ..Default::default()
    };
    // The codes are sorted by token: k walks them beside the rows.
    let (mut row, mut k) = (0u64, codes.token.partition_point(|&t| (t as u64) < start));
    for i in 0..dataset.shard_count() {
        let reader = dataset.shard_reader(i).map_err(rd)?;
        for rg in 0..reader.row_groups().len() {
            let n = reader.row_groups()[rg] as u64;
            if row + n <= start {
                row += n;
                continue;
            }
            let rows = reader.read_hook(&hook, rg, true).map_err(rd)?;
            for x in rows.values.chunks(hook.d) {
                if row >= start {
                    cur.x.extend_from_slice(x);
                    while k < codes.token.len() && codes.token[k] as u64 == row {
                        let f = codes.feature[k];
                        if f < 0 || f as usize >= n_features {
                            return Err(SamplesError::Read(format!(
                                "{}: act_feature {f} is not a planted feature",
                                dir.display()
                            )));
                        }
                        cur.features.push(f as u32);
                        cur.values.push(codes.value[k]);
                        k += 1;
                    }
                    cur.offsets.push(cur.features.len());
                    if cur.rows() >= batch {
                        sink(&cur);
                        handed += cur.rows() as u64;
                        cur = SampleBatch {
                            offsets: vec![0],
                            ..Default::default()
                        };
                    }
                }
                row += 1;
            }
        }
    }
    if cur.rows() > 0 {
        sink(&cur);
        handed += cur.rows() as u64;
    }
    Ok(handed)
}
