//! What the audit hands back: the report (with its cards: each chosen unit's top activations
//! read back in context) and the full score table, also as scores.csv.

use std::collections::BTreeMap;

use super::decision::Failed;
use super::stats::UnitAcc;
use super::units::UnitSource;
use super::Audit;
use crate::analysis::blocks::{Block, BlockStream};
use crate::analysis::report::{
    AuditReport, Card, ConceptInfo, Example, Scores, SideReport, UnitResult, AUDIT_VERSION,
};

/// The report and the full score table: per side, `[units, concepts]` row-major, with the tests
/// each pair failed (the same layout).
pub struct AuditOutput {
    pub report: AuditReport,
    pub scores: Vec<Vec<Scores>>,
    pub failed: Vec<Vec<Failed>>,
    /// Per side, every unit's dashboard data (the report's unit browser).
    pub details: Vec<Vec<super::browse::UnitDetail>>,
}

impl AuditOutput {
    /// The full table as CSV: one line per side × unit × concept.
    pub fn scores_csv(&self) -> String {
        let r = &self.report;
        let mut out = String::from(
            "kind,unit,concept,selectivity,auroc,topk,iou,support,z,passes,reason,class\n",
        );
        for ((side, table), failed) in r.sides.iter().zip(&self.scores).zip(&self.failed) {
            let nc = r.concepts.len();
            for (i, s) in table.iter().enumerate() {
                let (unit, c) = (i / nc, i % nc);
                let name = &r.concepts[c].name;
                // The final decision: every test and the explain-away pass.
                let passes = failed[i].passes();
                out.push_str(&format!(
                    "{},{unit},{},{:.6},{:.6},{:.6},{:.6},{},{:.3},{},{},{}\n",
                    side.kind,
                    csv_field(name),
                    s.selectivity,
                    s.auroc,
                    s.topk,
                    s.iou,
                    s.support,
                    s.z,
                    passes as u8,
                    failed[i].reason(),
                    side.unit_results[unit].class
                ));
            }
        }
        out
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Audit<'_> {
    /// Cards: polysemantic units first, then monosemantic, then unexplained; best score first
    /// within a class. Examples are read back from the shards around each top activation.
    pub(super) fn cards(
        &self,
        side: &UnitSource,
        acc: &[UnitAcc],
        table: &[Scores],
        report: &SideReport,
        stream: &mut BlockStream,
    ) -> crate::store::Result<Vec<Card>> {
        let o = &self.options;
        let rank = |c: &str| match c {
            "polysemantic" => 0,
            "monosemantic" => 1,
            "unexplained" => 2,
            _ => 3,
        };
        let best = |r: &UnitResult| r.concepts.first().map_or(0.0, |p| o.score.of(&p.scores));
        let mut chosen: Vec<&UnitResult> = report
            .unit_results
            .iter()
            .filter(|r| r.class != "dead")
            .collect();
        chosen.sort_by(|a, b| {
            rank(&a.class)
                .cmp(&rank(&b.class))
                .then(best(b).total_cmp(&best(a)))
                .then(b.density.total_cmp(&a.density))
                .then(a.unit.cmp(&b.unit))
        });
        chosen.truncate(o.cards);
        // Read each needed row group once.
        let mut needed: BTreeMap<(u32, u32), Block> = BTreeMap::new();
        for r in &chosen {
            for t in acc[r.unit].top.iter().take(o.examples) {
                needed.entry((t.addr.shard, t.addr.row_group)).or_default();
            }
        }
        for ((s, g), block) in needed.iter_mut() {
            *block = stream.read_row_group(*s as usize, *g as usize)?;
        }
        let d = side.hook().d;
        let n_concepts = self.labeler.names().len();
        let mut cards = vec![];
        for r in chosen {
            let u = &acc[r.unit];
            let mut examples = vec![];
            for t in u.top.iter().take(o.examples) {
                let block = &needed[&(t.addr.shard, t.addr.row_group)];
                let row = t.addr.row as usize;
                let ctx = block.rows.context_id[row];
                let lo = (row.saturating_sub(o.window)..=row)
                    .find(|&i| block.rows.context_id[i] == ctx)
                    .unwrap_or(row);
                let hi = (row..(row + o.window + 1).min(block.rows.context_id.len()))
                    .take_while(|&i| block.rows.context_id[i] == ctx)
                    .last()
                    .unwrap_or(row);
                examples.push(Example {
                    activation: t.value,
                    context_id: ctx,
                    tokens: block.rows.token[lo..=hi].to_vec(),
                    activations: (lo..=hi)
                        .map(|i| side.activation(r.unit, &block.rows.acts[i * d..(i + 1) * d]))
                        .collect(),
                    focus: row - lo,
                    focus_concepts: (0..n_concepts)
                        .filter(|&c| t.concepts >> c & 1 == 1)
                        .map(|c| self.labeler.names()[c].clone())
                        .collect(),
                });
            }
            let concept_scores = table[r.unit * n_concepts..(r.unit + 1) * n_concepts]
                .iter()
                .map(|s| o.score.of(s))
                .collect();
            cards.push(Card {
                unit: r.unit,
                class: r.class.clone(),
                concept_scores,
                examples,
            });
        }
        Ok(cards)
    }

    /// The report of a finished audit over `n` tokens.
    pub(super) fn report(
        &self,
        n: u64,
        concepts: Vec<ConceptInfo>,
        sides: Vec<SideReport>,
    ) -> AuditReport {
        AuditReport {
            version: AUDIT_VERSION,
            dataset: self.dataset.dir().display().to_string(),
            model: self.dataset.manifest().model.id.clone(),
            tokens: n,
            score: self.options.score.name().into(),
            threshold: self.options.threshold,
            min_support: self.options.min_support,
            min_z: self.options.min_z,
            min_auroc: self.options.min_auroc,
            topk_alpha: self.options.topk_alpha,
            min_topk_lift: self.options.min_topk_lift,
            top_k: self.options.top_k,
            related_overlap: self.options.related_overlap,
            concepts,
            sides,
        }
    }

    /// The concepts with their token counts over `n` scored tokens.
    pub(super) fn concept_infos(&self, counts: &[u64], n: u64) -> Vec<ConceptInfo> {
        (0..counts.len())
            .map(|c| ConceptInfo {
                name: self.labeler.names()[c].clone(),
                source: self.labeler.sources()[c].to_string(),
                tokens: counts[c],
                base_rate: counts[c] as f64 / n as f64,
            })
            .collect()
    }
}
