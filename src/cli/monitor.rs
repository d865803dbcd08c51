//! `muster monitor [-log-level LEVEL] [-log-json]`: the local agent's log lines as they are
//! logged, until interrupted or the agent stops (`GET /v1/agent/monitor`; docs/configuration.md,
//! "Monitor"). Consul's command and flags.

use std::io::Write;

use clap::Args;

use super::client::{encode_segment, HttpArgs};

#[derive(Debug, Args)]
pub struct MonitorCmd {
    /// The least severe lines to show: trace, debug, info (the default), warn or error.
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
    /// Each line as a JSON object.
    #[arg(long = "log-json")]
    pub log_json: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub async fn run(cmd: MonitorCmd) -> u8 {
    let mut path = format!(
        "/v1/agent/monitor?loglevel={}",
        encode_segment(&cmd.log_level)
    );
    if cmd.log_json {
        path.push_str("&logjson");
    }
    let stdout = std::io::stdout();
    let outcome = cmd
        .http
        .client()
        .stream(&path, |chunk| {
            let mut out = stdout.lock();
            let _ = out.write_all(chunk);
            let _ = out.flush();
        })
        .await;
    match outcome {
        // The agent ended the stream: it stopped.
        Ok(()) => 0,
        Err((Some(status), body)) => {
            eprintln!(
                "Error starting monitor: {} {}",
                status.as_u16(),
                body.trim()
            );
            1
        }
        Err((None, why)) => {
            eprintln!("Error starting monitor: {why}");
            1
        }
    }
}
