//! `unravel import`: activations written by other tools (numpy, safetensors, parquet / Arrow,
//! SAELens's cached activations) into a dataset folder every command reads.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::cli::progress::progress_bar;
use unravel::folder_lock::lock_output;
use unravel::import::ImportOptions;
use unravel::store::{StorageDtype, WriterOptions};

pub const IMPORT_EXAMPLES: &str = "Examples:\n  \
# a numpy array [rows, d] (or [contexts, ctx, d]); the hook is called `acts` unless --hook names it\n  \
unravel import acts.npy --hook blocks.2.hook_resid_post --out acts/from-npy\n  \
# one named tensor of a safetensors file (its name becomes the hook's)\n  \
unravel import activations.safetensors --column blocks.2.hook_resid_post --out acts/from-safetensors\n  \
# a float list column of parquet files or a folder of them, stored as f16\n  \
unravel import acts.parquet --column acts --dtype f16 --out acts/from-parquet\n  \
# SAELens's cached activations (CacheActivationsRunner's folder: one column per hook, token_ids)\n  \
unravel import saelens-cache --out acts/from-saelens\n  \
unravel train --acts acts/from-saelens --d-sae 64 --tokens 20000 --out runs/from-saelens\n\n\
Inputs: .npy, .npz (np.savez, not compressed), .safetensors (F16/BF16/F32/F64), parquet and Arrow IPC\n\
files with list / large_list / fixed_size_list columns of f16, f32, f64 (or unravel's bf16), one\n\
vector per record or a [context, d] list of lists per record (HF Array2D), and folders of them (HF\n\
`save_to_disk` folders in their state.json order). All inputs must agree on the hooks, their widths\n\
and the context length. Rows have no token text; token ids come from a `token_ids`/`input_ids`\n\
column where there is one. Inputs are streamed: memory stays bounded whatever their size.";

#[derive(Args)]
pub struct ImportArgs {
    /// Input files or folders, read in order into one dataset.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Column (parquet/Arrow), tensor (safetensors) or array (npz) to import; repeat for several
    /// columns (default: every float list column, or the file's only array).
    #[arg(long = "column", value_name = "NAME")]
    columns: Vec<String>,
    /// Store a single imported column under this hook name (default: the column's name; `acts`
    /// for .npy).
    #[arg(long)]
    hook: Option<String>,
    /// Storage dtype: f16, bf16 or f32 (default: the input's; f64 is stored as f32).
    #[arg(long)]
    dtype: Option<StorageDtype>,
    /// Model name recorded in the manifest (`model.id`).
    #[arg(long, default_value = "imported")]
    model: String,
    /// Rows per shard.
    #[arg(long, default_value_t = unravel::store::DEFAULT_SHARD_ROWS, value_parser = crate::cli::values::at_least_1::<usize>, allow_negative_numbers = true)]
    shard_tokens: usize,
    /// Output dataset folder (must not hold a dataset).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn cmd_import(a: &ImportArgs) -> Result<()> {
    let created = !a.out.exists();
    let _lock = lock_output("--out", &a.out, "import")?;
    let opts = ImportOptions {
        inputs: a.inputs.clone(),
        columns: a.columns.clone(),
        hook: a.hook.clone(),
        dtype: a.dtype,
        model: Some(a.model.clone()),
        writer: WriterOptions {
            shard_rows: a.shard_tokens,
            ..WriterOptions::default()
        },
    };
    let bar = progress_bar("{spinner} {pos} rows [{elapsed_precise}] {per_sec}");
    let t0 = std::time::Instant::now();
    let result = unravel::import::import(&a.out, &opts, &mut |rows| bar.set_position(rows));
    bar.finish_and_clear();
    let m = result.inspect_err(|_| {
        // An import cannot be resumed: leave no partial dataset in a folder it made.
        if created {
            let _ = std::fs::remove_dir_all(&a.out);
        }
    })?;
    let hooks: Vec<String> = m.hooks.iter().map(|h| h.to_string()).collect();
    println!(
        "imported {} rows ({} contexts of {}) of {} in {:.1}s -> {}",
        m.totals.rows,
        m.totals.contexts,
        m.ctx,
        hooks.join(", "),
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
