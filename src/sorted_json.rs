//! Serialising a value with its object keys sorted, as `serde_json::Value` writes them.
//!
//! Several stage files were first written by building a `serde_json::Value` (whose objects keep
//! keys sorted), with typed structs nested inside. Their typed contracts keep those bytes: a
//! struct declares its own fields in sorted order, and a nested type whose fields are declared
//! in another order is written through [`sorted`] (`#[serde(serialize_with = ...)]`).

use serde::{Serialize, Serializer};

/// The pretty-printed JSON text of `v` with every object's keys sorted: what a stage writes as
/// its report file. Cannot fail for the reports' types (string keys; NaN/Inf become `null`).
pub fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .expect("a report of numbers and strings serialises")
}

/// Writes `v` as `serde_json::to_value(v)` would: every object's keys sorted.
pub fn sorted<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(v)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}
