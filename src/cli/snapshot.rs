//! `muster snapshot save FILE | restore FILE`: operator backups, verified on both ends.

use clap::{Args, Subcommand};

use super::client::{succeeded, HttpArgs};

#[derive(Debug, Args)]
pub struct SnapshotCmd {
    #[command(subcommand)]
    pub action: SnapshotAction,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save the state machine to FILE (verified after writing).
    Save {
        #[command(flatten)]
        http: HttpArgs,
        file: std::path::PathBuf,
    },
    /// Replace the KV store and catalog by FILE's (checked before anything is written).
    Restore {
        #[command(flatten)]
        http: HttpArgs,
        file: std::path::PathBuf,
    },
}

pub async fn run(cmd: SnapshotCmd) -> u8 {
    match cmd.action {
        SnapshotAction::Save { http, file } => {
            let bytes = match http.client().get_bytes("/v1/snapshot").await {
                Ok((status, b)) if status.is_success() => b,
                Ok((_, b)) => {
                    eprintln!(
                        "Error saving snapshot: {}",
                        String::from_utf8_lossy(&b).trim()
                    );
                    return 1;
                }
                Err(e) => {
                    eprintln!("{e}");
                    return 1;
                }
            };
            let header = match crate::http::snapshot::verify(&bytes) {
                Ok((h, _)) => h,
                Err(e) => {
                    eprintln!("Error verifying snapshot: {e}");
                    return 1;
                }
            };
            let tmp = file.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &file))
            {
                eprintln!("Error writing {}: {e}", file.display());
                return 1;
            }
            println!("Saved and verified snapshot to index {}", header.index);
            0
        }
        SnapshotAction::Restore { http, file } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("Error reading {}: {e}", file.display());
                    return 1;
                }
            };
            if let Err(e) = crate::http::snapshot::verify(&bytes) {
                eprintln!("Error verifying snapshot file {}: {e}", file.display());
                return 1;
            }
            let reply = http.client().put_body("/v1/snapshot", bytes).await;
            match succeeded(reply, "Error restoring snapshot") {
                Ok(_) => {
                    println!("Restored snapshot");
                    0
                }
                Err(code) => code,
            }
        }
    }
}
