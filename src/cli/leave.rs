//! `muster leave`: the local agent leaves the cluster gracefully and exits.

use clap::Args;

use super::client::{succeeded, HttpArgs};

#[derive(Debug, Args)]
pub struct LeaveCmd {
    #[command(flatten)]
    pub http: HttpArgs,
}

pub async fn run(cmd: LeaveCmd) -> u8 {
    let reply = match succeeded(
        cmd.http.client().put("/v1/agent/leave").await,
        "Error leaving",
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for w in reply.body.lines().filter(|l| !l.trim().is_empty()) {
        eprintln!("Warning: {w}");
    }
    println!("Graceful leave complete");
    0
}
