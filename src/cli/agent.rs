//! `muster agent`: validate the configuration, start the agent, and handle signals.
//!
//! Signals follow Consul: SIGINT leaves gracefully unless `skip_leave_on_interrupt`, SIGTERM
//! leaves only with `leave_on_terminate` (defaults: clients leave on both, servers on neither,
//! so a stopped server keeps its Raft seat). A second signal during a leave exits at once.
//! SIGHUP reloads what [`Agent::reload`] can reload (docs/configuration.md, "Reload") and
//! never stops the agent.

use std::sync::Arc;

use clap::Args;
use tokio::signal::unix::{signal, SignalKind};

use crate::agent::{Agent, AgentError, Listeners, LogLevelHook, StopReason};
use crate::config::{self, AgentFlags, LogLevel};
use crate::gossip::keyring::KeyringFileError;
use crate::node_id::NodeIdError;
use crate::rotating_file::RotatingFile;

#[derive(Debug, Args)]
pub struct AgentCmd {
    #[command(flatten)]
    pub flags: AgentFlags,
}

pub fn run(cmd: AgentCmd) -> u8 {
    let built = match config::build(&cmd.flags, &crate::join::registry()) {
        Ok(b) => b,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("==> the agent did not start: fix the configuration above (see `muster agent -help`)");
            return 1;
        }
    };
    let log_level = match init_logging(&built.config) {
        Ok(hook) => hook,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    for w in &built.warnings {
        tracing::warn!("{w}");
    }
    if let Some(w) = key_on_command_line(&cmd.flags) {
        tracing::warn!("{w}");
    }
    // Every file and directory the agent creates (node-id, raft.redb, the keyring, the
    // bootstrap promise, the data dir itself) is its owner's alone: 0600 and 0700. The data
    // dir's parents are made first under the usual mask: they are not the agent's alone.
    if let Some(parent) = built
        .config
        .data_dir
        .as_deref()
        .and_then(std::path::Path::parent)
    {
        let _ = std::fs::create_dir_all(parent);
    }
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 2;
        }
    };
    rt.block_on(run_agent(built.config, cmd.flags, log_level))
}

/// A gossip key given as `-encrypt` on the command line (not through `MUSTER_ENCRYPT`, which
/// clap reads into the same field) is readable by every local user in `/proc/<pid>/cmdline`.
fn key_on_command_line(flags: &AgentFlags) -> Option<&'static str> {
    let given = flags.encrypt.as_deref()?;
    if std::env::var("MUSTER_ENCRYPT").is_ok_and(|env| env == given) {
        return None;
    }
    Some(
        "the gossip key is on the command line (-encrypt), where every local user can read it \
         in /proc; give it in MUSTER_ENCRYPT or in a config file of mode 0600 instead",
    )
}

/// The log filter for `level`: our own crate at that level; dependencies only from warn up
/// (foca is chatty at debug). openraft is silenced: it logs every failed heartbeat to a dead
/// peer at error level, twice a second; muster logs what matters (elections, membership
/// changes, and a fatal Raft stop) itself.
///
/// At trace level the cloud SDKs' own debug lines join in (request and credential-chain
/// details, raw HTTP included): what a support case needs, and too much for anything less.
fn level_filter(level: LogLevel) -> tracing_subscriber::EnvFilter {
    let sdks = if matches!(level, LogLevel::Trace) {
        ",aws_config=debug,aws_smithy_runtime=debug,aws_sdk_ec2=debug,google_cloud=debug"
    } else {
        ""
    };
    tracing_subscriber::EnvFilter::new(format!(
        "warn,openraft=off,muster={}{sdks}",
        level.as_directive()
    ))
}

/// Logs go to stderr, and also to `log_file` when set (docs/configuration.md, Logging);
/// MUSTER_LOG (EnvFilter syntax) overrides the level's filter. Returns how a reload changes
/// the level.
fn init_logging(config: &config::RuntimeConfig) -> Result<LogLevelHook, String> {
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (level, json) = (config.log_level, config.log_json);
    let file = match &config.log_file {
        None => None,
        Some(lf) => Some(
            RotatingFile::open(&lf.dir, &lf.name, lf.rotation.clone()).map_err(|e| {
                format!(
                    "cannot open log_file {}: {e}; fix the path or its permissions",
                    lf.path().display()
                )
            })?,
        ),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
        .unwrap_or_else(|_| level_filter(level));
    let to_file = file.is_some();
    let writer = match file {
        None => BoxMakeWriter::new(std::io::stderr),
        Some(f) => BoxMakeWriter::new(std::io::stderr.and(std::sync::Mutex::new(f))),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = builder.finish().with(crate::monitor::layer()).try_init();
        Ok(Box::new(move |l| {
            handle.reload(level_filter(l)).map_err(|e| e.to_string())
        }))
    } else {
        use std::io::IsTerminal;
        // One text goes to both: no colour codes when a file gets it too.
        let ansi = std::io::stderr().is_terminal() && !to_file;
        let builder = builder
            .with_target(false)
            .with_ansi(ansi)
            .with_filter_reloading();
        let handle = builder.reload_handle();
        let _ = builder.finish().with(crate::monitor::layer()).try_init();
        Ok(Box::new(move |l| {
            handle.reload(level_filter(l)).map_err(|e| e.to_string())
        }))
    }
}

/// The pid file (`pid_file`): the agent's pid and a newline, written once the agent has
/// started and removed when it exits. Mode 0644 whatever the umask (0077): a pid is no secret,
/// and init scripts and monitors running as other users read it.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> std::io::Result<PidFile> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut f = std::fs::File::create(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        writeln!(f, "{}", std::process::id())?;
        f.sync_all()?;
        Ok(PidFile(path.to_path_buf()))
    }

    fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!("cannot remove pid_file {}: {e}", self.0.display());
        }
    }
}

/// Reloads `agent` and logs what happened in one line: info when everything changed live,
/// a warning naming what needs a restart or could not be applied, an error when nothing
/// changed.
pub async fn reload_and_log(agent: Arc<Agent>, by: &str) {
    match agent.reload().await {
        Ok(r) if r.restart_needed.is_empty() && r.not_applied.is_empty() => {
            tracing::info!("{by}: {}", r.summary())
        }
        Ok(r) => tracing::warn!("{by}: {}", r.summary()),
        Err(e) => tracing::error!("{by}: {e}; the agent carries on with what it had"),
    }
}

async fn run_agent(
    config: config::RuntimeConfig,
    flags: AgentFlags,
    log_level: LogLevelHook,
) -> u8 {
    // SIGHUP is taken before anything starts: its default action would kill the agent.
    let (mut sigint, mut sigterm, mut sighup) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(i), Ok(t), Ok(h)) => (i, t, h),
        _ => {
            eprintln!("cannot install signal handlers");
            return 2;
        }
    };
    let started = match Listeners::bind(&config).await {
        Ok(listeners) => Agent::start(config, listeners).await,
        Err(e) => Err(e),
    };
    let agent: Arc<Agent> = match started {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            return match e {
                AgentError::StartJoin(_)
                | AgentError::RetryJoinExhausted { .. }
                | AgentError::Keyring(
                    KeyringFileError::Parse { .. }
                    | KeyringFileError::Empty { .. }
                    | KeyringFileError::BadKey { .. },
                )
                | AgentError::NodeId(NodeIdError::Mismatch(_))
                | AgentError::Tls(_) => 1,
                _ => 2,
            };
        }
    };
    let pid_file = match agent.config.pid_file.clone() {
        None => None,
        Some(path) => match PidFile::write(&path) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(
                    "cannot write pid_file {}: {e}; stopping (fix the path or its permissions)",
                    path.display()
                );
                agent.stop(StopReason::Stopped);
                agent.shutdown().await;
                return 2;
            }
        },
    };
    agent.set_reload_source(flags, log_level);
    // Read when the signal comes: a reload may have changed them.
    let leave_on = |interrupt: bool| {
        let c = agent.config_in_force();
        if interrupt {
            !c.skip_leave_on_interrupt
        } else {
            c.leave_on_terminate
        }
    };
    let reason = loop {
        tokio::select! {
            r = agent.stopped() => break r,
            _ = sigint.recv() => break on_signal(&agent, "interrupt", leave_on(true), &mut sigint, &mut sigterm, pid_file.as_ref()).await,
            _ = sigterm.recv() => break on_signal(&agent, "terminate", leave_on(false), &mut sigint, &mut sigterm, pid_file.as_ref()).await,
            // In a task of its own: a reload may wait on the cluster (autopilot), and
            // signals must be answered meanwhile.
            _ = sighup.recv() => drop(tokio::spawn(reload_and_log(agent.clone(), "caught SIGHUP"))),
        }
    };
    // Let the HTTP API answer the request that asked us to leave.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    agent.shutdown().await;
    if let Some(p) = &pid_file {
        p.remove();
    }
    match reason {
        StopReason::RetryJoinFailed(msg) => {
            tracing::error!("{msg}");
            1
        }
        // Logged when it happened (Agent::leave_when_failed); a storage failure, as at start.
        StopReason::ServerFailed(_) => 2,
        _ => {
            tracing::info!("agent stopped");
            0
        }
    }
}

async fn on_signal(
    agent: &Arc<Agent>,
    name: &str,
    leave: bool,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
    pid_file: Option<&PidFile>,
) -> StopReason {
    let exit_now = || {
        tracing::warn!("second signal: exiting without finishing the leave");
        if let Some(p) = pid_file {
            p.remove();
        }
        std::process::exit(1)
    };
    if !leave {
        tracing::info!(
            signal = name,
            "caught signal; stopping without leaving (a server keeps its seat)"
        );
        agent.stop(StopReason::Stopped);
        return StopReason::Stopped;
    }
    tracing::info!(
        signal = name,
        "caught signal; leaving gracefully (signal again to exit at once)"
    );
    tokio::select! {
        _ = agent.leave() => StopReason::Left,
        _ = sigint.recv() => exit_now(),
        _ = sigterm.recv() => exit_now(),
    }
}
