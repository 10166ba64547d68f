//! The report's unit browser (`OUT/units/`): the index lists exactly the audited units with the
//! audit's class, passing concepts, density and maximum; a planted polysemantic neuron's
//! dashboard names its planted concepts, with examples from every band; an SAE's features get
//! their nearest features by decoder cosine; GPT-2 units get the logit effect of a direct
//! computation, encoder models a note instead.

mod common;

use std::path::Path;

use common::{json, ok, p};
use serde_json::Value;

/// The argument of the one call in a `units/*.js` file.
fn call(path: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let body = text
        .strip_prefix(&format!("{name}("))
        .and_then(|t| t.strip_suffix(");\n"))
        .unwrap_or_else(|| panic!("{}: not a {name}(...) call", path.display()));
    serde_json::from_str(body).unwrap()
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
    // table passes exactly their planted concepts, and the top examples' tokens carry them.
    let truth = json(&acts.join("truth/neurons.json"));
    let mut checked = 0;
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
        let mut seen = std::collections::BTreeSet::new();
        for e in top {
            // [activation, tokens, % of max, focus, focus concepts]
            let focus = e[3].as_u64().unwrap() as usize;
            assert_eq!(
                e[2][focus].as_i64().unwrap(),
                (100.0 * e[0].as_f64().unwrap() / page["max"].as_f64().unwrap()).round() as i64
            );
            for c in e[4].as_array().unwrap() {
                seen.insert(concepts[c.as_u64().unwrap() as usize]);
            }
        }
        assert!(
            planted.iter().all(|c| seen.contains(c)),
            "unit {u}: {seen:?} vs {planted:?}"
        );
        // Lower bands: every example within its band of the maximum.
        let max = page["max"].as_f64().unwrap();
        for (b, (lo, hi)) in [(1, (0.75, 0.9)), (2, (0.5, 0.75))] {
            let band = bands[b].as_array().unwrap();
            assert!(!band.is_empty(), "unit {u} band {b}");
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
    // The report links every card title to its dashboard and loads the browser.
    let html = std::fs::read_to_string(audit.join("report.html")).unwrap();
    assert!(html.contains("id=\"units\"") && html.contains("units/index.js"));
    let card_unit = report["sides"][0]["cards"][0]["unit"].as_u64().unwrap();
    assert!(html.contains(&format!("href=\"#neuron-{card_unit}\"")));
}
