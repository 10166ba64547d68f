//! A run config (TOML) → the stages to run, in pipeline order, each a typed [`StageSpec`] and
//! its `unravel` command line.
//!
//! A section per stage kind — `[extract]`, `[synth]`, `[plant]`, `[train]`, `[eval]`, `[audit]`,
//! `[analyze]` — whose keys are that command's flags (`d-sae = 1024` → `--d-sae 1024`; `true` →
//! a bare flag; an array → the flag repeated). A kind may appear several times as an array of
//! tables (`[[audit]]`), each with a `name`. Every stage writes to `RUN/<name>`; the runner fills
//! in `--out`, `--acts` and `--sae` from references (`data = "synth"`, `sae = "train"`).
//! Verification is automatic: every SAE trained on a dataset with planted features is checked
//! against them, and every audit of planted neurons against their truth; `[verify]` holds the
//! thresholds. A `[train]` with `synth = "PRESET_OR_SPEC"` streams from that generator instead of
//! reading a dataset, and is verified against the generator (`verify --synth`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};

use super::spec::StageSpec;

pub use super::kind::Kind;

mod builder;

use builder::Builder;

/// A run config that cannot be planned; each names the config file.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The config file cannot be read.
    #[error("{}: {source}; give the path of a run config such as configs/demo.toml", config.display())]
    Read {
        config: PathBuf,
        source: std::io::Error,
    },
    /// A TOML syntax error, at `:LINE:COL` when known (as compilers write it).
    #[error("{}{at}: {message}", config.display())]
    Syntax {
        config: PathBuf,
        at: String,
        message: String,
    },
    /// A section, key or value the run config cannot have (the message names it).
    #[error("{}: {message}", config.display())]
    Config { config: PathBuf, message: String },
}

/// A mistake in the config `config`.
fn bad(config: &Path, message: impl Into<String>) -> PlanError {
    PlanError::Config {
        config: config.to_path_buf(),
        message: message.into(),
    }
}

/// What ground truth a dataset carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Truth {
    None,
    /// Planted directions (`synth`, `plant`, and the concepts of `synth --neurons`).
    Features,
    /// Planted neurons (`synth --neurons`): directions and the neuron classes.
    Neurons,
}

/// One stage of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    pub kind: Kind,
    /// What the stage reads, writes and is asked to do.
    pub spec: StageSpec,
    /// The command line after `unravel` (`spec.to_args()`).
    pub args: Vec<String>,
    /// The folder it writes.
    pub out: PathBuf,
    /// Names of the stages it reads.
    pub inputs: Vec<String>,
    /// Hash of the command line and of its inputs' fingerprints: a stage whose fingerprint
    /// changed since it completed is run again.
    pub fingerprint: String,
    /// For verify stages: the stage checked.
    pub checks: Option<String>,
}

/// A threshold from `[verify]`, applied to the verify stages it concerns.
#[derive(Debug, Clone, Serialize)]
pub struct Threshold {
    pub key: String,
    pub value: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub title: String,
    pub description: String,
    pub config: PathBuf,
    pub run_dir: PathBuf,
    pub stages: Vec<Stage>,
    pub thresholds: Vec<Threshold>,
}

/// `[verify]` keys: the cosine threshold passed to `verify --sae`, and the checks.
pub const VERIFY_KEYS: [&str; 8] = [
    "threshold",
    "min-mmcs",
    "min-mcc",
    "min-recovered",
    "max-dead",
    "min-precision",
    "min-recall",
    "min-concept-f1",
];

/// Reads and plans a run config. `out` overrides `[run] out`.
pub fn plan_file(config: &Path, out: Option<&Path>) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(config).map_err(|source| PlanError::Read {
        config: config.to_path_buf(),
        source,
    })?;
    plan(config, &text, out)
}

/// A TOML syntax error on one line, as compilers write it: `FILE:LINE:COL: message`.
pub fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> PlanError {
    let message = e.message().trim().replace('\n', "; ");
    let syntax = |at: String| PlanError::Syntax {
        config: file.to_path_buf(),
        at,
        message: message.clone(),
    };
    let Some(span) = e.span() else {
        return syntax(String::new());
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    syntax(format!(":{line}:{col}"))
}

/// Plans a run from the text of its config.
pub fn plan(config: &Path, text: &str, out: Option<&Path>) -> Result<Plan, PlanError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| toml_error(config, text, &e))?;
    for key in table.keys() {
        if key != "run" && !Kind::ALL.iter().any(|k| k.as_str() == key) {
            return Err(bad(config, format!(
                "unknown section [{key}]; expected run, extract, synth, plant, train, eval, audit, verify or analyze"
            )));
        }
    }
    let run = match table.get("run") {
        Some(Value::Table(t)) => t.clone(),
        Some(_) => return Err(bad(config, "[run] must be a table")),
        None => Table::new(),
    };
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    for key in run.keys() {
        if !["out", "title", "description"].contains(&key.as_str()) {
            return Err(bad(
                config,
                format!("[run] unknown key `{key}`; expected out, title or description"),
            ));
        }
    }
    let string = |key: &str| -> Result<Option<String>, PlanError> {
        match run.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(config, format!("[run] {key} must be a string"))),
        }
    };
    let run_dir = match (out, string("out")?) {
        (Some(o), _) => o.to_path_buf(),
        (None, Some(o)) => PathBuf::from(o),
        (None, None) => Path::new("runs").join(&stem),
    };
    let mut b = Builder::new(config, run_dir.clone());
    let mut thresholds = vec![];
    let mut verify_threshold = None;
    for kind in Kind::ALL {
        let instances = instances(&table, kind, config)?;
        if kind == Kind::Verify {
            if instances.len() > 1 {
                return Err(bad(config, "[verify] may appear once"));
            }
            if let Some((_, t)) = instances.first() {
                (thresholds, verify_threshold) = verify_section(t, config)?;
            }
            b.add_verify_stages(verify_threshold)?;
            continue;
        }
        for (name, t) in instances {
            b.add(kind, name, &t)?;
        }
    }
    if b.stages.is_empty() {
        return Err(bad(
            config,
            "no stages; add at least one of [extract], [synth], [train], [audit], [analyze] (see configs/demo.toml)",
        ));
    }
    Ok(Plan {
        title: string("title")?.unwrap_or(stem),
        description: string("description")?.unwrap_or_default(),
        config: config.to_path_buf(),
        run_dir,
        stages: b.stages,
        thresholds,
    })
}

/// The tables of one kind, with their names: `[kind]` or `[[kind]]`.
fn instances(table: &Table, kind: Kind, config: &Path) -> Result<Vec<(String, Table)>, PlanError> {
    let k = kind.as_str();
    let tables: Vec<Table> = match table.get(k) {
        None => return Ok(vec![]),
        Some(Value::Table(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::Table(t) => Ok(t.clone()),
                _ => Err(bad(config, format!("[[{k}]] entries must be tables"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad(config, format!("[{k}] must be a table"))),
    };
    let many = tables.len() > 1;
    tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let name = match t.get("name") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(bad(config, format!("[{k}] name must be a string"))),
                None if many => format!("{k}-{}", i + 1),
                None => k.to_string(),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad(config, format!("[{k}] name `{name}`: use letters, digits, - and _ (it names the stage's folder)")));
            }
            Ok((name, t))
        })
        .collect()
}

/// `[verify]`: thresholds (checked by the runner) and the cosine threshold passed to
/// `verify --sae`.
fn verify_section(t: &Table, config: &Path) -> Result<(Vec<Threshold>, Option<f64>), PlanError> {
    let mut thresholds = vec![];
    let mut threshold = None;
    for (key, v) in t {
        let k = key.replace('_', "-");
        if !VERIFY_KEYS.contains(&k.as_str()) {
            return Err(bad(
                config,
                format!(
                    "[verify] unknown key `{key}`; expected {}",
                    VERIFY_KEYS.join(", ")
                ),
            ));
        }
        let value = match v {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            _ => return Err(bad(config, format!("[verify] {key} must be a number"))),
        };
        if k == "threshold" {
            threshold = Some(value);
        } else {
            thresholds.push(Threshold { key: k, value });
        }
    }
    Ok((thresholds, threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(text: &str) -> Plan {
        plan(Path::new("c.toml"), text, Some(Path::new("R"))).unwrap()
    }

    fn args<'a>(p: &'a Plan, name: &str) -> &'a [String] {
        &p.stages.iter().find(|s| s.name == name).unwrap().args
    }

    #[test]
    fn keys_become_flags_and_the_runner_fills_in_paths() {
        let p = planned(
            "[synth]\nneurons = 8\nsave-activations = true\nnoise = 0.5\n\
             [train]\nd_sae = 16\n[[audit]]\nregex = [\"a=x\", \"b=y\"]\nno-neurons = false\n",
        );
        assert_eq!(
            args(&p, "synth"),
            [
                "synth",
                "--neurons",
                "8",
                "--noise",
                "0.5",
                "--save-activations",
                "--out",
                "R/synth"
            ]
        );
        assert_eq!(
            args(&p, "train"),
            ["train", "--acts", "R/synth", "--d-sae", "16", "--out", "R/train"]
        );
        assert_eq!(
            args(&p, "audit"),
            [
                "audit", "--acts", "R/synth", "--sae", "R/train", "--regex", "a=x", "--regex",
                "b=y", "--out", "R/audit"
            ]
        );
        // Planted neurons: the SAE is checked against the concept directions, the audit against
        // the neurons.
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["synth", "train", "audit", "verify-train", "verify-audit"]
        );
        assert_eq!(
            args(&p, "verify-audit"),
            [
                "verify",
                "--truth",
                "R/synth",
                "--audit",
                "R/audit",
                "--json",
                "R/verify-audit/verify.json"
            ]
        );
    }

    #[test]
    fn defaults_pick_the_planted_dataset_for_training_and_the_extracted_one_for_analysis() {
        let p = planned(
            "[extract]\nmodel = \"m\"\ncorpus = \"c\"\nhooks = \"h\"\n[plant]\nfeatures = 4\n\
             [train]\n[eval]\n[analyze]\n[verify]\nthreshold = 0.8\nmin-mcc = 0.5\n",
        );
        assert_eq!(args(&p, "plant")[..3], ["plant", "--acts", "R/extract"]);
        assert_eq!(args(&p, "train")[..3], ["train", "--acts", "R/plant"]);
        assert_eq!(
            args(&p, "eval"),
            [
                "eval",
                "--sae",
                "R/train",
                "--acts",
                "R/plant",
                "--json",
                "R/eval/eval.json"
            ]
        );
        assert_eq!(args(&p, "analyze")[..3], ["analyze", "--acts", "R/extract"]);
        assert_eq!(
            args(&p, "verify-train")[7..],
            ["--threshold".to_string(), "0.8".to_string()]
        );
        assert_eq!(p.thresholds.len(), 1);
        assert_eq!(p.thresholds[0].key, "min-mcc");
        // No SAE on the extracted data: an audit of it gets none unless asked.
        let p = planned("[extract]\nmodel = \"m\"\ncorpus = \"c\"\nhooks = \"h\"\n[synth]\n[train]\ndata = \"synth\"\n[audit]\ndata = \"extract\"\n");
        assert!(!args(&p, "audit").contains(&"--sae".to_string()));
    }

    #[test]
    fn a_changed_setting_changes_the_fingerprints_of_that_stage_and_its_readers_only() {
        let base = "[synth]\nneurons = 8\n[train]\nl1-coefficient = 5\n[audit]\n[analyze]\n";
        let a = planned(base);
        let b = planned(&base.replace("= 5", "= 4"));
        let fp = |p: &Plan, n: &str| {
            p.stages
                .iter()
                .find(|s| s.name == n)
                .unwrap()
                .fingerprint
                .clone()
        };
        assert_eq!(fp(&a, "synth"), fp(&b, "synth"));
        assert_eq!(fp(&a, "analyze"), fp(&b, "analyze"));
        for n in ["train", "audit", "verify-train", "verify-audit"] {
            assert_ne!(fp(&a, n), fp(&b, n), "{n}");
        }
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = |t: &str| plan(Path::new("c.toml"), t, None).unwrap_err().to_string();
        let e = err("[synth]\nneurons = 8\ntokens = = 5\n");
        assert!(e.starts_with("c.toml:3:10: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err("# é\n[synth\n");
        assert!(e.starts_with("c.toml:2:"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| plan(Path::new("c.toml"), t, None).unwrap_err().to_string();
        assert!(err("[eval]\n").contains("[eval] there is no SAE to evaluate"));
        assert!(err("[synth]\n[[audit]]\nname = \"a b\"\n").contains("name `a b`"));
        assert!(
            err("[synth]\n[[audit]]\nname = \"x\"\n[[audit]]\nname = \"x\"\n")
                .contains("two stages are named `x`")
        );
        assert!(err("[synth]\n[train]\nresume = true\n").contains("[train] remove `resume`"));
        assert!(err("[synth]\n[audit]\nsae = \"nope\"\n").contains("sae = \"nope\""));
        assert!(err("[run]\nout = 3\n[synth]\n").contains("[run] out must be a string"));
        assert!(err("[synth]\nx = { a = 1 }\n").contains("[synth] x: expected"));
    }
}
