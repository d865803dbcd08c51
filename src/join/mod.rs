//! Joining: resolving join addresses and the retry-join loop.
//!
//! `-join` (start_join) is tried once at start; `-retry-join` is retried with backoff until one
//! address answers. Discovery providers (`provider=aws …`) plug in here in a later step; until
//! then a provider string is refused at start with a message that says so.

pub mod backoff;

use std::net::SocketAddr;

use muster_provider_core::JoinAddr;

use crate::gossip::Gossip;

/// The outcome of one join attempt over a list of entries.
#[derive(Debug, Default)]
pub struct JoinReport {
    /// Entries that reached at least one agent.
    pub joined: Vec<String>,
    /// Entries that failed, each with why (one line per resolved address).
    pub failed: Vec<(String, String)>,
    /// Entries that name only this agent (a seed listing itself): skipped, not failed.
    pub only_self: Vec<String>,
}

impl JoinReport {
    /// "a: why; b: why" — for logs and the exit message.
    pub fn failures(&self) -> String {
        self.failed
            .iter()
            .map(|(a, e)| format!("{a}: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Resolves each entry now (names are looked up on every call) and joins every address found.
/// An entry succeeds when at least one of its addresses answered the join handshake.
pub async fn join_entries(gossip: &Gossip, entries: &[String], default_port: u16) -> JoinReport {
    let mut report = JoinReport::default();
    let own = gossip.local().addr;
    for entry in entries {
        let addrs: Vec<SocketAddr> = match JoinAddr::parse(entry) {
            Err(e) => {
                report.failed.push((entry.clone(), e.to_string()));
                continue;
            }
            Ok(a) => match a.resolve(default_port).await {
                Err(e) => {
                    report.failed.push((entry.clone(), e.to_string()));
                    continue;
                }
                Ok(list) => list.into_iter().filter(|s| *s != own).collect(),
            },
        };
        if addrs.is_empty() {
            report.only_self.push(entry.clone());
            continue;
        }
        let results = gossip.join(&addrs).await;
        let mut errors = Vec::new();
        let mut ok = false;
        for (addr, r) in results {
            match r {
                Ok(_) => ok = true,
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        if ok {
            report.joined.push(entry.clone());
        } else {
            report.failed.push((entry.clone(), errors.join(", ")));
        }
    }
    report
}

/// Retries `entries` until one answers, waiting per [`backoff::Schedule`] between attempts.
/// `max_attempts = 0` retries forever. Returns the last report on exhaustion.
pub async fn retry_join(
    gossip: &Gossip,
    entries: &[String],
    default_port: u16,
    schedule: backoff::Schedule,
    max_attempts: u32,
) -> Result<JoinReport, JoinReport> {
    tracing::info!(entries = ?entries, "retry join: joining cluster");
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let report = join_entries(gossip, entries, default_port).await;
        if !report.joined.is_empty() {
            tracing::info!(joined = ?report.joined, attempt, "retry join: joined cluster");
            return Ok(report);
        }
        if report.failed.is_empty() {
            // Every entry is this agent itself: the others will join it.
            tracing::info!("retry join: every entry names this agent; nothing to join");
            return Ok(report);
        }
        if max_attempts > 0 && attempt >= max_attempts {
            tracing::error!(attempts = attempt, errors = %report.failures(), "retry join: attempts exhausted");
            return Err(report);
        }
        let wait = schedule.delay(attempt, &mut rand::rng());
        tracing::warn!(attempt, retry_in = ?wait, errors = %report.failures(), "retry join: join failed, will retry");
        tokio::time::sleep(wait).await;
    }
}
