//! Joining the manifests of the parts of a split run (`__unravel__/manifest-pNN.json`) into one
//! whole `__unravel__/manifest.json`: [`merge`] checks and joins them, [`merge_part_folders`]
//! finds them in folders and saves the result.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::{created_by, setting_differences, Manifest, Totals};
use crate::store::error::{Result, StoreError};
use crate::store::stats::{HookStats, RunningStats};

/// Joins the manifests of all parts of one dataset (same settings, every part 1..=n exactly
/// once, all complete, distinct shard files, disjoint context ids) into one whole manifest:
/// the union of shards in part order, summed totals, document counts and budgets, merged
/// statistics, `part: None`.
pub fn merge(mut parts: Vec<Manifest>) -> Result<Manifest> {
    let Some(first) = parts.first() else {
        return Err(StoreError::Merge("no part manifests given".into()));
    };
    let Some(count) = first.part.map(|p| p.count) else {
        return Err(StoreError::Merge(
            "the first manifest is not a part (it has no `part`); only parts can be merged".into(),
        ));
    };
    let mut problems = vec![];
    let mut seen = vec![false; count as usize];
    for m in &parts {
        let Some(p) = m.part else {
            problems.push("a manifest without `part` is not a part of a split run".to_string());
            continue;
        };
        if p.count != count {
            problems.push(format!(
                "part {} says {} parts, part {} says {count}",
                p.tag(),
                p.count,
                first_tag(first)
            ));
        } else if p.index == 0 || p.index > count {
            problems.push(format!("part index {} is outside 1..={count}", p.index));
        } else if std::mem::replace(&mut seen[p.index as usize - 1], true) {
            problems.push(format!("part {} is given twice", p.tag()));
        }
        if !m.complete {
            problems.push(format!(
                "part {} is not complete (resume its extraction to finish it)",
                p.tag()
            ));
        }
        let label_a = format!("part {} has", first_tag(first));
        let label_b = format!("part {} has", p.tag());
        for d in setting_differences(first, m, (&label_a, &label_b), false) {
            problems.push(d);
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|i| !seen[*i as usize - 1])
        .map(|i| format!("p{i:02}"))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing parts: {}", missing.join(", ")));
    }
    if !problems.is_empty() {
        problems.dedup();
        return Err(StoreError::Merge(problems.join("; ")));
    }
    parts.sort_by_key(|m| m.part.map(|p| p.index));
    check_shards_disjoint(&parts)?;

    let mut merged = parts[0].clone();
    merged.part = None;
    merged.created_by = created_by();
    merged.shards = parts
        .iter()
        .flat_map(|m| m.shards.iter().cloned())
        .collect();
    merged.totals = Totals::default();
    merged.corpus.documents = parts.iter().map(|m| m.corpus.documents).sum();
    merged.corpus.empty_documents = parts.iter().map(|m| m.corpus.empty_documents).sum();
    merged.max_tokens = parts.iter().map(|m| m.max_tokens).sum();
    merged.next_context_id = parts.iter().map(|m| m.next_context_id).max().unwrap_or(0);
    merged.complete = true;
    for m in &parts {
        merged.totals.rows += m.totals.rows;
        merged.totals.contexts += m.totals.contexts;
        merged.totals.tokens += m.totals.tokens;
        merged.totals.special_rows += m.totals.special_rows;
    }
    merged.stats = merge_stats(&parts)?;
    Ok(merged)
}

/// `p03` for a part manifest, `?` otherwise (only used in messages).
fn first_tag(m: &Manifest) -> String {
    m.part.map(|p| p.tag()).unwrap_or_else(|| "?".into())
}

/// Shard files must be distinct, and every shard's context ids must belong to its part
/// (`id % N == i - 1`), so ids never collide across parts.
fn check_shards_disjoint(parts: &[Manifest]) -> Result<()> {
    let mut files = HashSet::new();
    for m in parts {
        for s in &m.shards {
            if !files.insert(s.file.as_str()) {
                return Err(StoreError::Merge(format!(
                    "shard file {} is listed by more than one part",
                    s.file
                )));
            }
            if let Some(p) = m.part {
                if s.contexts > 0 && !(p.owns(s.first_context_id) && p.owns(s.last_context_id)) {
                    return Err(StoreError::Merge(format!(
                        "shard {} holds context ids {}..={} that part {} of {} does not own",
                        s.file, s.first_context_id, s.last_context_id, p.index, p.count
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Count-weighted merge of every hook's statistics.
fn merge_stats(parts: &[Manifest]) -> Result<BTreeMap<String, HookStats>> {
    let mut out = BTreeMap::new();
    for hook in &parts[0].hooks {
        let mut acc = RunningStats::new(hook.d);
        for m in parts {
            if let Some(s) = m.stats.get(&hook.name) {
                acc.merge(&RunningStats::from_stats(s))
                    .map_err(|e| StoreError::Merge(format!("hook {}: {e}", hook.name)))?;
            }
        }
        out.insert(hook.name.clone(), acc.stats());
    }
    Ok(out)
}

/// Merges the part manifests found in `part_dirs` (dataset folders holding
/// `__unravel__/manifest-pNN.json` files and their shards; the folders must lie inside `out_dir`,
/// or be it) and saves the result as `out_dir/__unravel__/manifest.json`, with shard paths
/// relative to `out_dir`.
pub fn merge_part_folders(out_dir: &Path, part_dirs: &[PathBuf]) -> Result<Manifest> {
    let out_abs = std::fs::canonicalize(out_dir).map_err(|e| StoreError::io(out_dir, e))?;
    let mut parts = vec![];
    for dir in part_dirs {
        let abs = std::fs::canonicalize(dir).map_err(|e| StoreError::io(dir, e))?;
        let rel = abs.strip_prefix(&out_abs).map_err(|_| {
            StoreError::Merge(format!(
                "part folder {} is not inside the output folder {}; move it there, or merge in \
                 the folder that contains all parts",
                dir.display(),
                out_dir.display()
            ))
        })?;
        let prefix: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let files = Manifest::part_files(dir)?;
        if files.is_empty() {
            return Err(StoreError::Merge(format!(
                "{} holds no part manifest ({}/manifest-pNN.json)",
                dir.display(),
                crate::store::layout::META_DIR
            )));
        }
        for file in files {
            let mut m = Manifest::load_file(&file)?;
            for s in &mut m.shards {
                if !dir.join(&s.file).is_file() {
                    return Err(StoreError::Merge(format!(
                        "{} lists {}, which is missing",
                        file.display(),
                        dir.join(&s.file).display()
                    )));
                }
                let mut path = prefix.clone();
                path.push(s.file.clone());
                s.file = path.join("/");
            }
            parts.push(m);
        }
    }
    let merged = merge(parts)?;
    merged.save(out_dir)?;
    Ok(merged)
}
