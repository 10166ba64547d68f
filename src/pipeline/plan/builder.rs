//! [`Builder`]: the stages of a run, added one config section at a time: each stage's inputs
//! resolved by name (`data = "synth"`, `sae = "train"`) or by default, its command line and
//! fingerprint, and the verify stages that check planted truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::{Table, Value};

use super::{bad, Kind, PlanError, Stage, Truth};
use crate::pipeline::spec::{Flag, StageSpec, TruthSource, Verified};
use crate::sae::eval_report::EVAL_FILE;
use crate::synth::verify::VERIFY_FILE;

/// Keys the runner owns: a config may not set them.
const OWNED: [&str; 3] = ["out", "resume", "json"];

/// A dataset a stage can read.
#[derive(Debug, Clone)]
struct DatasetRef {
    path: PathBuf,
    truth: Truth,
    /// The stage that writes it (None: an existing folder).
    stage: Option<String>,
}

/// The stages planned so far, and the datasets and SAEs they make, by name.
pub(super) struct Builder<'a> {
    config: &'a Path,
    run_dir: PathBuf,
    pub(super) stages: Vec<Stage>,
    datasets: BTreeMap<String, DatasetRef>,
    /// Train stage name → the dataset it reads.
    trains: Vec<(String, DatasetRef)>,
    /// Train stages streamed from a generator (`synth = "PRESET_OR_SPEC"`): name → generator.
    streamed: Vec<(String, String)>,
    /// Audits of planted neurons: audit stage name → the dataset.
    planted_audits: Vec<(String, DatasetRef)>,
}

/// A TOML table → command-line flags, skipping `skip` (keys the runner interprets).
fn flags(t: &Table, skip: &[&str], section: &str, config: &Path) -> Result<Vec<Flag>, PlanError> {
    let mut out = vec![];
    for (key, v) in t {
        let k = key.replace('_', "-");
        if skip.contains(&k.as_str()) {
            continue;
        }
        if OWNED.contains(&k.as_str()) {
            return Err(bad(config, format!("[{section}] remove `{key}`: the run decides where stages write and resumes by itself")));
        }
        let flag = |value: Option<String>| Flag {
            name: k.clone(),
            value,
        };
        let scalar = |v: &Value| -> Result<String, PlanError> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Integer(i) => Ok(i.to_string()),
                Value::Float(f) => Ok(f.to_string()),
                _ => Err(bad(config, format!("[{section}] {key}: expected a string, number, true/false or an array of them"))),
            }
        };
        match v {
            Value::Boolean(true) => out.push(flag(None)),
            Value::Boolean(false) => {}
            Value::Array(items) => {
                for item in items {
                    out.push(flag(Some(scalar(item)?)));
                }
            }
            other => out.push(flag(Some(scalar(other)?))),
        }
    }
    Ok(out)
}

/// The ground truth an existing dataset folder carries.
fn truth_of(dir: &Path) -> Truth {
    let t = crate::synth::planted::truth_dir(dir);
    if t.join(crate::synth::neurons::NEURON_TRUTH_FILE).is_file() {
        Truth::Neurons
    } else if t.join(crate::synth::planted::TRUTH_FILE).is_file() {
        Truth::Features
    } else {
        Truth::None
    }
}

fn fingerprint(kind: Kind, args: &[String], inputs: &[&Stage]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str());
    for a in args {
        h.update([0]);
        h.update(a.as_bytes());
    }
    for s in inputs {
        h.update([1]);
        h.update(s.fingerprint.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

impl<'a> Builder<'a> {
    pub(super) fn new(config: &'a Path, run_dir: PathBuf) -> Builder<'a> {
        Builder {
            config,
            run_dir,
            stages: vec![],
            datasets: BTreeMap::new(),
            trains: vec![],
            streamed: vec![],
            planted_audits: vec![],
        }
    }

    fn err(&self, section: &str, msg: impl std::fmt::Display) -> PlanError {
        bad(self.config, format!("[{section}] {msg}"))
    }

    /// The dataset named by `key` (a stage name or a folder), or the default.
    fn dataset(
        &self,
        t: &Table,
        section: &str,
        default: Option<DatasetRef>,
    ) -> Result<DatasetRef, PlanError> {
        match t.get("data") {
            Some(Value::String(s)) => {
                if let Some(d) = self.datasets.get(s) {
                    return Ok(d.clone());
                }
                let path = PathBuf::from(s);
                if crate::store::manifest_path(&path).is_file() {
                    return Ok(DatasetRef {
                        truth: truth_of(&path),
                        path,
                        stage: None,
                    });
                }
                Err(self.err(
                    section,
                    format!(
                        "data = \"{s}\": neither a dataset stage of this run ({}) nor a dataset folder",
                        self.dataset_names()
                    ),
                ))
            }
            Some(_) => Err(self.err(section, "data must be a string (a stage name or a folder)")),
            None => default.ok_or_else(|| {
                self.err(
                    section,
                    "no dataset to read: add an [extract] or [synth] section, or set data = \"FOLDER\"",
                )
            }),
        }
    }

    /// `what` (no SAE for a stage to read), with the reason when the only SAEs are streamed.
    fn no_sae(&self, what: &str) -> String {
        match self.streamed.first() {
            Some((train, generator)) => format!(
                "{what}: [train] `{train}` streams from the generator {generator} and has no dataset to be read with; its held-out evaluation and its verify stage score it"
            ),
            None => format!("{what}: add a [train] section"),
        }
    }

    fn dataset_names(&self) -> String {
        if self.datasets.is_empty() {
            "none".into()
        } else {
            self.datasets.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// The default dataset for training: the last planted one, else the last synthetic, else the
    /// last extracted (later stages build on earlier ones).
    fn default_train_data(&self) -> Option<DatasetRef> {
        let of = |k: Kind| {
            self.stages
                .iter()
                .rev()
                .find(|s| s.kind == k)
                .and_then(|s| self.datasets.get(&s.name).cloned())
        };
        of(Kind::Plant)
            .or_else(|| of(Kind::Synth))
            .or_else(|| of(Kind::Extract))
    }

    fn first_extract(&self) -> Option<DatasetRef> {
        self.stages
            .iter()
            .find(|s| s.kind == Kind::Extract)
            .and_then(|s| self.datasets.get(&s.name).cloned())
    }

    fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    fn push(
        &mut self,
        name: String,
        spec: StageSpec,
        inputs: Vec<String>,
        checks: Option<String>,
    ) -> Result<(), PlanError> {
        let (kind, args) = (spec.kind(), spec.to_args());
        if self.stage(&name).is_some() {
            return Err(bad(
                self.config,
                format!("two stages are named `{name}`; give one a different name"),
            ));
        }
        let input_stages: Vec<&Stage> = inputs.iter().filter_map(|n| self.stage(n)).collect();
        let fingerprint = fingerprint(kind, &args, &input_stages);
        self.stages.push(Stage {
            out: self.run_dir.join(&name),
            name,
            kind,
            spec,
            args,
            inputs,
            fingerprint,
            checks,
        });
        Ok(())
    }

    pub(super) fn add(&mut self, kind: Kind, name: String, t: &Table) -> Result<(), PlanError> {
        let section = kind.as_str();
        let out = self.run_dir.join(&name);
        let mut inputs = vec![];
        let input_of = |d: &DatasetRef, inputs: &mut Vec<String>| {
            if let Some(s) = &d.stage {
                inputs.push(s.clone());
            }
        };
        let flags = |skip: &[&str]| flags(t, skip, section, self.config);
        let spec = match kind {
            Kind::Extract => StageSpec::Extract {
                flags: flags(&["name"])?,
                out: out.clone(),
            },
            Kind::Synth => StageSpec::Synth {
                flags: flags(&["name"])?,
                out: out.clone(),
            },
            Kind::Plant => {
                let d = self.dataset(t, section, self.first_extract())?;
                input_of(&d, &mut inputs);
                StageSpec::Plant {
                    acts: d.path,
                    flags: flags(&["name", "data"])?,
                    out: out.clone(),
                }
            }
            Kind::Train if t.contains_key("synth") => {
                let flags = flags(&["name"])?;
                self.streamed_train(t, &name, flags, out.clone())?
            }
            Kind::Train => {
                let d = self.dataset(t, section, self.default_train_data())?;
                input_of(&d, &mut inputs);
                self.trains.push((name.clone(), d.clone()));
                StageSpec::Train {
                    acts: Some(d.path),
                    flags: flags(&["name", "data", "acts"])?,
                    out: out.clone(),
                }
            }
            Kind::Eval => {
                let (train, d) = self
                    .sae_ref(t, section, None)?
                    .ok_or_else(|| self.err(section, self.no_sae("there is no SAE to evaluate")))?;
                inputs.push(train.clone());
                input_of(&d, &mut inputs);
                StageSpec::Eval {
                    sae: self.run_dir.join(&train),
                    acts: d.path,
                    json: out.join(EVAL_FILE),
                    flags: flags(&["name", "data", "sae"])?,
                }
            }
            Kind::Audit => {
                let default = self
                    .trains
                    .last()
                    .map(|(_, d)| d.clone())
                    .or_else(|| self.default_train_data());
                let d = self.dataset(t, section, default)?;
                input_of(&d, &mut inputs);
                let sae = self.sae_ref(t, section, Some(&d))?.map(|(train, _)| {
                    inputs.push(train.clone());
                    self.run_dir.join(&train)
                });
                let spec = StageSpec::Audit {
                    acts: d.path.clone(),
                    sae,
                    flags: flags(&["name", "data", "sae"])?,
                    out: out.clone(),
                };
                if d.truth == Truth::Neurons {
                    self.planted_audits.push((name.clone(), d));
                }
                spec
            }
            Kind::Analyze => {
                let default = self.first_extract().or_else(|| self.default_train_data());
                let d = self.dataset(t, section, default)?;
                input_of(&d, &mut inputs);
                StageSpec::Analyze {
                    acts: d.path,
                    flags: flags(&["name", "data"])?,
                    out: out.clone(),
                }
            }
            Kind::Verify => unreachable!("verify stages are added by add_verify_stages"),
        };
        if kind.makes_dataset() {
            self.register_dataset(kind, &name, t, out);
        }
        self.push(name, spec, inputs, None)
    }

    /// A train stage that streams from the generator its `synth` key names (no dataset).
    fn streamed_train(
        &mut self,
        t: &Table,
        name: &str,
        flags: Vec<Flag>,
        out: PathBuf,
    ) -> Result<StageSpec, PlanError> {
        let Some(Value::String(generator)) = t.get("synth") else {
            return Err(self.err("train", "synth must be a preset name or a spec file"));
        };
        if t.contains_key("data") || t.contains_key("acts") {
            return Err(self.err(
                "train",
                "give data (a dataset) or synth (a generator to stream from), not both",
            ));
        }
        self.streamed.push((name.to_string(), generator.clone()));
        Ok(StageSpec::Train {
            acts: None,
            flags,
            out,
        })
    }

    /// Records the dataset a stage of `kind` writes into `out`, with the truth it carries, for
    /// the stages after it to read.
    fn register_dataset(&mut self, kind: Kind, name: &str, t: &Table, out: PathBuf) {
        let truth = match kind {
            Kind::Synth if t.contains_key("neurons") => Truth::Neurons,
            Kind::Synth | Kind::Plant => Truth::Features,
            _ => Truth::None,
        };
        self.datasets.insert(
            name.to_string(),
            DatasetRef {
                path: out,
                truth,
                stage: Some(name.to_string()),
            },
        );
    }

    /// The SAE a stage reads: `sae = "STAGE"`, `sae = false` (none), or by default the last
    /// train stage (for an audit: the last one trained on the audited dataset).
    fn sae_ref(
        &self,
        t: &Table,
        section: &str,
        audited: Option<&DatasetRef>,
    ) -> Result<Option<(String, DatasetRef)>, PlanError> {
        match t.get("sae") {
            Some(Value::Boolean(false)) => Ok(None),
            Some(Value::String(s)) => self
                .trains
                .iter()
                .find(|(n, _)| n == s)
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    self.err(
                        section,
                        format!(
                            "sae = \"{s}\": no [train] stage of that name (an SAE folder outside the run: run `unravel {section}` directly)"
                        ),
                    )
                }),
            Some(_) => Err(self.err(section, "sae must be a train stage's name or false")),
            None => Ok(self
                .trains
                .iter()
                .rev()
                .find(|(_, d)| audited.is_none_or(|a| a.path == d.path))
                .cloned()),
        }
    }

    /// A verify stage for every SAE trained on planted features and every audit of planted
    /// neurons.
    pub(super) fn add_verify_stages(&mut self, threshold: Option<f64>) -> Result<(), PlanError> {
        for (train, d) in self.trains.clone() {
            if d.truth == Truth::None {
                continue;
            }
            let name = format!("verify-{train}");
            let spec = StageSpec::Verify {
                truth: TruthSource::Dataset(d.path.clone()),
                of: Verified::Sae(self.run_dir.join(&train)),
                json: self.run_dir.join(&name).join(VERIFY_FILE),
                threshold,
            };
            let mut inputs = vec![train.clone()];
            inputs.extend(d.stage.clone());
            self.push(name, spec, inputs, Some(train))?;
        }
        // A streamed SAE is scored against its generator: dictionary and held-out rows.
        for (train, generator) in self.streamed.clone() {
            let name = format!("verify-{train}");
            let spec = StageSpec::Verify {
                truth: TruthSource::Generator { synth: generator },
                of: Verified::Sae(self.run_dir.join(&train)),
                json: self.run_dir.join(&name).join(VERIFY_FILE),
                threshold,
            };
            self.push(name, spec, vec![train.clone()], Some(train))?;
        }
        for (audit, d) in self.planted_audits.clone() {
            let name = format!("verify-{audit}");
            let spec = StageSpec::Verify {
                truth: TruthSource::Dataset(d.path.clone()),
                of: Verified::Audit(self.run_dir.join(&audit)),
                json: self.run_dir.join(&name).join(VERIFY_FILE),
                threshold: None,
            };
            let mut inputs = vec![audit.clone()];
            inputs.extend(d.stage.clone());
            self.push(name, spec, inputs, Some(audit))?;
        }
        Ok(())
    }
}
