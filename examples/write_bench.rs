//! Writer CPU cost: what `unravel extract` spends storing activations, without the forward pass.
//!
//! Writes `TOKENS` rows (contexts of 128, batches of 8 contexts, as extract's defaults) of 13
//! GPT-2-small-sized hooks (d = 768) through `DatasetWriter`, f16, default shard and row-group
//! sizes. The values are generated before the clock starts: Gaussian, with a per-hook scale, so
//! zstd sees activation-like bytes. Prints the process CPU time and wall time of the writing.
//!
//! ```sh
//! cargo build --release --example write_bench
//! RAYON_NUM_THREADS=2 target/release/examples/write_bench [TOKENS] [OUT_DIR]
//! ```

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use unravel::store::{
    Bos, ContextBatch, CorpusInfo, DatasetWriter, HookInfo, Manifest, ModelInfo, StorageDtype,
    WriterOptions,
};

const CTX: usize = 128;
const BATCH: usize = 8;
const HOOKS: usize = 13;
const D: usize = 768;

/// CPU seconds of the whole process (all threads).
fn process_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tokens: usize = args.get(1).map_or(16_384, |t| t.parse().expect("TOKENS"));
    let dir = std::path::PathBuf::from(
        args.get(2)
            .cloned()
            .unwrap_or_else(|| "/tmp/unravel-write-bench".into()),
    );
    let _ = std::fs::remove_dir_all(&dir);

    let rows = BATCH * CTX;
    let batches = tokens.div_ceil(rows);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let values: Vec<Vec<f32>> = (0..HOOKS)
        .map(|h| {
            let scale = 0.5 + h as f32 * 0.3;
            (0..rows * D)
                .map(|_| scale * rng.sample::<f32, _>(StandardNormal))
                .collect()
        })
        .collect();
    let hooks: Vec<HookInfo> = (0..HOOKS)
        .map(|i| HookInfo {
            name: format!("blocks.{i}.hook_resid_post"),
            d: D,
            dtype: StorageDtype::F16,
        })
        .collect();
    let manifest = Manifest::new(
        ModelInfo {
            id: "write-bench".into(),
            revision: None,
            arch: "gpt2".into(),
            config_sha256: String::new(),
            weights_sha256: None,
            random_weights: true,
            seed: Some(0),
        },
        String::new(),
        hooks,
        CTX,
        Bos::EndOfText,
        CorpusInfo {
            sources: vec![],
            sha256: String::new(),
            format: "txt".into(),
            text_field: None,
            documents: 0,
            empty_documents: 0,
        },
    );
    let mut writer =
        DatasetWriter::create(&dir, manifest, WriterOptions::default()).expect("create dataset");

    let positions: Vec<u32> = (0..rows).map(|r| (r % CTX) as u32).collect();
    let token_ids: Vec<u32> = (0..rows).map(|r| (r * 7919 % 50257) as u32).collect();
    let token_text: Vec<String> = token_ids.iter().map(|t| format!("t{t}")).collect();
    let special: Vec<bool> = positions.iter().map(|&p| p == 0).collect();
    let hook_slices: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();

    let (cpu0, t0) = (process_cpu_secs(), Instant::now());
    for b in 0..batches {
        let context_ids: Vec<u64> = (0..rows).map(|r| (b * BATCH + r / CTX) as u64).collect();
        writer
            .write_batch(&ContextBatch {
                context_ids: &context_ids,
                positions: &positions,
                token_ids: &token_ids,
                tokens: &token_text,
                special: &special,
                labels: &[],
                hooks: &hook_slices,
            })
            .expect("write batch");
    }
    let manifest = writer.finish().expect("finish dataset");
    let (cpu, wall) = (process_cpu_secs() - cpu0, t0.elapsed().as_secs_f64());
    let written = manifest.totals.rows as f64;
    println!(
        "{} rows × {HOOKS} hooks × d {D}, {} shards: CPU {cpu:.3}s ({:.2} ns/value), wall {wall:.3}s, {:.0} MB on disk",
        manifest.totals.rows,
        manifest.shards.len(),
        cpu * 1e9 / (written * (HOOKS * D) as f64),
        manifest.shards.iter().map(|s| s.bytes).sum::<u64>() as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}
