//! What `unravel run` asks of one stage, typed, and the one place it becomes a command line.
//!
//! The runner owns the paths (`--acts`, `--sae`, `--out`, `--json`, `--truth`, `--audit`): they
//! are fields here, filled in from the stages a stage reads. Everything else comes from the
//! stage's config section as [`Flag`]s, passed through as written (the stage's own parser checks
//! them: `unravel run` parses every command line before running anything).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::kind::Kind;

/// A flag from a config section: `--name VALUE`, or a bare `--name` (`value` None).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    /// The key with `_` written as `-`.
    pub name: String,
    pub value: Option<String>,
}

/// What a verify stage checks against the planted truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verified {
    /// An SAE folder, against planted directions (`verify --sae`).
    Sae(PathBuf),
    /// An audit folder, against planted neurons (`verify --audit`).
    Audit(PathBuf),
}

/// What a verify stage scores against: a planted dataset (`verify --truth`), or the generator a
/// streamed train stage read (`verify --synth`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TruthSource {
    Dataset(PathBuf),
    Generator { synth: String },
}

/// One stage's inputs and outputs, as `unravel <kind>` takes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageSpec {
    Extract {
        flags: Vec<Flag>,
        out: PathBuf,
    },
    Synth {
        flags: Vec<Flag>,
        out: PathBuf,
    },
    Plant {
        acts: PathBuf,
        flags: Vec<Flag>,
        out: PathBuf,
    },
    /// `acts` None: streamed from the generator its `synth` flag names.
    Train {
        acts: Option<PathBuf>,
        flags: Vec<Flag>,
        out: PathBuf,
    },
    /// Eval writes one file, `json`, into the stage's folder.
    Eval {
        sae: PathBuf,
        acts: PathBuf,
        json: PathBuf,
        flags: Vec<Flag>,
    },
    Audit {
        acts: PathBuf,
        sae: Option<PathBuf>,
        flags: Vec<Flag>,
        out: PathBuf,
    },
    Analyze {
        acts: PathBuf,
        flags: Vec<Flag>,
        out: PathBuf,
    },
    Verify {
        truth: TruthSource,
        of: Verified,
        json: PathBuf,
        /// `[verify] threshold`: the cosine at which a planted feature counts as recovered.
        threshold: Option<f64>,
    },
}

/// A command line being built.
struct Args(Vec<String>);

impl Args {
    fn path(&mut self, flag: &str, p: &Path) {
        self.0.push(flag.into());
        self.0.push(p.to_string_lossy().into_owned());
    }

    fn flags(&mut self, flags: &[Flag]) {
        for f in flags {
            self.0.push(format!("--{}", f.name));
            self.0.extend(f.value.clone());
        }
    }
}

impl StageSpec {
    pub fn kind(&self) -> Kind {
        match self {
            StageSpec::Extract { .. } => Kind::Extract,
            StageSpec::Synth { .. } => Kind::Synth,
            StageSpec::Plant { .. } => Kind::Plant,
            StageSpec::Train { .. } => Kind::Train,
            StageSpec::Eval { .. } => Kind::Eval,
            StageSpec::Audit { .. } => Kind::Audit,
            StageSpec::Analyze { .. } => Kind::Analyze,
            StageSpec::Verify { .. } => Kind::Verify,
        }
    }

    /// The command line after `unravel`: the subcommand, the runner's paths, then the config's
    /// flags (`--out` last).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Args(vec![self.kind().as_str().to_string()]);
        match self {
            StageSpec::Extract { flags, out } | StageSpec::Synth { flags, out } => {
                a.flags(flags);
                a.path("--out", out);
            }
            StageSpec::Plant { acts, flags, out } | StageSpec::Analyze { acts, flags, out } => {
                a.path("--acts", acts);
                a.flags(flags);
                a.path("--out", out);
            }
            StageSpec::Train { acts, flags, out } => {
                if let Some(acts) = acts {
                    a.path("--acts", acts);
                }
                a.flags(flags);
                a.path("--out", out);
            }
            StageSpec::Eval {
                sae,
                acts,
                json,
                flags,
            } => {
                a.path("--sae", sae);
                a.path("--acts", acts);
                a.path("--json", json);
                a.flags(flags);
            }
            StageSpec::Audit {
                acts,
                sae,
                flags,
                out,
            } => {
                a.path("--acts", acts);
                if let Some(sae) = sae {
                    a.path("--sae", sae);
                }
                a.flags(flags);
                a.path("--out", out);
            }
            StageSpec::Verify {
                truth,
                of,
                json,
                threshold,
            } => {
                match truth {
                    TruthSource::Dataset(p) => a.path("--truth", p),
                    TruthSource::Generator { synth } => {
                        a.0.extend(["--synth".to_string(), synth.clone()])
                    }
                }
                match of {
                    Verified::Sae(p) => a.path("--sae", p),
                    Verified::Audit(p) => a.path("--audit", p),
                }
                a.path("--json", json);
                if let Some(t) = threshold {
                    a.0.extend(["--threshold".to_string(), t.to_string()]);
                }
            }
        }
        a.0
    }

    /// The command line that continues an interrupted attempt, when the stage can resume from
    /// what it left: an extract with a manifest, a train with a checkpoint.
    pub fn resume_args(&self) -> Option<Vec<String>> {
        match self {
            StageSpec::Extract { out, .. } if crate::store::manifest_path(out).is_file() => {
                let mut a = self.to_args();
                a.push("--resume".into());
                Some(a)
            }
            StageSpec::Train { out, .. } if crate::sae::checkpoint::has_checkpoint(out) => {
                let mut a = Args(vec![self.kind().as_str().to_string()]);
                a.path("--resume", out);
                Some(a.0)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(name: &str, value: Option<&str>) -> Flag {
        Flag {
            name: name.into(),
            value: value.map(String::from),
        }
    }

    #[test]
    fn every_kind_writes_its_paths_then_the_config_flags() {
        let p = PathBuf::from;
        let flags = vec![flag("d-sae", Some("16")), flag("save-activations", None)];
        let cases = [
            (
                StageSpec::Synth {
                    flags: flags.clone(),
                    out: p("R/s"),
                },
                "synth --d-sae 16 --save-activations --out R/s",
            ),
            (
                StageSpec::Train {
                    acts: Some(p("R/s")),
                    flags: flags.clone(),
                    out: p("R/t"),
                },
                "train --acts R/s --d-sae 16 --save-activations --out R/t",
            ),
            (
                StageSpec::Train {
                    acts: None,
                    flags: vec![flag("synth", Some("synth-sae-bench-tiny"))],
                    out: p("R/t"),
                },
                "train --synth synth-sae-bench-tiny --out R/t",
            ),
            (
                StageSpec::Eval {
                    sae: p("R/t"),
                    acts: p("R/s"),
                    json: p("R/e/eval.json"),
                    flags: vec![flag("shards", Some("all"))],
                },
                "eval --sae R/t --acts R/s --json R/e/eval.json --shards all",
            ),
            (
                StageSpec::Audit {
                    acts: p("R/s"),
                    sae: None,
                    flags: vec![],
                    out: p("R/a"),
                },
                "audit --acts R/s --out R/a",
            ),
            (
                StageSpec::Audit {
                    acts: p("R/s"),
                    sae: Some(p("R/t")),
                    flags: vec![flag("regex", Some("a=x")), flag("regex", Some("b=y"))],
                    out: p("R/a"),
                },
                "audit --acts R/s --sae R/t --regex a=x --regex b=y --out R/a",
            ),
            (
                StageSpec::Verify {
                    truth: TruthSource::Dataset(p("R/s")),
                    of: Verified::Sae(p("R/t")),
                    json: p("R/v/verify.json"),
                    threshold: Some(0.8),
                },
                "verify --truth R/s --sae R/t --json R/v/verify.json --threshold 0.8",
            ),
            (
                StageSpec::Verify {
                    truth: TruthSource::Generator {
                        synth: "synth-sae-bench-tiny".into(),
                    },
                    of: Verified::Sae(p("R/t")),
                    json: p("R/v/verify.json"),
                    threshold: None,
                },
                "verify --synth synth-sae-bench-tiny --sae R/t --json R/v/verify.json",
            ),
            (
                StageSpec::Verify {
                    truth: TruthSource::Dataset(p("R/s")),
                    of: Verified::Audit(p("R/a")),
                    json: p("R/v/verify.json"),
                    threshold: None,
                },
                "verify --truth R/s --audit R/a --json R/v/verify.json",
            ),
        ];
        for (spec, line) in cases {
            assert_eq!(spec.resume_args(), None, "{line}");
            assert_eq!(spec.to_args().join(" "), line);
            assert_eq!(spec.to_args()[0], spec.kind().as_str());
        }
    }

    #[test]
    fn extract_and_train_resume_from_what_they_left() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x");
        let extract = StageSpec::Extract {
            flags: vec![flag("ctx", Some("64"))],
            out: out.clone(),
        };
        let train = StageSpec::Train {
            acts: Some(dir.path().join("a")),
            flags: vec![],
            out: out.clone(),
        };
        assert_eq!((extract.resume_args(), train.resume_args()), (None, None));
        let ckpt = out.join(crate::sae::checkpoint::CHECKPOINTS_DIR);
        std::fs::create_dir_all(&ckpt).unwrap();
        let meta = crate::store::meta_dir(&out);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join(crate::store::MANIFEST_FILE), "{}").unwrap();
        std::fs::write(ckpt.join(crate::sae::checkpoint::LATEST_FILE), "").unwrap();
        let o = out.to_string_lossy().into_owned();
        assert_eq!(
            extract.resume_args().unwrap(),
            ["extract", "--ctx", "64", "--out", &o, "--resume"]
        );
        assert_eq!(train.resume_args().unwrap(), ["train", "--resume", &o]);
    }
}
