//! The distinct values of a dataset's label columns (a projection scan: label columns only),
//! from which the audit builds one concept per value.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::store::{Dataset, StoreError};

/// A label column with more distinct values than this is not a concept label.
pub const MAX_LABEL_VALUES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LabelValuesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: label column {column} is not text", shard.display())]
    NotText { shard: PathBuf, column: String },
    #[error(
        "label column {column} has more than {MAX_LABEL_VALUES} distinct values; it is not a concept label"
    )]
    TooManyValues { column: String },
}

/// Every value of each of `columns`, sorted, per column (columns sorted by name).
pub fn label_values(
    ds: &Dataset,
    columns: &[String],
) -> Result<Vec<(String, Vec<String>)>, LabelValuesError> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = columns
        .iter()
        .map(|c| (c.clone(), Default::default()))
        .collect();
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    for s in 0..ds.shard_count() {
        let reader = ds.shard_reader(s)?;
        for g in 0..reader.row_groups().len() {
            for batch in reader.read_columns(g, &names)? {
                for name in columns {
                    let Some(col) = batch.column_by_name(name) else {
                        continue;
                    };
                    let Some(strings) = col.as_any().downcast_ref::<arrow_array::StringArray>()
                    else {
                        return Err(LabelValuesError::NotText {
                            shard: reader.path().to_path_buf(),
                            column: name.clone(),
                        });
                    };
                    let Some(set) = seen.get_mut(name) else {
                        continue;
                    };
                    for v in strings.iter().flatten() {
                        if set.len() <= MAX_LABEL_VALUES {
                            set.insert(v.to_string());
                        }
                    }
                }
            }
        }
    }
    if let Some((column, _)) = seen.iter().find(|(_, set)| set.len() > MAX_LABEL_VALUES) {
        return Err(LabelValuesError::TooManyValues {
            column: column.clone(),
        });
    }
    Ok(seen
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect())
}
