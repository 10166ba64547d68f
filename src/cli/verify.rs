//! `unravel verify`: an SAE against planted features, or an audit against planted neurons.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::Args;

use unravel::sae::checkpoint;
use unravel::synth::bench::published::PUBLISHED_16K;
use unravel::synth::bench::BenchSpec;
use unravel::synth::checks::Check;
use unravel::synth::metrics::generated_samples::generator_truth;
use unravel::synth::metrics::SampleReport;
use unravel::synth::neurons::{NeuronScore, NeuronTruth};
use unravel::synth::truth::read_truth;
use unravel::synth::verify::RecoveryReport;
use unravel::synth::verify::{VERIFY_FILE, VERIFY_PLOT_FILE};
use unravel::synth::verify_audit::{
    audit_checks, read_audit, verify_audit, AuditThresholds, AuditVerifyError,
};
use unravel::synth::verify_sae::{
    add_generated_samples, add_planted_samples, sae_checks, verify_sae, SaeThresholds,
};

use crate::cli::output;

pub const VERIFY_EXAMPLES: &str = "Examples:\n  \
unravel synth --features 512 --dims 256 --density 0.1 --tokens 1000000 --seed 7 --out synth/seed000\n  \
unravel train --acts synth/seed000 --d-sae 1024 --tokens 1000000 --out runs/seed000\n  \
unravel verify --truth synth/seed000 --sae runs/seed000 --min-mmcs 0.98\n\n  \
# planted polysemantic neurons: precision / recall of the audit\n  \
unravel synth --neurons 256 --tokens 200000 --out synth/neurons\n  \
unravel audit --acts synth/neurons --out audits/planted\n  \
unravel verify --truth synth/neurons --audit audits/planted --min-precision 0.95 --min-recall 0.95\n\n  \
# an SAE trained straight from a SynthSAEBench generator: scored against its dictionary and held-out rows\n  \
unravel train --synth synth-sae-bench-tiny --d-sae 256 --tokens 50000 --batch 1024 --out runs/bench-tiny\n  \
unravel verify --synth synth-sae-bench-tiny --sae runs/bench-tiny --samples 20000\n\n\
MMCS = mean over planted directions of the best cosine with any decoder row; MCC = mean |cos| under the\n\
optimal one-to-one matching (Hungarian, as SAELens); recovered = fraction with best cosine >= --threshold.\n\
With codes stored (`synth --save-activations`) also SAELens's sample metrics on the last --samples rows
(with --synth: on --samples held-out rows drawn from the generator): L0, dead latents, shrinkage, EV, and
each latent's precision/recall/F1 against its best-matching feature. With --synth synth-sae-bench-16k the
published SynthSAEBench-16k rows (SAELens, 200M samples) are printed beside the scores.\n\
With --min-mmcs / --min-mcc / --min-recovered / --max-dead it prints a PASS/FAIL table and exits 1 on
any failure (for scripts and CI).";

#[derive(Args)]
pub struct VerifyArgs {
    /// Planted dataset folder from `unravel synth` (or its __unravel__/truth/ folder).
    #[arg(long, value_name = "DIR", required_unless_present = "synth")]
    truth: Option<PathBuf>,
    /// Instead of --truth, a SynthSAEBench generator (a preset such as synth-sae-bench-16k, or a
    /// spec .toml), as given to `unravel train --synth`: the SAE is scored against its dictionary,
    /// and the sample metrics use --samples held-out rows drawn from it (no dataset needed).
    #[arg(long, value_name = "PRESET_OR_SPEC", conflicts_with_all = ["truth", "audit"])]
    synth: Option<String>,
    /// The SAE: a run folder or any SAELens-layout folder (or OWNER/REPO[/SUBFOLDER] on the hub).
    #[arg(
        long,
        value_name = "DIR_OR_HUB",
        required_unless_present = "audit",
        conflicts_with = "audit"
    )]
    sae: Option<String>,
    /// An audit folder (`unravel audit --acts TRUTH_DIR`) to score against planted neurons
    /// (`unravel synth --neurons`): precision, recall, F1 of the polysemantic ones and their concepts.
    #[arg(long, value_name = "DIR")]
    audit: Option<PathBuf>,
    /// With --audit: fail when the precision at finding polysemantic neurons is below this.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    min_precision: Option<f64>,
    /// With --audit: fail when the recall at finding polysemantic neurons is below this.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    min_recall: Option<f64>,
    /// With --audit: fail when the F1 of the (neuron, concept) pairs found is below this.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    min_concept_f1: Option<f64>,
    /// Cosine at which a planted feature counts as recovered (and two latents as duplicates).
    #[arg(long, default_value_t = 0.9, value_parser = crate::cli::values::probability_f32, allow_negative_numbers = true)]
    threshold: f32,
    /// Fail (exit 1) when MMCS is below this.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    min_mmcs: Option<f64>,
    /// Fail when MCC (one-to-one matching) is below this.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    min_mcc: Option<f64>,
    /// Fail when the recovered fraction (0–1) is below this.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    min_recovered: Option<f64>,
    /// Fail when more than this fraction (0–1) of latents is dead.
    #[arg(long, value_parser = crate::cli::values::fraction, allow_negative_numbers = true)]
    max_dead: Option<f64>,
    /// Rows for the metrics measured with the true codes (F1, shrinkage, EV, L0): the last N
    /// rows of a dataset made with `unravel synth --save-activations`, or N held-out rows of the
    /// --synth generator (0: none).
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = crate::cli::values::whole::<u64>)]
    samples: u64,
    /// Where to write the JSON report (default SAE_DIR/verify.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Prints the pass/fail table; an error (exit 1) when a check fails.
fn check_table(checks: &[Check]) -> Result<()> {
    if checks.is_empty() {
        return Ok(());
    }
    println!(
        "  {:<14} {:>8}  {:<10} result",
        "check", "value", "threshold"
    );
    for c in checks {
        println!(
            "  {:<14} {:>8.4}  {:<10} {}",
            c.name,
            c.value,
            c.threshold,
            if c.pass { "PASS" } else { "FAIL" }
        );
    }
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.pass)
        .map(|c| format!("{} {:.4} (wanted {})", c.name, c.value, c.threshold))
        .collect();
    if !failed.is_empty() {
        bail!("verify failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `verify --audit`: the audit of planted neurons against their truth.
fn cmd_verify_audit(a: &VerifyArgs, audit_dir: &Path) -> Result<()> {
    let Some(truth_dir) = &a.truth else {
        bail!("--audit needs --truth DIR (the dataset made by `unravel synth --neurons`)");
    };
    let truth = NeuronTruth::load(truth_dir).map_err(|e| {
        anyhow!("--truth {e} (planted neurons come from `unravel synth --neurons`)")
    })?;
    let _lock = unravel::folder_lock::lock_output("--audit", audit_dir, "verify")?;
    let flag = |e: AuditVerifyError| anyhow!("--audit {e}");
    let report = read_audit(audit_dir).map_err(flag)?;
    let s = verify_audit(&truth, &report, audit_dir).map_err(flag)?;
    println!(
        "{} planted neurons ({} polysemantic) vs the audit in {} ({} >= {}):",
        truth.neurons.len(),
        s.polysemantic.actual,
        audit_dir.display(),
        report.score,
        report.threshold
    );
    print_neuron_score(&s);
    print_mistakes(&s, audit_dir);
    let out = a
        .json
        .clone()
        .unwrap_or_else(|| audit_dir.join(VERIFY_FILE));
    output::write(&out, serde_json::to_string_pretty(&s)?.as_bytes(), || {
        format!("--json {}", out.display())
    })?;
    println!("-> {}", out.display());
    let thresholds = AuditThresholds {
        min_precision: a.min_precision,
        min_recall: a.min_recall,
        min_concept_f1: a.min_concept_f1,
    };
    check_table(&audit_checks(&s, &thresholds))
}

fn print_neuron_score(s: &NeuronScore) {
    println!(
        "  {:<22} {:>9} {:>9} {:>9}",
        "", "precision", "recall", "F1"
    );
    for (name, p) in [
        ("polysemantic neurons", &s.polysemantic),
        ("(neuron, concept)", &s.concepts),
    ] {
        println!(
            "  {name:<22} {:>9.4} {:>9.4} {:>9.4}   ({} found, {} true, {} right)",
            p.precision, p.recall, p.f1, p.predicted, p.actual, p.true_positives
        );
    }
    println!(
        "  class accuracy (a distractor's class is unexplained) {:.4}",
        s.class_accuracy
    );
    if s.distractors > 0 {
        println!(
            "  distractors called polysemantic: {} of {} ({} of their outlier concepts passed)",
            s.distractors_flagged, s.distractors, s.distractor_concepts_passed
        );
    }
}

/// The first neurons the audit got wrong, each with its dashboard's address (all of them are in
/// the JSON and, for `unravel run`, on the run's index page).
fn print_mistakes(s: &NeuronScore, audit_dir: &Path) {
    if s.mistakes.is_empty() {
        return;
    }
    let report = audit_dir.join(unravel::analysis::report::REPORT_FILE);
    println!(
        "  {} neurons the audit got wrong; the first, with their dashboards:",
        s.mistakes.len()
    );
    for m in s.mistakes.iter().take(10) {
        let anchor = unravel::report::browser::unit_anchor("neurons", m.unit);
        println!(
            "    {}#{anchor}  planted {}, audited {}",
            report.display(),
            m.planted,
            m.audited
        );
    }
}

pub fn cmd_verify(a: &VerifyArgs) -> Result<()> {
    let sae = match (&a.audit, &a.sae) {
        (Some(dir), _) => return cmd_verify_audit(a, dir),
        (None, Some(s)) => s.as_str(),
        (None, None) => bail!("give --sae (planted features) or --audit (planted neurons)"),
    };
    let dir = checkpoint::locate_saelens(sae, &unravel::hub::HubOptions::default())?;
    let _lock = unravel::folder_lock::lock_output("--sae", &dir, "verify")?;
    let loaded = checkpoint::load_saelens(&dir)?;
    let (truth, generator) = match (&a.synth, &a.truth) {
        (Some(spec), _) => {
            let spec = BenchSpec::load(spec).map_err(|e| anyhow!("--synth {e}"))?;
            // Checked before the build (a minute of orthogonalisation for the 16k preset).
            if loaded.sae.d_in != spec.dims {
                bail!(
                    "--sae {sae}: the SAE reads d_in = {}, the --synth generator has {} dims",
                    loaded.sae.d_in,
                    spec.dims
                );
            }
            let model = crate::cli::synth_bench::build_model(&spec);
            (generator_truth(&model), Some(model))
        }
        (None, Some(dir)) => (read_truth(dir).map_err(|e| anyhow!("--truth {e}"))?, None),
        (None, None) => bail!("give --truth DIR (a planted dataset) or --synth PRESET_OR_SPEC"),
    };
    let mut r = verify_sae(&truth, &dir, &loaded.sae, a.threshold)
        .map_err(|e| anyhow!("--sae {sae}: {e}"))?;
    if a.samples > 0 {
        let bar = crate::cli::progress::progress_bar(
            "[{elapsed_precise}] {bar:30} {human_pos}/{human_len} samples  {per_sec}  ETA {eta}",
        );
        bar.set_length(a.samples);
        let mut progress = |n| bar.set_position(n);
        match &generator {
            Some(model) => add_generated_samples(
                &mut r,
                &loaded.sae,
                &truth,
                model,
                a.samples,
                4096,
                &mut progress,
            ),
            None => sample_metrics(a, &mut r, &loaded.sae, &truth, &mut progress)?,
        }
        bar.finish_and_clear();
    }
    print_recovery(&r);
    if generator.is_some_and(|m| m.spec.fingerprint() == BenchSpec::default().fingerprint()) {
        print_published(&r);
    }
    let plot = dir.join(VERIFY_PLOT_FILE);
    let points: Vec<(f32, f32)> = r
        .features
        .iter()
        .map(|f| (f.frequency, f.best_cos))
        .collect();
    let mut title = format!(
        "planted features: best cosine vs frequency (MCC {:.3}, uniqueness {:.3}",
        r.mcc, r.uniqueness
    );
    if let Some(s) = &r.samples {
        title += &format!(", F1 {:.3}, L0 {:.1}", s.f1, s.l0);
    }
    title += ")";
    unravel::report::plots::recovery_scatter(&plot, &points, r.threshold, &title)
        .map_err(|e| anyhow!("cannot write the plot: {e}"))?;
    println!("  plot: {}", plot.display());
    let out = a.json.clone().unwrap_or_else(|| dir.join(VERIFY_FILE));
    output::write(&out, serde_json::to_string_pretty(&r)?.as_bytes(), || {
        format!("--json {}", out.display())
    })?;
    println!("-> {}", out.display());
    let thresholds = SaeThresholds {
        min_mmcs: a.min_mmcs,
        min_mcc: a.min_mcc,
        min_recovered: a.min_recovered,
        max_dead: a.max_dead,
    };
    check_table(&sae_checks(&r, &thresholds))
}

/// SAELens's sample metrics on the planted dataset's last rows when it stores their codes; a
/// note otherwise.
fn sample_metrics(
    a: &VerifyArgs,
    r: &mut RecoveryReport,
    sae: &unravel::sae::Sae,
    truth: &unravel::synth::truth::Truth,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    use unravel::synth::metrics::planted_samples::SamplesError;
    let truth_dir = a.truth.clone().unwrap_or_default();
    // --truth may name the truth folder itself: the rows are in the dataset above it.
    let data = unravel::synth::truth::dataset_of(&truth_dir).unwrap_or(truth_dir);
    match add_planted_samples(r, sae, truth, &data, a.samples, 4096, progress) {
        Ok(()) => Ok(()),
        Err(SamplesError::NoCodes(_)) => {
            println!(
                "  (no per-token codes in --truth: F1, shrinkage, EV and L0 on samples need `unravel synth --save-activations`)"
            );
            Ok(())
        }
        Err(e) => Err(anyhow!("--truth {e}")),
    }
}

/// The SAE's scores beside SynthSAEBench-16k's published rows.
fn print_published(r: &RecoveryReport) {
    let Some(s) = &r.samples else { return };
    println!("  against the published SynthSAEBench-16k SAEs (SAELens, width 4096, 200M samples):");
    println!(
        "    {:<22} {:>6} {:>7} {:>7} {:>11} {:>7}",
        "SAE", "L0", "F1", "MCC", "uniqueness", "EV"
    );
    let ours = format!("this SAE ({} latents)", r.d_sae);
    println!(
        "    {ours:<22} {:>6.1} {:>7.3} {:>7.3} {:>11.3} {:>7.3}",
        s.l0, s.f1, r.mcc, r.uniqueness, s.explained_variance
    );
    for p in PUBLISHED_16K {
        println!(
            "    {:<22} {:>6.0} {:>7.3} {:>7.3} {:>11.3} {:>7.3}",
            p.sae, p.l0, p.f1, p.mcc, p.uniqueness, p.explained_variance
        );
    }
}

fn print_samples(s: &SampleReport) {
    println!(
        "  on {} samples (SAELens's definitions): L0 {:.2} (true {:.2}), dead latents {}",
        s.samples, s.l0, s.true_l0, s.dead_latents
    );
    println!(
        "  EV {:.4}  shrinkage {:.4}  precision {:.4}  recall {:.4}  F1 {:.4}",
        s.explained_variance, s.shrinkage, s.precision, s.recall, s.f1
    );
}

fn print_recovery(r: &RecoveryReport) {
    println!(
        "{} planted features vs {} latents ({} dims):",
        r.n_truth, r.d_sae, r.d
    );
    println!("  MMCS       {:.4}", r.mmcs);
    println!("  MCC        {:.4}  (Hungarian one-to-one)", r.mcc);
    println!(
        "  uniqueness {:.4}  (distinct best-matched truths / latents)",
        r.uniqueness
    );
    println!(
        "  recovered  {:.1}%  (best cos >= {})",
        r.recovered * 100.0,
        r.threshold
    );
    println!(
        "  dead latents {}, duplicated latent pairs {}",
        r.dead_latents, r.duplicated_pairs
    );
    if let Some(s) = &r.samples {
        print_samples(s);
    }
    println!("  by planted frequency:");
    println!(
        "    {:>21}  {:>8}  {:>13}  {:>9}",
        "frequency", "features", "mean best cos", "recovered"
    );
    for b in &r.bands {
        println!(
            "    {:>9.5} – {:<9.5}  {:>8}  {:>13.4}  {:>8.1}%",
            b.min_frequency,
            b.max_frequency,
            b.features,
            b.mean_best_cos,
            b.recovered * 100.0
        );
    }
}
