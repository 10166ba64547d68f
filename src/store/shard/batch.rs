//! [`ContextBatch`]: the rows of whole contexts handed to a [`super::ShardWriter`], and the
//! checks a batch passes before anything of it is written (lengths, whole contexts, increasing
//! context ids).

use std::path::Path;

use crate::store::error::{Result, StoreError};
use crate::store::schema::HookInfo;

/// Rows of whole contexts to append to a shard. Every per-row slice has the same length; a
/// context's rows are consecutive with positions 0, 1, …; context ids increase.
#[derive(Debug, Clone, Copy)]
pub struct ContextBatch<'a> {
    /// Context id of each row.
    pub context_ids: &'a [u64],
    /// Position of each row within its context.
    pub positions: &'a [u32],
    /// Token id of each row.
    pub token_ids: &'a [u32],
    /// Token string of each row.
    pub tokens: &'a [String],
    /// Whether each row is a special token (BOS, CLS, SEP).
    pub special: &'a [bool],
    /// One value per row for each label column, in the writer's label order (None = no label).
    pub labels: &'a [Vec<Option<String>>],
    /// For each hook, in the writer's hook order, `rows × d` values, row-major.
    pub hooks: &'a [&'a [f32]],
}

impl ContextBatch<'_> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.context_ids.len()
    }

    /// Checks lengths against the shard's `hooks` and `label_columns`, and the context structure
    /// (`after`: the last context id already written); returns the contexts it found. `path` is
    /// the shard, for messages.
    pub(super) fn check(
        &self,
        path: &Path,
        hooks: &[HookInfo],
        label_columns: &[String],
        after: Option<u64>,
    ) -> Result<BatchSummary> {
        let b = self;
        let n = b.rows();
        for (what, len) in [
            ("positions", b.positions.len()),
            ("token_ids", b.token_ids.len()),
            ("tokens", b.tokens.len()),
            ("special", b.special.len()),
        ] {
            if len != n {
                return Err(batch_error(
                    path,
                    format!("{what} has {len} rows, context_ids has {n}"),
                ));
            }
        }
        if b.labels.len() != label_columns.len() {
            return Err(batch_error(
                path,
                format!(
                    "{} label columns given, the shard has {} ({:?})",
                    b.labels.len(),
                    label_columns.len(),
                    label_columns
                ),
            ));
        }
        for (name, col) in label_columns.iter().zip(b.labels) {
            if col.len() != n {
                return Err(batch_error(
                    path,
                    format!("label {name} has {} rows, expected {n}", col.len()),
                ));
            }
        }
        if b.hooks.len() != hooks.len() {
            return Err(batch_error(
                path,
                format!(
                    "{} hook arrays given, the shard has {} hooks",
                    b.hooks.len(),
                    hooks.len()
                ),
            ));
        }
        for (hook, values) in hooks.iter().zip(b.hooks) {
            if values.len() != n * hook.d {
                return Err(batch_error(
                    path,
                    format!(
                        "hook {} has {} values, expected {n} rows × {} = {}",
                        hook.name,
                        values.len(),
                        hook.d,
                        n * hook.d
                    ),
                ));
            }
        }
        context_runs(path, b.context_ids, b.positions, after)
    }
}

/// Contexts found in a batch.
#[derive(Debug)]
pub(super) struct BatchSummary {
    pub(super) contexts: u64,
    pub(super) first: u64,
    pub(super) last: u64,
}

/// A malformed batch for the shard at `path`.
pub(super) fn batch_error(path: &Path, message: String) -> StoreError {
    StoreError::Batch {
        path: path.to_path_buf(),
        message,
    }
}

/// Checks that rows form whole contexts (runs of one id, positions 0, 1, …) with ids increasing,
/// also across batches (`after`: the last id already written).
fn context_runs(
    path: &Path,
    ids: &[u64],
    positions: &[u32],
    after: Option<u64>,
) -> Result<BatchSummary> {
    let mut summary = BatchSummary {
        contexts: 0,
        first: ids.first().copied().unwrap_or(0),
        last: 0,
    };
    let mut prev = after;
    for (row, (&id, &pos)) in ids.iter().zip(positions).enumerate() {
        let continues = row > 0 && ids[row - 1] == id;
        if continues {
            if pos != positions[row - 1].wrapping_add(1) {
                return Err(batch_error(
                    path,
                    format!(
                        "row {row}: context {id} jumps from position {} to {pos}",
                        positions[row - 1]
                    ),
                ));
            }
            continue;
        }
        if pos != 0 {
            return Err(batch_error(
                path,
                format!(
                    "row {row}: context {id} starts at position {pos}; batches must hold whole \
                 contexts starting at position 0"
                ),
            ));
        }
        if let Some(p) = prev.filter(|&p| id <= p) {
            return Err(batch_error(
                path,
                format!("row {row}: context id {id} does not increase (previous context {p})"),
            ));
        }
        prev = Some(id);
        summary.contexts += 1;
        summary.last = id;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_runs_accept_whole_contexts() {
        let s = context_runs(Path::new("s"), &[3, 3, 3, 5, 5], &[0, 1, 2, 0, 1], Some(2)).unwrap();
        assert_eq!((s.contexts, s.first, s.last), (2, 3, 5));
    }

    #[test]
    fn context_runs_refuse_partial_or_unordered_contexts() {
        let e = context_runs(Path::new("s"), &[1, 1], &[1, 2], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("starts at position 1"), "{e}");
        let e = context_runs(Path::new("s"), &[1, 1], &[0, 2], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("jumps"), "{e}");
        let e = context_runs(Path::new("s"), &[4], &[0], Some(4))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not increase"), "{e}");
    }
}
