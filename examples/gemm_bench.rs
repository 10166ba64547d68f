//! f32 GEMM throughput at the forward pass's shapes (1024 tokens of GPT-2 small / DistilBERT),
//! through the same `gemm` call the fused linear uses, for BENCHMARKS.md.
//!
//! cargo run --release --example gemm_bench -- 20
//!
//! Prints one JSON line per shape: `m n k`, B layout, median ms and GFLOP/s.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let iters: usize = std::env::args().nth(1).map_or(Ok(20), |s| s.parse())?;
    // (m, n, k): rows = 1024 tokens; GPT-2's fused qkv, attention out, MLP in, MLP out.
    let shapes = [
        (1024, 2304, 768),
        (1024, 768, 768),
        (1024, 3072, 768),
        (1024, 768, 3072),
    ];
    for &(m, n, k) in &shapes {
        for transposed_b in [false, true] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 * 0.01).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 * 0.01).collect();
            let mut c = vec![0f32; m * n];
            // B is [k, n] row-major, or [n, k] row-major read transposed (nn.Linear's layout).
            let b_strides = if transposed_b { (1, k) } else { (n, 1) };
            let mut times = vec![];
            for i in 0..iters + 2 {
                let t0 = Instant::now();
                unravel::kernels::matmul((m, n, k), &mut c, false, &a, (k, 1), &b, b_strides);
                if i >= 2 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let gflops = 2.0 * (m * n * k) as f64 / median / 1e9;
            println!(
                "{{\"m\":{m},\"n\":{n},\"k\":{k},\"b\":\"{}\",\"ms\":{:.3},\"gflops\":{:.1}}}",
                if transposed_b { "nk" } else { "kn" },
                median * 1e3,
                gflops
            );
        }
    }
    Ok(())
}
