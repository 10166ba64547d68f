//! The value parsers of numeric flags live in the library ([`unravel::flag_values`]), beside the
//! config types whose fields are flags; the CLI's own flags use them from here too.

pub use unravel::flag_values::*;
