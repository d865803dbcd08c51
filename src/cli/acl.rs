//! `muster acl bootstrap | policy … | token …`: Consul's ACL commands over the local agent's
//! `/v1/acl/*` (docs/acl.md), with its `-token` / `-token-file` for the caller's token.
//! Output as Consul's: one `Key: value` line per field.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{succeeded, GetFailure, HttpArgs};

#[derive(Debug, Args)]
pub struct AclCmd {
    #[command(subcommand)]
    pub command: AclCommand,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Create the first management token (once per cluster).
    Bootstrap {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Create, list, read and delete policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Create, list, read and delete tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy from rules (or @FILE).
    Create {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, value_name = "NAME")]
        name: String,
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
        /// The rules, or @FILE to read them from a file.
        #[arg(long, value_name = "RULES")]
        rules: String,
    },
    /// List the policies.
    List {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show one policy, by -id or -name.
    Read {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Delete one policy, by -id.
    Delete {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token linked to policies (by name or ID; repeatable).
    Create {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, default_value = "", value_name = "TEXT")]
        description: String,
        #[arg(long = "policy-name", value_name = "NAME")]
        policy_name: Vec<String>,
        #[arg(long = "policy-id", value_name = "ID")]
        policy_id: Vec<String>,
    },
    /// List the tokens (secrets hidden).
    List {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Show one token, by -id (accessor), or the caller's own with -self.
    Read {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, value_name = "ACCESSOR")]
        id: Option<String>,
        #[arg(long = "self")]
        own: bool,
    },
    /// Delete one token, by -id (accessor).
    Delete {
        #[command(flatten)]
        http: HttpArgs,
        #[arg(long, value_name = "ACCESSOR")]
        id: String,
    },
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_token(t: &Value) {
    println!("AccessorID:       {}", s(t, "AccessorID"));
    println!("SecretID:         {}", s(t, "SecretID"));
    println!("Description:      {}", s(t, "Description"));
    println!("Local:            {}", s(t, "Local"));
    println!("Create Time:      {}", s(t, "CreateTime"));
    println!("Policies:");
    for p in t["Policies"].as_array().into_iter().flatten() {
        println!("   {} - {}", s(p, "ID"), s(p, "Name"));
    }
}

fn print_policy(p: &Value) {
    println!("ID:           {}", s(p, "ID"));
    println!("Name:         {}", s(p, "Name"));
    println!("Description:  {}", s(p, "Description"));
    if p.get("Rules").is_some() {
        println!("Rules:\n{}", s(p, "Rules"));
    }
}

/// The body of a reply as JSON, or the failure printed (exit 1).
fn json_of(reply: Result<super::client::Reply, String>, failed: &str) -> Result<Value, u8> {
    let r = succeeded(reply, failed)?;
    serde_json::from_str(&r.body).map_err(|e| {
        eprintln!("{failed}: unexpected answer: {e}");
        1
    })
}

/// PUTs `body` to `path` and prints the object the agent answers with.
async fn create(http: &HttpArgs, path: &str, body: Value, failed: &str, print: fn(&Value)) -> u8 {
    let reply = http
        .client()
        .put_body(path, body.to_string().into_bytes())
        .await;
    match json_of(reply, failed) {
        Ok(v) => {
            print(&v);
            0
        }
        Err(code) => code,
    }
}

/// GETs `path` and prints the object the agent answers with.
async fn read(http: &HttpArgs, path: &str, failed: &str, print: fn(&Value)) -> u8 {
    let got: Result<Value, GetFailure> = http.client().get_json(path).await;
    match got {
        Ok(v) => {
            print(&v);
            0
        }
        Err(e) => e.report(failed),
    }
}

/// DELETEs `/v1/acl/<kind>/<id>`, as Consul's CLI says it.
async fn delete(http: &HttpArgs, kind: &str, shown: &str, id: &str) -> u8 {
    let path = format!("/v1/acl/{kind}/{}", super::client::encode_segment(id));
    match succeeded(
        http.client().delete(&path).await,
        &format!("Error deleting {kind}"),
    ) {
        Ok(_) => {
            println!("{shown} {id:?} deleted successfully");
            0
        }
        Err(code) => code,
    }
}

pub async fn run(cmd: AclCmd) -> u8 {
    match cmd.command {
        AclCommand::Bootstrap { http } => {
            match json_of(
                http.client().put("/v1/acl/bootstrap").await,
                "Failed ACL bootstrapping",
            ) {
                Ok(t) => {
                    print_token(&t);
                    0
                }
                Err(code) => code,
            }
        }
        AclCommand::Policy { command } => policy(command).await,
        AclCommand::Token { command } => token(command).await,
    }
}

async fn policy(cmd: PolicyCommand) -> u8 {
    match cmd {
        PolicyCommand::Create {
            http,
            name,
            description,
            rules,
        } => {
            let rules = match rules.strip_prefix('@') {
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("-rules @{path}: cannot read the file: {e}");
                        return 1;
                    }
                },
                None => rules,
            };
            let body = json!({ "Name": name, "Description": description, "Rules": rules });
            create(
                &http,
                "/v1/acl/policy",
                body,
                "Failed to create new policy",
                print_policy,
            )
            .await
        }
        PolicyCommand::List { http } => {
            let list: Vec<Value> = match http.client().get_json("/v1/acl/policies").await {
                Ok(l) => l,
                Err(e) => return e.report("Failed to retrieve the policy list"),
            };
            for p in &list {
                println!("{}:", s(p, "Name"));
                println!("   ID:           {}", s(p, "ID"));
                println!("   Description:  {}", s(p, "Description"));
            }
            0
        }
        PolicyCommand::Read { http, id, name } => {
            let path = match (id, name) {
                (Some(id), None) => {
                    format!("/v1/acl/policy/{}", super::client::encode_segment(&id))
                }
                (None, Some(n)) => {
                    format!("/v1/acl/policy/name/{}", super::client::encode_segment(&n))
                }
                _ => {
                    eprintln!("give one of -id or -name");
                    return 1;
                }
            };
            read(&http, &path, "Error reading policy", print_policy).await
        }
        PolicyCommand::Delete { http, id } => delete(&http, "policy", "Policy", &id).await,
    }
}

async fn token(cmd: TokenCommand) -> u8 {
    match cmd {
        TokenCommand::Create {
            http,
            description,
            policy_name,
            policy_id,
        } => {
            let mut links: Vec<Value> = policy_name.iter().map(|n| json!({ "Name": n })).collect();
            links.extend(policy_id.iter().map(|i| json!({ "ID": i })));
            let body = json!({ "Description": description, "Policies": links });
            create(
                &http,
                "/v1/acl/token",
                body,
                "Failed to create new token",
                print_token,
            )
            .await
        }
        TokenCommand::List { http } => {
            let list: Vec<Value> = match http.client().get_json("/v1/acl/tokens").await {
                Ok(l) => l,
                Err(e) => return e.report("Failed to retrieve the token list"),
            };
            for (i, t) in list.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print_token(t);
            }
            0
        }
        TokenCommand::Read { http, id, own } => {
            let path = match (id, own) {
                (Some(id), false) => {
                    format!("/v1/acl/token/{}", super::client::encode_segment(&id))
                }
                (None, true) => "/v1/acl/token/self".to_string(),
                _ => {
                    eprintln!("give one of -id ACCESSOR or -self");
                    return 1;
                }
            };
            read(&http, &path, "Error reading token", print_token).await
        }
        TokenCommand::Delete { http, id } => delete(&http, "token", "Token", &id).await,
    }
}
