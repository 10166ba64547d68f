//! Numerics against Hugging Face transformers: every hook, logits and per-token loss of the tiny
//! random GPT-2 and DistilBERT in tests/fixtures, whose reference outputs come from
//! scripts/make_fixtures.py (transformers/torch versions are in the files' metadata and in
//! tests/fixtures/README.md). Tolerance in f32: 1e-4 absolute (docs/design.md, "Numerical traps").

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use unravel::hub::HubOptions;
use unravel::models::hooks::{HookPoint, HookSet};
use unravel::models::load;
use unravel::models::tokenizer::TextTokenizer;
use unravel::models::{Model, ModelOptions};

const F32_TOL: f32 = 1e-4;

fn load_fixture(name: &str, dtype: DType) -> Model {
    let files = load::resolve(
        fixtures().join(name).to_str().unwrap(),
        &HubOptions::default(),
        true,
    )
    .unwrap();
    Model::load(
        &files,
        &ModelOptions {
            dtype,
            ..ModelOptions::default()
        },
    )
    .unwrap()
}

fn all_hooks(model: &Model) -> HookSet {
    HookSet::new(HookPoint::all(model.n_layers()))
}

/// Every hook (and logits/CE) of the padded batch, compared on real tokens; returns the worst
/// difference relative to `1 + max|reference|` for each tensor name.
fn compare_batch(name: &str, model: &Model, tol: f32, relative: bool) {
    let r = reference(name);
    let (ids, mask) = batch(&r);
    let logits = model.has_logits();
    let out = model
        .forward(&ids, &mask, &all_hooks(model), logits)
        .unwrap();
    assert_eq!(out.hooks.len(), HookPoint::all(model.n_layers()).len());
    for (p, t) in &out.hooks {
        let want = r
            .get(&p.name())
            .unwrap_or_else(|| panic!("reference lacks {p}"));
        let diff = max_diff_real(t, want, &mask);
        let scale = if relative {
            1.0 + max_abs_real(want, &mask)
        } else {
            1.0
        };
        assert!(
            diff <= tol * scale,
            "{name} {p}: max |ours - HF| = {diff:e} > {tol:e} x {scale}"
        );
    }
    if logits {
        let l = out.logits.unwrap();
        let want = &r["logits"];
        let scale = if relative {
            1.0 + max_abs_real(want, &mask)
        } else {
            1.0
        };
        let diff = max_diff_real(&l, want, &mask);
        assert!(diff <= tol * scale, "{name} logits: {diff:e}");
    }
}

#[test]
fn gpt2_every_hook_and_logits_match_hf_f32() {
    compare_batch(
        "tiny-gpt2",
        &load_fixture("tiny-gpt2", DType::F32),
        F32_TOL,
        false,
    );
}

#[test]
fn distilbert_every_hook_matches_hf_f32() {
    compare_batch(
        "tiny-distilbert",
        &load_fixture("tiny-distilbert", DType::F32),
        F32_TOL,
        false,
    );
}

#[test]
fn bert_every_hook_matches_hf_f32() {
    compare_batch(
        "tiny-bert",
        &load_fixture("tiny-bert", DType::F32),
        F32_TOL,
        false,
    );
    compare_batch(
        "tiny-bert",
        &load_fixture("tiny-bert", DType::F16),
        2e-2,
        true,
    );
    compare_batch(
        "tiny-bert",
        &load_fixture("tiny-bert", DType::BF16),
        8e-2,
        true,
    );
}

/// BERT checkpoints of task models (`BertForMaskedLM`, ...) carry a `bert.` prefix and extra
/// heads; the pooler and `embeddings.position_ids` buffer are ignored.
#[test]
fn bert_loads_with_the_bert_prefix() {
    let orig = fixture_tensors("tiny-bert");
    assert!(orig.keys().all(|k| !k.starts_with("bert.")));
    let mut prefixed: std::collections::HashMap<String, Tensor> = orig
        .iter()
        .map(|(k, v)| (format!("bert.{k}"), v.clone()))
        .collect();
    prefixed.insert(
        "cls.predictions.bias".into(),
        Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
    );
    let d = tempfile::tempdir().unwrap();
    write_variant("tiny-bert", d.path(), vec![prefixed]);
    compare_batch("tiny-bert", &load_dir(d.path()).unwrap(), F32_TOL, false);
}

// Low precision: matmuls run in f16/bf16 (LayerNorm and softmax in f32), so errors grow with
// magnitude; tolerances are relative to 1 + max|reference| of each tensor.
#[test]
fn gpt2_and_distilbert_match_hf_in_f16() {
    compare_batch(
        "tiny-gpt2",
        &load_fixture("tiny-gpt2", DType::F16),
        2e-2,
        true,
    );
    compare_batch(
        "tiny-distilbert",
        &load_fixture("tiny-distilbert", DType::F16),
        2e-2,
        true,
    );
}

#[test]
fn gpt2_and_distilbert_match_hf_in_bf16() {
    compare_batch(
        "tiny-gpt2",
        &load_fixture("tiny-gpt2", DType::BF16),
        8e-2,
        true,
    );
    compare_batch(
        "tiny-distilbert",
        &load_fixture("tiny-distilbert", DType::BF16),
        8e-2,
        true,
    );
}

#[test]
fn token_ids_match_hf_tokenizers_exactly() {
    for name in ["tiny-gpt2", "tiny-distilbert", "tiny-bert"] {
        let r = reference(name);
        let (ids, mask) = batch(&r);
        let ids = ids.to_vec2::<u32>().unwrap();
        let tok = TextTokenizer::from_file(&fixtures().join(name).join("tokenizer.json")).unwrap();
        for (i, s) in sentences().iter().enumerate() {
            let ours = tok.encode(s).unwrap();
            let n = mask[i].iter().filter(|&&m| m == 1).count();
            assert_eq!(ours, ids[i][..n].to_vec(), "{name} sentence {i}: {s:?}");
        }
    }
}

/// Each sentence run alone (no padding) gives the padded batch's values on its tokens.
#[test]
fn padding_does_not_change_real_tokens() {
    for name in ["tiny-gpt2", "tiny-distilbert", "tiny-bert"] {
        let model = load_fixture(name, DType::F32);
        let r = reference(name);
        let (ids, mask) = batch(&r);
        let hooks = all_hooks(&model);
        let batched = model.forward(&ids, &mask, &hooks, false).unwrap();
        for (i, row) in mask.iter().enumerate() {
            let n = row.iter().filter(|&&m| m == 1).count();
            let alone_ids = ids.narrow(0, i, 1).unwrap().narrow(1, 0, n).unwrap();
            let alone = model
                .forward(&alone_ids, &[vec![1; n]], &hooks, false)
                .unwrap();
            for ((p, a), (_, b)) in alone.hooks.iter().zip(&batched.hooks) {
                let b = b.narrow(0, i, 1).unwrap().narrow(1, 0, n).unwrap();
                let one = [vec![1; n]];
                let diff = max_diff_real(a, &b, &one);
                // f32 rounding of values up to |x| ~ 30: relative 1e-5.
                let scale = 1.0 + max_abs_real(&b, &one);
                assert!(diff <= 1e-5 * scale, "{name} sentence {i} {p}: {diff:e}");
            }
        }
    }
}

/// Asking for an early hook stops the forward early and gives the same values.
#[test]
fn early_stop_gives_the_same_values() {
    let model = load_fixture("tiny-gpt2", DType::F32);
    let r = reference("tiny-gpt2");
    let (ids, mask) = batch(&r);
    let hooks = HookSet::select("blocks.0.mlp.hook_post,hook_pos_embed", model.n_layers()).unwrap();
    let out = model.forward(&ids, &mask, &hooks, false).unwrap();
    assert_eq!(out.hooks.len(), 2);
    assert_eq!(out.hooks[0].0, HookPoint::PosEmbed);
    let diff = max_diff_real(&out.hooks[1].1, &r["blocks.0.mlp.hook_post"], &mask);
    assert!(diff <= F32_TOL);
}

#[test]
fn per_token_ce_matches_hf() {
    let model = load_fixture("tiny-gpt2", DType::F32);
    let r = reference("tiny-gpt2");
    let (ids, mask) = batch(&r);
    let ids_rows = ids.to_vec2::<u32>().unwrap();
    let texts: Vec<Vec<u32>> = mask
        .iter()
        .zip(&ids_rows)
        .map(|(m, row)| row[..m.iter().filter(|&&x| x == 1).count()].to_vec())
        .collect();
    let hooks = HookSet::select("hook_embed", model.n_layers()).unwrap();
    let trace = unravel::trace::run(&model, &texts, &hooks, true, 4).unwrap();
    let want = r["token_ce"].to_vec2::<f32>().unwrap();
    let mut k = 0;
    for (i, t) in texts.iter().enumerate() {
        for (j, w) in want[i].iter().take(t.len()).enumerate() {
            let ours = trace.token_ce.as_ref().unwrap()[k];
            assert!((ours - w).abs() <= F32_TOL, "ce [{i},{j}] {ours} vs {w}");
            k += 1;
        }
        assert_eq!(trace.token_ce.as_ref().unwrap()[k - 1], 0.0);
    }
}

// ---- key layouts, sharding, buffers, errors -------------------------------------------------

/// Writes `tensors` as a model folder beside copies of the fixture's config and tokenizer.
fn write_variant(
    name: &str,
    dir: &std::path::Path,
    shards: Vec<std::collections::HashMap<String, Tensor>>,
) {
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixtures().join(name).join(f), dir.join(f)).unwrap();
    }
    if shards.len() == 1 {
        candle_core::safetensors::save(&shards[0], dir.join("model.safetensors")).unwrap();
        return;
    }
    let mut weight_map = serde_json::Map::new();
    for (i, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, shards.len());
        candle_core::safetensors::save(shard, dir.join(&file)).unwrap();
        for k in shard.keys() {
            weight_map.insert(k.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string(&index).unwrap(),
    )
    .unwrap();
}

fn fixture_tensors(name: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join(name).join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn load_dir(dir: &std::path::Path) -> Result<Model, load::LoadError> {
    let files = load::resolve(dir.to_str().unwrap(), &HubOptions::default(), true)?;
    Model::load(&files, &ModelOptions::default())
}

#[test]
fn both_key_layouts_shards_and_buffers_load() {
    for (name, prefix) in [
        ("tiny-gpt2", "transformer."),
        ("tiny-distilbert", "distilbert."),
    ] {
        let orig = fixture_tensors(name);
        assert!(
            orig.keys().any(|k| k.starts_with(prefix)),
            "fixture uses the {prefix} layout"
        );
        // Without the prefix (hub GPT-2 layout), plus a causal-mask buffer that must be ignored.
        let mut stripped: std::collections::HashMap<String, Tensor> = orig
            .iter()
            .map(|(k, v)| (k.strip_prefix(prefix).unwrap_or(k).to_string(), v.clone()))
            .collect();
        stripped.insert(
            "h.0.attn.bias".into(),
            Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap(),
        );
        let d1 = tempfile::tempdir().unwrap();
        write_variant(name, d1.path(), vec![stripped]);
        compare_batch(name, &load_dir(d1.path()).unwrap(), F32_TOL, false);
        // Sharded in two files with an index.
        let mut a = std::collections::HashMap::new();
        let mut b = std::collections::HashMap::new();
        for (i, (k, v)) in orig.iter().enumerate() {
            if i % 2 == 0 {
                a.insert(k.clone(), v.clone());
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
        let d2 = tempfile::tempdir().unwrap();
        write_variant(name, d2.path(), vec![a, b]);
        compare_batch(name, &load_dir(d2.path()).unwrap(), F32_TOL, false);
    }
}

#[test]
fn missing_or_misshapen_tensor_is_named() {
    let mut t = fixture_tensors("tiny-gpt2");
    t.remove("transformer.h.1.mlp.c_fc.bias");
    let d = tempfile::tempdir().unwrap();
    write_variant("tiny-gpt2", d.path(), vec![t]);
    let msg = load_dir(d.path()).err().expect("must fail").to_string();
    assert!(msg.contains("transformer.h.1.mlp.c_fc.bias"), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");

    let mut t = fixture_tensors("tiny-gpt2");
    let w = t["transformer.h.0.attn.c_attn.weight"]
        .t()
        .unwrap()
        .contiguous()
        .unwrap();
    t.insert("transformer.h.0.attn.c_attn.weight".into(), w);
    let d = tempfile::tempdir().unwrap();
    write_variant("tiny-gpt2", d.path(), vec![t]);
    let msg = load_dir(d.path()).err().expect("must fail").to_string();
    assert!(
        msg.contains("transformer.h.0.attn.c_attn.weight") && msg.contains("shape"),
        "{msg}"
    );
}

#[test]
fn corrupt_safetensors_is_named() {
    let d = tempfile::tempdir().unwrap();
    write_variant("tiny-gpt2", d.path(), vec![fixture_tensors("tiny-gpt2")]);
    let f = d.path().join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_dir(d.path()).err().expect("must fail").to_string();
    assert!(
        msg.contains("model.safetensors") && msg.contains("safetensors"),
        "{msg}"
    );
}

/// A hub cache laid out as hf-hub (and huggingface_hub) write it, used offline.
#[test]
fn loads_from_a_prefilled_hub_cache_offline() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--tiny--gpt2");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(sha);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), sha).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        // The real cache keeps blobs by hash and snapshot symlinks; a symlink is what we read.
        let blob = repo.join("blobs").join(f);
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::copy(fixtures().join("tiny-gpt2").join(f), &blob).unwrap();
        std::os::unix::fs::symlink(&blob, snap.join(f)).unwrap();
    }
    let hub = HubOptions {
        revision: "main".into(),
        cache_dir: Some(cache.path().to_path_buf()),
        offline: true,
    };
    let files = load::resolve("tiny/gpt2", &hub, true).unwrap();
    assert!(files.tokenizer.is_some());
    let model = Model::load(&files, &ModelOptions::default()).unwrap();
    compare_batch("tiny-gpt2", &model, F32_TOL, false);

    // A revision that is not cached is a clear error, not a network hang.
    let hub = HubOptions {
        revision: "v9".into(),
        ..hub
    };
    let msg = load::resolve("tiny/gpt2", &hub, true)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("tiny/gpt2") && msg.contains("v9") && msg.contains("offline"),
        "{msg}"
    );
}
