//! Samples with their true codes straight from a SynthSAEBench generator: the held-out rows a
//! streamed run (`unravel train --synth`) evaluates on, from [`HELD_OUT_START`] on — rows no
//! training run reads — cut into [`SampleBatch`]es. Nothing is written or read from disk.

use super::samples::SampleBatch;
use crate::sae::train::HELD_OUT_START;
use crate::synth::bench::BenchModel;
use crate::synth::truth::Truth;

/// The generator's ground truth in the form `verify` scores against: its dictionary, and each
/// feature's intended firing frequency (the Zipf probabilities, which the hierarchy's
/// compensation makes the marginal ones).
pub fn generator_truth(model: &BenchModel) -> Truth {
    Truth {
        directions: model.directions.clone(),
        frequencies: model.base_probabilities.iter().map(|&p| p as f32).collect(),
        d: model.dims(),
    }
}

/// Hands `sink` `samples` held-out rows of `model` with their codes, in batches of `batch` rows
/// (the last one shorter).
pub fn generated_batches(
    model: &BenchModel,
    samples: u64,
    batch: usize,
    sink: &mut dyn FnMut(&SampleBatch),
) {
    let mut done = 0u64;
    while done < samples {
        let n = (batch.max(1) as u64).min(samples - done) as usize;
        let (x, codes) = model.sample(HELD_OUT_START + done, n);
        sink(&SampleBatch {
            x,
            offsets: codes.offsets,
            features: codes.features,
            values: codes.values,
        });
        done += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::bench::BenchSpec;

    #[test]
    fn batches_are_the_held_out_rows_in_order() {
        let model = BenchModel::build(
            &BenchSpec::load("synth-sae-bench-tiny").unwrap(),
            &mut |_, _| {},
        );
        let mut got: Vec<SampleBatch> = vec![];
        generated_batches(&model, 10, 4, &mut |b| got.push(b.clone()));
        assert_eq!(
            got.iter().map(SampleBatch::rows).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let (x, codes) = model.sample(HELD_OUT_START + 8, 2);
        assert_eq!(got[2].x, x);
        assert_eq!(got[2].features, codes.features);
        let t = generator_truth(&model);
        assert_eq!((t.d, t.frequencies.len()), (96, 1024));
    }
}
