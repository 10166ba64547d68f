//! The report's unit browser (`OUT/units/`): the index lists exactly the audited units with the
//! audit's class, passing concepts, density and maximum; a planted polysemantic neuron's
//! dashboard names its planted concepts, with examples read back at the right tokens and within
//! their bands; an SAE's features get
//! their nearest features by decoder cosine; GPT-2 units get the logit effect of a direct
//! computation, encoder models a note instead.

mod common;

use std::path::Path;

use common::{json, ok, p};
use serde_json::Value;

/// The arguments of the one call in a `units/*.js` file: the argument when there is one, else
/// the array of them.
fn call(path: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let body = text
        .strip_prefix(&format!("{name}("))
        .and_then(|t| t.strip_suffix(");\n"))
        .unwrap_or_else(|| panic!("{}: not a {name}(...) call", path.display()));
    let args: Vec<Value> = serde_json::from_str(&format!("[{body}]")).unwrap();
    match args.len() {
        1 => args.into_iter().next().unwrap(),
        _ => Value::Array(args),
    }
}

#[test]
fn index_and_dashboards_of_planted_neurons() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("neurons");
    ok(&[
        "synth",
        "--neurons",
        "40",
        "--tokens",
        "20000",
        "--seed",
        "3",
        "--out",
        &p(&acts),
    ]);
    let audit = tmp.path().join("audit");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--cards",
        "4",
        "--out",
        &p(&audit),
    ]);
    let report = json(&audit.join("audit.json"));
    let index = call(&audit.join("units/index.js"), "unravelIndex");
    let concepts: Vec<&str> = (index["concepts"].as_array().unwrap().iter())
        .map(|c| c.as_str().unwrap())
        .collect();
    let names: Vec<&str> = (report["concepts"].as_array().unwrap().iter())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(concepts, names);
    let sides = index["sides"].as_array().unwrap();
    assert_eq!(sides.len(), 1);
    assert_eq!(sides[0]["kind"], "neurons");
    assert_eq!(sides[0]["anchor"], "neuron");
    assert!(sides[0]["logits_note"]
        .as_str()
        .unwrap()
        .contains("synthetic"));
    let rows = sides[0]["units"].as_array().unwrap();
    let results = report["sides"][0]["unit_results"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    for (u, (row, res)) in rows.iter().zip(results).enumerate() {
        // [unit, class, passing concept indices, density, max, top tokens]
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 6);
        assert_eq!(row[0], u);
        assert_eq!(row[1], res["class"]);
        let passing: Vec<&str> = (row[2].as_array().unwrap().iter())
            .map(|c| concepts[c.as_u64().unwrap() as usize])
            .collect();
        let expected: Vec<&str> = (res["concepts"].as_array().unwrap().iter())
            .map(|c| c["concept"].as_str().unwrap())
            .collect();
        assert_eq!(passing, expected, "unit {u}");
        assert!((row[3].as_f64().unwrap() - res["density"].as_f64().unwrap()).abs() < 1e-12);
        assert!((row[4].as_f64().unwrap() - res["max_activation"].as_f64().unwrap()).abs() < 1e-6);
        let alive = res["class"] != "dead";
        assert_eq!(
            !row[5].as_array().unwrap().is_empty(),
            alive,
            "unit {u} top tokens"
        );
    }
    // One dashboard file (40 units < 128 per file), a page per unit in unit order.
    let chunk = call(&audit.join("units/neuron-0000.js"), "unravelChunk");
    assert_eq!(chunk[0], "neuron");
    assert_eq!(chunk[1], 0);
    let pages = chunk[2].as_array().unwrap();
    assert_eq!(pages.len(), 40);
    assert!(!audit.join("units/neuron-0001.js").exists());
    // Planted polysemantic neurons the audit also calls polysemantic: the dashboard's concept
    // table passes exactly their planted concepts; 8 top examples read back at the right tokens;
    // lower-band examples within their band; the histogram counts every token.
    let truth = json(&acts.join("__unravel__/truth/neurons.json"));
    let (mut checked, mut banded) = (0, 0);
    for n in truth["neurons"].as_array().unwrap() {
        let u = n["unit"].as_u64().unwrap() as usize;
        if n["class"] != "polysemantic" || results[u]["class"] != "polysemantic" {
            continue;
        }
        let page = &pages[u];
        assert_eq!(page["unit"], u);
        let mut planted: Vec<&str> = (n["concepts"].as_array().unwrap().iter())
            .map(|c| c.as_str().unwrap())
            .collect();
        planted.sort();
        let mut passing: Vec<&str> = (page["scores"].as_array().unwrap().iter())
            .filter(|s| s[7] == "pass")
            .map(|s| concepts[s[0].as_u64().unwrap() as usize])
            .collect();
        passing.sort();
        assert_eq!(passing, planted, "unit {u}");
        let bands = page["bands"].as_array().unwrap();
        assert_eq!(bands.len(), 3);
        let top = bands[0].as_array().unwrap();
        assert_eq!(top.len(), 8, "unit {u}: 8 top examples");
        for e in top {
            // [activation, tokens, % of max, focus, focus concepts]: the focus token is the
            // activation's, and its concepts are the ones its synthetic text lists ("·": none).
            let focus = e[3].as_u64().unwrap() as usize;
            let pct = (100.0 * e[0].as_f64().unwrap() / page["max"].as_f64().unwrap()).round();
            assert_eq!(e[2][focus].as_i64().unwrap(), pct as i64);
            let carried: Vec<&str> = (e[4].as_array().unwrap().iter())
                .map(|c| concepts[c.as_u64().unwrap() as usize])
                .collect();
            let text = e[1][focus].as_str().unwrap();
            let listed = if carried.is_empty() {
                "·".to_string()
            } else {
                carried.join("+")
            };
            assert_eq!(text, listed, "unit {u}");
        }
        // Lower bands: every example within its band of the maximum.
        let max = page["max"].as_f64().unwrap();
        for (b, (lo, hi)) in [(1, (0.75, 0.9)), (2, (0.5, 0.75))] {
            let band = bands[b].as_array().unwrap();
            banded += band.len();
            for e in band {
                let a = e[0].as_f64().unwrap();
                assert!(
                    a >= lo * max - 1e-6 && a < hi * max + 1e-6,
                    "unit {u} band {b}: {a} of {max}"
                );
            }
        }
        let hist: u64 = (page["hist"].as_array().unwrap().iter())
            .map(|b| b[2].as_u64().unwrap())
            .sum();
        let zero = page["zero"].as_u64().unwrap() + page["negative"].as_u64().unwrap();
        assert_eq!(hist + zero, report["tokens"].as_u64().unwrap());
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} planted polysemantic neurons checked"
    );
    assert!(
        banded >= checked,
        "{banded} lower-band examples for {checked} units"
    );
    // The report links every card title to its dashboard and loads the browser.
    let html = std::fs::read_to_string(audit.join("report.html")).unwrap();
    assert!(html.contains("id=\"units\"") && html.contains("units/index.js"));
    let card_unit = report["sides"][0]["cards"][0]["unit"].as_u64().unwrap();
    assert!(html.contains(&format!("href=\"#neuron-{card_unit}\"")));
}

/// An SAELens folder: encoder = identity (features = ReLU of the hook's dimensions), decoder =
/// `w_dec [d, d]`.
fn write_sae(dir: &Path, d: usize, w_dec: &[f32], hook: &str) {
    use candle_core::{Device, Tensor};
    std::fs::create_dir_all(dir).unwrap();
    let mut eye = vec![0f32; d * d];
    for i in 0..d {
        eye[i * d + i] = 1.0;
    }
    let t = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu).unwrap();
    let tensors = [
        ("W_enc", t(&eye, &[d, d])),
        ("b_enc", t(&vec![0.0; d], &[d])),
        ("W_dec", t(w_dec, &[d, d])),
        ("b_dec", t(&vec![0.0; d], &[d])),
    ];
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(k, v)| (*k, v)), None).unwrap();
    std::fs::write(dir.join("sae_weights.safetensors"), bytes).unwrap();
    let cfg = serde_json::json!({"architecture": "standard", "d_in": d, "d_sae": d,
        "dtype": "float32", "apply_b_dec_to_input": false, "normalize_activations": "none",
        "metadata": {"hook_name": hook, "sae_lens_version": "6.0.0"}});
    std::fs::write(dir.join("cfg.json"), cfg.to_string()).unwrap();
}

/// `dirs [n, d] · W_Uᵀ`, each row's 10 highest and 10 lowest (token text, logit), computed
/// directly.
fn direct_logits(
    dirs: &[f32],
    d: usize,
    wte: &[f32],
    texts: &[String],
) -> Vec<[Vec<(String, f32)>; 2]> {
    let vocab = wte.len() / d;
    dirs.chunks(d)
        .map(|dir| {
            let logits: Vec<f32> = (0..vocab)
                .map(|v| (0..d).map(|j| dir[j] * wte[v * d + j]).sum())
                .collect();
            let mut ids: Vec<usize> = (0..vocab).collect();
            ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            let pick = |ids: &[usize]| ids.iter().map(|&i| (texts[i].clone(), logits[i])).collect();
            let top = pick(&ids[..10]);
            ids.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(a.cmp(&b)));
            [top, pick(&ids[..10])]
        })
        .collect()
}

/// The dashboards' logit panels of every unit of the audit in `dir` (one side).
fn dashboard_logits(dir: &Path, prefix: &str) -> Vec<[Vec<(String, f32)>; 2]> {
    let pages = call(&dir.join(format!("units/{prefix}-0000.js")), "unravelChunk");
    let list = |v: &Value| -> Vec<(String, f32)> {
        (v.as_array().unwrap().iter())
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_f64().unwrap() as f32,
                )
            })
            .collect()
    };
    (pages[2].as_array().unwrap().iter())
        .map(|p| [list(&p["logits"]["pos"]), list(&p["logits"]["neg"])])
        .collect()
}

fn assert_same_logits(got: &[[Vec<(String, f32)>; 2]], want: &[[Vec<(String, f32)>; 2]]) {
    assert_eq!(got.len(), want.len());
    for (u, (g, w)) in got.iter().zip(want).enumerate() {
        for side in 0..2 {
            assert_eq!(g[side].len(), 10, "unit {u}");
            for ((gt, gv), (wt, wv)) in g[side].iter().zip(&w[side]) {
                assert_eq!(gt, wt, "unit {u}: {:?} vs {:?}", g[side], w[side]);
                assert!(
                    (gv - wv).abs() < 1e-4 * wv.abs().max(1.0),
                    "unit {u}: {gv} vs {wv}"
                );
            }
        }
    }
}

#[test]
fn gpt2_logit_effect_matches_a_direct_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::fixtures().join("tiny-gpt2");
    let acts = tmp.path().join("acts");
    ok(&[
        "extract",
        "--model",
        &p(&model),
        "--corpus",
        "data/corpus.jsonl",
        "--ctx",
        "64",
        "--hooks",
        "blocks.2.hook_resid_post,blocks.2.mlp.hook_post",
        "--out",
        &p(&acts),
    ]);
    // The model's W_U (= wte) and layer 2's MLP output weights, read directly.
    let tensors =
        candle_core::safetensors::load(model.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let flat =
        |k: &str| -> Vec<f32> { tensors[k].flatten_all().unwrap().to_vec1::<f32>().unwrap() };
    let (wte, w_out) = (
        flat("transformer.wte.weight"),
        flat("transformer.h.2.mlp.c_proj.weight"),
    );
    let texts =
        unravel::corpus::token_text::TokenText::from_file(&model.join("tokenizer.json")).unwrap();
    let texts: Vec<String> = (0..wte.len() / 32)
        .map(|i| texts.get(i as u32).to_string())
        .collect();
    // SAE features on the residual stream: decoder rows from a fixed LCG.
    let d = 32;
    let mut x = 12345u64;
    let w_dec: Vec<f32> = (0..d * d)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let sae = tmp.path().join("sae");
    write_sae(&sae, d, &w_dec, "blocks.2.hook_resid_post");
    let resid = tmp.path().join("resid");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--sae",
        &p(&sae),
        "--out",
        &p(&resid),
    ]);
    assert_same_logits(
        &dashboard_logits(&resid, "feature"),
        &direct_logits(&w_dec, d, &wte, &texts),
    );
    // The residual stream's neurons are basis vectors: W_U's columns.
    let mut eye = vec![0f32; d * d];
    for i in 0..d {
        eye[i * d + i] = 1.0;
    }
    assert_same_logits(
        &dashboard_logits(&resid, "neuron"),
        &direct_logits(&eye, d, &wte, &texts),
    );
    // MLP neurons: through the rows of the MLP output weights [128, 32].
    let mlp = tmp.path().join("mlp");
    ok(&[
        "audit",
        "--acts",
        &p(&acts),
        "--hook",
        "blocks.2.mlp.hook_post",
        "--out",
        &p(&mlp),
    ]);
    assert_same_logits(
        &dashboard_logits(&mlp, "neuron"),
        &direct_logits(&w_out, d, &wte, &texts),
    );
    // Features have nearest features by decoder cosine; the index has no note on this side.
    let pages = call(&resid.join("units/feature-0000.js"), "unravelChunk");
    let near = &pages[2][0]["nearest"];
    assert_eq!(near.as_array().unwrap().len(), 8);
    let cos = |a: usize, b: usize| {
        let (ra, rb) = (&w_dec[a * d..(a + 1) * d], &w_dec[b * d..(b + 1) * d]);
        let dot: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
        let n = |r: &[f32]| r.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (n(ra) * n(rb))
    };
    let mut want: Vec<(usize, f32)> = (1..d).map(|b| (b, cos(0, b))).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(near[0][0], format!("feature-{}", want[0].0));
    assert!((near[0][1].as_f64().unwrap() as f32 - want[0].1).abs() < 1e-5);
    let index = call(&resid.join("units/index.js"), "unravelIndex");
    assert!(index["sides"][1].get("logits_note").is_none());
    assert_eq!(index["wordpiece"], false); // GPT-2 tokens carry their spaces
}

#[test]
fn encoder_models_get_a_note_instead_of_a_logit_effect() {
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("acts");
    ok(&[
        "extract",
        "--model",
        &p(&common::fixtures().join("tiny-distilbert")),
        "--corpus",
        "data/corpus.jsonl",
        "--ctx",
        "64",
        "--hooks",
        "blocks.1.mlp.hook_post",
        "--out",
        &p(&acts),
    ]);
    let audit = tmp.path().join("audit");
    ok(&["audit", "--acts", &p(&acts), "--out", &p(&audit)]);
    let index = call(&audit.join("units/index.js"), "unravelIndex");
    // WordPiece contexts: the dashboard puts the spaces back between words.
    assert_eq!(index["wordpiece"], true);
    let note = index["sides"][0]["logits_note"].as_str().unwrap();
    assert!(
        note.contains("encoder model without an unembedding"),
        "{note}"
    );
    let pages = call(&audit.join("units/neuron-0000.js"), "unravelChunk");
    assert!(pages[2]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p.get("logits").is_none()));
}
