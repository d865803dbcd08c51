//! Tokens checked on the server's doors (docs/acl.md, "On the server port"), with real
//! agents in this process on real sockets: a server and a client agent with ACLs on and the
//! default policy deny (set on the checked configuration: `acl.enabled = true` is still
//! refused from a file until the HTTP side is built). The token of each request is the one
//! the HTTP layer would set (`acl_check::CALLER`); through the client agent, every request is
//! forwarded with it, so the server decides. Also the raw port: a request without a token, the
//! leader's duties, an unknown secret; and the server's HTTP API with `X-Consul-Token`.

mod support;

use std::io::{Read, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use muster::acl::DefaultPolicy;
use muster::agent::{Agent, Listeners};
use muster::config::{finish, PartialConfig, RuntimeConfig};
use muster::server::acl_check::CALLER;
use muster::server::acl_state::{AclPolicy, AclToken};
use muster::server::protocol::{ApiFailure, Consistency, KvAnswer, KvQuery, ReadRequest, Request};
use muster::server::state::{StateCommand, Write};
use support::{http_full, Block};
use uuid::Uuid;

const T: Duration = Duration::from_secs(30);

fn config(
    dir: &std::path::Path,
    name: &str,
    ip: &str,
    server: bool,
    join: &[String],
) -> RuntimeConfig {
    let p = PartialConfig {
        data_dir: Some(dir.join(name)),
        bind_addr: Some(ip.into()),
        client_addr: Some(ip.into()),
        node_name: Some(name.into()),
        server: Some(server),
        bootstrap: server.then_some(true),
        start_join: join.to_vec(),
        ..Default::default()
    };
    let mut c = finish(p, vec![], &muster_provider_core::Registry::new())
        .expect("a valid configuration")
        .config;
    c.acl.enabled = true;
    c.acl.default_policy = DefaultPolicy::Deny;
    c
}

async fn start(c: RuntimeConfig) -> Arc<Agent> {
    let listeners = Listeners::bind(&c).await.expect("bind");
    Agent::start(c, listeners).await.expect("start")
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + T;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn set(key: &str) -> StateCommand {
    StateCommand::KvSet {
        key: key.into(),
        value: b"v".to_vec(),
        flags: 0,
        cas: None,
    }
}

fn recurse(prefix: &str) -> ReadRequest {
    ReadRequest {
        query: KvQuery::Recurse(prefix.into()),
        consistency: Consistency::Default,
        min_index: 0,
        wait_ms: 0,
    }
}

fn token(secret: &str, policies: Vec<Uuid>) -> AclToken {
    AclToken {
        accessor_id: Uuid::new_v4(),
        secret_id: secret.into(),
        description: "test".into(),
        policies,
        create_time_ms: 0,
        create_index: 0,
        modify_index: 0,
    }
}

/// `METHOD path` with `X-Consul-Token: token` and `body`: the status and the body.
fn call(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-Consul-Token: {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn get_with_token(addr: &str, path: &str, token: &str) -> (u16, String) {
    call(addr, "GET", path, token, "")
}

fn denied(r: Result<impl std::fmt::Debug, ApiFailure>) -> String {
    match r {
        Err(ApiFailure::Denied(text)) => text,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_decides_with_the_callers_token_through_either_door() {
    let block = Block::AclPort;
    let dir = tempfile::tempdir().unwrap();
    let mut s1_config = config(dir.path(), "s1", &block.ip(1), true, &[]);
    s1_config.acl.initial_management = Some(muster::config::acl::Secret::new(
        "initial-secret-0000".into(),
    ));
    let s1 = start(s1_config).await;
    let c1 = start(config(
        dir.path(),
        "c1",
        &block.ip(2),
        false,
        &[block.ip(1)],
    ))
    .await;
    let server = s1.server.clone().unwrap();
    eventually("s1 leads", async || server.leads_with_lease().then_some(())).await;

    support::step(
        0,
        "the leader creates the initial management token of its configuration",
    );
    eventually("the initial management token writes", async || {
        CALLER
            .scope(
                Some("initial-secret-0000".into()),
                s1.client.write(set("init/x")),
            )
            .await
            .ok()
    })
    .await;

    support::step(
        1,
        "bootstrap (no token needed, once), a policy and a token for app/",
    );
    let mgmt = "mgmt-secret-0000";
    let boot = StateCommand::AclBootstrap {
        token: token(mgmt, vec![]),
    };
    eventually("the bootstrap is written", async || {
        s1.client.write(boot.clone()).await.ok().filter(|o| o.ok)
    })
    .await;
    let again = s1.client.write(boot).await;
    assert!(
        matches!(&again, Err(ApiFailure::Refused(why)) if why.contains("no longer allowed")),
        "a second bootstrap is refused: {again:?}"
    );
    let policy_id = Uuid::new_v4();
    let as_mgmt = |fut| CALLER.scope(Some(mgmt.to_string()), fut);
    let policy = StateCommand::AclPolicySet(AclPolicy {
        id: policy_id,
        name: "app".into(),
        description: String::new(),
        rules: r#"key_prefix "app/" { policy = "write" }"#.into(),
        create_index: 0,
        modify_index: 0,
    });
    assert!(as_mgmt(s1.client.write(policy)).await.unwrap().ok);
    let app = "app-secret-0000";
    let app_token = token(app, vec![policy_id]);
    let app_accessor = app_token.accessor_id;
    assert!(
        as_mgmt(s1.client.write(StateCommand::AclTokenSet(app_token)))
            .await
            .unwrap()
            .ok
    );
    assert!(as_mgmt(s1.client.write(set("other"))).await.unwrap().ok);

    support::step(2, "through the client agent: app/ only, in Consul's words");
    let as_app = |fut| CALLER.scope(Some(app.to_string()), fut);
    let ok = eventually("c1 forwards a write of app/x", async || {
        as_app(c1.client.write(set("app/x"))).await.ok()
    })
    .await;
    assert!(ok.ok);
    let why = denied(as_app(c1.client.write(set("other"))).await);
    assert_eq!(
        why,
        format!(
            "Permission denied: token with AccessorID '{app_accessor}' lacks permission \
             'key:write' on \"other\""
        )
    );
    // Anonymous (no token) under default deny, and a secret nobody holds.
    denied(c1.client.write(set("app/y")).await);
    let unknown = CALLER
        .scope(Some("nobody".into()), c1.client.write(set("app/y")))
        .await;
    assert_eq!(denied(unknown), "ACL not found");
    // A recursive read shows only what the token may read.
    let (answer, _) = CALLER
        .scope(Some(app.to_string()), c1.client.kv_read(recurse("")))
        .await
        .unwrap();
    let KvAnswer::Entries(entries) = answer else {
        panic!("entries")
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["app/x"]);
    let (answer, _) = CALLER
        .scope(Some(mgmt.to_string()), c1.client.kv_read(recurse("")))
        .await
        .unwrap();
    let KvAnswer::Entries(all) = answer else {
        panic!("entries")
    };
    assert_eq!(all.len(), 3, "management sees every key");

    support::step(
        3,
        "the raw port: no token is anonymous, duties are refused to anyone",
    );
    let rpc = muster::server::rpc::RpcClient::new(None, None);
    let port = format!("{}:8300", block.ip(1));
    let raw = Request::WriteOnce(Write {
        id: None,
        cmd: set("app/z"),
    });
    let answer: Result<muster::server::protocol::WriteOutcome, ApiFailure> =
        rpc.ask(&port, raw, T).await.unwrap();
    denied(answer);
    let duty = Request::WithToken {
        secret: mgmt.into(),
        request: Box::new(Request::Write(StateCommand::CatalogRemove("s1".into()))),
    };
    let answer: Result<muster::server::protocol::WriteOutcome, ApiFailure> =
        rpc.ask(&port, duty, T).await.unwrap();
    assert!(denied(answer).contains("the leader's own duty"));

    support::step(4, "the server's HTTP API with X-Consul-Token and ?token=");
    let addr = format!("{}:8500", block.ip(1));
    let get = |path: &str, token: &str| {
        let (addr, path, token) = (addr.clone(), path.to_string(), token.to_string());
        async move {
            tokio::task::spawn_blocking(move || get_with_token(&addr, &path, &token))
                .await
                .unwrap()
        }
    };
    let (status, body) = get("/v1/kv/other", app).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("lacks permission 'key:write'") || body.contains("'key:read'"),
        "{body}"
    );
    let (status, _) = get("/v1/kv/app/x", app).await;
    assert_eq!(status, 200);
    let by_query = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || http_full(&addr, "GET", &format!("/v1/kv/other?token={mgmt}"), b"")
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(by_query.0, 200);

    support::step(
        5,
        "/v1/acl: a policy and a token made over HTTP, used, listed, deleted",
    );
    let http = |method: &'static str, path: String, token: String, body: String| {
        let addr = format!("{}:8500", block.ip(2));
        async move {
            tokio::task::spawn_blocking(move || call(&addr, method, &path, &token, &body))
                .await
                .unwrap()
        }
    };
    let m = mgmt.to_string();
    let (status, body) = http(
        "PUT",
        "/v1/acl/policy".into(),
        m.clone(),
        r#"{"Name": "ops", "Rules": "key_prefix \"ops/\" { policy = \"write\" }"}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let policy: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(policy["Name"], "ops");
    let (status, body) = http(
        "PUT",
        "/v1/acl/token".into(),
        m.clone(),
        r#"{"Description": "ops", "Policies": [{"Name": "ops"}]}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let made: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ops_secret = made["SecretID"].as_str().unwrap().to_string();
    let ops_accessor = made["AccessorID"].as_str().unwrap().to_string();
    assert_eq!(made["Policies"][0]["Name"], "ops");
    let (status, _) = http("PUT", "/v1/kv/ops/a".into(), ops_secret.clone(), "1".into()).await;
    assert_eq!(status, 200);
    let (status, body) = http("PUT", "/v1/kv/app/a".into(), ops_secret.clone(), "1".into()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(
        "GET",
        "/v1/acl/token/self".into(),
        ops_secret.clone(),
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&ops_accessor), "{body}");
    // Lists hide secrets; a token without acl:read may not list.
    let (status, body) = http("GET", "/v1/acl/tokens".into(), m.clone(), String::new()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains(&ops_secret) && !body.contains(mgmt),
        "{body}"
    );
    let (status, _) = http(
        "GET",
        "/v1/acl/tokens".into(),
        ops_secret.clone(),
        String::new(),
    )
    .await;
    assert_eq!(status, 403);
    // A policy whose rules do not parse is refused with the parser's words; bootstrap again
    // is refused.
    let (status, body) = http(
        "PUT",
        "/v1/acl/policy".into(),
        m.clone(),
        r#"{"Name": "bad", "Rules": "key_prefix \"x/\" { policy = \"writ\" }"}"#.into(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("writ"), "{body}");
    let (status, body) = http(
        "PUT",
        "/v1/acl/bootstrap".into(),
        String::new(),
        String::new(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Deleted, the token no longer resolves.
    let (status, _) = http(
        "DELETE",
        format!("/v1/acl/token/{ops_accessor}"),
        m.clone(),
        String::new(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = http("PUT", "/v1/kv/ops/b".into(), ops_secret, "1".into()).await;
    assert_eq!((status, body.trim()), (403, "ACL not found"));

    support::step(
        6,
        "the agents' own endpoints: members filtered, leave and self refused",
    );
    let app_s = app.to_string();
    let (status, body) = http(
        "GET",
        "/v1/agent/members".into(),
        app_s.clone(),
        String::new(),
    )
    .await;
    assert_eq!(
        (status, body.trim()),
        (200, "[]"),
        "no node:read, no members"
    );
    let (status, body) = http("GET", "/v1/agent/members".into(), m.clone(), String::new()).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"c1\"") && body.contains("\"s1\""), "{body}");
    let (status, body) = http(
        "PUT",
        "/v1/agent/leave".into(),
        app_s.clone(),
        String::new(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("lacks permission 'agent:write' on \"c1\""),
        "{body}"
    );
    let (status, _) = http("GET", "/v1/agent/self".into(), app_s.clone(), String::new()).await;
    assert_eq!(status, 403);
    let (status, _) = http("GET", "/v1/agent/self".into(), m.clone(), String::new()).await;
    assert_eq!(status, 200);
    let s1_http = |path: &str, token: &str| {
        let (addr, path, token) = (
            format!("{}:8500", block.ip(1)),
            path.to_string(),
            token.to_string(),
        );
        async move {
            tokio::task::spawn_blocking(move || call(&addr, "GET", &path, &token, ""))
                .await
                .unwrap()
        }
    };
    let (status, body) = s1_http("/v1/operator/raft/configuration", app).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("'operator:read'"), "{body}");
    let (status, _) = s1_http("/v1/operator/raft/configuration", mgmt).await;
    assert_eq!(status, 200);

    c1.shutdown().await;
    s1.shutdown().await;
}
