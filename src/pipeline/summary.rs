//! After a run: each stage's key numbers read back from the files it wrote, the `[verify]`
//! thresholds checked against them, and `summary.json` (what the index page and tests read).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::plan::{Kind, Plan, Stage, Threshold};
use super::results::{
    AnalyzeNumbers, AuditNumbers, DatasetNumbers, EvalNumbers, StageResults, TrainNumbers,
    VerifyAuditNumbers, VerifySaeNumbers,
};
use super::spec::{StageSpec, Verified};
use crate::analysis::analysis_report::{self, AnalysisReport};
use crate::analysis::report::{self as audit_report, AuditReport};
use crate::sae::eval_report::{EvalReport, EVAL_FILE};
use crate::sae::saelens_cfg::{SaeLensCfg, CFG_FILE};
use crate::sae::train::EvalRecord;
use crate::store::{manifest_path, Manifest};
use crate::synth::neurons::{NeuronScore, NeuronTruth, NEURON_TRUTH_FILE};
use crate::synth::planted::truth_dir;
use crate::synth::verify::{RecoveryReport, VERIFY_FILE, VERIFY_PLOT_FILE};

/// File name of the run summary in the run folder.
pub const SUMMARY_FILE: &str = "summary.json";

/// One stage in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub name: String,
    pub kind: Kind,
    /// "ran" or "done before" (skipped on this invocation).
    pub status: String,
    pub seconds: f64,
    /// The equivalent `unravel ...` command line.
    pub command: String,
    /// Output folder and log, relative to the run folder.
    pub out: String,
    pub log: String,
    /// Key numbers (see [`key_numbers`]).
    pub results: StageResults,
    /// Pages and figures worth opening, relative to the run folder.
    pub links: Vec<(String, String)>,
    pub figures: Vec<String>,
    /// Units its results single out, each linked to its dashboard (see [`unit_links`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitLink>,
}

/// A unit a stage's results single out, linked to its dashboard in an audit report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitLink {
    /// The unit's name in the report's browser: `neuron-12`.
    pub unit: String,
    /// Its dashboard, relative to the run folder: `audit-planted/report.html#neuron-12`.
    pub href: String,
    /// Why it is listed: `planted polysemantic, audited monosemantic; missed c07`.
    pub note: String,
}

/// One threshold checked against a verify stage.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub stage: String,
    pub check: String,
    pub value: f64,
    pub threshold: String,
    pub pass: bool,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub title: String,
    pub description: String,
    pub config: String,
    pub run_dir: String,
    pub stages: Vec<StageSummary>,
    pub checks: Vec<CheckResult>,
    pub passed: bool,
}

/// A stage's file, read as the type its stage writes (None when missing or unreadable: the
/// summary then shows no numbers for it).
fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn rel(run_dir: &Path, p: &Path) -> String {
    p.strip_prefix(run_dir)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// A dataset's manifest, summarised (with the planted neurons of `synth --neurons`).
fn dataset_numbers(dir: &Path, truth: bool) -> StageResults {
    let neurons: Option<NeuronTruth> = if truth {
        read(&truth_dir(dir).join(NEURON_TRUTH_FILE))
    } else {
        None
    };
    let m: Option<Manifest> = read(&manifest_path(dir));
    StageResults::Dataset(m.map(|m| DatasetNumbers::new(&m, neurons.as_ref())))
}

/// The numbers worth showing for a stage, its links and figures.
pub fn key_numbers(
    plan: &Plan,
    stage: &Stage,
) -> (StageResults, Vec<(String, String)>, Vec<String>) {
    let run = &plan.run_dir;
    let out = &stage.out;
    let mut links = vec![];
    let mut figures = vec![];
    let mut fig = |p: PathBuf| {
        if p.is_file() {
            figures.push(rel(run, &p));
        }
    };
    let results = match &stage.spec {
        StageSpec::Extract { .. } | StageSpec::Plant { .. } => dataset_numbers(out, false),
        StageSpec::Synth { .. } => dataset_numbers(out, true),
        StageSpec::Train { .. } => {
            let e: Option<EvalRecord> = read(&out.join(EVAL_FILE));
            let c: Option<SaeLensCfg> = read(&out.join(CFG_FILE));
            StageResults::Train(TrainNumbers::new(e.as_ref(), c.as_ref()))
        }
        StageSpec::Eval { .. } => {
            let e: Option<EvalReport> = read(&out.join(EVAL_FILE));
            StageResults::Eval(e.as_ref().map(EvalNumbers::new).unwrap_or_default())
        }
        StageSpec::Audit { .. } => {
            links.push((
                "audit report".into(),
                rel(run, &out.join(audit_report::REPORT_FILE)),
            ));
            links.push((
                crate::analysis::report::SCORES_FILE.into(),
                rel(run, &out.join(audit_report::SCORES_FILE)),
            ));
            fig(out.join(audit_report::RATES_PLOT_FILE));
            let a: Option<AuditReport> = read(&out.join(audit_report::AUDIT_FILE));
            StageResults::Audit(a.as_ref().map(AuditNumbers::new).unwrap_or_default())
        }
        StageSpec::Verify {
            of: Verified::Sae(sae),
            ..
        } => {
            fig(sae.join(VERIFY_PLOT_FILE));
            let v: Option<RecoveryReport> = read(&out.join(VERIFY_FILE));
            StageResults::VerifySae(VerifySaeNumbers::new(v.as_ref()))
        }
        StageSpec::Verify {
            of: Verified::Audit(audit),
            ..
        } => {
            links.push((
                "audit report".into(),
                rel(run, &audit.join(audit_report::REPORT_FILE)),
            ));
            let v: Option<NeuronScore> = read(&out.join(VERIFY_FILE));
            StageResults::VerifyAudit(VerifyAuditNumbers::new(v.as_ref()))
        }
        StageSpec::Analyze { .. } => {
            fig(out.join(analysis_report::LAYERS_PLOT_FILE));
            fig(out.join(analysis_report::SPECTRA_PLOT_FILE));
            let a: Option<AnalysisReport> = read(&out.join(analysis_report::ANALYSIS_FILE));
            let numbers = a.as_ref().map(AnalyzeNumbers::new).unwrap_or_default();
            if let [h] = &numbers.hooks[..] {
                fig(out.join(analysis_report::spectrum_plot_file(&h.hook)));
            }
            StageResults::Analyze(numbers)
        }
    };
    (results, links, figures)
}

/// A verify of planted neurons: every neuron the audit got wrong, linked to its dashboard in the
/// audited report (`report.html#neuron-12`). Other stages single out no units.
pub fn unit_links(plan: &Plan, stage: &Stage) -> Vec<UnitLink> {
    let StageSpec::Verify {
        of: Verified::Audit(audit),
        ..
    } = &stage.spec
    else {
        return vec![];
    };
    let Some(score) = read::<NeuronScore>(&stage.out.join(VERIFY_FILE)) else {
        return vec![];
    };
    let report = rel(&plan.run_dir, &audit.join(audit_report::REPORT_FILE));
    let list = |v: &[String]| v.join(", ");
    (score.mistakes.iter())
        .map(|m| {
            let unit = crate::report::browser::unit_anchor("neurons", m.unit);
            let mut note = format!("planted {}, audited {}", m.planted, m.audited);
            if !m.missed.is_empty() {
                note += &format!("; missed {}", list(&m.missed));
            }
            if !m.extra.is_empty() {
                note += &format!("; passed {} (not planted)", list(&m.extra));
            }
            UnitLink {
                href: format!("{report}#{unit}"),
                unit,
                note,
            }
        })
        .collect()
}

/// A `[verify]` threshold: the number it bounds (as named in the summary), whether it is a
/// minimum, and that number in a verify stage's results (None: the threshold does not concern
/// this kind of verify; NaN: the number is missing).
type CheckOf = (&'static str, bool, fn(&StageResults) -> Option<f64>);

fn check_of(key: &str) -> Option<CheckOf> {
    fn sae(r: &StageResults, f: fn(&VerifySaeNumbers) -> Option<f64>) -> Option<f64> {
        match r {
            StageResults::VerifySae(v) => Some(f(v).unwrap_or(f64::NAN)),
            _ => None,
        }
    }
    fn audit(r: &StageResults, f: fn(&VerifyAuditNumbers) -> Option<f64>) -> Option<f64> {
        match r {
            StageResults::VerifyAudit(v) => Some(f(v).unwrap_or(f64::NAN)),
            _ => None,
        }
    }
    Some(match key {
        "min-mmcs" => ("mmcs", true, |r| sae(r, |v| v.mmcs)),
        "min-mcc" => ("mcc", true, |r| sae(r, |v| v.mcc)),
        "min-recovered" => ("recovered", true, |r| sae(r, |v| v.recovered)),
        "max-dead" => ("dead_frac", false, |r| sae(r, |v| v.dead_frac)),
        "min-precision" => ("precision", true, |r| audit(r, |v| v.precision)),
        "min-recall" => ("recall", true, |r| audit(r, |v| v.recall)),
        "min-concept-f1" => ("concept_f1", true, |r| audit(r, |v| v.concept_f1)),
        _ => return None,
    })
}

/// The thresholds that apply to a verify stage, checked against its numbers.
pub fn checks(stage: &StageSummary, thresholds: &[Threshold]) -> Vec<CheckResult> {
    thresholds
        .iter()
        .filter_map(|t| {
            let (field, min, get) = check_of(&t.key)?;
            let value = get(&stage.results)?;
            let pass = if min {
                value >= t.value
            } else {
                value <= t.value
            };
            Some(CheckResult {
                stage: stage.name.clone(),
                check: field.to_string(),
                value,
                threshold: format!("{} {}", if min { ">=" } else { "<=" }, t.value),
                pass,
            })
        })
        .collect()
}

/// Shell-quotes an argument for display.
pub fn quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=@+".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// The command line a stage runs, as a user would type it.
pub fn command_line(stage: &Stage) -> String {
    std::iter::once("unravel".to_string())
        .chain(stage.args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds the summary from what each stage wrote. `ran[i]` says whether stage i ran on this
/// invocation; `seconds[i]` its time (this invocation or the one that completed it).
pub fn summarise(plan: &Plan, ran: &[bool], seconds: &[f64]) -> Summary {
    let mut stages = vec![];
    let mut all_checks = vec![];
    for (i, stage) in plan.stages.iter().enumerate() {
        let (results, links, figures) = key_numbers(plan, stage);
        let s = StageSummary {
            name: stage.name.clone(),
            kind: stage.kind,
            status: if ran[i] { "ran" } else { "done before" }.into(),
            seconds: seconds[i],
            command: command_line(stage),
            out: rel(&plan.run_dir, &stage.out),
            log: format!("logs/{}.log", stage.name),
            results,
            links,
            figures,
            units: unit_links(plan, stage),
        };
        if stage.kind == Kind::Verify {
            all_checks.extend(checks(&s, &plan.thresholds));
        }
        stages.push(s);
    }
    let passed = all_checks.iter().all(|c| c.pass);
    Summary {
        title: plan.title.clone(),
        description: plan.description.clone(),
        config: plan.config.to_string_lossy().into_owned(),
        run_dir: plan.run_dir.to_string_lossy().into_owned(),
        stages,
        checks: all_checks,
        passed,
    }
}

impl StageSummary {
    pub fn kind_str(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The stage's key numbers in one line, as `unravel run` prints them at the end.
    pub fn line(&self) -> String {
        let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
        match &self.results {
            StageResults::Train(TrainNumbers {
                ev, l0, dead_frac, ..
            })
            | StageResults::Eval(EvalNumbers {
                ev, l0, dead_frac, ..
            }) => format!(
                "EV {:.4}  L0 {:.1}  dead {:.1}%",
                f(*ev),
                f(*l0),
                f(*dead_frac) * 100.0
            ),
            StageResults::VerifySae(v) => {
                let mut line = format!(
                    "planted features recovered {:.1}%  MMCS {:.4}  MCC {:.4}  uniqueness {:.4}",
                    f(v.recovered) * 100.0,
                    f(v.mmcs),
                    f(v.mcc),
                    f(v.uniqueness)
                );
                if let (Some(f1), Some(l0), Some(ev)) = (v.f1, v.l0, v.explained_variance) {
                    line += &format!("  F1 {f1:.4}  L0 {l0:.1}  EV {ev:.4} (on samples)");
                }
                line
            }
            StageResults::VerifyAudit(v) => format!(
                "audit vs planted neurons: precision {:.4}  recall {:.4}  concept F1 {:.4}",
                f(v.precision),
                f(v.recall),
                f(v.concept_f1)
            ),
            StageResults::Audit(a) => a
                .sides
                .iter()
                .map(|side| {
                    format!(
                        "{} {:.1}% polysemantic",
                        side.kind,
                        side.polysemantic_rate * 100.0
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            StageResults::Dataset(d) => match d {
                Some(d) => format!("{} tokens", d.tokens),
                None => "null tokens".to_string(),
            },
            StageResults::Analyze(a) => format!("{} hooks analysed", a.hooks.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::neurons::{NeuronMistake, Prf};

    fn write<T: Serialize>(path: PathBuf, v: &T) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    }

    fn prf(precision: f64, recall: f64) -> Prf {
        Prf {
            precision,
            recall,
            f1: 0.5,
            true_positives: 3,
            predicted: 4,
            actual: 5,
        }
    }

    #[test]
    fn reads_each_stage_file_as_its_type_and_checks_the_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("R");
        let config = "[synth]\nneurons = 8\n[train]\n[audit]\n\
                      [verify]\nmin-mmcs = 0.95\nmax-dead = 0.2\nmin-recall = 0.5\n";
        let plan = super::super::plan::plan(Path::new("c.toml"), config, Some(&run)).unwrap();
        let recovery = RecoveryReport {
            n_truth: 4,
            d_sae: 8,
            d: 2,
            threshold: 0.9,
            mmcs: 0.97,
            mcc: 0.875,
            uniqueness: 1.0,
            recovered: 1.0,
            dead_latents: 2,
            duplicated_pairs: 1,
            bands: vec![],
            features: vec![],
            samples: None,
        };
        write(run.join("verify-train").join(VERIFY_FILE), &recovery);
        let score = NeuronScore {
            polysemantic: prf(1.0, 0.25),
            concepts: prf(0.75, 0.5),
            class_accuracy: 0.625,
            distractors: 0,
            distractors_flagged: 0,
            distractor_concepts_passed: 0,
            mistakes: vec![NeuronMistake {
                unit: 3,
                planted: "polysemantic".into(),
                audited: "monosemantic".into(),
                missed: vec!["c07".into()],
                extra: vec![],
            }],
        };
        write(run.join("verify-audit").join(VERIFY_FILE), &score);
        // The synth, train and audit stages wrote nothing: their numbers are null.
        let n = plan.stages.len();
        let s = summarise(&plan, &vec![true; n], &vec![1.0; n]);
        let results = |name: &str| {
            let st = s.stages.iter().find(|st| st.name == name).unwrap();
            (serde_json::to_string(&st.results).unwrap(), st.line())
        };
        assert_eq!(
            results("verify-train"),
            (
                r#"{"dead_frac":0.25,"duplicated_pairs":1,"latents":8,"mcc":0.875,"mmcs":0.97,"of":"sae","planted":4,"recovered":1.0,"threshold":0.9,"uniqueness":1.0}"#.to_string(),
                "planted features recovered 100.0%  MMCS 0.9700  MCC 0.8750  uniqueness 1.0000".to_string()
            )
        );
        assert_eq!(
            results("verify-audit"),
            (
                r#"{"class_accuracy":0.625,"concept_f1":0.5,"concept_precision":0.75,"concept_recall":0.5,"f1":0.5,"of":"audit","planted_polysemantic":5,"precision":1.0,"recall":0.25}"#.to_string(),
                "audit vs planted neurons: precision 1.0000  recall 0.2500  concept F1 0.5000"
                    .to_string()
            )
        );
        // The neuron the audit got wrong links to its dashboard in the audited report.
        let audit = &plan
            .stages
            .iter()
            .find(|st| st.name == "audit")
            .unwrap()
            .out;
        let report = rel(&plan.run_dir, &audit.join("report.html"));
        let verify_audit = s
            .stages
            .iter()
            .find(|st| st.name == "verify-audit")
            .unwrap();
        assert_eq!(
            verify_audit.units,
            [UnitLink {
                unit: "neuron-3".into(),
                href: format!("{report}#neuron-3"),
                note: "planted polysemantic, audited monosemantic; missed c07".into(),
            }]
        );
        assert!(report.ends_with("report.html") && !report.starts_with('/'));
        assert_eq!(results("synth"), ("null".into(), "null tokens".into()));
        assert!(results("train")
            .0
            .starts_with(r#"{"d_in":null,"d_sae":null,"#));
        assert_eq!(
            results("audit").0,
            r#"{"concepts":null,"score":null,"sides":[],"threshold":null,"tokens":null}"#
        );
        let checks: Vec<(&str, &str, f64, &str, bool)> = s
            .checks
            .iter()
            .map(|c| {
                (
                    c.stage.as_str(),
                    c.check.as_str(),
                    c.value,
                    c.threshold.as_str(),
                    c.pass,
                )
            })
            .collect();
        assert_eq!(
            checks,
            [
                // (in the order of the [verify] keys)
                ("verify-train", "dead_frac", 0.25, "<= 0.2", false),
                ("verify-train", "mmcs", 0.97, ">= 0.95", true),
                ("verify-audit", "recall", 0.25, ">= 0.5", false),
            ]
        );
        assert!(!s.passed);
        // The verify stage of the SAE links its plot only when there is one.
        assert!(s.stages.iter().all(|st| st.figures.is_empty()));
    }
}
