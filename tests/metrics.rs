//! `/v1/agent/metrics` (docs/metrics.md): a real Prometheus scrapes a three-server cluster and
//! sees one leader (and autopilot healthy, Raft states, RPC counts); the JSON answer has Consul's shape; the text format names its metrics with
//! their types and labels; `prometheus_retention_time` unset answers Consul's 415; gauges carry
//! the host name unless `disable_hostname`; ACLs ask for `agent:read`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{header, http, http_full, poll, server_flags, step, wait_until, write_file};
use support::{Agent, Block, Fixture};

const T: Duration = Duration::from_secs(60);

/// The telemetry block of the tests that scrape: Prometheus on, names without the host.
const TELEMETRY: &str =
    "telemetry {\n  prometheus_retention_time = \"60s\"\n  disable_hostname = true\n}\n";

fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path).unwrap_or_else(|| panic!("no answer from {addr}{path}"))
}

fn json(addr: &str, path: &str) -> Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The `prometheus` binary (Debian's package; .ci/test.sh installs it).
fn prometheus_bin() -> &'static str {
    let found = Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test runs a real Prometheus: apt-get install prometheus (.ci/test.sh does)"
    );
    "prometheus"
}

/// Starts Prometheus on `listen`, scraping every agent's `/v1/agent/metrics?format=prometheus`
/// each second, its storage under `dir`; killed when the fixture drops (also on failure).
fn start_prometheus(dir: &Path, listen: &str, targets: &[String]) -> Fixture {
    let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: muster\n    metrics_path: /v1/agent/metrics\n\
         \x20   params:\n      format: ['prometheus']\n\
         \x20   static_configs:\n      - targets: [{}]\n",
        quoted.join(", ")
    );
    let file = write_file(dir, "prometheus.yml", &config);
    let mut cmd = Command::new(prometheus_bin());
    cmd.arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"));
    Fixture::spawn("prometheus", cmd).wait_http(listen, "/-/ready")
}

/// Prometheus's answer to an instant query: `(instance, value)` per series.
fn query(prometheus: &str, q: &str) -> Vec<(String, String)> {
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let path = format!("/api/v1/query?query={encoded}");
    let Some((200, body)) = http(prometheus, "GET", &path) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    (
                        r["metric"]["instance"].as_str().unwrap_or("").to_string(),
                        r["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_three_servers_and_sees_one_leader() {
    let block = Block::MetricsPrometheus;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "telemetry.hcl", TELEMETRY);
    let ips: Vec<String> = (1..=3).map(|i| block.ip(i)).collect();
    let joins: Vec<&str> = ips.iter().map(String::as_str).collect();
    let servers: Vec<Agent> = (1..=3u8)
        .map(|i| {
            let mut args = server_flags(3, &joins);
            args.extend(["-config-file".into(), cfg.display().to_string()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Agent::start(&format!("s{i}"), &block.ip(i), &args)
        })
        .collect();
    for s in &servers {
        s.wait_ready();
    }

    step(
        1,
        "Prometheus scrapes each server's /v1/agent/metrics?format=prometheus",
    );
    let targets: Vec<String> = servers.iter().map(|s| s.http_addr()).collect();
    let listen = format!("{}:9090", block.ip(10));
    let _prometheus = start_prometheus(dir.path(), &listen, &targets);

    step(
        2,
        "its query API shows muster_raft_leader: one server 1, the others 0",
    );
    let mut last = Vec::new();
    let found = poll(T, Duration::from_millis(500), || {
        last = query(&listen, "muster_raft_leader");
        let ones = last.iter().filter(|(_, v)| v == "1").count();
        let zeros = last.iter().filter(|(_, v)| v == "0").count();
        (last.len() == 3 && ones == 1 && zeros == 2).then_some(())
    });
    assert!(
        found.is_some(),
        "Prometheus never showed one leader among three: {last:?}"
    );
    let leader = last.iter().find(|(_, v)| v == "1").unwrap().0.clone();
    assert!(
        targets.contains(&leader),
        "{leader} is not one of {targets:?}"
    );

    step(
        3,
        "the leader reports autopilot healthy; every server its Raft state",
    );
    wait_until(T, "muster_autopilot_healthy is 1 on the leader", || {
        query(&listen, "muster_autopilot_healthy") == vec![(leader.clone(), "1".to_string())]
    });
    wait_until(
        T,
        "one leader and two followers in muster_raft_state",
        || {
            let leaders = query(&listen, "muster_raft_state{state=\"leader\"}==1");
            let followers = query(&listen, "muster_raft_state{state=\"follower\"}==1");
            leaders.len() == 1 && followers.len() == 2
        },
    );
    wait_until(
        T,
        "the followers count AppendEntries on their RPC port",
        || query(&listen, "muster_rpc_request{type=\"AppendEntries\"}>0").len() >= 2,
    );
}

/// The first line of the Prometheus text that starts with `name{` or `name ` and holds every
/// one of `labels`.
fn series<'a>(text: &'a str, name: &str, labels: &[&str]) -> Option<&'a str> {
    text.lines().find(|l| {
        (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            && labels.iter().all(|x| l.contains(x))
    })
}

#[test]
fn the_json_and_the_text_format_have_consuls_shapes() {
    let block = Block::MetricsShapes;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "telemetry.hcl", TELEMETRY);
    let s1 = Agent::start(
        "s1",
        &block.ip(1),
        &[
            "-server",
            "-bootstrap-expect",
            "1",
            "-config-file",
            cfg.to_str().unwrap(),
        ],
    );
    s1.wait_ready();
    let addr = s1.http_addr();
    wait_until(T, "s1 leads", || s1.is_leader());
    s1.put("metrics/a", "1");

    step(
        1,
        "JSON: Timestamp, Gauges, Points, Counters, Samples, in Consul's fields",
    );
    let mut body = Value::Null;
    let sampled = poll(T, Duration::from_millis(500), || {
        // The PUT lands in the current 10 s interval; the answer shows the last complete one.
        body = json(&addr, "/v1/agent/metrics");
        body["Samples"]
            .as_array()?
            .iter()
            .find(|s| s["Name"] == "muster.kvs.request_time" && s["Labels"]["method"] == "PUT")
            .cloned()
    })
    .unwrap_or_else(|| panic!("no muster.kvs.request_time sample for PUT: {body:#}"));
    for key in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
        assert!(body.get(key).is_some(), "{key} missing: {body:#}");
    }
    assert!(
        body["Timestamp"].as_str().unwrap().ends_with(" +0000 UTC"),
        "{body:#}"
    );
    for field in ["Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev"] {
        assert!(sampled[field].is_number(), "{field} in {sampled:#}");
    }
    assert!(sampled["Count"].as_u64().unwrap() >= 1, "{sampled:#}");
    let gauge = |name: &str| {
        body["Gauges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["Name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no gauge {name}: {body:#}"))
    };
    assert_eq!(gauge("muster.raft.leader")["Value"], 1.0);
    assert!(gauge("muster.raft.leader")["Labels"].is_object());
    assert_eq!(gauge("muster.autopilot.healthy")["Value"], 1.0);
    let counters = body["Counters"].as_array().unwrap();
    assert!(
        counters.iter().any(|c| c["Name"] == "muster.kvs.request"
            && c["Labels"]["method"] == "PUT"
            && c["Labels"]["code"] == "200"),
        "{body:#}"
    );

    step(2, "text: names, types and labels of the exposition format");
    let (status, headers, text) =
        http_full(&addr, "GET", "/v1/agent/metrics?format=prometheus", b"").unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        header(&headers, "content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{headers:?}"
    );
    for (name, kind) in [
        ("muster_raft_leader", "gauge"),
        ("muster_raft_state", "gauge"),
        ("muster_raft_term", "gauge"),
        ("muster_serf_members", "gauge"),
        ("muster_bootstrap_gate", "gauge"),
        ("muster_autopilot_healthy", "gauge"),
        ("muster_kvs_request", "counter"),
        ("muster_kvs_request_time", "summary"),
        ("muster_raft_commitTime", "summary"),
        ("muster_raft_fsm_apply", "summary"),
        ("muster_memberlist_udp_sent", "counter"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no `# TYPE {name} {kind}` in:\n{text}"
        );
    }
    for (name, labels, value) in [
        ("muster_raft_leader", &[][..], Some("1")),
        ("muster_raft_state", &["state=\"leader\""][..], Some("1")),
        ("muster_raft_state", &["state=\"follower\""][..], Some("0")),
        ("muster_serf_members", &["status=\"alive\""][..], Some("1")),
        ("muster_bootstrap_gate", &["state=\"done\""][..], Some("1")),
        (
            "muster_kvs_request",
            &["method=\"PUT\"", "code=\"200\""][..],
            None,
        ),
        (
            "muster_kvs_request_time",
            &["method=\"PUT\"", "quantile=\"0.99\""][..],
            None,
        ),
        (
            "muster_kvs_request_time_count",
            &["method=\"PUT\""][..],
            None,
        ),
        (
            "muster_memberlist_dropped",
            &["reason=\"wrong_key\""][..],
            Some("0"),
        ),
    ] {
        let line = series(&text, name, labels)
            .unwrap_or_else(|| panic!("no {name} with {labels:?} in:\n{text}"));
        if let Some(v) = value {
            assert!(line.ends_with(&format!(" {v}")), "{line}");
        }
    }
}

#[test]
fn prometheus_needs_a_retention_gauges_carry_the_host_and_acls_ask_for_agent_read() {
    let block = Block::MetricsAcl;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "acl.hcl",
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n  tokens {\n    \
         initial_management = \"metrics-root-secret\"\n  }\n}\n",
    );
    let s1 = Agent::start(
        "s1",
        &block.ip(1),
        &[
            "-server",
            "-bootstrap-expect",
            "1",
            "-config-file",
            cfg.to_str().unwrap(),
        ],
    );
    s1.wait_ready();
    let addr = s1.http_addr();

    step(1, "anonymous: 403, as Consul without agent:read");
    let (status, body) = get(&addr, "/v1/agent/metrics");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Permission denied"), "{body}");

    step(
        2,
        "the management token reads the JSON; gauges carry the host name",
    );
    let with_token = "/v1/agent/metrics?token=metrics-root-secret";
    let body = poll(T, Duration::from_millis(200), || {
        match get(&addr, with_token) {
            (200, b) => Some(b),
            _ => None,
        }
    })
    .expect("the management token reads the metrics once the leader is up");
    let v: Value = serde_json::from_str(&body).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let names: Vec<&str> = v["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["Name"].as_str())
        .collect();
    assert!(
        names.contains(&format!("muster.{host}.serf.members").as_str()),
        "{names:?}"
    );
    assert!(!names.contains(&"muster.serf.members"), "{names:?}");

    step(
        3,
        "no prometheus_retention_time: the text format is off, Consul's 415",
    );
    let (status, body) = get(&addr, &format!("{with_token}&format=prometheus"));
    assert_eq!(status, 415, "{body}");
    assert!(
        body.contains("Prometheus is not enabled since its retention time is not positive"),
        "{body}"
    );
}
