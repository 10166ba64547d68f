//! Token rows: every row of one row group with its token columns, label columns and
//! (optionally) one hook, for analyses that need the text beside the activations.

use arrow_array::{Array, BooleanArray, StringArray, UInt32Array, UInt64Array};

use super::error::{Result, StoreError};
use super::integrity;
use super::reader::ShardReader;
use super::schema::{decode_hook, HookInfo, CONTEXT_ID, POSITION, SPECIAL, TOKEN};

/// Every row of one row group with its token columns, chosen label columns and (optionally) one
/// hook: what an analysis that needs the text beside the activations reads.
#[derive(Debug, Clone, Default)]
pub struct TokenRows {
    pub context_id: Vec<u64>,
    pub position: Vec<u32>,
    pub token: Vec<String>,
    pub special: Vec<bool>,
    /// One column per requested label column, one value per row.
    pub labels: Vec<Vec<Option<String>>>,
    /// Hook values, `rows × d` row-major (empty without a hook).
    pub acts: Vec<f32>,
}

impl ShardReader {
    /// Reads all rows of one row group: token columns, the label columns `labels` and `hook`.
    pub fn read_token_rows(
        &self,
        row_group: usize,
        hook: Option<&HookInfo>,
        labels: &[String],
    ) -> Result<TokenRows> {
        let mut columns = vec![CONTEXT_ID, POSITION, TOKEN, SPECIAL];
        columns.extend(labels.iter().map(String::as_str));
        if let Some(h) = hook {
            columns.push(&h.name);
        }
        let batches = self.read_columns(row_group, &columns)?;
        let bad = |m: String| StoreError::format(self.path(), m);
        let mut out = TokenRows {
            labels: vec![vec![]; labels.len()],
            ..TokenRows::default()
        };
        for batch in &batches {
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| bad(format!("has no column {name}")))
            };
            let typed = |name: &str| bad(format!("column {name} has an unexpected type"));
            let ids = col(CONTEXT_ID)?;
            let ids = ids
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| typed(CONTEXT_ID))?;
            out.context_id.extend(ids.values().iter());
            let pos = col(POSITION)?;
            let pos = pos
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or_else(|| typed(POSITION))?;
            out.position.extend(pos.values().iter());
            let tok = col(TOKEN)?;
            let tok = tok
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| typed(TOKEN))?;
            out.token
                .extend((0..tok.len()).map(|i| tok.value(i).to_string()));
            let sp = col(SPECIAL)?;
            let sp = sp
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| typed(SPECIAL))?;
            out.special.extend((0..sp.len()).map(|i| sp.value(i)));
            for (k, name) in labels.iter().enumerate() {
                let c = col(name)?;
                let c = c
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| typed(name))?;
                out.labels[k]
                    .extend((0..c.len()).map(|i| (!c.is_null(i)).then(|| c.value(i).to_string())));
            }
            if let Some(h) = hook {
                let (start, first_row) = (out.acts.len(), out.acts.len() / h.d.max(1));
                decode_hook(col(&h.name)?.as_ref(), h, None, &mut out.acts)
                    .map_err(|e| StoreError::column(self.path(), e))?;
                let dropped = self.finite_or_dropped(h, row_group, &mut out.acts, start)?;
                if !dropped.is_empty() {
                    let rows: Vec<usize> = dropped.iter().map(|r| first_row + r).collect();
                    out.remove_rows(&rows);
                }
            }
        }
        Ok(out)
    }
}

impl TokenRows {
    /// Removes rows (sorted indices) from every column except `acts`, which the caller has
    /// already compacted.
    fn remove_rows(&mut self, rows: &[usize]) {
        let mut keep = vec![true; self.context_id.len()];
        rows.iter().for_each(|&r| keep[r] = false);
        integrity::retain_rows(&mut self.context_id, &keep);
        integrity::retain_rows(&mut self.position, &keep);
        integrity::retain_rows(&mut self.token, &keep);
        integrity::retain_rows(&mut self.special, &keep);
        for column in &mut self.labels {
            integrity::retain_rows(column, &keep);
        }
    }
}
