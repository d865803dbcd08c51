//! `muster force-leave NODE`: mark a failed member as left (`-prune`: forget it entirely).

use clap::Args;

use super::client::{encode_segment, succeeded, HttpArgs};

#[derive(Debug, Args)]
pub struct ForceLeaveCmd {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Also remove the member from the list.
    #[arg(long)]
    pub prune: bool,
    /// The failed member's node name.
    pub node: String,
}

pub async fn run(cmd: ForceLeaveCmd) -> u8 {
    let path = format!(
        "/v1/agent/force-leave/{}{}",
        encode_segment(&cmd.node),
        if cmd.prune { "?prune" } else { "" }
    );
    match succeeded(cmd.http.client().put(&path).await, "Error force leaving") {
        Ok(_) => 0,
        Err(code) => code,
    }
}
