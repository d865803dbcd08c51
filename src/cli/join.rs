//! `muster join ADDR…`: one `PUT /v1/agent/join/ADDR` per address, as Consul's CLI does.

use clap::Args;

use super::client::{encode_segment, HttpArgs};

#[derive(Debug, Args)]
pub struct JoinCmd {
    #[command(flatten)]
    pub http: HttpArgs,
    /// Addresses to join: IP, IP:port, [IPv6]:port, or host names (every A/AAAA record).
    // The doc line is also the `--help` text, so `[IPv6]` stays as operators read it.
    #[allow(rustdoc::broken_intra_doc_links)]
    pub addresses: Vec<String>,
}

pub async fn run(cmd: JoinCmd) -> u8 {
    if cmd.addresses.is_empty() {
        eprintln!("At least one address to join must be specified: muster join ADDR [ADDR…]");
        return 1;
    }
    let client = cmd.http.client();
    let mut joined = 0;
    for addr in &cmd.addresses {
        match client
            .put(&format!("/v1/agent/join/{}", encode_segment(addr)))
            .await
        {
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
            Ok(r) if r.status.is_success() => joined += 1,
            Ok(r) => eprintln!("Error joining address '{addr}': {}", r.body.trim()),
        }
    }
    if joined == 0 {
        eprintln!("Failed to join any nodes.");
        return 1;
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    0
}
