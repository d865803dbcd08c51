//! Joining: resolving join addresses, asking discovery providers, and the retry-join loop.
//!
//! `-join` (start_join) is tried once at start; `-retry-join` is retried with backoff until one
//! address answers. Each attempt resolves every entry afresh: a literal address through the
//! resolver, a provider string (`provider=dns name=…`) through its provider — unless that
//! provider's last answer is still fresh ([`Provider::cache_for`]), so a cloud API is asked at
//! most once per interval. See docs/providers.md.

pub mod backoff;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster_provider_core::{
    is_provider_string, EntryError, JoinAddr, Provider, ProviderArgs, ProviderError, Registry,
};

use crate::gossip::Gossip;

/// Providers added by a program that embeds muster (see examples/custom_provider.rs).
static EXTRA: std::sync::Mutex<Vec<Arc<dyn Provider>>> = std::sync::Mutex::new(Vec::new());

/// Adds a provider to every registry built afterwards: call it before [`crate::cli::run`] in a
/// program of your own, and `-retry-join "provider=yours …"` and `muster discover` know it.
pub fn register_provider(p: Arc<dyn Provider>) {
    EXTRA.lock().expect("provider list lock").push(p);
}

/// Every provider this build contains: the built-ins, those behind cargo features, and any
/// registered with [`register_provider`].
pub fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    #[cfg(feature = "aws")]
    r.register(Arc::new(muster_provider_aws::Aws));
    #[cfg(feature = "gce")]
    r.register(Arc::new(muster_provider_gce::Gce));
    for p in EXTRA.lock().expect("provider list lock").iter() {
        r.register(p.clone());
    }
    r
}

/// Longest a provider lookup may take before the attempt goes on without it.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Provider entries of a retry-join list, parsed once, with each one's last answer.
pub struct Discovery {
    entries: Vec<Entry>,
    status: Arc<std::sync::Mutex<JoinStatus>>,
}

/// What the retry-join loop is doing, for `muster info` and `/v1/agent/self` (section
/// `retry_join`): operators see each provider's last answer and error without reading logs.
/// Provider texts are the canonical form (secrets shown as `hidden`).
#[derive(Debug, Clone, Default)]
pub struct JoinStatus {
    /// idle (no -retry-join), joining, joined.
    pub state: &'static str,
    /// Attempts of the current round.
    pub attempts: u32,
    /// When the next attempt starts, while waiting between attempts.
    pub next_attempt: Option<Instant>,
    pub providers: Vec<ProviderStatus>,
}

/// One provider entry's recent history.
#[derive(Debug, Clone, Default)]
pub struct ProviderStatus {
    pub entry: String,
    /// Lookups made (answers served from the cache are not lookups).
    pub lookups: u64,
    pub last_lookup: Option<Instant>,
    pub last_addrs: Vec<String>,
    pub last_error: Option<String>,
}

impl JoinStatus {
    /// Flat `key = value` pairs, as the other `muster info` sections.
    pub fn section(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert(
            "state".to_string(),
            if self.state.is_empty() {
                "idle"
            } else {
                self.state
            }
            .to_string(),
        );
        out.insert("attempts".into(), self.attempts.to_string());
        out.insert(
            "next_attempt_in".into(),
            self.next_attempt
                .map(|t| {
                    format!(
                        "{:.1}s",
                        t.saturating_duration_since(Instant::now()).as_secs_f64()
                    )
                })
                .unwrap_or_default(),
        );
        for (i, p) in self.providers.iter().enumerate() {
            let k = |what: &str| format!("provider.{i}.{what}");
            out.insert(format!("provider.{i}"), p.entry.clone());
            out.insert(k("lookups"), p.lookups.to_string());
            out.insert(
                k("last_lookup_ago"),
                p.last_lookup
                    .map(|t| format!("{:.1}s", t.elapsed().as_secs_f64()))
                    .unwrap_or_else(|| "never".into()),
            );
            out.insert(k("last_addrs"), p.last_addrs.join(" "));
            out.insert(k("last_error"), p.last_error.clone().unwrap_or_default());
        }
        out
    }
}

enum Entry {
    Literal(String),
    Provider {
        text: String,
        provider: Arc<dyn Provider>,
        args: ProviderArgs,
        last: Option<(Instant, Vec<String>)>,
    },
}

/// What one round of discovery produced.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Join addresses, literal entries and provider answers in entry order.
    pub addrs: Vec<String>,
    /// Provider entries that failed, with why (secrets redacted).
    pub errors: Vec<(String, String)>,
    /// Some provider asked us to slow down.
    pub throttled: bool,
}

impl Discovery {
    /// Parses the entries; a bad provider string is an error naming it (config checks the same
    /// at start, so here it means a provider registered after the check refused it).
    pub fn new(registry: &Registry, entries: &[String]) -> Result<Self, EntryError> {
        let mut out = Vec::new();
        for e in entries {
            if is_provider_string(e) {
                let (provider, args) = registry.parse_entry(e)?;
                out.push(Entry::Provider {
                    text: args.to_string(),
                    provider,
                    args,
                    last: None,
                });
            } else {
                out.push(Entry::Literal(e.clone()));
            }
        }
        let providers = out
            .iter()
            .filter_map(|e| match e {
                Entry::Provider { text, .. } => Some(ProviderStatus {
                    entry: text.clone(),
                    ..Default::default()
                }),
                Entry::Literal(_) => None,
            })
            .collect();
        let status = Arc::new(std::sync::Mutex::new(JoinStatus {
            providers,
            ..Default::default()
        }));
        Ok(Self {
            entries: out,
            status,
        })
    }

    /// The shared status this discovery and its retry loop keep up to date.
    pub fn status(&self) -> Arc<std::sync::Mutex<JoinStatus>> {
        self.status.clone()
    }

    /// Asks every provider (whose last answer is stale) and collects addresses.
    pub async fn discover(&mut self) -> Discovered {
        let mut d = Discovered::default();
        let mut slot = 0;
        for e in &mut self.entries {
            match e {
                Entry::Literal(a) => d.addrs.push(a.clone()),
                Entry::Provider {
                    text,
                    provider,
                    args,
                    last,
                } => {
                    let i = slot;
                    slot += 1;
                    if let Some((at, addrs)) = last.as_ref() {
                        if at.elapsed() < provider.cache_for() {
                            d.addrs.extend(addrs.iter().cloned());
                            continue;
                        }
                    }
                    let (result, timed_out) =
                        match tokio::time::timeout(LOOKUP_TIMEOUT, provider.addrs(args)).await {
                            Ok(r) => (r, false),
                            Err(_) => (
                                Err(ProviderError::Unreachable(format!(
                                    "no answer within {LOOKUP_TIMEOUT:?}"
                                ))),
                                true,
                            ),
                        };
                    // docs/metrics.md: by provider name (never the entry: it may hold a secret).
                    let outcome = match &result {
                        Ok(_) => "ok",
                        Err(_) if timed_out => "timeout",
                        Err(e) if e.throttled() => "throttled",
                        Err(_) => "error",
                    };
                    metrics::counter!(
                        "muster.retry_join.lookups",
                        "provider" => provider.name(),
                        "outcome" => outcome
                    )
                    .increment(1);
                    {
                        let mut st = self.status.lock().expect("join status lock");
                        if let Some(p) = st.providers.get_mut(i) {
                            p.lookups += 1;
                            p.last_lookup = Some(Instant::now());
                            match &result {
                                Ok(addrs) => {
                                    p.last_addrs = addrs.clone();
                                    p.last_error = None;
                                }
                                Err(err) => p.last_error = Some(err.to_string()),
                            }
                        }
                    }
                    match result {
                        Ok(addrs) => {
                            tracing::info!(provider = %text, servers = %addrs.join(" "), "discovered servers");
                            *last = Some((Instant::now(), addrs.clone()));
                            d.addrs.extend(addrs);
                        }
                        Err(err) => {
                            let retry = if !err.retryable() {
                                "will not retry: fix the arguments"
                            } else if err.needs_operator() {
                                "will ask again, so a fix made outside muster is picked up"
                            } else {
                                "will retry"
                            };
                            tracing::error!(provider = %text, error = %err, "cannot discover addresses ({retry})");
                            d.throttled |= err.throttled();
                            d.errors.push((text.clone(), err.to_string()));
                        }
                    }
                }
            }
        }
        d
    }
}

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

/// Retries until one address answers, asking the providers at every attempt and waiting per
/// [`backoff::Schedule`] between attempts (a throttled provider at least doubles the wait).
/// `max_attempts = 0` retries forever. Returns the last report on exhaustion.
pub async fn retry_join(
    gossip: &Gossip,
    discovery: &mut Discovery,
    default_port: u16,
    schedule: backoff::Schedule,
    max_attempts: u32,
) -> Result<JoinReport, JoinReport> {
    retry_with(discovery, schedule, max_attempts, |addrs| async move {
        join_entries(gossip, &addrs, default_port).await
    })
    .await
}

/// The loop of [`retry_join`], with the join step given (tests drive it on tokio's paused
/// clock).
pub async fn retry_with<F, Fut>(
    discovery: &mut Discovery,
    schedule: backoff::Schedule,
    max_attempts: u32,
    mut join: F,
) -> Result<JoinReport, JoinReport>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = JoinReport>,
{
    tracing::info!("retry join: joining cluster");
    let status = discovery.status();
    let set = |state: &'static str, attempt: u32, next: Option<Instant>| {
        let mut st = status.lock().expect("join status lock");
        st.state = state;
        st.attempts = attempt;
        st.next_attempt = next;
    };
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        set("joining", attempt, None);
        metrics::counter!("muster.retry_join.attempts").increment(1);
        let found = discovery.discover().await;
        let mut report = if found.addrs.is_empty() {
            JoinReport::default()
        } else {
            join(found.addrs.clone()).await
        };
        report.failed.extend(found.errors.iter().cloned());
        if !report.joined.is_empty() {
            tracing::info!(joined = ?report.joined, attempt, "retry join: joined cluster");
            set("joined", attempt, None);
            return Ok(report);
        }
        if report.failed.is_empty() && !report.only_self.is_empty() {
            // Every entry is this agent itself: the others will join it.
            tracing::info!("retry join: every entry names this agent; nothing to join");
            set("joined", attempt, None);
            return Ok(report);
        }
        if found.addrs.is_empty() && found.errors.is_empty() {
            report.failed.push((
                "discovery".into(),
                "No servers to join: the providers found no instance".into(),
            ));
        }
        if max_attempts > 0 && attempt >= max_attempts {
            tracing::error!(attempts = attempt, errors = %report.failures(), "retry join: attempts exhausted");
            set("exhausted", attempt, None);
            return Err(report);
        }
        let mut wait = schedule.delay(attempt, &mut rand::rng());
        if found.throttled {
            wait = (wait * 2).max(schedule.ceiling(attempt));
        }
        tracing::warn!(attempt, retry_in = ?wait, errors = %report.failures(), "retry join: join failed, will retry");
        set("joining", attempt, Some(Instant::now() + wait));
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod loop_tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::future::BoxFuture;
    use futures::FutureExt;
    use muster_provider_core::{Candidates, KeySpec, Provider, ProviderArgs, ProviderError};

    use super::*;

    /// Throttled twice, then answers one address.
    struct Flaky(AtomicU32);

    impl Provider for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn keys(&self) -> &'static [KeySpec] {
            &[]
        }
        fn help(&self) -> &'static str {
            "test provider"
        }
        fn cache_for(&self) -> Duration {
            Duration::ZERO
        }
        fn addrs<'a>(
            &'a self,
            _: &'a ProviderArgs,
        ) -> BoxFuture<'a, Result<Candidates, ProviderError>> {
            async move {
                if self.0.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(ProviderError::Throttled("slow down".into()))
                } else {
                    Ok(vec!["127.0.0.9".into()])
                }
            }
            .boxed()
        }
    }

    /// On tokio's paused clock: two throttled answers make the loop wait at least the schedule's
    /// ceilings (500 ms, then 1 s) instead of its jittered delays, then one failed join waits
    /// per the schedule, and the second join succeeds: 1.75–5 s of virtual time in all.
    #[tokio::test(start_paused = true)]
    async fn the_loop_follows_the_schedule_and_slows_down_when_throttled() {
        let flaky = Arc::new(Flaky(AtomicU32::new(0)));
        let mut reg = Registry::new();
        reg.register(flaky.clone());
        let mut d = Discovery::new(&reg, &["provider=flaky".to_string()]).unwrap();
        let joins = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let report = retry_with(
            &mut d,
            backoff::Schedule::new(Duration::from_secs(30)),
            0,
            |addrs| {
                let n = joins.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut r = JoinReport::default();
                    if n == 0 {
                        r.failed
                            .push((addrs[0].clone(), "connection refused".into()));
                    } else {
                        r.joined.push(addrs[0].clone());
                    }
                    r
                }
            },
        )
        .await
        .expect("joined");
        let took = start.elapsed();
        assert_eq!(report.joined, vec!["127.0.0.9".to_string()]);
        assert_eq!(flaky.0.load(Ordering::SeqCst), 4, "asked at every attempt");
        assert_eq!(joins.load(Ordering::SeqCst), 2);
        assert!(
            took >= Duration::from_millis(1750) && took <= Duration::from_secs(5),
            "{took:?}"
        );
        let st = d.status();
        let st = st.lock().unwrap();
        assert_eq!((st.state, st.attempts), ("joined", 4));
        assert_eq!(st.providers[0].lookups, 4);
        assert_eq!(st.providers[0].last_addrs, vec!["127.0.0.9".to_string()]);
    }

    /// retry_max bounds the attempts, and the report names what failed.
    #[tokio::test(start_paused = true)]
    async fn retry_max_bounds_the_attempts() {
        let mut reg = Registry::new();
        reg.register(Arc::new(Flaky(AtomicU32::new(0))));
        let mut d = Discovery::new(&reg, &["provider=flaky".to_string()]).unwrap();
        let err = retry_with(
            &mut d,
            backoff::Schedule::new(Duration::from_secs(30)),
            2,
            |_| async { JoinReport::default() },
        )
        .await
        .unwrap_err();
        assert!(err.failures().contains("slow down"), "{}", err.failures());
        assert_eq!(d.status().lock().unwrap().state, "exhausted");
    }
}
