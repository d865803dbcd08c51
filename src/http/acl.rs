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
use axum::extract::{Path, Query, State};
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
        .route("/v1/acl/token/{id}/clone", put(token_clone))
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

/// The token `id`, or Consul's 404 when there is none.
async fn existing_token(agent: &Agent, id: Uuid) -> Result<AclToken, ApiError> {
    read_token(agent, id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "ACL token not found".into()))
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

/// The field names of Consul's ACL bodies that muster reads or refuses, in Consul's spelling.
const FIELDS: &[&str] = &[
    "ID",
    "Name",
    "Description",
    "Rules",
    "Datacenters",
    "AccessorID",
    "SecretID",
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "TemplatedPolicies",
    "ExpirationTTL",
    "ExpirationTime",
    "Local",
    "BootstrapSecret",
];

/// Consul's Go field name for `key`: Go's `encoding/json` matches a key to a field
/// case-insensitively when no key matches exactly, and clients rely on it (py-consul sends
/// `name` and `rules` in lower case).
fn field_name(key: String) -> String {
    FIELDS
        .iter()
        .find(|f| f.eq_ignore_ascii_case(&key))
        .map_or(key, |f| (*f).to_string())
}

/// A JSON body read as Go reads it: every object key renamed to Consul's spelling
/// (`field_name`), in nested objects too (a token's policy links), and when two spellings of
/// one field are given, the later in the document wins. `serde_json::Map` sorts its keys, so
/// the renaming is done while the document is read, in its own order.
struct Folded(Value);

impl<'de> Deserialize<'de> for Folded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Folded;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Folded, E> {
                Ok(Folded(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Folded, E> {
                Ok(Folded(json!(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Folded, E> {
                Ok(Folded(json!(n)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Folded, E> {
                Ok(Folded(json!(n)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Folded, E> {
                Ok(Folded(Value::String(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Folded, E> {
                Ok(Folded(Value::String(s)))
            }
            fn visit_unit<E>(self) -> Result<Folded, E> {
                Ok(Folded(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Folded, E> {
                Ok(Folded(Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Folded, A::Error> {
                let mut items = Vec::new();
                while let Some(Folded(v)) = a.next_element()? {
                    items.push(v);
                }
                Ok(Folded(Value::Array(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Folded, A::Error> {
                let mut map = serde_json::Map::new();
                while let Some((k, Folded(v))) = a.next_entry::<String, Folded>()? {
                    map.insert(field_name(k), v);
                }
                Ok(Folded(Value::Object(map)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parts of Consul's ACL system that muster does not have (docs/acl.md, "Not covered"). A body
/// that asks for one is refused rather than stored without it: a role or identity would grant
/// what the stored token lacks, and an expiry ignored would leave a token alive for ever.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "Roles",
        "muster has no ACL roles; link the role's policies to the token in Policies",
    ),
    (
        "ServiceIdentities",
        "muster has no service identities; write a policy with the rules instead",
    ),
    (
        "NodeIdentities",
        "muster has no node identities; write a policy with node and agent rules instead",
    ),
    (
        "TemplatedPolicies",
        "muster has no templated policies; write the policy out",
    ),
    (
        "ExpirationTTL",
        "muster tokens do not expire; delete the token when it should end",
    ),
    (
        "ExpirationTime",
        "muster tokens do not expire; delete the token when it should end",
    ),
    (
        "Datacenters",
        "muster policies apply in the one datacenter of the cluster; drop Datacenters",
    ),
];

fn given(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn body<T: for<'a> Deserialize<'a>>(bytes: &Bytes) -> Result<T, ApiError> {
    let bad = |e: serde_json::Error| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the request body is not the JSON expected: {e}"),
        )
    };
    // An empty body is an empty object, as Consul reads it (`PUT /v1/acl/bootstrap`).
    let v: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<Folded>(bytes).map_err(bad)?.0
    };
    if let Value::Object(map) = &v {
        for (field, why) in UNSUPPORTED {
            if map.get(*field).is_some_and(given) {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("{field} is not supported: {why}"),
                ));
            }
        }
    }
    serde_json::from_value(v).map_err(bad)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BootstrapBody {
    /// The secret the caller chose for the management token (Consul 1.13 and later); a UUID.
    #[serde(default)]
    bootstrap_secret: Option<String>,
}

async fn bootstrap(State(agent): State<Arc<Agent>>, bytes: Bytes) -> Reply {
    enabled(&agent)?;
    let b: BootstrapBody = body(&bytes)?;
    let secret_id = match b.bootstrap_secret.filter(|s| !s.is_empty()) {
        // Checked as a UUID, without quoting it: it is a secret.
        Some(s) => match Uuid::parse_str(&s) {
            Ok(_) => s,
            Err(_) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "BootstrapSecret is not a UUID; leave it out to have one made".into(),
                ))
            }
        },
        None => Uuid::new_v4().to_string(),
    };
    let token = AclToken {
        accessor_id: Uuid::new_v4(),
        secret_id,
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
    // Consul's checks: the body may repeat the accessor of the path, not name another.
    if let Some(a) = b.accessor_id.as_deref().filter(|a| !a.is_empty()) {
        if uuid(a, "AccessorID")? != id {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body's AccessorID {a} is not the token {id} of the path; drop it or use \
                     the same ID"
                ),
            ));
        }
    }
    let old = existing_token(&agent, id).await?;
    // A SecretID that repeats the stored one is fine; another is refused by the state
    // (a token's secret cannot change), without either secret in the message.
    if let Some(secret) = b.secret_id.as_deref().filter(|s| !s.is_empty()) {
        if secret != old.secret_id {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "token {id}: a token's secret cannot be changed; create a new token and \
                     delete this one"
                ),
            ));
        }
    }
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

/// The filters of `GET /v1/acl/tokens`. Roles, auth methods and service identities do not
/// exist in muster, so no token has them: a filter on one lists nothing, as Consul's would for
/// a role no token carries.
#[derive(Deserialize, Default)]
struct TokenFilter {
    policy: Option<String>,
    role: Option<String>,
    authmethod: Option<String>,
    servicename: Option<String>,
}

async fn token_list(State(agent): State<Arc<Agent>>, Query(f): Query<TokenFilter>) -> Reply {
    enabled(&agent)?;
    let policy = match f.policy.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some(uuid(p, "policy")?),
        None => None,
    };
    let none_match = [&f.role, &f.authmethod, &f.servicename]
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.is_empty()));
    let names = policy_names(&agent).await?;
    match agent
        .client
        .acl_read(AclQuery::Tokens)
        .await
        .map_err(failure)?
    {
        AclAnswer::Tokens(ts) => Ok(Json(Value::Array(
            ts.iter()
                .filter(|t| !none_match && policy.is_none_or(|p| t.policies.contains(&p)))
                .map(|t| token_json(t, &names, false))
                .collect(),
        ))),
        _ => Ok(Json(json!([]))),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CloneBody {
    #[serde(default)]
    description: Option<String>,
}

/// `PUT /v1/acl/token/<id>/clone`: a new token (new accessor and secret) with the policies of
/// `<id>`, and its description unless the body gives one.
async fn token_clone(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "AccessorID")?;
    let b: CloneBody = body(&bytes)?;
    let old = existing_token(&agent, id).await?;
    let t = AclToken {
        accessor_id: Uuid::new_v4(),
        secret_id: Uuid::new_v4().to_string(),
        description: b
            .description
            .filter(|d| !d.is_empty())
            .unwrap_or(old.description),
        policies: old.policies,
        create_time_ms: now_ms(),
        create_index: 0,
        modify_index: 0,
    };
    token_set(&agent, t, true).await
}

async fn token_delete(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Reply {
    enabled(&agent)?;
    let id = uuid(&id, "AccessorID")?;
    write(&agent, StateCommand::AclTokenDelete(id), "the deletion").await?;
    Ok(Json(json!(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_fields_in_any_case_and_the_later_spelling_wins() {
        let b: PolicyBody = body(&Bytes::from_static(
            br#"{"name": "a", "RULES": "operator = \"read\"", "Name": "b", "other": 1}"#,
        ))
        .unwrap();
        assert_eq!(
            (b.name.as_str(), b.rules.as_str()),
            ("b", "operator = \"read\"")
        );
        let t: TokenBody = body(&Bytes::from_static(
            br#"{"description": "d", "policies": [{"name": "app"}]}"#,
        ))
        .unwrap();
        assert_eq!(t.description, "d");
        assert_eq!(t.policies[0].name.as_deref(), Some("app"));
        // An empty body is an empty object.
        let b: BootstrapBody = body(&Bytes::new()).unwrap();
        assert!(b.bootstrap_secret.is_none());
    }

    #[test]
    fn what_muster_lacks_is_refused_by_name_and_empty_values_pass() {
        for (field, value) in [
            ("roles", r#"[{"Name": "ops"}]"#),
            ("ExpirationTTL", r#""1h""#),
            ("ServiceIdentities", r#"[{"ServiceName": "web"}]"#),
            ("Datacenters", r#"["dc2"]"#),
        ] {
            let text = format!(r#"{{"Description": "x", "{field}": {value}}}"#);
            // TokenBody has no Debug (it may hold a secret): no unwrap_err.
            let Err(err) = body::<TokenBody>(&Bytes::from(text)) else {
                panic!("{field} was accepted");
            };
            assert_eq!(err.0, StatusCode::BAD_REQUEST);
            assert!(
                err.1.to_lowercase().contains(&field.to_lowercase()),
                "{}",
                err.1
            );
        }
        let t: TokenBody = body(&Bytes::from_static(
            br#"{"Roles": [], "ExpirationTTL": "", "Local": false}"#,
        ))
        .unwrap();
        assert!(t.policies.is_empty());
    }
}
