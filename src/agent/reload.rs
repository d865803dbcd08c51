//! Reloading a running agent: SIGHUP, `muster reload` and `PUT /v1/agent/reload` all end in
//! [`Agent::reload`] (docs/configuration.md, "Reload"). The configuration is built again from
//! the flags and files the agent started with; a configuration with an error changes
//! nothing and says why. Otherwise the TLS files are re-read (every interface checked
//! before any is replaced), every setting `config::reload` calls live is applied, and the
//! settings that need a restart are named and left as they were.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::{autopilot_config, autopilot_overlay, Agent};
use crate::config::reload::{applied, changes, restart_needed};
use crate::config::{self, AgentFlags, LogLevel, RuntimeConfig};
use crate::server::protocol::{StateCommand, CALLER};

/// Applies a new log level to the agent's logging (set up by `muster agent`).
pub type LogLevelHook = Box<dyn Fn(LogLevel) -> Result<(), String> + Send + Sync>;

/// The retry-join loop's settings; the loop starts again when they change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryJoinSettings {
    pub entries: Vec<String>,
    pub interval: Duration,
    pub max: u32,
}

impl RetryJoinSettings {
    fn of(c: &RuntimeConfig) -> Self {
        Self {
            entries: c.retry_join.clone(),
            interval: c.retry_interval,
            max: c.retry_max,
        }
    }
}

/// What a reload can reach in a running agent.
pub(crate) struct Live {
    /// The flags `muster agent` started with, so that a reload reads the same files. Unset
    /// for an agent started in process (tests): a reload then re-reads the TLS files only.
    source: OnceLock<AgentFlags>,
    log_level: OnceLock<LogLevelHook>,
    /// The configuration in force: as at start, with every reloaded setting applied since.
    in_force: Mutex<RuntimeConfig>,
    pub retry_join: watch::Sender<RetryJoinSettings>,
    /// One reload at a time (a SIGHUP and an API call may arrive together).
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Live {
    pub fn new(config: &RuntimeConfig) -> Self {
        Self {
            source: OnceLock::new(),
            log_level: OnceLock::new(),
            in_force: Mutex::new(config.clone()),
            retry_join: watch::channel(RetryJoinSettings::of(config)).0,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Settings applied (config keys, and `TLS files` when certificates were re-read).
    pub applied: Vec<&'static str>,
    /// Settings that changed but need a restart: left as they were.
    pub restart_needed: Vec<&'static str>,
    /// Live settings that could not be applied now, each with why.
    pub not_applied: Vec<String>,
}

impl ReloadReport {
    /// One line for the log and the CLI.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.applied.is_empty() {
            parts.push("nothing changed".to_string());
        } else {
            parts.push(format!("reloaded {}", self.applied.join(", ")));
        }
        if !self.not_applied.is_empty() {
            parts.push(format!("not applied: {}", self.not_applied.join("; ")));
        }
        if !self.restart_needed.is_empty() {
            parts.push(format!(
                "changed but need a restart, left as they were: {}",
                self.restart_needed.join(", ")
            ));
        }
        parts.join("; ")
    }
}

impl Agent {
    /// Where a reload reads the configuration from, and how it changes the log level: set by
    /// `muster agent` once the agent runs.
    pub fn set_reload_source(&self, flags: AgentFlags, log_level: LogLevelHook) {
        let _ = self.live.source.set(flags);
        let _ = self.live.log_level.set(log_level);
    }

    /// The configuration in force: [`Agent::config`] with what reloads applied since.
    pub fn config_in_force(&self) -> RuntimeConfig {
        self.live.in_force.lock().expect("config lock").clone()
    }

    /// Reloads what can change without a restart (see the module doc). `Err` means nothing
    /// changed, and says why.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let _one = self.live.one_at_a_time.lock().await;
        let new = match self.live.source.get() {
            Some(flags) => Some(
                config::build(flags, &crate::join::registry())
                    .map_err(|errors| {
                        let all: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                        format!(
                            "the configuration has errors, nothing was reloaded: {}",
                            all.join("; ")
                        )
                    })?
                    .config,
            ),
            None => None,
        };
        // Every TLS interface's files are checked before any is replaced.
        if let Some(t) = &self.rpc_tls {
            t.check()
                .map_err(|e| format!("server port TLS not reloaded, nothing was: {e}"))?;
        }
        if let Some(t) = &self.https_tls {
            t.check()
                .map_err(|e| format!("HTTPS API TLS not reloaded, nothing was: {e}"))?;
        }
        let mut report = ReloadReport::default();
        if let Some(t) = &self.rpc_tls {
            t.reload()
                .map_err(|e| format!("server port TLS not reloaded: {e}"))?;
            report.applied.push("server port TLS files");
        }
        if let Some(t) = &self.https_tls {
            t.reload()
                .map_err(|e| format!("HTTPS API TLS not reloaded: {e}"))?;
            report.applied.push("HTTPS API TLS files");
        }
        let Some(new) = new else {
            return Ok(report);
        };
        let old = self.config_in_force();
        let found = changes(&old, &new);
        report.restart_needed = restart_needed(&found);
        let mut in_force = old.clone();
        let live = applied(&found);
        for key in &live {
            let outcome = match *key {
                "log_level" => self.apply_log_level(new.log_level),
                "autopilot" => self.apply_autopilot(&new).await,
                "node_meta" => {
                    let mut with_meta = in_force.clone();
                    with_meta.node_meta = new.node_meta.clone();
                    let tags = with_meta.gossip_tags(self.node_id);
                    match &self.server {
                        Some(s) => s.set_base_tags(tags).await,
                        None => self.gossip.set_tags(tags).await,
                    }
                    Ok(())
                }
                // Applied together below; the others are read where they are used.
                _ => Ok(()),
            };
            match outcome {
                Ok(()) => {
                    report.applied.push(key);
                    match *key {
                        "log_level" => in_force.log_level = new.log_level,
                        "retry_join" => in_force.retry_join = new.retry_join.clone(),
                        "retry_interval" => in_force.retry_interval = new.retry_interval,
                        "retry_max" => in_force.retry_max = new.retry_max,
                        "autopilot" => in_force.autopilot = new.autopilot.clone(),
                        "node_meta" => in_force.node_meta = new.node_meta.clone(),
                        "leave_on_terminate" => {
                            in_force.leave_on_terminate = new.leave_on_terminate
                        }
                        "skip_leave_on_interrupt" => {
                            in_force.skip_leave_on_interrupt = new.skip_leave_on_interrupt
                        }
                        other => unreachable!("config::reload calls {other} live"),
                    }
                }
                Err(why) => report.not_applied.push(format!("{key}: {why}")),
            }
        }
        // The retry-join loop restarts when its settings change (`retry_join_forever`).
        self.live.retry_join.send_if_modified(|s| {
            let next = RetryJoinSettings::of(&in_force);
            let changed = *s != next;
            *s = next;
            changed
        });
        *self.live.in_force.lock().expect("config lock") = in_force;
        Ok(report)
    }

    fn apply_log_level(&self, level: LogLevel) -> Result<(), String> {
        if std::env::var_os("MUSTER_LOG").is_some() {
            return Err(
                "MUSTER_LOG is set and decides the log filter; unset it to use log_level".into(),
            );
        }
        match self.live.log_level.get() {
            Some(hook) => hook(level),
            None => Err("this agent's logging was not set up by `muster agent`".into()),
        }
    }

    /// A server takes the file's autopilot settings as its own (in force until the cluster
    /// records some) and writes them to the cluster over what it has recorded, as `muster
    /// operator autopilot set-config` would, with its agent token if it has one (else the
    /// reload caller's). A client agent has no autopilot: nothing to do.
    async fn apply_autopilot(&self, new: &RuntimeConfig) -> Result<(), String> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        let (recorded, _) = server.autopilot_config();
        let cmd = StateCommand::AutopilotSet(autopilot_overlay(recorded, &new.autopilot));
        let write = self.client.write(cmd);
        let outcome = match self.config.acl.agent_token.as_ref() {
            Some(t) => CALLER.scope(Some(t.expose().to_string()), write).await,
            None => write.await,
        };
        match outcome {
            // Only once the cluster took them: a failed write leaves everything as it was.
            Ok(o) if o.ok => {
                server.set_configured_autopilot(autopilot_config(new));
                Ok(())
            }
            Ok(_) => Err("the cluster refused the settings".into()),
            Err(e) => Err(format!("{e}; reload again once that is fixed")),
        }
    }
}
