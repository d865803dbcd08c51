//! What a reload (SIGHUP, `muster reload`, `PUT /v1/agent/reload`) may change in a running
//! agent, decided per setting (docs/configuration.md, "Reload"). A reload builds the whole
//! configuration again from the same flags and files; [`changes`] names every setting that
//! differs from the one in force, and [`Change::live`] says which the agent applies at once.
//! The rest are named in one warning and left as they were: they are bound into sockets,
//! Raft or gossip identity (addresses, ports, names, the data dir, server mode), or read once
//! at start by design (`start_join`).

use super::RuntimeConfig;

/// One setting that differs between the configuration in force and the one just built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The setting's name, as in a config file (Consul's key).
    pub key: &'static str,
    /// Whether the running agent applies it (otherwise it needs a restart).
    pub live: bool,
}

/// The settings of `new` that differ from `old`, in a fixed order. Destructures without
/// `..`, so a new setting does not compile until someone decides whether it reloads.
pub fn changes(old: &RuntimeConfig, new: &RuntimeConfig) -> Vec<Change> {
    let RuntimeConfig {
        server,
        bootstrap,
        bootstrap_expect,
        dev,
        datacenter,
        node_name,
        node_id,
        data_dir,
        bind_addr,
        advertise_addr,
        client_addr,
        ports,
        start_join,
        retry_join,
        retry_interval,
        retry_max,
        encrypt,
        encrypt_verify_incoming,
        encrypt_verify_outgoing,
        log_level,
        log_json,
        leave_on_terminate,
        skip_leave_on_interrupt,
        raft_multiplier,
        reconnect_timeout,
        tombstone_timeout,
        autopilot,
        kv_tombstone_ttl,
        domain,
        tls,
        http_allowed_hosts,
        acl,
        telemetry,
        log_file,
        pid_file,
        node_meta,
    } = old;
    let mut out = Vec::new();
    let mut diff = |key: &'static str, differs: bool, live: bool| {
        if differs {
            out.push(Change { key, live });
        }
    };
    // Applied at once.
    diff("log_level", *log_level != new.log_level, true);
    diff("retry_join", *retry_join != new.retry_join, true);
    diff(
        "retry_interval",
        *retry_interval != new.retry_interval,
        true,
    );
    diff("retry_max", *retry_max != new.retry_max, true);
    diff("autopilot", *autopilot != new.autopilot, true);
    diff("node_meta", *node_meta != new.node_meta, true);
    diff(
        "leave_on_terminate",
        *leave_on_terminate != new.leave_on_terminate,
        true,
    );
    diff(
        "skip_leave_on_interrupt",
        *skip_leave_on_interrupt != new.skip_leave_on_interrupt,
        true,
    );
    // Need a restart.
    diff("server", *server != new.server, false);
    diff("bootstrap", *bootstrap != new.bootstrap, false);
    diff(
        "bootstrap_expect",
        *bootstrap_expect != new.bootstrap_expect,
        false,
    );
    diff("dev", *dev != new.dev, false);
    diff("datacenter", *datacenter != new.datacenter, false);
    diff("node_name", *node_name != new.node_name, false);
    diff("node_id", *node_id != new.node_id, false);
    diff("data_dir", *data_dir != new.data_dir, false);
    diff("bind_addr", *bind_addr != new.bind_addr, false);
    diff(
        "advertise_addr",
        *advertise_addr != new.advertise_addr,
        false,
    );
    diff("client_addr", *client_addr != new.client_addr, false);
    diff("ports", *ports != new.ports, false);
    diff("start_join", *start_join != new.start_join, false);
    diff("encrypt", *encrypt != new.encrypt, false);
    diff(
        "encrypt_verify_incoming",
        *encrypt_verify_incoming != new.encrypt_verify_incoming,
        false,
    );
    diff(
        "encrypt_verify_outgoing",
        *encrypt_verify_outgoing != new.encrypt_verify_outgoing,
        false,
    );
    diff("log_json", *log_json != new.log_json, false);
    diff(
        "performance.raft_multiplier",
        *raft_multiplier != new.raft_multiplier,
        false,
    );
    diff(
        "reconnect_timeout",
        *reconnect_timeout != new.reconnect_timeout,
        false,
    );
    diff(
        "tombstone_timeout",
        *tombstone_timeout != new.tombstone_timeout,
        false,
    );
    diff(
        "kv_tombstone_ttl",
        *kv_tombstone_ttl != new.kv_tombstone_ttl,
        false,
    );
    diff("domain", *domain != new.domain, false);
    // The TLS *files* are re-read at every reload (their paths as at start); a change of the
    // settings themselves (paths, verification) needs a restart.
    diff("tls", *tls != new.tls, false);
    diff(
        "http_allowed_hosts",
        *http_allowed_hosts != new.http_allowed_hosts,
        false,
    );
    diff("acl", *acl != new.acl, false);
    // The recorder is installed once per process.
    diff("telemetry", *telemetry != new.telemetry, false);
    diff("log_file", *log_file != new.log_file, false);
    diff("pid_file", *pid_file != new.pid_file, false);
    out
}

/// The keys of `changes` that need a restart, for the one warning line.
pub fn restart_needed(changes: &[Change]) -> Vec<&'static str> {
    changes.iter().filter(|c| !c.live).map(|c| c.key).collect()
}

/// The keys of `changes` the agent applies.
pub fn applied(changes: &[Change]) -> Vec<&'static str> {
    changes.iter().filter(|c| c.live).map(|c| c.key).collect()
}
