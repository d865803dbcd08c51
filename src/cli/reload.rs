//! `muster reload`: the local agent reads its configuration files again and applies what can
//! change live (`PUT /v1/agent/reload`; docs/configuration.md, "Reload").

use clap::Args;

use super::client::{succeeded, HttpArgs};

#[derive(Debug, Args)]
pub struct ReloadCmd {
    #[command(flatten)]
    pub http: HttpArgs,
}

pub async fn run(cmd: ReloadCmd) -> u8 {
    let reply = match succeeded(
        cmd.http.client().put("/v1/agent/reload").await,
        "Error reloading",
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // Consul's words, then what muster did.
    println!("Configuration reload triggered");
    let summary = reply.body.trim();
    if summary.contains("need a restart") || summary.contains("not applied") {
        eprintln!("Warning: {summary}");
    } else if !summary.is_empty() {
        println!("{summary}");
    }
    0
}
