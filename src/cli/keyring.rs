//! `muster keyring -list | -install KEY | -use KEY | -remove KEY`: the gossip keyring of every
//! member, through the local agent's `/v1/operator/keyring` (docs/gossip.md, Keyring). Output
//! as Consul's `consul keyring`.

use clap::Args;

use super::client::{succeeded, HttpArgs};
use crate::http::keyring::KeyringPool;

#[derive(Debug, Args)]
pub struct KeyringCmd {
    #[command(flatten)]
    pub http: HttpArgs,
    /// List the keys installed on the members, and how many hold each.
    #[arg(long)]
    pub list: bool,
    /// Install a new key on every member (it is then understood, not yet used).
    #[arg(long, value_name = "KEY")]
    pub install: Option<String>,
    /// Make an installed key the primary on every member (messages are sealed with it).
    #[arg(long = "use", value_name = "KEY")]
    pub use_key: Option<String>,
    /// Remove a key that is not the primary from every member.
    #[arg(long, value_name = "KEY")]
    pub remove: Option<String>,
}

pub async fn run(cmd: KeyringCmd) -> u8 {
    let given = usize::from(cmd.list)
        + usize::from(cmd.install.is_some())
        + usize::from(cmd.use_key.is_some())
        + usize::from(cmd.remove.is_some());
    if given != 1 {
        eprintln!(
            "{}: give exactly one of -list, -install KEY, -use KEY, -remove KEY",
            if given == 0 {
                "At least one action is required"
            } else {
                "Only a single action is allowed"
            }
        );
        return 1;
    }
    let client = cmd.http.client();
    if cmd.list {
        println!("==> Gathering installed encryption keys...");
        let pools: Vec<KeyringPool> = match client.get_json("/v1/operator/keyring").await {
            Ok(p) => p,
            Err(e) => return e.report("error"),
        };
        let mut code = 0;
        for pool in &pools {
            print!("{}", format_pool(pool));
            if !pool.messages.is_empty() {
                let failed: Vec<String> = pool
                    .messages
                    .iter()
                    .map(|(node, why)| format!("{node}: {why}"))
                    .collect();
                eprintln!(
                    "error: {}/{} members failed: {}",
                    pool.messages.len(),
                    pool.num_nodes,
                    failed.join("; ")
                );
                code = 1;
            }
        }
        return code;
    }
    let (method, key, what) = if let Some(k) = &cmd.install {
        (
            reqwest::Method::POST,
            k,
            "Installing new gossip encryption key...",
        )
    } else if let Some(k) = &cmd.use_key {
        (
            reqwest::Method::PUT,
            k,
            "Changing primary gossip encryption key...",
        )
    } else {
        let k = cmd.remove.as_ref().expect("exactly one action");
        (
            reqwest::Method::DELETE,
            k,
            "Removing gossip encryption key...",
        )
    };
    println!("==> {what}");
    let body = serde_json::to_vec(&serde_json::json!({ "Key": key })).expect("JSON");
    match succeeded(
        client.with_body(method, "/v1/operator/keyring", body).await,
        "error",
    ) {
        Ok(_) => 0,
        Err(code) => code,
    }
}

/// One pool as Consul prints it: the pool's name, the failed members, every key with the
/// members holding it out of those asked, then the primary keys the same way.
fn format_pool(pool: &KeyringPool) -> String {
    let mut out = format!(
        "\n{} ({}):\n",
        pool.datacenter,
        if pool.wan { "WAN" } else { "LAN" }
    );
    for (node, why) in &pool.messages {
        out.push_str(&format!("  ===> {node}: {why}\n"));
    }
    out.push_str("  Keys:\n");
    for (key, n) in &pool.keys {
        out.push_str(&format!("    {key} [{n}/{}]\n", pool.num_nodes));
    }
    out.push_str("  Primary keys:\n");
    for (key, n) in &pool.primary_keys {
        out.push_str(&format!("    {key} [{n}/{}]\n", pool.num_nodes));
    }
    out
}
