//! The report's unit browser: every unit of an audit, browsable offline. `report.html` holds the
//! code (browser.js, inline) and two empty containers; the data lies beside it in `units/`, as
//! JavaScript files that call one function each (a `<script src>` loads from `file://`, where
//! `fetch` is refused): `units/index.js` lists every unit (class, passing concepts, density,
//! maximum, top tokens) for the sortable, filterable index and the token search, and
//! `units/<neuron|feature>-NNNN.js` holds the dashboards of `CHUNK` units, loaded when one of them
//! is opened. The URL names the unit: `report.html#feature-4021`.
//!
//! The data is JSON (serde_json: every string escaped) inside a call; the page puts text into the
//! document only as text (`textContent`), never as markup.

use std::path::Path;

use serde_json::{json, Value};

use crate::analysis::audit::{AuditOutput, ScoreKind, UnitDetail, BANDS};
use crate::analysis::report::{AuditReport, Example, SideReport, UnitResult};

/// Units per dashboard file.
pub const CHUNK: usize = 128;
/// Folder of the data files, beside report.html.
pub const UNITS_DIR: &str = "units";
/// Concepts listed per dashboard: the best by the audited score (passing and rejected ones are
/// always listed).
const CONCEPTS_SHOWN: usize = 12;
/// Distinct top tokens per unit in the index (searched by token text).
const INDEX_TOKENS: usize = 8;

/// The browser's code, inlined into report.html.
pub(super) const BROWSER_JS: &str = include_str!("browser.js");

/// The anchor of a unit: `neuron-12`, `feature-4021` (`unit-12` for another kind).
pub fn unit_anchor(kind: &str, unit: usize) -> String {
    format!("{}-{unit}", anchor_prefix(kind))
}

/// `neuron`, `feature`, or `unit` for another kind.
pub fn anchor_prefix(kind: &str) -> &'static str {
    match kind {
        "neurons" => "neuron",
        "features" => "feature",
        _ => "unit",
    }
}

/// Per side: every unit's logit effect, `[promoted, suppressed]` (token text, logit change), or
/// why there is none (a line shown on the dashboards).
pub type LogitPanel = Result<Vec<[Vec<(String, f32)>; 2]>, String>;

/// Writes `units/index.js` and every dashboard chunk of `out` into `dir/units/` (each file
/// atomically). Returns the number of files written.
pub fn write_unit_browser(
    out: &AuditOutput,
    logits: &[LogitPanel],
    dir: &Path,
) -> std::io::Result<usize> {
    let units = dir.join(UNITS_DIR);
    std::fs::create_dir_all(&units)?;
    let write = |name: String, call: &str, args: Value| -> std::io::Result<()> {
        // A call with the array's elements as its arguments.
        let list: Vec<String> = match &args {
            Value::Array(items) => items.iter().map(|v| v.to_string()).collect(),
            v => vec![v.to_string()],
        };
        let body = format!("{call}({});\n", list.join(","));
        crate::io::write_atomic(&units.join(name), body.as_bytes())
    };
    let r = &out.report;
    let mut files = 0;
    for (s, side) in r.sides.iter().enumerate() {
        let prefix = anchor_prefix(&side.kind);
        for (c, start) in (0..side.units).step_by(CHUNK).enumerate() {
            let end = (start + CHUNK).min(side.units);
            let pages: Vec<Value> = (start..end)
                .map(|u| {
                    let mut page = dashboard(out, s, u);
                    if let Some(Ok(l)) = logits.get(s) {
                        page["logits"] = json!({"pos": l[u][0], "neg": l[u][1]});
                    }
                    page
                })
                .collect();
            write(
                format!("{prefix}-{c:04}.js"),
                "unravelChunk",
                json!([prefix, c, pages]),
            )?;
            files += 1;
        }
    }
    let mut index = index_data(out);
    for (s, l) in logits.iter().enumerate() {
        if let Err(why) = l {
            index["sides"][s]["logits_note"] = json!(why);
        }
    }
    write("index.js".into(), "unravelIndex", json!([index]))?;
    Ok(files + 1)
}

/// The index of every unit: `[unit, class, [passing concept], density, max, [top tokens]]`.
pub fn index_data(out: &AuditOutput) -> Value {
    let r = &out.report;
    let sides: Vec<Value> = r
        .sides
        .iter()
        .zip(&out.details)
        .map(|(side, details)| {
            let rows: Vec<Value> = (0..side.units)
                .map(|u| {
                    let res = result(side, u);
                    let passing: Vec<usize> = res
                        .map(|x| {
                            x.concepts
                                .iter()
                                .filter_map(|p| concept(r, &p.concept))
                                .collect()
                        })
                        .unwrap_or_default();
                    json!([
                        u,
                        res.map_or("dead", |x| x.class.as_str()),
                        passing,
                        res.map_or(0.0, |x| x.density),
                        res.map_or(0.0, |x| x.max_activation),
                        details.get(u).map(top_tokens).unwrap_or_default(),
                    ])
                })
                .collect();
            json!({
                "kind": side.kind,
                "anchor": anchor_prefix(&side.kind),
                "source": side.source,
                "hook": side.hook,
                "units": rows,
            })
        })
        .collect();
    json!({
        "concepts": r.concepts.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "score": r.score,
        "threshold": r.threshold,
        "chunk": CHUNK,
        "bands": BANDS.iter().map(|b| b.0).collect::<Vec<_>>(),
        "wordpiece": wordpiece(out),
        "sides": sides,
    })
}

/// Whether the contexts are WordPiece tokens (BERT: `##s` continues a word, no token carries
/// its space), so the dashboard puts the spaces back between words; byte-level BPE tokens
/// (GPT-2) carry their own.
fn wordpiece(out: &AuditOutput) -> bool {
    let tokens = (out.details.iter().flatten())
        .flat_map(|d| d.bands.iter().flatten())
        .flat_map(|e| e.tokens.iter());
    let mut pieces = false;
    for t in tokens {
        if t.starts_with(' ') || t.starts_with('\u{120}') {
            return false;
        }
        pieces |= t.len() > 2 && t.starts_with("##");
    }
    pieces
}

/// One unit's dashboard: histogram, examples per band, concept scores with the decision,
/// co-activating and nearest units.
pub fn dashboard(out: &AuditOutput, s: usize, u: usize) -> Value {
    let r = &out.report;
    let side = &r.sides[s];
    let nc = r.concepts.len();
    let d = out.details.get(s).and_then(|d| d.get(u));
    let res = result(side, u);
    // Concepts: passing and rejected first, then the best remaining by the audited score.
    let row = &out.scores[s][u * nc..(u + 1) * nc];
    let failed = &out.failed[s][u * nc..(u + 1) * nc];
    let kind = ScoreKind::parse(&r.score).unwrap_or(ScoreKind::Selectivity);
    let score = |c: usize| kind.of(&row[c]);
    let mut order: Vec<usize> = (0..nc).collect();
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    let listed = |c: usize| {
        res.is_some_and(|x| {
            x.concepts.iter().any(|p| p.concept == r.concepts[c].name)
                || x.rejected.iter().any(|p| p.concept == r.concepts[c].name)
        })
    };
    let mut shown: Vec<usize> = order.iter().copied().filter(|&c| listed(c)).collect();
    shown.extend(order.iter().copied().filter(|&c| !listed(c)));
    shown.truncate(CONCEPTS_SHOWN.max(shown.iter().filter(|&&c| listed(c)).count()));
    let scores: Vec<Value> = shown
        .iter()
        .map(|&c| {
            let x = &row[c];
            json!([
                c,
                x.selectivity,
                x.auroc,
                x.topk,
                x.iou,
                x.support,
                x.z,
                failed[c].reason()
            ])
        })
        .collect();
    let max = res.map_or(0.0, |x| x.max_activation);
    json!({
        "unit": u,
        "class": res.map_or("dead", |x| x.class.as_str()),
        "density": res.map_or(0.0, |x| x.density),
        "max": max,
        "scores": scores,
        "hist": d.map(|d| json!(d.hist)).unwrap_or(json!([])),
        "negative": d.map_or(0, |d| d.negative),
        "zero": d.map_or(0, |d| d.zero),
        "bands": d.map(|d| d.bands.iter().map(|b| {
            b.iter().map(|e| example(r, e, max)).collect::<Vec<_>>()
        }).collect::<Vec<_>>()).unwrap_or_default(),
        "coactive": d.map(|d| d.coactive.iter().map(|&(s2, u2, share)| {
            json!([unit_anchor(&r.sides[s2].kind, u2), share])
        }).collect::<Vec<_>>()).unwrap_or_default(),
        "nearest": d.map(|d| d.nearest.iter().map(|&(u2, cos)| {
            json!([unit_anchor(&side.kind, u2), cos])
        }).collect::<Vec<_>>()).unwrap_or_default(),
    })
}

/// An example: activation, tokens, each token's activation in percent of the unit's maximum,
/// the focus, the focus token's concepts (indices).
fn example(r: &AuditReport, e: &Example, max: f32) -> Value {
    let pct: Vec<i32> = e
        .activations
        .iter()
        .map(|&a| {
            if max > 0.0 {
                (100.0 * a / max).round().clamp(-999.0, 999.0) as i32
            } else {
                0
            }
        })
        .collect();
    let concepts: Vec<usize> = e
        .focus_concepts
        .iter()
        .filter_map(|c| concept(r, c))
        .collect();
    json!([e.activation, e.tokens, pct, e.focus, concepts])
}

/// Distinct focus tokens of a unit's examples, top band first.
fn top_tokens(d: &UnitDetail) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for e in d.bands.iter().flatten() {
        let t = &e.tokens[e.focus];
        if !out.contains(t) {
            out.push(t.clone());
            if out.len() == INDEX_TOKENS {
                break;
            }
        }
    }
    out
}

fn result(side: &SideReport, unit: usize) -> Option<&UnitResult> {
    side.unit_results
        .get(unit)
        .filter(|r| r.unit == unit)
        .or_else(|| side.unit_results.iter().find(|r| r.unit == unit))
}

fn concept(r: &AuditReport, name: &str) -> Option<usize> {
    r.concepts.iter().position(|c| c.name == name)
}

/// The index section, the dashboard overlay and the browser's code (report.html, last section).
pub(super) fn section_units(h: &mut String) {
    h.push_str(
        "<section id=\"units\">\n<h2>Units</h2>\n<p class=\"note\">Every unit of the audit \
         (data in <code>units/</code> beside this page; nothing is fetched from a network). Click \
         a column to sort, a unit to open its dashboard; the address then names the unit \
         (<code>report.html#feature-12</code>) and can be sent as a link. Search takes a unit \
         id or a token text (units whose top contexts activate on that token).</p>\n\
         <div class=\"filters\">side <select id=\"f-side\"><option value=\"\">all</option>\
         </select> class <select id=\"f-class\"><option value=\"\">all</option>\
         <option>polysemantic</option><option>monosemantic</option><option>unexplained</option>\
         <option>dead</option></select> concept <select id=\"f-concept\"><option value=\"\">\
         any</option></select> density from <input id=\"f-dmin\" size=\"7\" placeholder=\"0\"> \
         to <input id=\"f-dmax\" size=\"7\" placeholder=\"1\"> search <input id=\"f-search\" \
         size=\"18\" placeholder=\"unit id or token\"></div>\n\
         <p><span id=\"index-count\">loading the unit index…</span> \
         <button id=\"page-prev\">‹ previous</button> <button id=\"page-next\">next ›</button> \
         <span id=\"browser-error\" class=\"err\"></span></p>\n\
         <table id=\"index-table\" class=\"index\"><thead><tr><th data-key=\"unit\">unit</th>\
         <th data-key=\"cls\">class</th><th data-key=\"concepts\">passing concepts</th>\
         <th data-key=\"density\">density</th><th data-key=\"max\">max</th>\
         <th data-key=\"top\">top token</th></tr></thead><tbody id=\"index-body\"></tbody>\
         </table>\n</section>\n<div id=\"dash\" hidden></div>\n",
    );
    h.push_str("<style>");
    h.push_str(BROWSER_CSS);
    h.push_str("</style>\n<script>\n");
    h.push_str(BROWSER_JS);
    h.push_str("</script>\n");
}

const BROWSER_CSS: &str = "\
.filters{margin:.5em 0}.filters input,.filters select{margin-right:.8em}\
table.index{border-collapse:collapse;font-size:13px}table.index th{cursor:pointer;\
background:#eee;text-align:left;padding:2px 8px}table.index td{padding:1px 8px;\
border-bottom:1px solid #eee}.err{color:#b00}\
#dash{position:fixed;top:2vh;left:3vw;right:3vw;bottom:2vh;overflow:auto;background:#fff;\
border:1px solid #888;box-shadow:0 4px 24px #0004;padding:12px 18px;z-index:10}\
.dash-head h2{display:inline;margin-right:.6em}.dash-head .close{float:right}\
.dash-grid{display:flex;flex-wrap:wrap;gap:12px}.panel{border:1px solid #ddd;padding:6px 10px;\
min-width:300px}.panel h3{margin:.2em 0 .4em;font-size:15px}tr.pass td{background:#fde0c5}\
.ex{font-family:monospace;font-size:13px;margin:2px 0;white-space:pre-wrap}\
.ex .act{display:inline-block;width:5em;color:#555}.tok.focus{font-weight:bold;\
text-decoration:underline}ul.nb{margin:0;padding-left:1.2em}.logits{display:flex;gap:24px}\
.cls-polysemantic{color:#d62728}.cls-monosemantic{color:#1f77b4}.cls-dead{color:#999}\n";
