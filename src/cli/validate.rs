//! `muster validate FILE_OR_DIR…`: checks configuration as the agent would, without starting.

use std::path::PathBuf;

use clap::Args;

use crate::config::{self, AgentFlags};

#[derive(Debug, Args)]
pub struct ValidateCmd {
    /// Config files (*.json, *.hcl) or directories of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Read every file as json or hcl, whatever its name (as `muster agent -config-format`).
    #[arg(long = "config-format", value_name = "FORMAT")]
    pub config_format: Option<String>,
}

pub fn run(cmd: ValidateCmd) -> u8 {
    let mut flags = AgentFlags {
        config_format: cmd.config_format,
        ..AgentFlags::default()
    };
    for p in &cmd.paths {
        if p.is_dir() {
            flags.config_dir.push(p.clone());
        } else if p.exists() {
            flags.config_file.push(p.clone());
        } else {
            eprintln!("{}: no such file or directory", p.display());
            return 1;
        }
    }
    match config::build(&flags, &crate::join::registry()) {
        Ok(built) => {
            for w in &built.warnings {
                eprintln!("warning: {w}");
            }
            println!("Configuration is valid!");
            0
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            1
        }
    }
}
