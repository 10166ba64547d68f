//! The ReLU encoder's pre-activations, f32 GEMM vs the AMX bf16 screen (`kernels::screened`),
//! at the SynthSAEBench shape (batch 1024, 768 → 4096) unless told otherwise.
//!
//!     cargo build --release --example screen_bench
//!     target/release/examples/screen_bench [--rows 1024] [--d 768] [--s 4096] [--bias -0.05]
//!     PARTS=1 target/release/examples/screen_bench --bias -0.2    # + each part on one thread

use std::time::Instant;

use unravel::kernels::amx::{available, convert, pack_b, Bf16Buf, Tiles};
use unravel::kernels::matmul;
use unravel::kernels::screened::Screen;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect(name))
}

fn lcg(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn main() {
    let (rows, d, s) = (
        arg("--rows", 1024.0) as usize,
        arg("--d", 768.0) as usize,
        arg("--s", 4096.0) as usize,
    );
    let bias = arg("--bias", -0.05) as f32;
    let x = lcg(1, rows * d);
    let mut w = lcg(2, s * d);
    for r in w.chunks_mut(d) {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        r.iter_mut().for_each(|v| *v /= n);
    }
    let xn = (x[..d].iter().map(|v| v * v).sum::<f32>()).sqrt();
    let b = vec![bias * xn; s];
    if std::env::var_os("PARTS").is_some() {
        parts(&x, &w, rows, d, s);
    }
    let mut pre = vec![0f32; rows * s];
    let reps = 10;
    let flop = 2.0 * (rows * d * s) as f64;
    let t = Instant::now();
    for _ in 0..reps {
        for r in pre.chunks_mut(s) {
            r.copy_from_slice(&b);
        }
        matmul((rows, s, d), &mut pre, true, &x, (d, 1), &w, (1, d));
    }
    let f32_s = t.elapsed().as_secs_f64() / reps as f64;
    let positive = pre.iter().filter(|&&v| v > 0.0).count();
    println!(
        "f32 GEMM: {:.2} ms ({:.0} GFLOP/s); {:.2}% positive",
        f32_s * 1e3,
        flop / f32_s / 1e9,
        100.0 * positive as f64 / pre.len() as f64
    );
    let mut screen = Screen::default();
    if !screen.prepare(&w, &b, (d, s)) {
        println!("no AMX here");
        return;
    }
    let t = Instant::now();
    let mut recomputed = 0;
    for _ in 0..reps {
        // As the engine: the weights change every step, so every step packs them.
        screen.prepare(&w, &b, (d, s));
        recomputed = screen.relu_pre(&x, rows, &w, &b, &mut pre).unwrap();
    }
    let amx_s = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "AMX screen: {:.2} ms ({:.0} GFLOP/s equivalent); {:.2}% recomputed in f32; {:.2}x",
        amx_s * 1e3,
        flop / amx_s / 1e9,
        100.0 * recomputed as f64 / pre.len() as f64,
        f32_s / amx_s
    );
}

/// Each part of the screen on one thread (`PARTS=1`; sizes must be multiples of 32).
fn parts(x: &[f32], w: &[f32], rows: usize, d: usize, s: usize) {
    assert!(available(), "no AMX here");
    assert!([rows, d, s].iter().all(|n| n.is_multiple_of(32)));
    let _ = pack_b(w, s, d, d);
    let t = Instant::now();
    let packed = pack_b(w, s, d, d);
    println!(
        "pack W (1 thread): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let mut abuf = Bf16Buf::zeros(x.len());
    convert(x, abuf.as_mut_slice());
    let a = abuf.as_slice();
    let packed = packed.as_slice();
    println!(
        "convert x (1 thread): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let tiles = Tiles::configure().unwrap();
    let mut c = [0f32; 32 * 32];
    let t = Instant::now();
    for pair in 0..s / 32 {
        for m0 in (0..rows).step_by(32) {
            tiles.block(&a[m0 * d..], d, packed, d / 32, pair * 2, &mut c);
        }
    }
    let e = t.elapsed().as_secs_f64();
    println!(
        "tiles alone (1 thread): {:.2} ms, {:.0} GFLOP/s",
        e * 1e3,
        2.0 * (rows * d * s) as f64 / e / 1e9
    );
    let t = Instant::now();
    for _ in 0..s / 32 {
        for _ in (0..rows).step_by(32) {
            tiles.block(a, d, packed, d / 32, 0, &mut c);
        }
    }
    let e = t.elapsed().as_secs_f64();
    println!(
        "tiles on the same block every time (operands in cache, 1 thread): {:.0} GFLOP/s",
        2.0 * (rows * d * s) as f64 / e / 1e9
    );
}
