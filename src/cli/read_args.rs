//! The flags every command that reads an activation dataset shares: how strictly to read it.

use clap::Args;
use unravel::store::ReadOptions;

/// `--allow-incomplete` and `--skip-nonfinite`, flattened into each reading command.
#[derive(Args, Debug, Clone, Default)]
pub struct ReadArgs {
    /// Read a dataset whose manifest says it is incomplete (an interrupted extract, a failed
    /// synth or plant): only the shards it lists are used.
    #[arg(long, help_heading = "Reading the dataset")]
    pub allow_incomplete: bool,
    /// Drop rows whose hook values hold NaN/Inf instead of stopping (the count is reported).
    #[arg(long, help_heading = "Reading the dataset")]
    pub skip_nonfinite: bool,
}

impl ReadArgs {
    pub fn options(&self) -> ReadOptions {
        ReadOptions {
            allow_incomplete: self.allow_incomplete,
            skip_nonfinite: self.skip_nonfinite,
        }
    }
}
