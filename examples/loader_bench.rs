//! Loader throughput: shuffled `[batch, d]` batches of one hook, as `unravel train` reads them.
//!
//! ```sh
//! cargo build --release --example loader_bench
//! target/release/examples/loader_bench DATASET_DIR [HOOK] [BATCHES]
//! ```

use std::time::Instant;

use unravel::store::{Dataset, Loader, LoaderConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .expect("usage: loader_bench DATASET_DIR [HOOK] [BATCHES]");
    let ds = Dataset::open(std::path::Path::new(dir)).expect("open dataset");
    let hook = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| ds.manifest().hooks[0].name.clone());
    let batches: usize = args.get(3).map_or(64, |b| b.parse().expect("BATCHES"));
    let cfg = LoaderConfig::new(&hook, 4096);
    let mut loader = Loader::new(&ds, &cfg, &candle_core::Device::Cpu).expect("loader");
    let t0 = Instant::now();
    let mut rows = 0usize;
    for _ in 0..batches {
        let (_, r) = loader
            .next_rows()
            .expect("batch")
            .expect("shuffled loaders never end");
        rows += r;
    }
    let s = t0.elapsed().as_secs_f64();
    let d = loader.d();
    println!(
        "{rows} rows of {hook} (d = {d}, {}) in {s:.2}s: {:.0} rows/s, {:.0} MB/s of f32",
        ds.hook(&hook)
            .map(|h| h.dtype.to_string())
            .unwrap_or_default(),
        rows as f64 / s,
        rows as f64 * d as f64 * 4.0 / s / 1e6
    );
}
