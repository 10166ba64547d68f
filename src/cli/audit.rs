//! `unravel audit`: flags → concept labeler + unit sources → the audit → audit.json, scores.csv,
//! report.html and SVG plots.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;

use unravel::analysis::audit::{Audit, AuditOptions, AuditOutput, ScoreKind, UnitSource};
use unravel::analysis::concepts::{ConceptConfig, Labeler, TAGGERS};
use unravel::analysis::label_values::{label_values, LabelValuesError};
use unravel::analysis::logit_effect::load_unembedding;
use unravel::analysis::report::{AuditReport, AUDIT_FILE, REPORT_FILE, SCORES_FILE};
use unravel::report::browser::LogitPanel;
use unravel::sae::checkpoint;
use unravel::store::{Dataset, ModelInfo};

pub const AUDIT_EXAMPLES: &str = "Examples:\n  \
# GPT-2 layer-3 MLP neurons vs the features of an SAE trained on them, built-in taggers + lexicons\n  \
unravel extract --model gpt2 --corpus data/corpus.jsonl --hooks blocks.3.mlp.hook_post --out acts/gpt2-mlp3\n  \
unravel train --acts acts/gpt2-mlp3 --expansion 4 --tokens 1000000 --out runs/mlp3\n  \
unravel audit --acts acts/gpt2-mlp3 --sae runs/mlp3 --concepts configs/concepts.toml --out audits/mlp3\n\n  \
# neurons only, with a document label column and a regex concept\n  \
unravel audit --acts acts/distil-mlp --hook blocks.1.mlp.hook_post --label-column label.sentiment \\\n      \
--regex 'year=\\b(19|20)\\d\\d\\b' --out audits/distil\n\n  \
# the ground-truth check: planted polysemantic neurons\n  \
unravel synth --neurons 256 --tokens 200000 --out synth/neurons\n  \
unravel audit --acts synth/neurons --out audits/planted\n  \
unravel verify --truth synth/neurons --audit audits/planted --min-precision 0.95 --min-recall 0.95\n\n\
Writes OUT/audit.json (summary, every unit's class and passing concepts, report cards),\n\
OUT/scores.csv (every unit x concept: selectivity, auroc, topk, iou, support), OUT/report.html\n\
(open it in any browser, offline), OUT/units/ (every unit's dashboard, for the report's unit\n\
browser: report.html#feature-12 opens feature 12) and OUT/*.svg. Score definitions: README, \"Audit\".";

#[derive(Args)]
pub struct AuditArgs {
    /// Activation dataset folder (from `unravel extract`, `synth` or `plant`).
    #[arg(long, value_name = "DIR")]
    acts: PathBuf,
    #[command(flatten)]
    read: crate::cli::read_args::ReadArgs,
    /// Audit the neurons (dimensions) of this hook. Default: the SAE's hook, or the dataset's
    /// only hook.
    #[arg(long, value_name = "NAME")]
    hook: Option<String>,
    /// Also audit the features of this SAE (run folder, SAELens folder, or OWNER/REPO[/SUB] in
    /// the hub cache), encoded on the fly from its hook.
    #[arg(long, value_name = "DIR_OR_HUB")]
    sae: Option<String>,
    /// With --sae: audit only the features, not the hook's neurons.
    #[arg(long)]
    no_neurons: bool,
    /// Concepts TOML (taggers, lexicons, regex, label_columns; see configs/concepts.toml).
    /// Default: every built-in tagger (real text only) and every label column.
    #[arg(long, value_name = "FILE")]
    concepts: Option<PathBuf>,
    /// Built-in tagger to use (repeatable; `all` for every one; `list` prints them).
    #[arg(long = "tagger", value_name = "NAME")]
    taggers: Vec<String>,
    /// Lexicon TOML file (`concept = ["word", ...]`; repeatable), e.g. data/lexicons/colours.toml.
    #[arg(long = "lexicon", value_name = "FILE")]
    lexicons: Vec<PathBuf>,
    /// Regex concept NAME=PATTERN, matched on the context text (repeatable).
    #[arg(long = "regex", value_name = "NAME=PATTERN")]
    regexes: Vec<String>,
    /// Label column of the shards to use (repeatable). Default: all of them.
    #[arg(long = "label-column", value_name = "COLUMN")]
    label_columns: Vec<String>,
    /// Score the threshold applies to: selectivity, auroc (as 2·AUROC−1), topk or iou.
    #[arg(long, default_value = "selectivity")]
    score: String,
    /// A concept passes when its score is at least this.
    #[arg(long, default_value_t = 0.3, value_parser = crate::cli::values::non_negative_f64, allow_negative_numbers = true)]
    threshold: f64,
    /// ... and the unit fires (> 0) on at least this many of the concept's tokens.
    #[arg(long, default_value_t = 10, value_parser = crate::cli::values::at_least_1::<u64>, allow_negative_numbers = true)]
    min_support: u64,
    /// ... and its mean on the concept beats the rest by at least this many standard errors
    /// (guards rare concepts against chance; 5 keeps chance passes below ~1 in 3 million tests).
    #[arg(long, default_value_t = 5.0, value_parser = crate::cli::values::non_negative_f64, allow_negative_numbers = true)]
    min_z: f64,
    /// ... and the unit's ranks agree with its mean: the concept's AUROC is at least this (0.5 is
    /// chance; a mean lifted by a few huge activations on tokens the unit otherwise ranks low
    /// stays near or below 0.5).
    #[arg(long, default_value_t = 0.55)]
    min_auroc: f64,
    /// ... and the unit's top-k activations do not avoid the concept: k random tokens would hold
    /// as few of its tokens with probability at least this (Binomial(k, base rate); 0 turns the
    /// test off; with --min-auroc 0 that is the mean-only rule of audit.json version 1).
    #[arg(long, default_value_t = 0.01, value_name = "P")]
    topk_alpha: f64,
    /// Stricter, off by default: at least one of the top-k activations carries the concept, a
    /// share of at least this × its base rate (1 = what k random tokens give on average).
    #[arg(long, default_value_t = 0.0, value_name = "LIFT")]
    min_topk_lift: f64,
    /// Top activations per unit for the top-k share (and the report's examples).
    #[arg(long, default_value_t = 50, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    top_k: usize,
    /// A passing concept with at least this share of its tokens inside a larger passing concept
    /// (|A∩B| / |A|) is subsumed by it and does not make the unit polysemantic.
    #[arg(long, default_value_t = 0.5, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    related_overlap: f64,
    /// Units shown as cards in the report, per side.
    #[arg(long, default_value_t = 32, value_parser = crate::cli::values::whole::<usize>, allow_negative_numbers = true)]
    cards: usize,
    /// Score at most this many tokens.
    #[arg(long, value_parser = crate::cli::values::at_least_1::<u64>, allow_negative_numbers = true)]
    max_tokens: Option<u64>,
    /// False-positive control: shuffle the concept labels across tokens with this seed (base
    /// rates kept, any link to the units broken). A sound audit then finds ~0 polysemantic units.
    #[arg(long, value_name = "SEED", value_parser = crate::cli::values::whole::<u64>, allow_negative_numbers = true)]
    shuffle_labels: Option<u64>,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The concept configuration from the file and flags.
fn concept_config(a: &AuditArgs, synthetic: bool) -> Result<ConceptConfig> {
    let mut cfg = match &a.concepts {
        Some(p) => ConceptConfig::load(p).map_err(|e| anyhow!("--concepts {e}"))?,
        None if a.taggers.is_empty() && a.lexicons.is_empty() && a.regexes.is_empty() => {
            // Synthetic datasets have no token text: labels only.
            if synthetic {
                ConceptConfig::default()
            } else {
                ConceptConfig::default_all()
            }
        }
        None => ConceptConfig::default(),
    };
    cfg.taggers.extend(a.taggers.iter().cloned());
    cfg.lexicons.extend(a.lexicons.iter().cloned());
    for r in &a.regexes {
        let (name, pattern) = r
            .split_once('=')
            .ok_or_else(|| anyhow!("--regex {r}: expected NAME=PATTERN"))?;
        cfg.regex
            .insert(name.trim().to_string(), pattern.to_string());
    }
    if !a.label_columns.is_empty() {
        cfg.label_columns = Some(a.label_columns.clone());
    }
    Ok(cfg)
}

pub fn cmd_audit(a: &AuditArgs) -> Result<()> {
    if a.taggers.iter().any(|t| t == "list") {
        for (name, what) in TAGGERS {
            println!("{name:<14} {what}");
        }
        return Ok(());
    }
    let _lock = unravel::folder_lock::lock_output("--out", &a.out, "audit")?;
    let ds = Dataset::open_with(&a.acts, a.read.options())
        .with_context(|| format!("--acts {}", a.acts.display()))?;
    let manifest = ds.manifest();
    let synthetic = manifest.model.arch == "synthetic";
    let cfg = concept_config(a, synthetic)?;
    let values = label_values(&ds, &manifest.label_columns).map_err(|e| match e {
        LabelValuesError::TooManyValues { .. } => {
            anyhow!("{e} (leave it out with --label-column for the ones you want)")
        }
        e => e.into(),
    })?;
    let wordpiece = manifest.model.arch.contains("bert");
    let labeler = Labeler::new(&cfg, &values, wordpiece).map_err(|e| anyhow!(e))?;

    let sides = unit_sources(a, &ds)?;
    let logits = logit_effects(&sides, &manifest.model);

    let options = AuditOptions {
        score: ScoreKind::parse(&a.score).map_err(|e| anyhow!(e))?,
        threshold: a.threshold,
        min_support: a.min_support,
        min_z: a.min_z,
        min_auroc: a.min_auroc,
        topk_alpha: a.topk_alpha,
        min_topk_lift: a.min_topk_lift,
        top_k: a.top_k.max(1),
        related_overlap: a.related_overlap,
        cards: a.cards,
        max_tokens: a.max_tokens,
        shuffle_labels: a.shuffle_labels,
        ..AuditOptions::default()
    };
    let audit = Audit::new(&ds, &labeler, sides, options).map_err(|e| anyhow!(e))?;
    eprintln!(
        "auditing {} concepts over {} tokens of {}",
        labeler.names().len(),
        a.max_tokens
            .unwrap_or(manifest.totals.rows - manifest.totals.special_rows),
        a.acts.display()
    );
    let bar = crate::cli::progress::progress_bar(
        "{spinner} audit [{bar:30}] {pos}/{len} row groups  {msg}  {elapsed} ETA {eta}",
    );
    let t0 = std::time::Instant::now();
    let out = audit.run(&mut |done, total, tokens| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{tokens} tokens, {:.0} tok/s",
            tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9)
        ));
    })?;
    bar.finish_and_clear();

    write_outputs(a, &out, &logits)?;
    print_summary(&out.report, t0.elapsed().as_secs_f64());
    println!(
        "wrote {}/{{audit.json, scores.csv, report.html, units/, *.svg}}",
        a.out.display()
    );
    Ok(())
}

/// The units to audit: the neurons of the hook, and the features of the SAE (--sae), in that
/// order.
fn unit_sources(a: &AuditArgs, ds: &Dataset) -> Result<Vec<UnitSource>> {
    let manifest = ds.manifest();
    let mut sides = vec![];
    let mut sae_hook = None;
    let mut features = None;
    if let Some(spec) = &a.sae {
        let dir = checkpoint::locate_saelens(spec, &unravel::hub::HubOptions::default())?;
        let loaded = checkpoint::load_saelens(&dir)?;
        let hook_name = match (&loaded.hook_name, &a.hook) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => h.clone(),
            (None, None) => bail!("--sae {spec}: cfg.json names no hook; give --hook"),
        };
        let hook = ds
            .hook(&hook_name)
            .with_context(|| format!("--sae {spec}"))?
            .clone();
        if hook.d != loaded.sae.d_in {
            bail!(
                "--sae {spec}: reads d_in = {}, hook {} has {} dims",
                loaded.sae.d_in,
                hook.name,
                hook.d
            );
        }
        sae_hook = Some(hook.name.clone());
        features = Some(UnitSource::Features {
            hook,
            sae: Box::new(loaded.sae),
            name: spec.clone(),
        });
    }
    let neuron_hook = match (&a.hook, &sae_hook) {
        (Some(h), Some(s)) if h != s => {
            bail!("--hook {h} differs from the SAE's hook {s}; audit one hook at a time")
        }
        (Some(h), _) => Some(h.clone()),
        (None, Some(s)) => (!a.no_neurons).then(|| s.clone()),
        (None, None) if manifest.hooks.len() == 1 => Some(manifest.hooks[0].name.clone()),
        (None, None) => bail!(
            "--hook: the dataset has several hooks ({}); choose one",
            manifest
                .hooks
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if let Some(h) = neuron_hook {
        let hook = ds.hook(&h).context("--hook")?.clone();
        sides.push(UnitSource::Neurons { hook });
    }
    sides.extend(features);
    Ok(sides)
}

/// audit.json, scores.csv, report.html and the SVG plots.
fn write_outputs(a: &AuditArgs, out: &AuditOutput, logits: &[LogitPanel]) -> Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let json = serde_json::to_string_pretty(&out.report)?;
    let write = |name: &str, bytes: &[u8]| {
        let p = a.out.join(name);
        unravel::io::write_atomic(&p, bytes).with_context(|| format!("writing {}", p.display()))
    };
    write(AUDIT_FILE, json.as_bytes())?;
    write(SCORES_FILE, out.scores_csv().as_bytes())?;
    unravel::report::html::write_audit_html(&out.report, &a.out.join(REPORT_FILE))
        .with_context(|| format!("writing {}", a.out.join(REPORT_FILE).display()))?;
    unravel::report::html::write_audit_svgs(&out.report, &a.out)
        .with_context(|| format!("writing plots into {}", a.out.display()))?;
    unravel::report::browser::write_unit_browser(out, logits, &a.out)
        .with_context(|| format!("writing the unit browser into {}/units", a.out.display()))?;
    Ok(())
}

/// Per side, the units' logit effects (GPT-2: top promoted and suppressed tokens through the
/// unembedding), or why there are none.
fn logit_effects(sides: &[UnitSource], model: &ModelInfo) -> Vec<LogitPanel> {
    sides
        .iter()
        .map(|side| {
            let (hook, features) = match side {
                UnitSource::Neurons { hook } | UnitSource::Columns { hook, .. } => (hook, None),
                UnitSource::Features { hook, sae, .. } => (hook, Some(sae)),
            };
            let u = load_unembedding(model, &hook.name)?;
            let tops = match (side, features) {
                (_, Some(sae)) => u.of_features(&sae.w_dec, sae.d_in),
                (UnitSource::Columns { columns, .. }, None) => {
                    let all = u.of_neurons(hook.d);
                    columns.iter().map(|&c| all[c].clone()).collect()
                }
                _ => u.of_neurons(hook.d),
            };
            let text = |v: &[(u32, f32)]| -> Vec<(String, f32)> {
                v.iter()
                    .map(|&(id, x)| (u.tokens.get(id).to_string(), x))
                    .collect()
            };
            Ok(tops
                .iter()
                .map(|t| [text(&t.promoted), text(&t.suppressed)])
                .collect())
        })
        .collect()
}

/// What was audited and, per side, how many units are of each class.
fn print_summary(r: &AuditReport, secs: f64) {
    println!(
        "{} tokens, {} concepts, score {} >= {} (support >= {}, z >= {}, auroc >= {}, top-k chance p >= {}{}) in {:.1}s",
        r.tokens,
        r.concepts.len(),
        r.score,
        r.threshold,
        r.min_support,
        r.min_z,
        r.min_auroc,
        r.topk_alpha,
        if r.min_topk_lift > 0.0 {
            format!(", top-k share >= {} x base rate", r.min_topk_lift)
        } else {
            String::new()
        },
        secs
    );
    println!(
        "  {:<9} {:>7} {:>13} {:>13} {:>12} {:>6}  source",
        "units", "count", "polysemantic", "monosemantic", "unexplained", "dead"
    );
    for s in &r.sides {
        let m = &s.summary;
        let alive = (s.units - m.dead).max(1) as f64;
        println!(
            "  {:<9} {:>7} {:>6} {:>5.1}% {:>6} {:>5.1}% {:>5} {:>5.1}% {:>6}  {}",
            s.kind,
            s.units,
            m.polysemantic,
            100.0 * m.polysemantic_rate,
            m.monosemantic,
            100.0 * m.monosemantic_rate,
            m.unexplained,
            100.0 * m.unexplained as f64 / alive,
            m.dead,
            s.source
        );
    }
}
