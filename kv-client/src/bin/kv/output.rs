//! How `kv` prints answers: raw, hex or JSON.

use std::io::Write;
use std::net::SocketAddr;

use kv_client::ClientError;
use kv_service::NodeStatus;
use serde_json::json;

/// The output format chosen by `--hex` / `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Hex,
    Json,
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON description of a value: text when it is UTF-8, and hex always.
fn value_json(value: Option<&[u8]>) -> serde_json::Value {
    match value {
        None => json!(null),
        Some(bytes) => json!({
            "text": std::str::from_utf8(bytes).ok(),
            "hex": hex(bytes),
        }),
    }
}

fn print_json(value: serde_json::Value) {
    println!("{value}");
}

impl Format {
    pub fn new(hex: bool, json: bool) -> Self {
        match (hex, json) {
            (_, true) => Format::Json,
            (true, false) => Format::Hex,
            (false, false) => Format::Raw,
        }
    }

    /// The answer to `get`.
    pub fn value(self, key: &str, value: Option<&[u8]>) {
        match self {
            Format::Raw => {
                if let Some(bytes) = value {
                    let mut stdout = std::io::stdout().lock();
                    // A closed stdout (a pipe into `head`) is the reader's choice, not an error.
                    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
                }
            }
            Format::Hex => {
                if let Some(bytes) = value {
                    println!("{}", hex(bytes));
                }
            }
            Format::Json => print_json(json!({
                "key": key,
                "found": value.is_some(),
                "value": value_json(value),
            })),
        }
    }

    /// The answer to `put` / `append`.
    pub fn done(self, op: &str, key: &str) {
        if self == Format::Json {
            print_json(json!({ "op": op, "key": key, "ok": true }));
        }
    }

    /// The answer to `delete`.
    pub fn deleted(self, key: &str, existed: bool) {
        if self == Format::Json {
            print_json(json!({ "op": "delete", "key": key, "existed": existed }));
        }
    }

    /// The answer to `cas`.
    pub fn swapped(self, key: &str, swapped: bool, previous: Option<&[u8]>) {
        match self {
            Format::Json => print_json(json!({
                "op": "cas",
                "key": key,
                "swapped": swapped,
                "previous": value_json(previous),
            })),
            Format::Raw | Format::Hex if !swapped => {
                let shown = match previous {
                    None => "absent".to_string(),
                    Some(bytes) if self == Format::Hex => hex(bytes),
                    Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                };
                eprintln!("kv: not swapped; {key} holds {shown}");
            }
            _ => {}
        }
    }

    /// The answer to `status`.
    pub fn status(self, rows: &[(u64, SocketAddr, Result<NodeStatus, ClientError>)]) {
        if self == Format::Json {
            let nodes: Vec<_> = rows
                .iter()
                .map(|(id, addr, status)| match status {
                    Ok(s) => json!({
                        "endpoint": addr.to_string(), "id": s.id, "role": s.role,
                        "term": s.term, "leader": s.leader, "commit_index": s.commit_index,
                        "applied_index": s.applied_index, "last_index": s.last_index,
                        "snapshot_index": s.snapshot_index,
                        "raft_state_bytes": s.raft_state_bytes,
                        "snapshot_bytes": s.snapshot_bytes, "keys": s.keys,
                        "sessions": s.sessions, "read_mode": s.read_mode,
                        "unavailable": s.unavailable,
                    }),
                    Err(e) => {
                        json!({ "endpoint": addr.to_string(), "id": id, "error": e.to_string() })
                    }
                })
                .collect();
            print_json(json!(nodes));
            return;
        }
        println!(
            "{:<4} {:<21} {:<10} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>8}",
            "ID",
            "ENDPOINT",
            "ROLE",
            "TERM",
            "LEADER",
            "COMMIT",
            "APPLIED",
            "LAST",
            "SNAPSHOT",
            "LOG BYTES",
            "SNAP BYTES",
            "KEYS"
        );
        for (id, addr, status) in rows {
            match status {
                Ok(s) => {
                    if s.id != *id {
                        eprintln!(
                            "kv: endpoint {addr} is node {}, not {id}: fix --endpoints",
                            s.id
                        );
                    }
                    println!(
                        "{:<4} {:<21} {:<10} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>8}{}",
                        s.id,
                        addr.to_string(),
                        s.role,
                        s.term,
                        s.leader.map_or("-".to_string(), |l| l.to_string()),
                        s.commit_index,
                        s.applied_index,
                        s.last_index,
                        s.snapshot_index,
                        s.raft_state_bytes,
                        s.snapshot_bytes,
                        s.keys,
                        if s.unavailable { "  UNAVAILABLE" } else { "" },
                    );
                }
                Err(e) => println!("{:<4} {:<21} unreachable: {e}", id, addr.to_string()),
            }
        }
    }
}
