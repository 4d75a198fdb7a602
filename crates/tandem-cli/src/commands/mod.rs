//! Client commands: each talks to a gateway through `tandem-client`, signs
//! with a key file, and prints either human-readable text or (`--json`) one
//! JSON document on stdout.

pub mod keys;
pub mod package;
pub mod session;
pub mod status;

use serde_json::Value;

/// Print `value` as pretty JSON.
pub fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A JSON value as plain text (strings without quotes, null as `-`).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A 64-digit hex id shortened for tables: `3fa2c1d0…9e`.
pub fn short(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…{}", &id[..10], &id[id.len() - 4..])
    } else {
        id.to_string()
    }
}
