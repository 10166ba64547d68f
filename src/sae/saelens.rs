//! The SAELens layout: the export written at the end of a run (`cfg.json`,
//! `sae_weights.safetensors`, `sparsity.safetensors`, `export_check.safetensors`; see
//! [`super::checkpoint`] for the whole run folder) and SAEs in that layout read back, from a
//! local folder or the Hugging Face hub.

use super::saelens_cfg::{SaeLensCfg, SaeLensMetadata, CFG_FILE};
use std::path::{Path, PathBuf};

use super::files::{diverged, file_err, read_f32, tensor_bytes, to_tensor_f32, unfinished};
use super::model::Sae;
use super::{Result, SaeError};

/// What goes into cfg.json's metadata.
#[derive(Debug, Clone)]
pub struct ExportMeta {
    pub model_name: String,
    pub hook_name: String,
    pub context_size: usize,
    pub prepend_bos: bool,
    pub dataset_path: String,
}

/// Writes `sae` (raw-input space: scaling already folded) in SAELens's layout into `dir`.
pub fn export_saelens(dir: &Path, sae: &Sae, densities: &[f64], meta: &ExportMeta) -> Result<()> {
    let (s, d) = (sae.d_sae, sae.d_in);
    // W_enc [d_in, d_sae] is the transpose of our feature-major rows.
    let mut w_enc_t = vec![0f32; d * s];
    for i in 0..s {
        for j in 0..d {
            w_enc_t[j * s + i] = sae.w_enc[i * d + j];
        }
    }
    // A gated SAE's b_enc is SAELens's b_gate (its GatedSAE has no b_enc).
    let mut tensors = vec![
        ("W_enc", to_tensor_f32(&w_enc_t, &[d, s])?),
        (
            if sae.is_gated() { "b_gate" } else { "b_enc" },
            to_tensor_f32(&sae.b_enc, &[s])?,
        ),
        ("W_dec", to_tensor_f32(&sae.w_dec, &[s, d])?),
        ("b_dec", to_tensor_f32(&sae.b_dec, &[d])?),
    ];
    if sae.is_gated() {
        tensors.push(("r_mag", to_tensor_f32(&sae.r_mag, &[s])?));
        tensors.push(("b_mag", to_tensor_f32(&sae.b_mag, &[s])?));
    }
    let path = dir.join("sae_weights.safetensors");
    crate::io::write_safetensors(&path, &tensors).map_err(|e| file_err(&path, e))?;

    let log_density: Vec<f32> = densities
        .iter()
        .map(|&p| (p + 1e-10).log10() as f32)
        .collect();
    let sp = [("sparsity", to_tensor_f32(&log_density, &[s])?)];
    let path = dir.join("sparsity.safetensors");
    crate::io::write_safetensors(&path, &sp).map_err(|e| file_err(&path, e))?;

    let cfg = SaeLensCfg {
        apply_b_dec_to_input: sae.apply_b_dec_to_input,
        architecture: if sae.is_gated() { "gated" } else { "standard" }.into(),
        d_in: d,
        d_sae: s,
        device: "cpu".into(),
        dtype: "float32".into(),
        metadata: SaeLensMetadata {
            context_size: meta.context_size,
            dataset_path: meta.dataset_path.clone(),
            hook_head_index: None,
            hook_name: meta.hook_name.clone(),
            model_name: meta.model_name.clone(),
            prepend_bos: meta.prepend_bos,
            sae_lens_training_version: None,
            sae_lens_version: "6.0.0".into(),
            trained_with: format!("unravel {}", env!("CARGO_PKG_VERSION")),
        },
        normalize_activations: "none".into(),
        reshape_activations: "none".into(),
    };
    let path = dir.join(CFG_FILE);
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| file_err(&path, e))?;
    crate::io::write_atomic(&path, text.as_bytes()).map_err(|e| file_err(&path, e))
}

/// Writes `export_check.safetensors`: raw inputs `x [n, d_in]` with the features and
/// reconstructions our SAE computes for them.
pub fn write_export_check(
    dir: &Path,
    x: &[f32],
    feature_acts: &[f32],
    x_hat: &[f32],
    d_in: usize,
    d_sae: usize,
) -> Result<()> {
    let n = x.len() / d_in.max(1);
    let tensors = [
        ("x", to_tensor_f32(x, &[n, d_in])?),
        ("feature_acts", to_tensor_f32(feature_acts, &[n, d_sae])?),
        ("x_hat", to_tensor_f32(x_hat, &[n, d_in])?),
    ];
    let path = dir.join("export_check.safetensors");
    crate::io::write_safetensors(&path, &tensors).map_err(|e| file_err(&path, e))
}

/// An SAE in SAELens's layout, read back (local folder).
#[derive(Debug, Clone)]
pub struct LoadedSae {
    pub sae: Sae,
    /// `metadata.hook_name` (or the legacy top-level `hook_name`), if present.
    pub hook_name: Option<String>,
    pub model_name: Option<String>,
    pub dir: PathBuf,
}

/// Finds a SAELens-layout SAE: a local folder, or `OWNER/REPO[/SUB/FOLDER]` on the Hugging Face
/// hub (SAELens releases keep one SAE per sub-folder), downloaded into the standard cache
/// (`HF_HOME`; `HF_HUB_OFFLINE=1` uses the cache only). Returns the local folder.
pub fn locate_saelens(spec: &str, hub: &crate::hub::HubOptions) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let parts: Vec<&str> = spec.split('/').collect();
    let hub_like = parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != "..")
        && !spec.starts_with('.')
        && !spec.starts_with('~');
    if !hub_like {
        return Err(file_err(path, "no such folder (expected a SAELens folder with cfg.json + sae_weights.safetensors, or OWNER/REPO[/SUBFOLDER] on the hub)"));
    }
    let repo_id = format!("{}/{}", parts[0], parts[1]);
    let sub = parts[2..].join("/");
    let repo =
        crate::hub::HubRepo::open(&repo_id, hub).map_err(|e| SaeError::Config(e.to_string()))?;
    let name = |f: &str| {
        if sub.is_empty() {
            f.to_string()
        } else {
            format!("{sub}/{f}")
        }
    };
    let mut folder = None;
    for f in [CFG_FILE, "sae_weights.safetensors"] {
        let p = repo
            .get(&name(f))
            .map_err(|e| SaeError::Config(e.to_string()))?
            .ok_or_else(|| {
                SaeError::Config(format!(
                    "{spec}: no local folder, and hub repo {repo_id} has no {} (cache: {})",
                    name(f),
                    repo.cache_path.display()
                ))
            })?;
        folder = p.parent().map(Path::to_path_buf);
    }
    folder.ok_or_else(|| SaeError::Internal("hub file without a folder".into()))
}

/// A run folder with no SAE to read says why: its training diverged, or has not finished.
fn refuse_unexported(dir: &Path) -> Result<()> {
    if let Some(reason) = diverged(dir) {
        return Err(file_err(
            dir,
            format!("training diverged ({reason}); it exported no SAE"),
        ));
    }
    if let Some(step) = unfinished(dir) {
        return Err(file_err(
            dir,
            format!(
                "training has not finished (last checkpoint: {step}), so there is no SAE yet; \
                 continue it with `unravel train --resume {}`",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Loads `cfg.json` + `sae_weights.safetensors` from a SAELens-layout folder (ours, or one
/// downloaded from the hub): the `standard` (ReLU) and `gated` architectures.
pub fn load_saelens(dir: &Path) -> Result<LoadedSae> {
    refuse_unexported(dir)?;
    let cpath = dir.join(CFG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| {
        file_err(
            &cpath,
            format!("{e}; expected a SAELens folder (cfg.json + sae_weights.safetensors)"),
        )
    })?;
    let cfg: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| file_err(&cpath, format!("bad JSON: {e}")))?;
    let arch = cfg
        .get("architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("standard");
    let gated = arch == "gated";
    if !gated && arch != "standard" {
        return Err(file_err(
            &cpath,
            format!(
                "architecture `{arch}` is not supported (only `standard` ReLU and `gated` SAEs)"
            ),
        ));
    }
    let get_usize = |k: &str| {
        cfg.get(k)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or_else(|| file_err(&cpath, format!("missing `{k}`")))
    };
    let (d, s) = (get_usize("d_in")?, get_usize("d_sae")?);
    let apply = cfg
        .get("apply_b_dec_to_input")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let norm = cfg
        .get("normalize_activations")
        .and_then(|v| v.as_str())
        .unwrap_or("none");
    // SAELens itself runs `expected_average_only_in` without any normalization when it loads a
    // local folder (it folds a scaling factor only into its own hub releases): the same here.
    if !matches!(norm, "none" | "expected_average_only_in") {
        return Err(file_err(
            &cpath,
            format!(
                "normalize_activations = `{norm}` is not supported (`none` and \
                 `expected_average_only_in` are; `{norm}` rescales every token at run time)"
            ),
        ));
    }
    let meta = cfg.get("metadata");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .or_else(|| cfg.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let wpath = dir.join("sae_weights.safetensors");
    let bytes = std::fs::read(&wpath).map_err(|e| file_err(&wpath, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| file_err(&wpath, format!("damaged weights: {e}")))?;
    let read = |name: &str, len: usize| read_float(&st, name, len, &wpath);
    let w_enc_t = read("W_enc", d * s)?;
    let mut sae = if gated {
        Sae::zeros_gated(d, s, apply)
    } else {
        Sae::zeros(d, s, apply)
    };
    for i in 0..s {
        for j in 0..d {
            sae.w_enc[i * d + j] = w_enc_t[j * s + i];
        }
    }
    if gated {
        sae.b_enc = read("b_gate", s)?;
        sae.r_mag = read("r_mag", s)?;
        sae.b_mag = read("b_mag", s)?;
    } else {
        sae.b_enc = read("b_enc", s)?;
    }
    sae.w_dec = read("W_dec", s * d)?;
    sae.b_dec = read("b_dec", d)?;
    Ok(LoadedSae {
        sae,
        hook_name: field("hook_name"),
        model_name: field("model_name"),
        dir: dir.to_path_buf(),
    })
}

/// A weight tensor as f32, whichever float type SAELens saved it in (f32, f16, bf16, f64).
fn read_float(
    st: &safetensors::SafeTensors,
    name: &str,
    len: usize,
    path: &Path,
) -> Result<Vec<f32>> {
    let v = read_any_float(st, name, len, path)?;
    // A NaN/Inf weight would make every score computed from this SAE a wrong number.
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(file_err(
            path,
            format!(
                "tensor `{name}` holds a non-finite value ({}) at index {i}",
                v[i]
            ),
        ));
    }
    Ok(v)
}

fn read_any_float(
    st: &safetensors::SafeTensors,
    name: &str,
    len: usize,
    path: &Path,
) -> Result<Vec<f32>> {
    use safetensors::Dtype;
    let dtype = st.tensor(name).map(|t| t.dtype()).unwrap_or(Dtype::F32);
    if !matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F64) {
        return read_f32(st, name, len, path);
    }
    let b = tensor_bytes(st, name, dtype, len, path)?;
    Ok(match dtype {
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SAELens folder as SAELens 6 saves one: bf16 weights, b_dec not applied to the input,
    /// `expected_average_only_in` (run without normalization from a local folder, as SAELens).
    #[test]
    fn saelens_folders_with_other_dtypes_and_settings_load() {
        let dir = tempfile::tempdir().unwrap();
        let (d, s) = (3, 2);
        let w_enc: Vec<f32> = (0..d * s).map(|i| i as f32 * 0.5).collect();
        let bf16 = |v: &[f32]| -> Vec<u8> {
            v.iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect()
        };
        let bytes: Vec<(&str, Vec<usize>, Vec<u8>)> = vec![
            ("W_enc", vec![d, s], bf16(&w_enc)),
            ("b_enc", vec![s], bf16(&[1.0, -1.0])),
            ("W_dec", vec![s, d], bf16(&[0.25; 6])),
            ("b_dec", vec![d], bf16(&[2.0; 3])),
        ];
        let views: Vec<(&str, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, shape, b)| {
                let v = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::BF16,
                    shape.clone(),
                    b,
                );
                (*n, v.unwrap())
            })
            .collect();
        let wpath = dir.path().join("sae_weights.safetensors");
        safetensors::serialize_to_file(views, None, &wpath).unwrap();
        let cfg = serde_json::json!({"architecture": "standard", "d_in": d, "d_sae": s,
            "apply_b_dec_to_input": false, "normalize_activations": "expected_average_only_in",
            "metadata": {"hook_name": "blocks.0.hook_resid_post"}});
        std::fs::write(dir.path().join(CFG_FILE), cfg.to_string()).unwrap();
        let l = load_saelens(dir.path()).unwrap();
        assert!(!l.sae.apply_b_dec_to_input);
        assert_eq!(l.hook_name.as_deref(), Some("blocks.0.hook_resid_post"));
        // W_enc [d_in, d_sae] comes back feature-major: row i is column i of W_enc.
        assert_eq!(l.sae.w_enc, vec![0.0, 1.0, 2.0, 0.5, 1.5, 2.5]);
        assert_eq!(
            (l.sae.b_enc.clone(), l.sae.b_dec.clone()),
            (vec![1.0, -1.0], vec![2.0; 3])
        );

        let cfg = cfg
            .to_string()
            .replace("expected_average_only_in", "layer_norm");
        std::fs::write(dir.path().join(CFG_FILE), cfg).unwrap();
        let err = load_saelens(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`layer_norm` is not supported"), "{err}");

        // A NaN weight is refused, naming the file and the tensor.
        let mut nan = bytes.clone();
        nan[3].2 = bf16(&[2.0, f32::NAN, 2.0]);
        let views: Vec<(&str, safetensors::tensor::TensorView)> = nan
            .iter()
            .map(|(n, shape, b)| {
                let v = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::BF16,
                    shape.clone(),
                    b,
                );
                (*n, v.unwrap())
            })
            .collect();
        safetensors::serialize_to_file(views, None, &wpath).unwrap();
        let cfg = serde_json::json!({"architecture": "standard", "d_in": d, "d_sae": s});
        std::fs::write(dir.path().join(CFG_FILE), cfg.to_string()).unwrap();
        let err = load_saelens(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("sae_weights.safetensors")
                && err.contains("tensor `b_dec` holds a non-finite value (NaN) at index 1"),
            "{err}"
        );
    }

    /// A gated SAE as SAELens 6 saves one (`save_inference_model`, float64; from
    /// `scripts/gated_sae_reference.py`) reads back as a gated SAE whose encode gives SAELens's
    /// feature activations; written back by our export, it reads back unchanged.
    #[test]
    fn saelens_gated_folders_load_and_encode_as_saelens() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gated");
        let l = load_saelens(&fixtures.join("saelens")).unwrap();
        assert!(l.sae.is_gated() && l.sae.apply_b_dec_to_input);
        let fx: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures.join("step.json")).unwrap())
                .unwrap();
        let flat = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .flat_map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as f32)
                })
                .collect()
        };
        let f = l.sae.encode(&flat(&fx["x"]));
        let want = flat(&fx["feature_acts"]);
        assert!(want.iter().any(|&v| v > 0.0) && want.contains(&0.0));
        for (a, b) in f.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let dir = tempfile::tempdir().unwrap();
        let meta = ExportMeta {
            model_name: "m".into(),
            hook_name: "h".into(),
            context_size: 8,
            prepend_bos: true,
            dataset_path: "d".into(),
        };
        export_saelens(dir.path(), &l.sae, &[0.1; 7], &meta).unwrap();
        assert_eq!(load_saelens(dir.path()).unwrap().sae, l.sae);
    }
}
