//! `/v1/acl/*` (docs/acl.md): bootstrap, policies and tokens in Consul's JSON shapes. Every
//! request goes to the servers with its caller's token (set by `token::scope`), and the
//! server decides; an agent without ACLs answers Consul's `401 ACL support disabled`.
//!
//! A token's `SecretID` is shown where Consul's callers need it, when it is made (bootstrap,
//! create) and to its own holder (`/v1/acl/token/self`); lists and reads by accessor show
//! `<hidden>` (Consul shows it to `acl:write` holders; muster to none, so that a read token
//! cannot mint a management one).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kv::failure;
use super::ApiError;
use crate::agent::Agent;
use crate::server::acl_state::{AclPolicy, AclToken, GLOBAL_MANAGEMENT_ID};
use crate::server::protocol::{AclAnswer, AclQuery, StateCommand};

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/v1/acl/bootstrap", put(bootstrap))
        .route("/v1/acl/policy", put(policy_create))
        .route("/v1/acl/policies", get(policy_list))
        .route(
            "/v1/acl/policy/{id}",
            get(policy_read).put(policy_update).delete(policy_delete),
        )
        .route("/v1/acl/policy/name/{name}", get(policy_read_by_name))
        .route("/v1/acl/token", put(token_create))
        .route("/v1/acl/tokens", get(token_list))
        .route("/v1/acl/token/self", get(token_self))
        .route(
            "/v1/acl/token/{id}",
            get(token_read).put(token_update).delete(token_delete),
        )
}

type Reply = Result<Json<Value>, ApiError>;

/// Consul's answer when ACLs are off.
fn enabled(agent: &Agent) -> Result<(), ApiError> {
    if agent.config.acl.enabled {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled".into(),
        ))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC, as Consul writes `CreateTime`.
fn rfc3339(ms: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => String::new(),
    }
}

fn uuid(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{what} {s:?} is not a UUID"),
        )
    })
}

fn policy_json(p: &AclPolicy, with_rules: bool) -> Value {
    let mut v = json!({
        "ID": p.id.to_string(),
        "Name": p.name,
        "Description": p.description,
        "Datacenters": null,
        "CreateIndex": p.create_index,
        "ModifyIndex": p.modify_index,
    });
    if with_rules {
        v["Rules"] = json!(p.rules);
    }
    v
}

/// A token in Consul's shape; `show_secret` false writes `<hidden>`.
fn token_json(t: &AclToken, names: &[(Uuid, String)], show_secret: bool) -> Value {
    let policies: Vec<Value> = t
        .policies
        .iter()
        .map(|id| {
            let name = names
                .iter()
                .find(|(p, _)| p == id)
                .map(|(_, n)| n.as_str())
                .unwrap_or("");
            json!({ "ID": id.to_string(), "Name": name })
        })
        .collect();
    json!({
        "AccessorID": t.accessor_id.to_string(),
        "SecretID": if show_secret { t.secret_id.as_str() } else { "<hidden>" },
        "Description": t.description,
        "Policies": policies,
        "Local": false,
        "CreateTime": rfc3339(t.create_time_ms),
        "CreateIndex": t.create_index,
        "ModifyIndex": t.modify_index,
    })
}

/// Every policy's id and name, for naming a token's links.
async fn policy_names(agent: &Agent) -> Result<Vec<(Uuid, String)>, ApiError> {
    match agent
        .client
        .acl_read(AclQuery::Policies)
        .await
        .map_err(failure)?
    {
        AclAnswer::Policies(ps) => Ok(ps.into_iter().map(|p| (p.id, p.name)).collect()),
        _ => Ok(Vec::new()),
    }
}

async fn read_token(agent: &Agent, id: Uuid) -> Result<Option<AclToken>, ApiError> {
    match agent
        .client
        .acl_read(AclQuery::Token(id))
        .await
        .map_err(failure)?
    {
        AclAnswer::Token(t) => Ok(t),
        _ => Ok(None),
    }
}

async fn read_policy(agent: &Agent, q: AclQuery) -> Result<Option<AclPolicy>, ApiError> {
    match agent.client.acl_read(q).await.map_err(failure)? {
        AclAnswer::Policy(p) => Ok(p),
        _ => Ok(None),
    }
}

/// Writes `cmd`; a write the state refused (another change came first) is a 409.
async fn write(agent: &Agent, cmd: StateCommand, what: &str) -> Result<(), ApiError> {
    let outcome = agent.client.write(cmd).await.map_err(failure)?;
    if outcome.ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::CONFLICT,
            format!("{what} was not applied: another change came first; read it and retry"),
        ))
    }
}

fn body<T: for<'a> Deserialize<'a>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the request body is not the JSON expected: {e}"),
        )
    })
}

async fn bootstrap(State(agent): State<Arc<Agent>>) -> Reply {
    enabled(&agent)?;
    let token = AclToken {
        accessor_id: Uuid::new_v4(),
        secret_id: Uuid::new_v4().to_string(),
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![GLOBAL_MANAGEMENT_ID],
        create_time_ms: now_ms(),
        create_index: 0,
        modify_index: 0,
    };
    let cmd = StateCommand::AclBootstrap {
        token: token.clone(),
    };
    match agent.client.write(cmd).await {
        Ok(o) if o.ok => {}
        Ok(_) => {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "Permission denied: ACL bootstrap no longer allowed".into(),
            ))
        }
        // The state's checks say why (already bootstrapped, at which index).
        Err(crate::server::protocol::ApiFailure::Refused(why)) => {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("Permission denied: {why}"),
            ))
        }
        Err(e) => return Err(failure(e)),
    }
    // Read back as the new token itself: the caller of a bootstrap holds no token yet.
    let stored = crate::server::protocol::CALLER
        .scope(
            Some(token.secret_id.clone()),
            read_token(&agent, token.accessor_id),
        )
        .await?
        .unwrap_or(token);
    let names = vec![(GLOBAL_MANAGEMENT_ID, "global-management".to_string())];
    Ok(Json(token_json(&stored, &names, true)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyBody {
    #[serde(rename = "ID")]
    id: Option<String>,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    rules: String,
}

async fn policy_set(agent: &Agent, id: Uuid, b: PolicyBody) -> Reply {
    let p = AclPolicy {
        id,
        name: b.name,
        description: b.description,
        rules: b.rules,
        create_index: 0,
        modify_index: 0,
    };
    write(agent, StateCommand::AclPolicySet(p), "the policy").await?;
    let stored = read_policy(agent, AclQuery::Policy(id))
        .await?
        .ok_or_else(|| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the policy vanished".into(),
            )
        })?;
    Ok(Json(policy_json(&stored, true)))
}

async fn policy_create(State(agent): State<Arc<Agent>>, bytes: Bytes) -> Reply {
    enabled(&agent)?;
    let b: PolicyBody = body(&bytes)?;
    if b.id.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "a new policy gets its ID from the server: drop ID, or PUT /v1/acl/policy/<id> to \
             update one"
                .into(),
        ));
    }
    policy_set(&agent, Uuid::new_v4(), b).await
}

async fn policy_update(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "policy ID")?;
    policy_set(&agent, id, body(&bytes)?).await
}

async fn policy_read(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "policy ID")?;
    match read_policy(&agent, AclQuery::Policy(id)).await? {
        Some(p) => Ok(Json(policy_json(&p, true))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "ACL policy not found".into(),
        )),
    }
}

async fn policy_read_by_name(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Reply {
    enabled(&agent)?;
    match read_policy(&agent, AclQuery::PolicyByName(name)).await? {
        Some(p) => Ok(Json(policy_json(&p, true))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "ACL policy not found".into(),
        )),
    }
}

async fn policy_list(State(agent): State<Arc<Agent>>) -> Reply {
    enabled(&agent)?;
    match agent
        .client
        .acl_read(AclQuery::Policies)
        .await
        .map_err(failure)?
    {
        AclAnswer::Policies(ps) => Ok(Json(Value::Array(
            ps.iter().map(|p| policy_json(p, false)).collect(),
        ))),
        _ => Ok(Json(json!([]))),
    }
}

async fn policy_delete(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "policy ID")?;
    write(&agent, StateCommand::AclPolicyDelete(id), "the deletion").await?;
    Ok(Json(json!(true)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LinkBody {
    #[serde(rename = "ID")]
    id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TokenBody {
    #[serde(rename = "AccessorID")]
    accessor_id: Option<String>,
    #[serde(rename = "SecretID")]
    secret_id: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    policies: Vec<LinkBody>,
}

/// A token's policy links, each by ID or by name, as policy IDs.
async fn links(agent: &Agent, given: &[LinkBody]) -> Result<Vec<Uuid>, ApiError> {
    let names = policy_names(agent).await?;
    let mut out = Vec::new();
    for l in given {
        let id = match (&l.id, &l.name) {
            (Some(id), _) => uuid(id, "policy ID")?,
            (None, Some(name)) => names
                .iter()
                .find(|(_, n)| n == name)
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        format!("no policy is named {name:?}: create it first"),
                    )
                })?,
            (None, None) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "a policy link needs an ID or a Name".into(),
                ))
            }
        };
        out.push(id);
    }
    Ok(out)
}

async fn token_set(agent: &Agent, t: AclToken, show_secret: bool) -> Reply {
    let accessor = t.accessor_id;
    write(agent, StateCommand::AclTokenSet(t), "the token").await?;
    let stored = read_token(agent, accessor).await?.ok_or_else(|| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the token vanished".into(),
        )
    })?;
    let names = policy_names(agent).await?;
    Ok(Json(token_json(&stored, &names, show_secret)))
}

async fn token_create(State(agent): State<Arc<Agent>>, bytes: Bytes) -> Reply {
    enabled(&agent)?;
    let b: TokenBody = body(&bytes)?;
    let accessor_id = match &b.accessor_id {
        Some(a) => uuid(a, "AccessorID")?,
        None => Uuid::new_v4(),
    };
    let t = AclToken {
        accessor_id,
        secret_id: b
            .secret_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string()),
        description: b.description.clone(),
        policies: links(&agent, &b.policies).await?,
        create_time_ms: now_ms(),
        create_index: 0,
        modify_index: 0,
    };
    token_set(&agent, t, true).await
}

async fn token_update(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "AccessorID")?;
    let b: TokenBody = body(&bytes)?;
    let Some(old) = read_token(&agent, id).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "ACL token not found".into(),
        ));
    };
    let t = AclToken {
        description: b.description.clone(),
        policies: links(&agent, &b.policies).await?,
        ..old
    };
    token_set(&agent, t, false).await
}

async fn token_read(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "AccessorID")?;
    match read_token(&agent, id).await? {
        Some(t) => Ok(Json(token_json(&t, &policy_names(&agent).await?, false))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            "ACL token not found".into(),
        )),
    }
}

async fn token_self(State(agent): State<Arc<Agent>>) -> Reply {
    enabled(&agent)?;
    match agent
        .client
        .acl_read(AclQuery::TokenSelf)
        .await
        .map_err(failure)?
    {
        // The names need acl:read, which the holder may not have: links without names then.
        AclAnswer::Token(Some(t)) => {
            let names = policy_names(&agent).await.unwrap_or_default();
            Ok(Json(token_json(&t, &names, true)))
        }
        _ => Err(ApiError(StatusCode::FORBIDDEN, "ACL not found".into())),
    }
}

async fn token_list(State(agent): State<Arc<Agent>>) -> Reply {
    enabled(&agent)?;
    let names = policy_names(&agent).await?;
    match agent
        .client
        .acl_read(AclQuery::Tokens)
        .await
        .map_err(failure)?
    {
        AclAnswer::Tokens(ts) => Ok(Json(Value::Array(
            ts.iter().map(|t| token_json(t, &names, false)).collect(),
        ))),
        _ => Ok(Json(json!([]))),
    }
}

async fn token_delete(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "AccessorID")?;
    write(&agent, StateCommand::AclTokenDelete(id), "the deletion").await?;
    Ok(Json(json!(true)))
}
