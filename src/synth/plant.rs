//! Planting features into real activations: a copy of a dataset in which one hook's non-special
//! rows get `n_features` random unit directions added, each active independently with
//! probability `density`, with magnitude `relative_magnitude × (the hook's mean norm) × Exp(1)`.
//! The SAE must then find them among the model's own features. Ground truth as for `synth`.
//!
//! Memory: one shard at a time (shards hold whole contexts, so a shard is written as one batch).

use std::path::Path;

use arrow_array::{Array, BooleanArray, StringArray, UInt32Array, UInt64Array};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_distr::{Exp1, StandardNormal};

use super::planted::{new_truth_dir, PlantedTruth, TRUTH_FILE};
use crate::store::{
    nonfinite_rows, remove_rows, retain_rows, ContextBatch, Dataset, DatasetWriter, Manifest,
    StoreError, WriterOptions,
};

/// What to plant, where.
#[derive(Debug, Clone)]
pub struct PlantSpec {
    pub hook: String,
    pub n_features: usize,
    pub density: f64,
    /// Mean magnitude as a multiple of the hook's mean row norm.
    pub relative_magnitude: f32,
    pub seed: u64,
}

fn err(path: &Path, m: impl Into<String>) -> StoreError {
    StoreError::Batch {
        path: path.to_path_buf(),
        message: m.into(),
    }
}

/// Writes the planted copy of `src` into `out` and returns the truth (also saved in `out/__unravel__/truth/`).
pub fn plant(src: &Dataset, spec: &PlantSpec, out: &Path) -> crate::store::Result<PlantedTruth> {
    let m = src.manifest();
    let hook = src.hook(&spec.hook)?.clone();
    let d = hook.d;
    let mean_norm = m.stats.get(&spec.hook).map_or(1.0, |s| s.mean_norm) as f32;
    let scale = spec.relative_magnitude * mean_norm;
    if !scale.is_finite() || scale <= 0.0 {
        return Err(StoreError::Format {
            path: crate::store::manifest_path(src.dir()),
            message: format!(
                "--magnitude {} × the mean row norm of {} ({mean_norm}) is {scale}, not a usable \
                 magnitude: give a smaller --magnitude (or re-extract a dataset whose stats are finite)",
                spec.relative_magnitude, spec.hook
            ),
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let n = spec.n_features;
    let mut directions: Vec<f32> = (0..n * d).map(|_| rng.sample(StandardNormal)).collect();
    for row in directions.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let mut planter = Planter {
        spec,
        directions: &directions,
        d,
        scale,
        mean_norm,
        rng,
        fired: vec![0u64; n],
        planted_rows: 0,
    };
    let mut writer = copy_writer(m, out)?;
    let target = m
        .hooks
        .iter()
        .position(|h| h.name == spec.hook)
        .unwrap_or(0);
    for s in 0..src.shard_count() {
        let mut rows = ShardRows::read(src, s)?;
        planter.plant_rows(&mut rows.hooks[target], &rows.special, &rows.path)?;
        rows.write(&mut writer)?;
    }
    writer.finish()?;
    let frequencies: Vec<f32> = planter
        .fired
        .iter()
        .map(|&k| (k as f64 / planter.planted_rows.max(1) as f64) as f32)
        .collect();
    save_truth(out, &directions, &frequencies, n, d, scale)?;
    let max_cosine = super::planted::max_pairwise_cosine(&directions, d);
    Ok(PlantedTruth {
        directions,
        frequencies,
        n_features: n,
        d,
        max_cosine,
    })
}

/// A writer for a copy of the dataset described by `m`, one source shard per output shard.
fn copy_writer(m: &Manifest, out: &Path) -> crate::store::Result<DatasetWriter> {
    let mut header = Manifest::new(
        m.model.clone(),
        m.tokenizer_sha256.clone(),
        m.hooks.clone(),
        m.ctx,
        m.bos,
        m.corpus.clone(),
    );
    header.label_columns = m.label_columns.clone();
    header.max_tokens = m.max_tokens;
    let biggest = m.shards.iter().map(|s| s.rows as usize).max().unwrap_or(1);
    DatasetWriter::create(
        out,
        header,
        WriterOptions {
            shard_rows: biggest,
            ..WriterOptions::default()
        },
    )
}

/// Adds the planted directions to rows, counting how often each fires.
struct Planter<'a> {
    spec: &'a PlantSpec,
    /// Unit directions `[n_features, d]`.
    directions: &'a [f32],
    d: usize,
    scale: f32,
    mean_norm: f32,
    rng: rand::rngs::StdRng,
    fired: Vec<u64>,
    planted_rows: u64,
}

impl Planter<'_> {
    /// Plants into every non-special row of one hook's values (`path`: the shard, for errors).
    fn plant_rows(
        &mut self,
        values: &mut [f32],
        special: &[bool],
        path: &Path,
    ) -> crate::store::Result<()> {
        let d = self.d;
        for (r, row) in values.chunks_mut(d).enumerate() {
            if special[r] {
                continue;
            }
            self.planted_rows += 1;
            for (i, f) in self.fired.iter_mut().enumerate() {
                if self.rng.random::<f64>() < self.spec.density {
                    let a: f32 = self.rng.sample(Exp1);
                    *f += 1;
                    for (o, &w) in row.iter_mut().zip(&self.directions[i * d..(i + 1) * d]) {
                        *o += self.scale * a * w;
                    }
                }
            }
            if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                return Err(StoreError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "hook {} row {r} became {v} after planting features of magnitude \
                         --magnitude {} × mean row norm {}: too large for f32; give a \
                         smaller --magnitude",
                        self.spec.hook, self.spec.relative_magnitude, self.mean_norm
                    ),
                });
            }
        }
        Ok(())
    }
}

/// One shard's rows, every column in memory.
struct ShardRows {
    path: std::path::PathBuf,
    ids: Vec<u64>,
    pos: Vec<u32>,
    tids: Vec<u32>,
    toks: Vec<String>,
    special: Vec<bool>,
    labels: Vec<Vec<Option<String>>>,
    hooks: Vec<Vec<f32>>,
}

impl ShardRows {
    /// Reads shard `s` of `src`. Rows holding NaN/Inf in any hook are refused, or
    /// (--skip-nonfinite) their whole contexts are left out: the writer keeps contexts whole.
    fn read(src: &Dataset, s: usize) -> crate::store::Result<Self> {
        let m = src.manifest();
        let reader = src.shard_reader(s)?;
        let mut rows = ShardRows {
            path: reader.path().to_path_buf(),
            ids: vec![],
            pos: vec![],
            tids: vec![],
            toks: vec![],
            special: vec![],
            labels: vec![vec![]; m.label_columns.len()],
            hooks: vec![vec![]; m.hooks.len()],
        };
        let mut bad_contexts = std::collections::HashSet::new();
        for rg in 0..reader.row_groups().len() {
            let first = rows.ids.len(); // this row group's first row in the shard's columns
            let mut cols = vec!["context_id", "position", "token_id", "token", "special"];
            cols.extend(m.label_columns.iter().map(String::as_str));
            for batch in reader.read_columns(rg, &cols)? {
                rows.push_batch(&batch)?;
            }
            for (h, info) in m.hooks.iter().enumerate() {
                let values = reader.read_hook_unchecked(info, rg)?.values;
                let bad = nonfinite_rows(&values, info.d);
                reader.nonfinite_policy(info, rg, bad.len())?;
                bad_contexts.extend(bad.iter().map(|r| rows.ids[first + r]));
                rows.hooks[h].extend(values);
            }
        }
        if !bad_contexts.is_empty() {
            rows.drop_contexts(&bad_contexts, m);
        }
        Ok(rows)
    }

    /// Appends one batch of the token and label columns.
    fn push_batch(&mut self, batch: &arrow_array::RecordBatch) -> crate::store::Result<()> {
        let path = &self.path;
        let c = |i: usize| batch.column(i).clone();
        let (c0, c1, c2, c3, c4) = (c(0), c(1), c(2), c(3), c(4));
        let (Some(a), Some(b), Some(t), Some(k), Some(sp)) = (
            c0.as_any().downcast_ref::<UInt64Array>(),
            c1.as_any().downcast_ref::<UInt32Array>(),
            c2.as_any().downcast_ref::<UInt32Array>(),
            c3.as_any().downcast_ref::<StringArray>(),
            c4.as_any().downcast_ref::<BooleanArray>(),
        ) else {
            return Err(err(path, "unexpected column types"));
        };
        for r in 0..batch.num_rows() {
            self.ids.push(a.value(r));
            self.pos.push(b.value(r));
            self.tids.push(t.value(r));
            self.toks.push(k.value(r).to_string());
            self.special.push(sp.value(r));
        }
        for (l, out) in self.labels.iter_mut().enumerate() {
            let col = c(5 + l);
            let col = col
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| err(path, "a label column is not utf8"))?;
            out.extend((0..col.len()).map(|r| col.is_valid(r).then(|| col.value(r).to_string())));
        }
        Ok(())
    }

    /// Leaves out every row of the given contexts.
    fn drop_contexts(&mut self, bad_contexts: &std::collections::HashSet<u64>, m: &Manifest) {
        let keep: Vec<bool> = self.ids.iter().map(|c| !bad_contexts.contains(c)).collect();
        retain_rows(&mut self.ids, &keep);
        retain_rows(&mut self.pos, &keep);
        retain_rows(&mut self.tids, &keep);
        retain_rows(&mut self.toks, &keep);
        retain_rows(&mut self.special, &keep);
        self.labels.iter_mut().for_each(|l| retain_rows(l, &keep));
        for (h, info) in m.hooks.iter().enumerate() {
            let drop: Vec<usize> = (0..keep.len()).filter(|&r| !keep[r]).collect();
            remove_rows(&mut self.hooks[h], info.d, &drop);
        }
    }

    fn write(&self, writer: &mut DatasetWriter) -> crate::store::Result<()> {
        let refs: Vec<&[f32]> = self.hooks.iter().map(Vec::as_slice).collect();
        writer.write_batch(&ContextBatch {
            context_ids: &self.ids,
            positions: &self.pos,
            token_ids: &self.tids,
            tokens: &self.toks,
            special: &self.special,
            labels: &self.labels,
            hooks: &refs,
        })
    }
}

/// Saves the truth (directions, frequencies, magnitude scale) in `out/__unravel__/truth/`.
fn save_truth(
    out: &Path,
    directions: &[f32],
    frequencies: &[f32],
    n: usize,
    d: usize,
    scale: f32,
) -> crate::store::Result<()> {
    let truth_dir = new_truth_dir(out);
    std::fs::create_dir_all(&truth_dir).map_err(|e| StoreError::io(&truth_dir, e))?;
    let to = |e: candle_core::Error| err(&truth_dir, e.to_string());
    let cpu = Device::Cpu;
    let tensors = [
        (
            "directions",
            Tensor::from_slice(directions, (n, d), &cpu).map_err(to)?,
        ),
        (
            "frequencies",
            Tensor::from_slice(frequencies, n, &cpu).map_err(to)?,
        ),
        (
            "magnitude_scale",
            Tensor::from_slice(&[scale], 1, &cpu).map_err(to)?,
        ),
    ];
    let path = truth_dir.join(TRUTH_FILE);
    crate::io::write_safetensors(&path, &tensors).map_err(|e| StoreError::io(&path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A magnitude that f32 cannot hold is refused before anything is written, naming the flag.
    #[test]
    fn an_unusable_magnitude_says_which_flag_to_change() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let spec = crate::synth::PlantedSpec::new(8, 4, 0.5, 256, 1);
        crate::synth::write_planted(&spec, &src).unwrap();
        let ds = Dataset::open(&src).unwrap();
        let out = tmp.path().join("out");
        let plant_spec = PlantSpec {
            hook: ds.manifest().hooks[0].name.clone(),
            n_features: 4,
            density: 0.5,
            relative_magnitude: f32::MAX,
            seed: 0,
        };
        let e = plant(&ds, &plant_spec, &out).unwrap_err().to_string();
        assert!(
            e.contains("manifest.json: --magnitude 340282350000000000000000000000000000000 × the mean row norm")
                && e.contains("is inf, not a usable magnitude: give a smaller --magnitude"),
            "{e}"
        );
        assert!(!out.exists());
    }
}
