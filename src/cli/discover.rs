//! `muster discover "provider=… key=value"`: a dry run of a discovery provider — what it
//! returns, without joining anything (user-pains A11, A15). `-help-provider NAME` prints a
//! provider's keys; `-list` the providers of this build.

use clap::Args;

use crate::join::{redact, registry};

#[derive(Debug, Args)]
pub struct DiscoverCmd {
    /// List the providers compiled into this build.
    #[arg(long)]
    pub list: bool,
    /// Print the keys, defaults and permissions of one provider.
    #[arg(long = "help-provider", value_name = "NAME")]
    pub help_provider: Option<String>,
    /// A provider string, as in -retry-join.
    pub provider: Option<String>,
}

pub async fn run(cmd: DiscoverCmd) -> u8 {
    let reg = registry();
    if cmd.list {
        for n in reg.names() {
            println!("{n}");
        }
        return 0;
    }
    if let Some(name) = cmd.help_provider {
        return match reg.help(&name) {
            Some(h) => {
                print!("{h}");
                0
            }
            None => {
                eprintln!(
                    "unknown provider {name:?}; known providers: {}",
                    reg.names().join(", ")
                );
                1
            }
        };
    }
    let Some(entry) = cmd.provider else {
        eprintln!("give a provider string, e.g. muster discover \"provider=dns name=consul.internal\" (or -list)");
        return 1;
    };
    let (provider, args) = match reg.parse(&entry) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}: {e}", redact(&entry));
            return 1;
        }
    };
    eprintln!("asking {args}");
    match provider.addrs(&args).await {
        Ok(addrs) => {
            for a in &addrs {
                println!("{a}");
            }
            eprintln!(
                "{} address{} found",
                addrs.len(),
                if addrs.len() == 1 { "" } else { "es" }
            );
            0
        }
        Err(e) => {
            let retry = if e.retryable() {
                "the retry-join loop would retry"
            } else {
                "the retry-join loop would not retry"
            };
            eprintln!("discovery failed: {e} ({retry})");
            2
        }
    }
}
