//! `unravel inspect`: a readable summary of an activation dataset and a few of its rows (the
//! store's own view of a folder, so it lives beside the reader).

use std::fmt::Write;

use arrow_array::{Array, BooleanArray, StringArray, UInt32Array, UInt64Array};

use super::{Dataset, Result};

/// Model, hooks, token counts, shards, disk size and bytes per token.
pub fn summary(ds: &Dataset) -> String {
    let m = ds.manifest();
    let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
    let mut s = String::new();
    let model = match &m.model.revision {
        Some(r) => format!("{} @ {r}", m.model.id),
        None => m.model.id.clone(),
    };
    let _ = writeln!(s, "dataset   {}", ds.dir().display());
    let _ = writeln!(
        s,
        "model     {model} ({}{})",
        m.model.arch,
        if m.model.random_weights {
            ", random weights"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "contexts  {} of {} tokens (bos: {:?})",
        m.totals.contexts, m.ctx, m.bos
    );
    let _ = writeln!(
        s,
        "tokens    {} rows = {} tokens + {} special",
        m.totals.rows, m.totals.tokens, m.totals.special_rows
    );
    let _ = writeln!(
        s,
        "shards    {} ({:.1} MB, {:.0} bytes/token){}",
        m.shards.len(),
        bytes as f64 / 1e6,
        bytes as f64 / m.totals.rows.max(1) as f64,
        if m.complete {
            String::new()
        } else {
            format!("  INCOMPLETE: {}", crate::store::completion_hint(m))
        }
    );
    let _ = writeln!(
        s,
        "corpus    {} ({} documents, {} empty skipped), sha256 {}",
        m.corpus.sources.join(", "),
        m.corpus.documents,
        m.corpus.empty_documents,
        &m.corpus.sha256[..m.corpus.sha256.len().min(12)]
    );
    if let Some(p) = m.part {
        let _ = writeln!(s, "part      {} of {}", p.index, p.count);
    }
    let _ = writeln!(s, "hooks");
    for h in &m.hooks {
        let stats = m.stats.get(&h.name);
        let _ = writeln!(
            s,
            "  {:<32} d={:<5} {:<5} mean norm {}",
            h.name,
            h.d,
            h.dtype.to_string(),
            stats.map_or("-".into(), |st| format!("{:.3}", st.mean_norm))
        );
    }
    if !m.label_columns.is_empty() {
        let _ = writeln!(s, "labels    {}", m.label_columns.join(", "));
    }
    s
}

/// The first `n` rows of the first shard: ids, token and the first hook's first values.
pub fn preview(ds: &Dataset, n: usize) -> Result<String> {
    let mut s = String::new();
    if ds.shard_count() == 0 {
        return Ok(s);
    }
    let reader = ds.shard_reader(0)?;
    let batches = reader.read_columns(
        0,
        &["context_id", "position", "token_id", "token", "special"],
    )?;
    let Some(b) = batches.first() else {
        return Ok(s);
    };
    let col = |i: usize| b.column(i);
    let (ctx, pos, tid, tok, sp) = (
        col(0).as_any().downcast_ref::<UInt64Array>(),
        col(1).as_any().downcast_ref::<UInt32Array>(),
        col(2).as_any().downcast_ref::<UInt32Array>(),
        col(3).as_any().downcast_ref::<StringArray>(),
        col(4).as_any().downcast_ref::<BooleanArray>(),
    );
    let (Some(ctx), Some(pos), Some(tid), Some(tok), Some(sp)) = (ctx, pos, tid, tok, sp) else {
        return Ok(s);
    };
    let hook = ds.manifest().hooks.first().cloned();
    let values = match &hook {
        Some(h) => Some(reader.read_hook(h, 0, true)?),
        None => None,
    };
    let _ = writeln!(s, "rows of {}", reader.path().display());
    let _ = writeln!(
        s,
        "  {:>10} {:>5} {:>7} {:<16} {:<7} {}",
        "context_id",
        "pos",
        "token_id",
        "token",
        "special",
        hook.as_ref().map_or("", |h| h.name.as_str())
    );
    for i in 0..n.min(b.num_rows()) {
        let first = values.as_ref().map_or(String::new(), |v| {
            let row = &v.values[i * v.d..(i * v.d + v.d.min(4))];
            format!(
                "[{}, ...]",
                row.iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        let _ = writeln!(
            s,
            "  {:>10} {:>5} {:>7} {:<16} {:<7} {}",
            ctx.value(i),
            pos.value(i),
            tid.value(i),
            format!("{:?}", tok.value(i)),
            sp.value(i),
            first
        );
    }
    Ok(s)
}
