//! The run's index page: what ran, the checks, each stage's key numbers and figures, and links to
//! everything in the run folder (audit reports, logs, plots). Relative links only, so the folder
//! can be moved or archived whole.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::results::{AnalyzeNumbers, AuditNumbers, StageResults};
use super::summary::{StageSummary, Summary, UnitLink, SUMMARY_FILE};
use crate::report::html::{esc, CSS};

/// File name of the index page in the run folder.
pub const INDEX_FILE: &str = "index.html";

/// Rows of a stage's unit table (the rest are counted; all are in the stage's own files).
const MAX_UNIT_ROWS: usize = 200;

const EXTRA_CSS: &str = r#"
.pass { background: #2e7d32; } .fail { background: #c62828; } .none { background: #777; }
.tiles { display: flex; flex-wrap: wrap; gap: 14px; margin: 14px 0; }
.tile { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; min-width: 220px; }
.tile .big { font-size: 28px; font-weight: 700; }
.tile .what { color: #444; font-weight: 600; }
.stage { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.stage h3 { margin: 0 0 6px; }
.stage img { max-width: 560px; width: 100%; background: #fff; border: 1px solid #e3e3e3; margin: 6px 12px 0 0; }
pre.cmd { white-space: pre-wrap; word-break: break-all; background: #f4f4f4; padding: 6px 8px; margin: 6px 0;
  font-size: 12px; border-radius: 4px; }
"#;

/// Renders the page.
pub fn render_index(s: &Summary) -> String {
    let mut h = String::with_capacity(1 << 15);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<title>unravel run: {}</title>", esc(&s.title));
    let _ = writeln!(h, "<style>{CSS}{EXTRA_CSS}</style>\n</head>\n<body>");
    let _ = writeln!(h, "<h1>{}</h1>", esc(&s.title));
    if !s.description.is_empty() {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", esc(&s.description));
    }
    let (class, verdict) = match (s.checks.is_empty(), s.passed) {
        (true, _) => ("none", "no checks".to_string()),
        (false, true) => ("pass", format!("all {} checks pass", s.checks.len())),
        (false, false) => (
            "fail",
            format!(
                "{} of {} checks fail",
                s.checks.iter().filter(|c| !c.pass).count(),
                s.checks.len()
            ),
        ),
    };
    let _ = writeln!(
        h,
        "<p><span class=\"badge {class}\">{}</span> &nbsp; config <code>{}</code> &nbsp; run folder <code>{}</code> &nbsp; <a href=\"{SUMMARY_FILE}\">{SUMMARY_FILE}</a></p>",
        esc(&verdict),
        esc(&s.config),
        esc(&s.run_dir)
    );
    headline(&mut h, s);
    checks_table(&mut h, s);
    h.push_str("<h2>Results</h2>\n");
    for st in &s.stages {
        stage_card(&mut h, st);
    }
    stages_table(&mut h, s);
    h.push_str("</body>\n</html>\n");
    h
}

/// Writes the page to `RUN/index.html`, atomically.
pub fn write_index(s: &Summary, run_dir: &Path) -> std::io::Result<()> {
    crate::io::write_atomic(&run_dir.join(INDEX_FILE), render_index(s).as_bytes())
}

/// The few numbers a reader wants first, as tiles.
fn headline(h: &mut String, s: &Summary) {
    let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let mut tiles: Vec<(String, String, String)> = vec![];
    for st in &s.stages {
        match &st.results {
            StageResults::VerifySae(v) => tiles.push((
                format!("planted features recovered ({})", st.name),
                format!("{:.1}%", f(v.recovered) * 100.0),
                format!(
                    "MMCS {:.3}, MCC {:.3}, {} planted",
                    f(v.mmcs),
                    f(v.mcc),
                    count(v.planted)
                ),
            )),
            StageResults::VerifyAudit(v) => tiles.push((
                format!("audit vs planted neurons ({})", st.name),
                format!("P {:.2} · R {:.2}", f(v.precision), f(v.recall)),
                format!(
                    "concept F1 {:.3}, {} planted polysemantic",
                    f(v.concept_f1),
                    count(v.planted_polysemantic)
                ),
            )),
            StageResults::Audit(a) => {
                let rate = |k: &str| {
                    a.sides
                        .iter()
                        .find(|x| x.kind == k)
                        .map(|x| format!("{:.1}%", x.polysemantic_rate * 100.0))
                };
                let (big, sub) = match (rate("neurons"), rate("features")) {
                    (Some(n), Some(ft)) => {
                        (format!("{n} → {ft}"), "neurons → SAE features".to_string())
                    }
                    (Some(n), None) => (n, "of neurons".to_string()),
                    (None, Some(ft)) => (ft, "of SAE features".to_string()),
                    (None, None) => continue,
                };
                tiles.push((format!("polysemantic ({})", st.name), big, sub));
            }
            StageResults::Train(t) => tiles.push((
                format!("SAE ({})", st.name),
                format!("EV {:.3}", f(t.ev)),
                format!(
                    "L0 {:.1}, dead {:.1}%, {} → {}",
                    f(t.l0),
                    f(t.dead_frac) * 100.0,
                    count(t.d_in),
                    count(t.d_sae)
                ),
            )),
            _ => {}
        }
    }
    if tiles.is_empty() {
        return;
    }
    h.push_str("<div class=\"tiles\">\n");
    for (what, big, sub) in tiles {
        let _ = writeln!(
            h,
            "<div class=\"tile\"><div class=\"what\">{}</div><div class=\"big\">{}</div><div class=\"dim\">{}</div></div>",
            esc(&what),
            esc(&big),
            esc(&sub)
        );
    }
    h.push_str("</div>\n");
}

fn checks_table(h: &mut String, s: &Summary) {
    if s.checks.is_empty() {
        return;
    }
    h.push_str("<h2>Checks against planted ground truth</h2>\n<table class=\"grid\">\n");
    h.push_str(
        "<tr><th>stage</th><th>check</th><th>value</th><th>threshold</th><th>result</th></tr>\n",
    );
    for c in &s.checks {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.4}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td></tr>",
            esc(&c.stage),
            esc(&c.check),
            c.value,
            esc(&c.threshold),
            if c.pass { "pass" } else { "fail" },
            if c.pass { "PASS" } else { "FAIL" }
        );
    }
    h.push_str("</table>\n");
}

/// A count or an integer, `–` when missing.
fn count<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

/// A float as people read it: fractions and rates (by their key) as percentages, else 4 digits.
fn float(key: &str, x: f64) -> String {
    if key.ends_with("_frac") || key.ends_with("_rate") || key == "recovered" {
        format!("{:.1}%", x * 100.0)
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.4}")
    }
}

/// Any value of a stage's results, for the generic key/value table.
fn show(key: &str, v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => float(key, n.as_f64().unwrap_or(f64::NAN)),
        Value::Number(n) => n.to_string(),
        Value::String(t) => t.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "–".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::Object(o) => o
                    .get("name")
                    .map(|n| show("", n))
                    .unwrap_or_else(|| x.to_string()),
                _ => show("", x),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| format!("{k} {}", show(k, x)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A table with headings `heads` and one row of cells per entry of `rows`.
fn grid(h: &mut String, heads: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    h.push_str("<table class=\"grid\"><tr>");
    for head in heads {
        let _ = write!(h, "<th>{}</th>", esc(head));
    }
    h.push_str("</tr>\n");
    for r in rows {
        h.push_str("<tr>");
        for cell in r {
            let _ = write!(h, "<td class=\"num\">{}</td>", esc(&cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn stage_card(h: &mut String, st: &StageSummary) {
    let _ = writeln!(
        h,
        "<div class=\"stage\" id=\"{0}\"><h3>{0} <span class=\"dim\">({1})</span></h3>",
        esc(&st.name),
        esc(st.kind_str())
    );
    match &st.results {
        StageResults::Audit(a) => audit_numbers(h, a),
        StageResults::Analyze(a) => analyze_numbers(h, a),
        // Every other kind: all its numbers, by name.
        r => {
            h.push_str("<table class=\"kv\">\n");
            for (k, v) in r.to_value().as_object().into_iter().flatten() {
                if v.is_null() || k == "of" {
                    continue;
                }
                let _ = writeln!(
                    h,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    esc(k),
                    esc(&show(k, v))
                );
            }
            h.push_str("</table>\n");
        }
    }
    {
        h.push_str("<p>");
        for (label, href) in &st.links {
            let _ = write!(h, "<a href=\"{}\">{}</a> &nbsp; ", esc(href), esc(label));
        }
        let _ = writeln!(
            h,
            "<a href=\"{}\">output folder</a> &nbsp; <a href=\"{}\">log</a></p>",
            esc(&st.out),
            esc(&st.log)
        );
    }
    for f in &st.figures {
        let _ = write!(
            h,
            "<a href=\"{0}\"><img src=\"{0}\" alt=\"{0}\"></a>",
            esc(f)
        );
    }
    unit_table(h, &st.units);
    h.push_str("</div>\n");
}

/// The units a stage singles out (the neurons a verified audit got wrong), each opening its
/// dashboard; the first [`MAX_UNIT_ROWS`], the rest counted.
fn unit_table(h: &mut String, units: &[UnitLink]) {
    if units.is_empty() {
        return;
    }
    let _ = writeln!(
        h,
        "<p>{} units the audit got wrong (each opens its dashboard):</p>\n<table class=\"units\">",
        units.len()
    );
    for u in units.iter().take(MAX_UNIT_ROWS) {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td></tr>",
            esc(&u.href),
            esc(&u.unit),
            esc(&u.note)
        );
    }
    h.push_str("</table>\n");
    if units.len() > MAX_UNIT_ROWS {
        let _ = writeln!(
            h,
            "<p class=\"dim\">… and {} more (all in the stage's verify.json)</p>",
            units.len() - MAX_UNIT_ROWS
        );
    }
}

/// The audit's numbers: tokens, concepts, the score and each side's classes.
fn audit_numbers(h: &mut String, a: &AuditNumbers) {
    let _ = writeln!(
        h,
        "<p>{} tokens, {} concepts, {} ≥ {}</p>",
        esc(&count(a.tokens)),
        esc(&count(a.concepts)),
        esc(a.score.as_deref().unwrap_or("–")),
        esc(&a.threshold.map_or_else(|| "–".into(), |t| float("", t)))
    );
    grid(
        h,
        &[
            "units",
            "hook",
            "count",
            "polysemantic",
            "rate",
            "monosemantic",
            "unexplained",
            "dead",
        ],
        a.sides.iter().map(|x| {
            vec![
                x.kind.clone(),
                x.hook.clone(),
                x.units.to_string(),
                x.polysemantic.to_string(),
                float("polysemantic_rate", x.polysemantic_rate),
                x.monosemantic.to_string(),
                x.unexplained.to_string(),
                x.dead.to_string(),
            ]
        }),
    );
}

/// The superposition metrics of each analysed hook.
fn analyze_numbers(h: &mut String, a: &AnalyzeNumbers) {
    grid(
        h,
        &[
            "hook",
            "d",
            "eff. rank",
            "ratio",
            "eff. dim (PR)",
            "sparsity",
            "interference",
        ],
        a.hooks.iter().map(|x| {
            vec![
                x.hook.clone(),
                x.d.to_string(),
                x.effective_rank.to_string(),
                float("rank_ratio", x.rank_ratio),
                float("effective_dimensionality", x.effective_dimensionality),
                float("sparsity", x.sparsity),
                float("interference", x.interference),
            ]
        }),
    );
}

fn stages_table(h: &mut String, s: &Summary) {
    h.push_str("<h2>Stages</h2>\n<p class=\"note\">Each stage is one <code>unravel</code> command; run it by hand to repeat or vary one step. Re-running <code>unravel run</code> skips completed stages and resumes an interrupted one.</p>\n");
    h.push_str("<table class=\"grid\">\n<tr><th>#</th><th>stage</th><th>status</th><th>time</th><th>command</th></tr>\n");
    for (i, st) in s.stages.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td><a href=\"#{1}\">{1}</a></td><td>{2}</td><td class=\"num\">{3:.1} s</td><td><pre class=\"cmd\">{4}</pre></td></tr>",
            i + 1,
            esc(&st.name),
            esc(&st.status),
            st.seconds,
            esc(&st.command)
        );
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::plan::Kind;
    use crate::pipeline::results::VerifyAuditNumbers;

    /// A neuron a verified audit got wrong opens its dashboard in the audited report.
    #[test]
    fn verify_units_link_to_their_dashboards() {
        let unit = |i: usize| UnitLink {
            unit: format!("neuron-{i}"),
            href: format!("audit-planted/report.html#neuron-{i}"),
            note: "planted polysemantic, audited monosemantic; missed c07".into(),
        };
        let stage = StageSummary {
            name: "verify-audit-planted".into(),
            kind: Kind::Verify,
            status: "ran".into(),
            seconds: 1.0,
            command: "unravel verify".into(),
            out: "verify-audit-planted".into(),
            log: "logs/verify-audit-planted.log".into(),
            results: StageResults::VerifyAudit(VerifyAuditNumbers::new(None)),
            links: vec![],
            figures: vec![],
            units: (0..MAX_UNIT_ROWS + 3).map(unit).collect(),
        };
        let s = Summary {
            title: "t".into(),
            description: String::new(),
            config: "c.toml".into(),
            run_dir: "R".into(),
            stages: vec![stage],
            checks: vec![],
            passed: true,
        };
        let h = render_index(&s);
        assert!(h.contains(
            "<tr><td><a href=\"audit-planted&#47;report.html#neuron-12\">neuron-12</a></td>\
             <td>planted polysemantic, audited monosemantic; missed c07</td></tr>"
        ));
        assert_eq!(h.matches("report.html#neuron-").count(), MAX_UNIT_ROWS);
        assert!(h.contains("203 units the audit got wrong"));
        assert!(h.contains("… and 3 more"));
    }
}
