//! Every unit's dashboard data, for the report's unit browser: its top-activating contexts and
//! samples from two lower bands of its maximum (75–90%, 50–75%), de-duplicated and read back from
//! the shards in one pass over the row groups they lie in (one row group in memory at a time);
//! its log2 activation histogram; the units sharing most of its top-k tokens (across sides); for
//! SAE features, the nearest features by decoder cosine. Nothing here changes a score.

use std::collections::{BTreeMap, HashMap};

use rayon::prelude::*;

use super::bands::{hist_edges, Sample};
use super::stats::UnitAcc;
use super::units::UnitSource;
use super::{Audit, Progress};
use crate::analysis::blocks::{Block, BlockStream, RowAddr};
use crate::analysis::report::Example;
use crate::sae::Sae;

/// Examples shown per band, and how many candidates are read back to fill them after
/// de-duplication.
pub const SHOWN: usize = 8;
const CANDIDATES: usize = 16;
/// Tokens shown before and after the activating token.
const BEFORE: usize = 10;
const AFTER: usize = 3;
/// Co-activating and nearest units listed per unit.
const NEIGHBOURS: usize = 8;
/// A top-k token shared by more units than this is ignored for co-activation (uninformative,
/// and it would cost the square of its count).
const MAX_SHARED: usize = 512;

/// The bands of a dashboard: (name, lowest and highest fraction of the unit's maximum).
pub const BANDS: [(&str, f32, f32); 3] = [
    ("top", 0.0, f32::INFINITY),
    ("75-90% of max", 0.75, 0.9),
    ("50-75% of max", 0.5, 0.75),
];

/// One unit's dashboard data (beyond what audit.json and scores.csv hold).
#[derive(Debug, Clone, Default)]
pub struct UnitDetail {
    /// Positive activations on a log2 grid: (lo, hi, tokens), empty bins left out.
    pub hist: Vec<(f32, f32, u64)>,
    /// Tokens where the unit is < 0 and = 0.
    pub negative: u64,
    pub zero: u64,
    /// Examples per band of [`BANDS`], highest activation first.
    pub bands: Vec<Vec<Example>>,
    /// (side, unit, share of this unit's top-k tokens also in that unit's top-k).
    pub coactive: Vec<(usize, usize, f64)>,
    /// SAE features: (unit, cosine of the decoder directions), highest first.
    pub nearest: Vec<(usize, f32)>,
}

/// Examples with the row each one's activating token lies at.
type Located = Vec<(Example, RowAddr)>;

/// A context to read back: which unit, which band, which token.
struct Request {
    side: usize,
    unit: usize,
    band: usize,
    value: f32,
    addr: RowAddr,
    concepts: u128,
}

impl Audit<'_> {
    /// The dashboard data of every unit of every side, from the finished accumulators.
    pub(super) fn details(
        &self,
        accs: &[Vec<UnitAcc>],
        n: u64,
        stream: &mut BlockStream,
        progress: Progress,
    ) -> crate::store::Result<Vec<Vec<UnitDetail>>> {
        let mut requests = vec![];
        let mut details: Vec<Vec<UnitDetail>> = accs
            .iter()
            .map(|acc| acc.iter().map(|u| histogram(u, n)).collect())
            .collect();
        for (side, acc) in accs.iter().enumerate() {
            for (unit, u) in acc.iter().enumerate() {
                let tops = u
                    .top
                    .iter()
                    .take(CANDIDATES)
                    .map(|t| (t.value, t.addr, t.concepts));
                let mut push = |band, (value, addr, concepts)| {
                    requests.push(Request {
                        side,
                        unit,
                        band,
                        value,
                        addr,
                        concepts,
                    })
                };
                tops.for_each(|t| push(0, t));
                for (band, &(_, lo, hi)) in BANDS.iter().enumerate().skip(1) {
                    let sample = |s: Sample| (s.value, s.addr, s.concepts);
                    for s in u.bands.band(lo, hi, u.max, CANDIDATES) {
                        push(band, sample(s));
                    }
                }
            }
        }
        let examples = self.read_back(&requests, stream, n, progress)?;
        // Per side, unit and band: the examples read back, with where they lie.
        let mut found: Vec<Vec<Vec<Located>>> = accs
            .iter()
            .map(|a| vec![vec![vec![]; BANDS.len()]; a.len()])
            .collect();
        for (r, ex) in requests.iter().zip(examples) {
            found[r.side][r.unit][r.band].extend(ex.map(|e| (e, r.addr)));
        }
        for (d, f) in details
            .iter_mut()
            .flatten()
            .zip(found.into_iter().flatten())
        {
            d.bands = dedup_bands(f, SHOWN);
        }
        for (side, co) in coactive(accs).into_iter().enumerate() {
            for (unit, list) in co.into_iter().enumerate() {
                details[side][unit].coactive = list;
            }
        }
        for (side, source) in self.sides.iter().enumerate() {
            if let UnitSource::Features { sae, .. } = source {
                for (unit, list) in nearest_decoder(sae, NEIGHBOURS).into_iter().enumerate() {
                    details[side][unit].nearest = list;
                }
            }
        }
        Ok(details)
    }

    /// The example of every request, reading each row group once, in file order.
    fn read_back(
        &self,
        requests: &[Request],
        stream: &mut BlockStream,
        n: u64,
        progress: Progress,
    ) -> crate::store::Result<Vec<Option<Example>>> {
        let mut groups: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
        for (i, r) in requests.iter().enumerate() {
            groups
                .entry((r.addr.shard, r.addr.row_group))
                .or_default()
                .push(i);
        }
        let mut out: Vec<Option<Example>> = vec![None; requests.len()];
        let total = groups.len();
        for (g, ((s, rg), ids)) in groups.into_iter().enumerate() {
            let block = stream.read_row_group(s as usize, rg as usize)?;
            let made: Vec<Example> = ids
                .par_iter()
                .map(|&i| {
                    let r = &requests[i];
                    let side = &self.sides[r.side];
                    self.example(
                        side,
                        r.unit,
                        &block,
                        r.addr.row as usize,
                        r.value,
                        r.concepts,
                    )
                })
                .collect();
            for (i, ex) in ids.into_iter().zip(made) {
                out[i] = Some(ex);
            }
            progress(g + 1, total, n);
        }
        Ok(out)
    }

    /// The window of `BEFORE` / `AFTER` tokens of the same context around `row` of `block`.
    fn example(
        &self,
        side: &UnitSource,
        unit: usize,
        block: &Block,
        row: usize,
        value: f32,
        concepts: u128,
    ) -> Example {
        let ids = &block.rows.context_id;
        let ctx = ids[row];
        let lo = (row.saturating_sub(BEFORE)..=row)
            .find(|&i| ids[i] == ctx)
            .unwrap_or(row);
        let hi = (row..(row + AFTER + 1).min(ids.len()))
            .take_while(|&i| ids[i] == ctx)
            .last()
            .unwrap_or(row);
        let d = side.hook().d;
        Example {
            activation: value,
            context_id: ctx,
            tokens: block.rows.token[lo..=hi].to_vec(),
            activations: (lo..=hi)
                .map(|i| side.activation(unit, &block.rows.acts[i * d..(i + 1) * d]))
                .collect(),
            focus: row - lo,
            focus_concepts: (0..self.labeler.names().len())
                .filter(|&c| concepts >> c & 1 == 1)
                .map(|c| self.labeler.names()[c].clone())
                .collect(),
        }
    }
}

/// The unit's histogram over `n` tokens, empty bins left out.
fn histogram(u: &UnitAcc, n: u64) -> UnitDetail {
    let positive: u64 = u.bands.hist.iter().map(|&c| c as u64).sum();
    let negative = u.nonzero() - positive;
    UnitDetail {
        hist: (u.bands.hist.iter().enumerate())
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| {
                let (lo, hi) = hist_edges(b);
                (lo, hi, c as u64)
            })
            .collect(),
        negative,
        zero: n - u.nonzero(),
        ..UnitDetail::default()
    }
}

/// Keeps the first `n` examples (in order) that show a new window: an example is a duplicate of
/// an earlier one when their token texts are the same, or when both come from the same context
/// of one row group and their activating tokens are at most `BEFORE` rows apart.
pub fn dedup(examples: Vec<(Example, RowAddr)>, n: usize) -> Vec<Example> {
    dedup_keep(examples, n)
        .into_iter()
        .map(|(e, _)| e)
        .collect()
}

fn dedup_keep(examples: Vec<(Example, RowAddr)>, n: usize) -> Vec<(Example, RowAddr)> {
    let mut kept: Vec<(Example, RowAddr)> = vec![];
    for (ex, at) in examples {
        if kept.len() == n {
            break;
        }
        let dup = kept.iter().any(|(k, a)| {
            k.tokens == ex.tokens
                || (k.context_id == ex.context_id
                    && (a.shard, a.row_group) == (at.shard, at.row_group)
                    && a.row.abs_diff(at.row) as usize <= BEFORE)
        });
        if !dup {
            kept.push((ex, at));
        }
    }
    kept
}

/// [`dedup`] per band, an example shown in an earlier band counting as seen.
fn dedup_bands(bands: Vec<Vec<(Example, RowAddr)>>, n: usize) -> Vec<Vec<Example>> {
    let mut seen: Vec<(Example, RowAddr)> = vec![];
    let mut out = vec![];
    for band in bands {
        let before = seen.len();
        let mut all = std::mem::take(&mut seen);
        all.extend(band);
        let kept = dedup_keep(all, before + n);
        out.push(kept[before..].iter().map(|(e, _)| e.clone()).collect());
        seen = kept;
    }
    out
}

/// For every unit of every side: the units (either side) whose top-k tokens include the most of
/// its own, with the share of its top-k they cover.
fn coactive(accs: &[Vec<UnitAcc>]) -> Vec<Vec<Vec<(usize, usize, f64)>>> {
    let mut by_addr: HashMap<RowAddr, Vec<(usize, usize)>> = HashMap::new();
    for (side, acc) in accs.iter().enumerate() {
        for (unit, u) in acc.iter().enumerate() {
            for t in &u.top {
                by_addr.entry(t.addr).or_default().push((side, unit));
            }
        }
    }
    let mut shared: Vec<Vec<HashMap<(usize, usize), u32>>> =
        accs.iter().map(|a| vec![HashMap::new(); a.len()]).collect();
    for units in by_addr.values() {
        if units.len() > MAX_SHARED {
            continue;
        }
        for &a in units {
            for &b in units {
                if a != b {
                    *shared[a.0][a.1].entry(b).or_default() += 1;
                }
            }
        }
    }
    shared
        .into_iter()
        .zip(accs)
        .map(|(side, acc)| {
            side.into_iter()
                .zip(acc)
                .map(|(m, u)| {
                    let mut v: Vec<((usize, usize), u32)> = m.into_iter().collect();
                    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    v.truncate(NEIGHBOURS);
                    let k = u.top.len().max(1) as f64;
                    v.into_iter()
                        .map(|((s, w), c)| (s, w, c as f64 / k))
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Per feature, the `n` other features with the highest cosine between decoder directions
/// (blocks of rows against all rows through the GEMM: time d_sae² · d_in, memory a block).
pub fn nearest_decoder(sae: &Sae, n: usize) -> Vec<Vec<(usize, f32)>> {
    let (m, d) = (sae.d_sae, sae.d_in);
    let mut unit = sae.w_dec.clone();
    for row in unit.chunks_mut(d.max(1)) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
    const BLOCK: usize = 256;
    let mut out = Vec::with_capacity(m);
    let mut sims = vec![0f32; BLOCK * m];
    for start in (0..m).step_by(BLOCK) {
        let b = BLOCK.min(m - start);
        crate::kernels::matmul(
            (b, m, d),
            &mut sims,
            false,
            &unit[start * d..],
            (d, 1),
            &unit,
            (1, d),
        );
        let block: Vec<Vec<(usize, f32)>> = sims[..b * m]
            .par_chunks(m)
            .enumerate()
            .map(|(i, row)| {
                let mut v: Vec<(usize, f32)> = (row.iter().copied().enumerate())
                    .filter(|&(j, _)| j != start + i)
                    .collect();
                let k = n.min(v.len());
                if k > 0 {
                    v.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
                }
                v.truncate(k);
                v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                v
            })
            .collect();
        out.extend(block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(tokens: &[&str], focus: usize, context_id: u64) -> Example {
        Example {
            activation: 1.0,
            context_id,
            tokens: tokens.iter().map(|t| t.to_string()).collect(),
            activations: vec![0.0; tokens.len()],
            focus,
            focus_concepts: vec![],
        }
    }

    fn at(row_group: u32, row: u32) -> RowAddr {
        RowAddr {
            shard: 0,
            row_group,
            row,
        }
    }

    #[test]
    fn dedup_drops_repeated_texts_and_overlapping_windows() {
        let list = vec![
            (ex(&["a", " cat"], 1, 7), at(0, 5)),
            // Same text elsewhere (a repeated document): dropped.
            (ex(&["a", " cat"], 1, 9), at(3, 40)),
            // Same context, 3 rows on: the windows overlap, dropped.
            (ex(&[" cat", " sat"], 1, 7), at(0, 8)),
            // Same context id in another row group, and far away in the same: kept.
            (ex(&["the", " dog"], 1, 7), at(1, 8)),
            (ex(&["on", " mat"], 1, 7), at(0, 5 + BEFORE as u32 + 1)),
            (ex(&["x"], 0, 1), at(2, 0)),
        ];
        let kept = dedup(list.clone(), 10);
        let texts: Vec<String> = kept.iter().map(|e| e.tokens.concat()).collect();
        assert_eq!(texts, ["a cat", "the dog", "on mat", "x"]);
        assert_eq!(dedup(list.clone(), 2).len(), 2);
        // Across bands: an example of the top band is not shown again lower down.
        let bands = dedup_bands(vec![list[..1].to_vec(), list[1..].to_vec()], 2);
        let texts: Vec<Vec<String>> = (bands.iter())
            .map(|b| b.iter().map(|e| e.tokens.concat()).collect())
            .collect();
        assert_eq!(texts, [vec!["a cat"], vec!["the dog", "on mat"]]);
    }
}
