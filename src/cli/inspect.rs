//! `unravel inspect` and `unravel merge-manifests`: a dataset summarised, split parts joined.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use unravel::folder_lock::lock_output;

#[derive(Args)]
pub struct InspectArgs {
    /// Dataset folder (with __unravel__/manifest.json).
    dir: PathBuf,
    /// Re-hash every shard and check its parquet footer.
    #[arg(long)]
    verify: bool,
    /// Show this many rows of the first shard.
    #[arg(long, default_value_t = 3, value_parser = crate::cli::values::whole::<usize>, allow_negative_numbers = true)]
    rows: usize,
}

#[derive(Args)]
pub struct MergeArgs {
    /// Dataset folder that receives __unravel__/manifest.json.
    dir: PathBuf,
    /// Folders holding the part manifests (default: the dataset folder itself).
    #[arg(long, num_args = 1..)]
    parts: Vec<PathBuf>,
}

pub fn cmd_inspect(a: &InspectArgs) -> Result<()> {
    // Inspecting shows an incomplete dataset (the summary says so) rather than refusing it.
    let options = unravel::store::ReadOptions {
        allow_incomplete: true,
        skip_nonfinite: false,
    };
    let ds = unravel::store::Dataset::open_with(&a.dir, options)?;
    print!("{}", unravel::store::inspect::summary(&ds));
    if a.verify {
        ds.verify()?;
        println!("verified: every shard's sha256, footer and columns match the manifest");
    }
    if a.rows > 0 {
        print!("{}", unravel::store::inspect::preview(&ds, a.rows)?);
    }
    Ok(())
}

pub fn cmd_merge(a: &MergeArgs) -> Result<()> {
    let _lock = lock_output("merge-manifests", &a.dir, "merge-manifests")?;
    let parts = if a.parts.is_empty() {
        vec![a.dir.clone()]
    } else {
        a.parts.clone()
    };
    let m = unravel::store::merge_part_folders(&a.dir, &parts)?;
    println!(
        "merged {} shards, {} tokens -> {}",
        m.shards.len(),
        m.totals.rows,
        unravel::store::manifest_path(&a.dir).display()
    );
    Ok(())
}
