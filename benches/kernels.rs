//! GELU kernels (ours vs candle) plus a few other candle ops that dominate a GPT-2 forward.
//!
//! Run with `cargo bench --bench kernels`.

use std::hint::black_box;
use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use unravel::kernels::{gelu_erf, gelu_tanh};

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).expect("randn")
}

fn bench_gelu(c: &mut Criterion) {
    let mut group = c.benchmark_group("gelu");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // GPT-2 small MLP for 8×128 tokens, then the large case from the PyTorch comparison.
    for (rows, cols) in [(1024usize, 3072usize), (4096, 6144)] {
        let x = randn(&[rows, cols]);
        let size = format!("{rows}x{cols}");
        group.bench_with_input(BenchmarkId::new("tanh_ours", &size), &x, |b, x| {
            b.iter(|| gelu_tanh(black_box(x)).expect("gelu_tanh"))
        });
        group.bench_with_input(BenchmarkId::new("tanh_candle", &size), &x, |b, x| {
            b.iter(|| black_box(x).gelu().expect("gelu"))
        });
        group.bench_with_input(BenchmarkId::new("erf_ours", &size), &x, |b, x| {
            b.iter(|| gelu_erf(black_box(x)).expect("gelu_erf"))
        });
        group.bench_with_input(BenchmarkId::new("erf_candle", &size), &x, |b, x| {
            b.iter(|| black_box(x).gelu_erf().expect("gelu_erf"))
        });
    }
    group.finish();
}

/// Other per-layer GPT-2-small ops at 8×128 tokens, to see where else time goes.
fn bench_other_ops(c: &mut Criterion) {
    let mut group = c.benchmark_group("candle_ops");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    let a = randn(&[1024, 3072]);
    let bias = randn(&[3072]);
    group.bench_function("broadcast_add_1024x3072+3072", |b| {
        b.iter(|| black_box(&a).broadcast_add(black_box(&bias)).expect("add"))
    });

    let scores = randn(&[8, 12, 128, 128]);
    group.bench_function("softmax_last_dim_8x12x128x128", |b| {
        b.iter(|| candle_nn::ops::softmax_last_dim(black_box(&scores)).expect("softmax"))
    });

    let h = randn(&[1024, 768]);
    let (gamma, beta) = (randn(&[768]), randn(&[768]));
    group.bench_function("layer_norm_1024x768", |b| {
        b.iter(|| candle_nn::ops::layer_norm(black_box(&h), &gamma, &beta, 1e-5).expect("ln"))
    });

    let h2 = randn(&[1024, 768]);
    group.bench_function("add_1024x768", |b| {
        b.iter(|| (black_box(&h) + black_box(&h2)).expect("add"))
    });

    let heads = randn(&[8, 128, 12, 64]);
    group.bench_function("transpose12_contiguous_8x128x12x64", |b| {
        b.iter(|| {
            black_box(&heads)
                .transpose(1, 2)
                .and_then(|t| t.contiguous())
                .expect("transpose")
        })
    });

    // For scale: the MLP up-projection matmul at the same size.
    let w = randn(&[768, 3072]);
    group.bench_function("matmul_1024x768x3072", |b| {
        b.iter(|| black_box(&h).matmul(black_box(&w)).expect("matmul"))
    });

    group.finish();
}

criterion_group!(benches, bench_gelu, bench_other_ops);
criterion_main!(benches);
