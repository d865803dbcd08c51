//! The command line: one module per subcommand, one enum that dispatches.
//!
//! Every command but `agent`, `discover`, `validate`, `keygen`, `tls`, `completion`, `man` and
//! `version` talks to a running agent over
//! its HTTP API (`-http-addr`, or `MUSTER_HTTP_ADDR`, default 127.0.0.1:8500), as Consul's CLI
//! does. Exit codes: 0 success, 1 usage or configuration error (and the failures Consul maps to
//! 1, such as "could not reach the agent"), 2 runtime failure of the agent.

pub mod acl;
pub mod agent;
pub mod client;
pub mod completion;
pub mod discover;
pub mod force_leave;
pub mod info;
pub mod join;
pub mod keygen;
pub mod keyring;
pub mod kv;
pub mod leave;
pub mod man;
pub mod members;
pub mod monitor;
pub mod operator;
pub mod reload;
pub mod snapshot;
pub mod tls;
pub mod validate;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// muster: find the fleet, form one cluster, safely.
#[derive(Debug, Parser)]
#[command(name = "muster", version = crate::VERSION, about, disable_help_subcommand = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent (client by default, -server for a server).
    Agent(Box<agent::AgentCmd>),
    /// Ask the local agent to join other agents.
    Join(join::JoinCmd),
    /// List the members of the cluster as the local agent sees them.
    Members(members::MembersCmd),
    /// Make the local agent leave the cluster gracefully and exit.
    Leave(leave::LeaveCmd),
    /// Stream the local agent's log lines as they are logged.
    Monitor(monitor::MonitorCmd),
    /// Make the local agent read its configuration files again (what can change live).
    Reload(reload::ReloadCmd),
    /// Mark a failed member as left.
    ForceLeave(force_leave::ForceLeaveCmd),
    /// Show what a discovery provider returns, without joining.
    // `-help NAME` is the provider help (as the issue asks), so the built-in `--help` flag is
    // replaced by `-help` without a name, which prints the usage.
    #[command(disable_help_flag = true)]
    Discover(discover::DiscoverCmd),
    /// Read and write the KV store.
    Kv(kv::KvCmd),
    /// Save or restore an operator snapshot of the cluster state.
    Snapshot(snapshot::SnapshotCmd),
    /// Operator tools: the Raft configuration.
    Operator(operator::OperatorCmd),
    /// Show the local agent's status, by section.
    Info(info::InfoCmd),
    /// Check configuration files (or directories) without starting anything.
    Validate(validate::ValidateCmd),
    /// Print a new gossip encryption key.
    Keygen,
    /// List, install, use or remove gossip encryption keys on every member.
    Keyring(keyring::KeyringCmd),
    /// Create a CA and agent certificates (docs/tls.md).
    Tls(tls::TlsCmd),
    /// Bootstrap ACLs, and manage their policies and tokens (docs/acl.md).
    Acl(acl::AclCmd),
    /// Print a shell completion script (bash, zsh, fish).
    Completion(completion::CompletionCmd),
    /// Print the man page, or write every page into a directory (-dir).
    Man(man::ManCmd),
    /// Print the version.
    Version,
}

/// Parses `args` (Go-style single-dash long flags accepted) and runs the command.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let long_names = all_long_names(&Cli::command());
    let args = crate::config::flags::accept_single_dash(args, &long_names);
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            match value_after_space(&e, &args) {
                Some(line) => eprintln!("error: {line}"),
                None => {
                    let _ = e.print();
                }
            }
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Agent(c) => agent::run(*c),
        Command::Join(c) => client::block_on(join::run(c)),
        Command::Members(c) => client::block_on(members::run(c)),
        Command::Leave(c) => client::block_on(leave::run(c)),
        Command::Reload(c) => client::block_on(reload::run(c)),
        Command::Monitor(c) => client::block_on(monitor::run(c)),
        Command::ForceLeave(c) => client::block_on(force_leave::run(c)),
        Command::Info(c) => client::block_on(info::run(c)),
        Command::Operator(c) => client::block_on(operator::run(c)),
        Command::Kv(c) => client::block_on(kv::run(c)),
        Command::Discover(c) => client::block_on(discover::run(c)),
        Command::Snapshot(c) => client::block_on(snapshot::run(c)),
        Command::Validate(c) => validate::run(c),
        Command::Keygen => keygen::run(),
        Command::Keyring(c) => client::block_on(keyring::run(c)),
        Command::Tls(c) => tls::run(c),
        Command::Acl(c) => client::block_on(acl::run(c)),
        Command::Completion(c) => completion::run(c),
        Command::Man(c) => man::run(c),
        Command::Version => {
            println!("muster v{}", crate::VERSION);
            0
        }
    };
    ExitCode::from(code)
}

fn all_long_names(cmd: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    names.push("help".into());
    names.push("version".into());
    for sub in cmd.get_subcommands() {
        names.extend(all_long_names(sub));
    }
    names.sort();
    names.dedup();
    names
}

/// For `-server false`: clap refuses the `false` as an unexpected argument, since a boolean
/// flag takes its value only after `=` (Consul's Go flags read the same way). The one-line
/// error that says so and gives the spelling that works; `None` for any other error.
fn value_after_space(e: &clap::Error, args: &[OsString]) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let Some(clap::error::ContextValue::String(value)) =
        e.get(clap::error::ContextKind::InvalidArg)
    else {
        return None;
    };
    let at = args
        .iter()
        .position(|a| a.to_str() == Some(value.as_str()))?;
    let flag = args.get(at.checked_sub(1)?)?.to_str()?;
    let name = flag.strip_prefix("--").filter(|n| !n.contains('='))?;
    if !equals_only_names(&Cli::command()).iter().any(|n| n == name) {
        return None;
    }
    Some(format!(
        "unexpected argument '{value}' after -{name}: -{name} takes no value after a space; write -{name}={value} (or -{name} alone for true)"
    ))
}

/// The long names of the flags whose value must follow `=` (the boolean flags).
fn equals_only_names(cmd: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_require_equals_set())
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    for sub in cmd.get_subcommands() {
        names.extend(equals_only_names(sub));
    }
    names
}
