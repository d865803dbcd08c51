//! Metrics (docs/metrics.md): one recorder per process, behind the `metrics` facade, so that
//! every layer records with `metrics::counter!` / `histogram!` and names nothing of this module.
//!
//! The recorder fans out to two sinks: the Prometheus exporter's recorder (rendered as text by
//! the agent's own HTTP router; the exporter's listener is not built in), and [`inmem`], the
//! aggregate behind the JSON answer in Consul's shape. Names are written dotted, as Consul's
//! (`muster.raft.leader`); the Prometheus text has them with underscores (`muster_raft_leader`).
//!
//! - [`inmem`]: Consul's in-memory sink, 10 s intervals.

pub mod inmem;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;
use metrics_util::MetricKindMask;

/// Quantiles of every latency summary: Consul's (go-metrics' Prometheus sink).
const QUANTILES: &[f64] = &[0.5, 0.9, 0.99];

/// The process's metrics: what the endpoint renders.
pub struct Telemetry {
    prometheus: Option<PrometheusHandle>,
    inmem: Arc<inmem::Inmem>,
    /// The host name gauges carry in their names (`muster.<host>.…`), unless disabled.
    gauge_host: Option<String>,
}

static INSTALLED: OnceLock<Arc<Telemetry>> = OnceLock::new();

impl Telemetry {
    /// Installs the process's recorder the first time, with these settings; later calls (more
    /// agents in one test process) get the first one's. `retention` zero leaves the Prometheus
    /// sink out (Consul's `prometheus_retention_time`).
    pub fn install(retention: Duration, disable_hostname: bool) -> Arc<Telemetry> {
        INSTALLED
            .get_or_init(|| {
                let inmem = Arc::new(inmem::Inmem::default());
                let mut fanout =
                    FanoutBuilder::default().add_recorder(inmem::InmemRecorder(inmem.clone()));
                let mut prometheus = None;
                if !retention.is_zero() {
                    let recorder = PrometheusBuilder::new()
                        .set_quantiles(QUANTILES)
                        .expect("the quantiles are constants between 0 and 1")
                        .idle_timeout(MetricKindMask::ALL, Some(retention))
                        .build_recorder();
                    prometheus = Some(recorder.handle());
                    fanout = fanout.add_recorder(recorder);
                }
                if metrics::set_global_recorder(fanout.build()).is_err() {
                    tracing::warn!(
                        "a metrics recorder was already installed; /v1/agent/metrics shows nothing"
                    );
                }
                Arc::new(Telemetry {
                    prometheus,
                    inmem,
                    gauge_host: (!disable_hostname).then(hostname),
                })
            })
            .clone()
    }

    /// The Prometheus text, or `None` when `prometheus_retention_time` is zero.
    pub fn prometheus(&self) -> Option<String> {
        self.prometheus.as_ref().map(|h| h.render())
    }

    /// Moves recorded samples into the Prometheus summaries: without it they would pile up
    /// between scrapes. The agent calls it every few seconds.
    pub fn upkeep(&self) {
        if let Some(h) = &self.prometheus {
            h.run_upkeep();
        }
    }

    /// The JSON answer (Consul's shape).
    pub fn summary(&self) -> inmem::Summary {
        self.inmem.summary(SystemTime::now())
    }

    /// A gauge's name with the host name after the prefix, as Consul names gauges unless
    /// `telemetry.disable_hostname` is set: `muster.raft.leader` becomes
    /// `muster.<host>.raft.leader`.
    pub fn gauge_name(&self, name: &'static str) -> String {
        match (&self.gauge_host, name.strip_prefix("muster.")) {
            (Some(host), Some(rest)) => format!("muster.{host}.{rest}"),
            _ => name.to_string(),
        }
    }
}

/// This host's name (as Go's `os.Hostname`), `unknown` if the system will not tell.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
