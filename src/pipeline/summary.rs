//! After a run: each stage's key numbers read back from the files it wrote, the `[verify]`
//! thresholds checked against them, and `summary.json` (what the index page and tests read).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::plan::{Kind, Plan, Stage, Threshold};

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
    pub results: Value,
    /// Pages and figures worth opening, relative to the run folder.
    pub links: Vec<(String, String)>,
    pub figures: Vec<String>,
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

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn rel(run_dir: &Path, p: &Path) -> String {
    p.strip_prefix(run_dir)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The argument after `flag` in a stage's command line.
fn arg<'a>(stage: &'a Stage, flag: &str) -> Option<&'a str> {
    stage
        .args
        .iter()
        .position(|a| a == flag)
        .and_then(|i| stage.args.get(i + 1))
        .map(String::as_str)
}

/// A dataset's manifest, summarised.
fn dataset_numbers(dir: &Path) -> Value {
    let Some(m) = read_json(&dir.join(crate::store::MANIFEST_FILE)) else {
        return Value::Null;
    };
    json!({
        "model": m["model"]["id"],
        "hooks": m["hooks"].as_array().map(|h| h.iter().map(|h| json!({"name": h["name"], "d": h["d"]})).collect::<Vec<_>>()),
        "tokens": m["totals"]["tokens"],
        "contexts": m["totals"]["contexts"],
        "shards": m["shards"].as_array().map(|s| s.len()),
        "size_mb": m["shards"].as_array().map(|s| s.iter().filter_map(|s| s["bytes"].as_u64()).sum::<u64>() as f64 / 1e6),
        "label_columns": m["label_columns"],
    })
}

/// The numbers worth showing for a stage, its links and figures.
pub fn key_numbers(plan: &Plan, stage: &Stage) -> (Value, Vec<(String, String)>, Vec<String>) {
    let run = &plan.run_dir;
    let out = &stage.out;
    let mut links = vec![];
    let mut figures = vec![];
    let mut fig = |p: PathBuf| {
        if p.is_file() {
            figures.push(rel(run, &p));
        }
    };
    let results = match stage.kind {
        Kind::Extract | Kind::Plant => dataset_numbers(out),
        Kind::Synth => {
            let mut v = dataset_numbers(out);
            let truth = out.join(crate::synth::planted::TRUTH_DIR);
            if let Some(n) = read_json(&truth.join(crate::synth::neurons::NEURON_TRUTH_FILE)) {
                let mut classes = serde_json::Map::new();
                for p in n["neurons"].as_array().into_iter().flatten() {
                    let c = p["class"].as_str().unwrap_or("?").to_string();
                    let e = classes.entry(c).or_insert(json!(0));
                    *e = json!(e.as_u64().unwrap_or(0) + 1);
                }
                v["planted_neurons"] = Value::Object(classes);
                v["concepts"] = n["concepts"].as_array().map(|c| c.len()).into();
            }
            v
        }
        Kind::Train => {
            let e = read_json(&out.join("eval.json")).unwrap_or(Value::Null);
            let c = read_json(&out.join("cfg.json")).unwrap_or(Value::Null);
            json!({
                "hook": c["metadata"]["hook_name"], "d_in": c["d_in"], "d_sae": c["d_sae"],
                "tokens_trained": e["tokens_trained"], "ev": e["ev"], "fvu": e["fvu"], "mse": e["mse"],
                "l0": e["l0"], "dead_frac": e["dead_frac"], "dense_frac": e["dense_frac"],
                "held_out": e["held_out"],
            })
        }
        Kind::Eval => {
            let e = read_json(&out.join("eval.json")).unwrap_or(Value::Null);
            json!({
                "hook": e["hook"], "tokens": e["tokens"], "ev": e["ev"], "fvu": e["fvu"], "l0": e["l0"],
                "dead_frac": e["dead_frac"], "dense_frac": e["dense_frac"],
                "ce_recovered": e["downstream"]["ce_recovered"], "kl_score": e["downstream"]["kl_score"],
            })
        }
        Kind::Audit => {
            links.push(("audit report".into(), rel(run, &out.join("report.html"))));
            links.push(("scores.csv".into(), rel(run, &out.join("scores.csv"))));
            fig(out.join("rates.svg"));
            let a = read_json(&out.join("audit.json")).unwrap_or(Value::Null);
            let sides: Vec<Value> = a["sides"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    json!({
                        "kind": s["kind"], "source": s["source"], "hook": s["hook"], "units": s["units"],
                        "polysemantic": s["summary"]["polysemantic"],
                        "monosemantic": s["summary"]["monosemantic"],
                        "unexplained": s["summary"]["unexplained"],
                        "dead": s["summary"]["dead"],
                        "polysemantic_rate": s["summary"]["polysemantic_rate"],
                    })
                })
                .collect();
            json!({
                "tokens": a["tokens"], "concepts": a["concepts"].as_array().map(|c| c.len()),
                "score": a["score"], "threshold": a["threshold"], "sides": sides,
            })
        }
        Kind::Verify => {
            let v = read_json(&out.join("verify.json")).unwrap_or(Value::Null);
            if arg(stage, "--sae").is_some() {
                if let Some(sae) = arg(stage, "--sae") {
                    fig(Path::new(sae).join("verify.svg"));
                }
                let dead = match (v["dead_latents"].as_f64(), v["d_sae"].as_f64()) {
                    (Some(d), Some(n)) if n > 0.0 => json!(d / n),
                    _ => Value::Null,
                };
                json!({
                    "of": "sae", "planted": v["n_truth"], "latents": v["d_sae"], "mmcs": v["mmcs"],
                    "mcc": v["mcc"], "recovered": v["recovered"], "threshold": v["threshold"],
                    "dead_frac": dead, "duplicated_pairs": v["duplicated_pairs"],
                })
            } else {
                if let Some(audit) = arg(stage, "--audit") {
                    links.push((
                        "audit report".into(),
                        rel(run, &Path::new(audit).join("report.html")),
                    ));
                }
                json!({
                    "of": "audit",
                    "precision": v["polysemantic"]["precision"], "recall": v["polysemantic"]["recall"],
                    "f1": v["polysemantic"]["f1"], "planted_polysemantic": v["polysemantic"]["actual"],
                    "concept_precision": v["concepts"]["precision"], "concept_recall": v["concepts"]["recall"],
                    "concept_f1": v["concepts"]["f1"], "class_accuracy": v["class_accuracy"],
                })
            }
        }
        Kind::Analyze => {
            fig(out.join("layers.svg"));
            fig(out.join("spectra.svg"));
            let a = read_json(&out.join("analysis.json")).unwrap_or(Value::Null);
            let hooks: Vec<Value> = a["hooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    let m = &h["metrics"];
                    json!({
                        "hook": h["hook"], "d": m["d"], "effective_rank": m["effective_rank"],
                        "rank_ratio": m["rank_ratio"], "effective_dimensionality": m["effective_dimensionality"],
                        "sparsity": m["sparsity"], "interference": m["interference"],
                    })
                })
                .collect();
            if hooks.len() == 1 {
                if let Some(h) = hooks[0]["hook"].as_str() {
                    fig(out.join(format!("spectrum-{}.svg", h.replace(['/', '*'], "_"))));
                }
            }
            json!({ "tokens": a["tokens"], "hooks": hooks })
        }
    };
    (results, links, figures)
}

/// The JSON field a threshold reads, and whether it is a minimum.
fn check_field(key: &str) -> Option<(&'static str, bool, Kind)> {
    Some(match key {
        "min-mmcs" => ("mmcs", true, Kind::Train),
        "min-mcc" => ("mcc", true, Kind::Train),
        "min-recovered" => ("recovered", true, Kind::Train),
        "max-dead" => ("dead_frac", false, Kind::Train),
        "min-precision" => ("precision", true, Kind::Audit),
        "min-recall" => ("recall", true, Kind::Audit),
        "min-concept-f1" => ("concept_f1", true, Kind::Audit),
        _ => return None,
    })
}

/// The thresholds that apply to a verify stage, checked against its numbers.
pub fn checks(stage: &StageSummary, of: Kind, thresholds: &[Threshold]) -> Vec<CheckResult> {
    thresholds
        .iter()
        .filter_map(|t| {
            let (field, min, kind) = check_field(&t.key)?;
            if kind != of {
                return None;
            }
            let value = stage.results[field].as_f64().unwrap_or(f64::NAN);
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
        };
        if stage.kind == Kind::Verify {
            let of = if s.results["of"] == "sae" {
                Kind::Train
            } else {
                Kind::Audit
            };
            all_checks.extend(checks(&s, of, &plan.thresholds));
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
}
