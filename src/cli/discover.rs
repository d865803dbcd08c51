//! `muster discover "provider=… key=value"`: a dry run of a discovery provider — what it
//! returns, without joining anything. Exit 0 when at least one address
//! was found, 2 when none (a script can tell "nothing yet" from "broken"), 1 on any error, with
//! the reason and whether the retry-join loop would retry it. `-help NAME` (or
//! `-help-provider NAME`) prints a provider's keys; `-list` the providers of this build.

use clap::Args;

use muster_provider_core::redact;

use crate::join::registry;

#[derive(Debug, Args)]
pub struct DiscoverCmd {
    /// List the providers compiled into this build.
    #[arg(long)]
    pub list: bool,
    /// Print the keys, defaults and permissions of one provider.
    /// Without NAME: this usage.
    #[arg(
        long = "help",
        visible_alias = "help-provider",
        value_name = "NAME",
        num_args = 0..=1,
        default_missing_value = ""
    )]
    pub help_provider: Option<String>,

    /// A provider string, as in -retry-join.
    pub provider: Option<String>,
}

const USAGE: &str =
    "Usage: muster discover \"provider=NAME key=value …\"   one lookup, nothing joined
       muster discover -help NAME                        a provider's keys and permissions
       muster discover -list                             the providers of this build
Exit: 0 addresses found, 2 none matched, 1 error.";

pub async fn run(cmd: DiscoverCmd) -> u8 {
    let reg = registry();
    if cmd.list {
        for n in reg.names() {
            println!("{n}");
        }
        return 0;
    }
    if let Some(name) = cmd.help_provider {
        if name.is_empty() {
            println!("{USAGE}");
            return 0;
        }
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
            if addrs.is_empty() {
                eprintln!("no address found (nothing matched; not an error)");
                return 2;
            }
            eprintln!(
                "{} address{} found",
                addrs.len(),
                if addrs.len() == 1 { "" } else { "es" }
            );
            0
        }
        Err(e) => {
            let retry = if !e.retryable() {
                "the retry-join loop would not retry"
            } else if e.needs_operator() {
                "the retry-join loop keeps asking, so a fix made outside muster is picked up"
            } else {
                "the retry-join loop would retry"
            };
            eprintln!("discovery failed: {e} ({retry})");
            1
        }
    }
}
