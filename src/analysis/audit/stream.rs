//! The streaming passes: blocks of whole contexts read back from the shards, labelled with
//! their concept sets (shuffled for the false-positive control), and handed on in chunks of
//! rows; and the sample that places each unit's histogram bins before the first pass.

use rayon::prelude::*;

use super::stats::UnitAcc;
use super::{Audit, Progress};
use crate::analysis::blocks::{Block, BlockStream, RowAddr};
use crate::store::HookInfo;

/// Rows scored at once (bounds the feature-major buffer: units × ROWS_PER_CHUNK floats).
const ROWS_PER_CHUNK: usize = 1024;

impl Audit<'_> {
    /// One pass over the scored rows, `ROWS_PER_CHUNK` at a time: `f(hook rows [rows, d],
    /// concept sets, addresses)`. Labels (and their shuffle) are the same on every pass.
    pub(super) fn pass(
        &self,
        stream: &mut BlockStream,
        progress: Progress,
        mut f: impl FnMut(&[f32], &[u128], &[RowAddr]),
    ) -> crate::store::Result<u64> {
        let d = self.sides[0].hook().d;
        stream.rewind();
        let total_groups = stream.row_groups();
        let mut n = 0u64;
        let mut block_index = 0u64;
        'blocks: while let Some(block) = stream.next_block()? {
            let (mut masks, keep) = self.label(&block);
            if let Some(seed) = self.options.shuffle_labels {
                use rand::seq::SliceRandom;
                use rand::SeedableRng;
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(crate::store::mix_seed(&[seed, block_index]));
                let mut kept: Vec<u128> = keep.iter().map(|&r| masks[r]).collect();
                kept.shuffle(&mut rng);
                for (&r, m) in keep.iter().zip(kept) {
                    masks[r] = m;
                }
            }
            block_index += 1;
            for chunk in keep.chunks(ROWS_PER_CHUNK) {
                let chunk = match self.options.max_tokens {
                    Some(max) if n + chunk.len() as u64 > max => &chunk[..(max - n) as usize],
                    _ => chunk,
                };
                if chunk.is_empty() {
                    break 'blocks;
                }
                let x: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&r| block.rows.acts[r * d..(r + 1) * d].iter().copied())
                    .collect();
                let m: Vec<u128> = chunk.iter().map(|&r| masks[r]).collect();
                let addr: Vec<RowAddr> = chunk.iter().map(|&r| block.addr[r]).collect();
                f(&x, &m, &addr);
                n += chunk.len() as u64;
            }
            progress(stream.position(), total_groups, n);
        }
        Ok(n)
    }

    /// Concept sets of every row of a block, and the rows to score (not special).
    fn label(&self, block: &Block) -> (Vec<u128>, Vec<usize>) {
        let mut masks = vec![0u128; block.rows.token.len()];
        for range in block.contexts() {
            let labels: Vec<&[Option<String>]> = block
                .rows
                .labels
                .iter()
                .map(|c| &c[range.clone()])
                .collect();
            let m = self.labeler.label(
                &block.rows.token[range.clone()],
                &block.rows.special[range.clone()],
                &labels,
            );
            masks[range].copy_from_slice(&m);
        }
        let keep = (0..masks.len())
            .filter(|&r| !block.rows.special[r])
            .collect();
        (masks, keep)
    }

    /// Reads evenly spaced row groups until `sample_rows` rows and places each unit's bins.
    pub(super) fn bin_edges(
        &self,
        stream: &mut BlockStream,
        hook: &HookInfo,
    ) -> crate::store::Result<Vec<Vec<UnitAcc>>> {
        let groups = stream.plan().to_vec();
        let per_group = self.dataset.manifest().totals.rows as usize / groups.len().max(1);
        let want = self
            .options
            .sample_rows
            .div_ceil(per_group.max(1))
            .clamp(1, groups.len().max(1));
        let mut x = vec![];
        for i in 0..want.min(groups.len()) {
            let (s, g) = groups[i * groups.len() / want];
            let b = stream.read_row_group(s, g)?;
            for r in 0..b.rows.special.len() {
                if !b.rows.special[r] {
                    x.extend_from_slice(&b.rows.acts[r * hook.d..(r + 1) * hook.d]);
                }
            }
            if x.len() / hook.d.max(1) >= self.options.sample_rows {
                break;
            }
        }
        x.truncate(self.options.sample_rows * hook.d);
        let rows = x.len() / hook.d.max(1);
        let nc = self.labeler.names().len();
        Ok(self
            .sides
            .iter()
            .map(|side| {
                let a = side.activations(&x);
                (0..side.units())
                    .into_par_iter()
                    .map(|u| UnitAcc::new(a[u * rows..(u + 1) * rows].to_vec(), nc))
                    .collect()
            })
            .collect())
    }
}
