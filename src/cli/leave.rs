//! `muster leave`: the local agent leaves the cluster gracefully and exits.

use clap::Args;

use super::client::HttpArgs;

#[derive(Debug, Args)]
pub struct LeaveCmd {
    #[command(flatten)]
    pub http: HttpArgs,
}

pub async fn run(cmd: LeaveCmd) -> u8 {
    match cmd.http.client().put("/v1/agent/leave").await {
        Err(e) => {
            eprintln!("{e}");
            1
        }
        Ok(r) if r.status.is_success() => {
            for w in r.body.lines().filter(|l| !l.trim().is_empty()) {
                eprintln!("Warning: {w}");
            }
            println!("Graceful leave complete");
            0
        }
        Ok(r) => {
            eprintln!("Error leaving: {}", r.body.trim());
            1
        }
    }
}
