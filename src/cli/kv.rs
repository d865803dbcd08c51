//! `muster kv get | put | delete`: the KV store through the local agent, with Consul's messages
//! and exit codes.

use std::io::Read;

use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{encode_segment, succeeded, GetFailure, HttpArgs};

#[derive(Debug, Args)]
pub struct KvCmd {
    #[command(subcommand)]
    pub action: KvAction,
}

#[derive(Debug, Subcommand)]
pub enum KvAction {
    /// Print a key's value (or, with -recurse, every key:value under a prefix).
    Get {
        #[command(flatten)]
        http: HttpArgs,
        /// Every key under the prefix, as key:value lines.
        #[arg(long)]
        recurse: bool,
        /// Only the keys under the prefix.
        #[arg(long)]
        keys: bool,
        /// With -keys: fold keys after this separator.
        #[arg(long, default_value = "/")]
        separator: String,
        /// Also print the indexes and flags.
        #[arg(long)]
        detailed: bool,
        /// Read from any server, possibly stale.
        #[arg(long)]
        stale: bool,
        key: Option<String>,
    },
    /// Write a value: DATA, `-` for stdin, or `@FILE`.
    Put {
        #[command(flatten)]
        http: HttpArgs,
        /// Write only if the key's ModifyIndex is -modify-index (0: only if absent).
        #[arg(long)]
        cas: bool,
        #[arg(long = "modify-index", value_name = "N")]
        modify_index: Option<u64>,
        /// Opaque flags stored with the value.
        #[arg(long, default_value_t = 0)]
        flags: u64,
        key: String,
        data: Option<String>,
    },
    /// Delete a key, or every key under a prefix with -recurse.
    Delete {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long)]
        recurse: bool,
        /// Delete only if the key's ModifyIndex is -modify-index.
        #[arg(long)]
        cas: bool,
        #[arg(long = "modify-index", value_name = "N")]
        modify_index: Option<u64>,
        key: String,
    },
}

fn path(key: &str) -> String {
    key.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

pub async fn run(cmd: KvCmd) -> u8 {
    match cmd.action {
        KvAction::Get {
            http,
            recurse,
            keys,
            separator,
            detailed,
            stale,
            key,
        } => {
            get(
                http,
                recurse,
                keys,
                separator,
                detailed,
                stale,
                key.unwrap_or_default(),
            )
            .await
        }
        KvAction::Put {
            http,
            cas,
            modify_index,
            flags,
            key,
            data,
        } => put(http, cas, modify_index, flags, key, data).await,
        KvAction::Delete {
            http,
            recurse,
            cas,
            modify_index,
            key,
        } => delete(http, recurse, cas, modify_index, key).await,
    }
}

async fn get(
    http: HttpArgs,
    recurse: bool,
    keys: bool,
    separator: String,
    detailed: bool,
    stale: bool,
    key: String,
) -> u8 {
    if key.is_empty() && !recurse && !keys {
        eprintln!("Error! Missing KEY argument");
        return 1;
    }
    let mut q = Vec::new();
    if keys {
        q.push("keys".to_string());
        if !separator.is_empty() {
            q.push(format!("separator={}", encode_segment(&separator)));
        }
    } else if recurse {
        q.push("recurse".to_string());
    }
    if stale {
        q.push("stale".to_string());
    }
    let url = format!("/v1/kv/{}?{}", path(&key), q.join("&"));
    let v: Value = match http.client().get_json(&url).await {
        Ok(v) => v,
        Err(GetFailure::Refused { status, .. }) if status.as_u16() == 404 => {
            if recurse || keys {
                return 0;
            }
            eprintln!("Error! No key exists at: {key}");
            return 1;
        }
        Err(GetFailure::Unexpected(e)) => {
            eprintln!("Error! unexpected answer: {e}");
            return 1;
        }
        Err(failure) => return failure.report("Error querying Consul agent"),
    };
    if keys {
        for k in v.as_array().into_iter().flatten() {
            println!("{}", k.as_str().unwrap_or(""));
        }
        return 0;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let value = |e: &Value| -> String {
        e["Value"]
            .as_str()
            .and_then(|s| b64.decode(s).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    for e in v.as_array().into_iter().flatten() {
        if detailed {
            for k in ["CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex"] {
                let shown = match &e[k] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{k:<15}{shown}");
            }
            println!("{:<15}{}", "Value", value(e));
            if recurse {
                println!();
            }
        } else if recurse {
            println!("{}:{}", e["Key"].as_str().unwrap_or(""), value(e));
        } else {
            println!("{}", value(e));
        }
    }
    0
}

fn read_data(data: Option<String>) -> Result<Vec<u8>, String> {
    match data.as_deref() {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("Error! Failed to read stdin: {e}"))?;
            Ok(buf)
        }
        Some(d) if d.starts_with('@') => std::fs::read(&d[1..])
            .map_err(|e| format!("Error! Failed to read file {}: {e}", &d[1..])),
        Some(d) => Ok(d.as_bytes().to_vec()),
    }
}

async fn put(
    http: HttpArgs,
    cas: bool,
    modify_index: Option<u64>,
    flags: u64,
    key: String,
    data: Option<String>,
) -> u8 {
    if cas && modify_index.is_none() {
        eprintln!("Error! Must specify -modify-index with -cas!");
        return 1;
    }
    let body = match read_data(data) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut url = format!("/v1/kv/{}?flags={flags}", path(&key));
    if cas {
        url.push_str(&format!("&cas={}", modify_index.unwrap_or(0)));
    }
    let reply = match succeeded(
        http.client().put_body(&url, body).await,
        "Error! Failed writing data",
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if reply.body.trim() != "true" {
        eprintln!("Error! Did not write to {key}: CAS failed");
        return 1;
    }
    println!("Success! Data written to: {key}");
    0
}

async fn delete(
    http: HttpArgs,
    recurse: bool,
    cas: bool,
    modify_index: Option<u64>,
    key: String,
) -> u8 {
    if cas && recurse {
        eprintln!("Cannot specify both -cas and -recurse!");
        return 1;
    }
    if cas && modify_index.is_none() {
        eprintln!("Error! Must specify -modify-index with -cas!");
        return 1;
    }
    let mut url = format!("/v1/kv/{}", path(&key));
    if recurse {
        url.push_str("?recurse");
    } else if cas {
        url.push_str(&format!("?cas={}", modify_index.unwrap_or(0)));
    }
    let reply = match succeeded(http.client().delete(&url).await, "Error! Failed deleting") {
        Ok(r) => r,
        Err(code) => return code,
    };
    if reply.body.trim() != "true" {
        eprintln!("Error! Did not delete key {key}: CAS failed");
        return 1;
    }
    if recurse {
        println!("Success! Deleted keys with prefix: {key}");
    } else {
        println!("Success! Deleted key: {key}");
    }
    0
}
