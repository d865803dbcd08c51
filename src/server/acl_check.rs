//! What each request on the server port needs of its caller's token (docs/acl.md, "Where it
//! is enforced"), as pure rules: [`needs`] says what a request needs, [`Needs::check`] asks an
//! [`Authorizer`], and the filters drop from a read's answer what the token may not see (a
//! list is filtered, never refused for one item, as Consul does).
//!
//! The server port takes changes to the state as commands, so a command is authorized by its
//! kind: a client agent (or anyone who reaches the port) cannot write what its token may not,
//! and the leader's own duties (the catalog, tombstone collection) are refused from the port
//! whatever the token.

use crate::acl::{permission_denied, AccessLevel, Authorizer, Resource};

use super::protocol::{KvQuery, Request};

tokio::task_local! {
    /// The ACL token of the caller whose request this task serves: set by the HTTP API for its
    /// request (the caller's token, or the agent's default), and by the server port for a
    /// `WithToken` request; read where a request is forwarded, so that the next server checks
    /// the caller's token, never the forwarder's (docs/acl.md, "On the server port").
    pub static CALLER: Option<String>;
}

/// The token of the request this task serves, if any.
pub fn caller_token() -> Option<String> {
    CALLER.try_with(|t| t.clone()).ok().flatten()
}

/// `req` with the caller's token, if this task serves one.
pub fn with_caller(req: Request) -> Request {
    match caller_token() {
        Some(secret) if !matches!(req, Request::WithToken { .. }) => Request::WithToken {
            secret,
            request: Box::new(req),
        },
        _ => req,
    }
}
use super::state::StateCommand;

/// One permission: Consul's `resource:level` on a segment (empty for unsegmented resources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub resource: Resource,
    pub level: AccessLevel,
    pub segment: String,
}

impl Permission {
    fn new(resource: Resource, level: AccessLevel, segment: &str) -> Self {
        Self {
            resource,
            level,
            segment: segment.to_string(),
        }
    }

    /// Consul's denial text for the token `accessor_id`.
    pub fn denied(&self, accessor_id: &str) -> String {
        permission_denied(accessor_id, self.resource, self.level, &self.segment)
    }
}

/// What a request needs of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: Raft's and the bootstrap gate's messages (with TLS, served only to server
    /// certificates: docs/security.md, Roles).
    Nothing,
    /// One permission.
    One(Permission),
    /// Write on every key at and under the prefix, nothing there denied (a recursive delete).
    KeyWritePrefix(String),
    /// A read whose answer is filtered to what the token may read: KV entries or key names
    /// (`list` enough for names) under `prefix`, catalog nodes. With
    /// `acl.enable_key_list_policy`, Consul first asks for `key:list` on the prefix itself.
    FilteredKv {
        names_only: bool,
        prefix: String,
    },
    FilteredNodes,
    /// Removing a server from the Raft configuration: `operator:write`, or `agent:write` on
    /// that server's own name, the right to make it leave (`PUT /v1/agent/leave`), which a
    /// leaving server's self-removal carries (docs/acl.md, "The agent token"). `name` is
    /// the server's name in the Raft configuration, filled in by the server that checks
    /// (`None`: not a member, so only `operator:write` will do).
    RemoveServer {
        id: super::id::NodeId,
        name: Option<String>,
    },
    /// Only the leader's own duties send it: refused from the port whatever the token.
    DutyOnly(&'static str),
}

impl Needs {
    /// `Ok` when `authz` grants what is needed (a filtered read always passes: its answer is
    /// filtered instead); otherwise Consul's denial text for `accessor_id`.
    pub fn check(&self, authz: &Authorizer, accessor_id: &str) -> Result<(), String> {
        match self {
            Needs::Nothing | Needs::FilteredKv { .. } | Needs::FilteredNodes => Ok(()),
            Needs::One(p) if authz.allowed(p.resource, p.level, &p.segment) => Ok(()),
            Needs::One(p) => Err(p.denied(accessor_id)),
            Needs::KeyWritePrefix(prefix) if authz.key_write_prefix(prefix) => Ok(()),
            Needs::KeyWritePrefix(prefix) => {
                Err(Permission::new(Resource::Key, AccessLevel::Write, prefix).denied(accessor_id))
            }
            Needs::RemoveServer { name, .. } => {
                let op = Permission::new(Resource::Operator, AccessLevel::Write, "");
                let itself = name
                    .as_deref()
                    .is_some_and(|n| authz.allowed(Resource::Agent, AccessLevel::Write, n));
                if itself || authz.allowed(op.resource, op.level, "") {
                    Ok(())
                } else {
                    Err(op.denied(accessor_id))
                }
            }
            Needs::DutyOnly(what) => Err(format!(
                "Permission denied: {what} is the leader's own duty and is never taken from \
                 the server port"
            )),
        }
    }
}

/// What `req` needs (docs/acl.md, the table of endpoints).
pub fn needs(req: &Request) -> Needs {
    use AccessLevel::{Read, Write};
    match req {
        Request::AppendEntries(_)
        | Request::Vote(_)
        | Request::InstallSnapshot(_)
        | Request::PeerStatus
        | Request::BootstrapPropose { .. }
        | Request::BootstrapRelease { .. }
        | Request::TimeoutNow
        | Request::PreVote(_) => Needs::Nothing,
        Request::KvRead(r) => match &r.query {
            KvQuery::Get(key) => Needs::One(Permission::new(Resource::Key, Read, key)),
            KvQuery::Recurse(prefix) => Needs::FilteredKv {
                names_only: false,
                prefix: prefix.clone(),
            },
            KvQuery::Keys { prefix, .. } => Needs::FilteredKv {
                names_only: true,
                prefix: prefix.clone(),
            },
        },
        Request::CatalogNodes(_) => Needs::FilteredNodes,
        Request::RemovePeer { id } => Needs::RemoveServer {
            id: *id,
            name: None,
        },
        Request::AutopilotState => Needs::One(Permission::new(Resource::Operator, Read, "")),
        Request::TransferLeader { .. } => {
            Needs::One(Permission::new(Resource::Operator, Write, ""))
        }
        // A snapshot holds every key and every token: Consul asks for management.
        Request::SnapshotSave => Needs::One(Permission::new(Resource::Acl, Write, "")),
        Request::Write(cmd) => needs_of_command(cmd),
        Request::WriteOnce(w) => needs_of_command(&w.cmd),
        Request::WithToken { request, .. } => needs(request),
        // Whoever holds a secret may learn what it allows.
        Request::AclResolve { .. } => Needs::Nothing,
        // Any valid token reads itself: the read answers "ACL not found" for another.
        Request::AclRead(super::protocol::AclQuery::TokenSelf) => Needs::Nothing,
        Request::AclRead(_) => Needs::One(Permission::new(Resource::Acl, Read, "")),
    }
}

/// What a change to the replicated state needs.
pub fn needs_of_command(cmd: &StateCommand) -> Needs {
    use AccessLevel::Write;
    match cmd {
        StateCommand::KvSet { key, .. } => Needs::One(Permission::new(Resource::Key, Write, key)),
        StateCommand::KvDelete {
            key,
            recurse: false,
            ..
        } => Needs::One(Permission::new(Resource::Key, Write, key)),
        StateCommand::KvDelete {
            key, recurse: true, ..
        } => Needs::KeyWritePrefix(key.clone()),
        StateCommand::Restore(_)
        | StateCommand::RestorePiece { .. }
        | StateCommand::RestoreEnd { .. } => Needs::One(Permission::new(Resource::Acl, Write, "")),
        StateCommand::AutopilotSet(_) => Needs::One(Permission::new(Resource::Operator, Write, "")),
        StateCommand::CatalogUpsert(_) | StateCommand::CatalogRemove(_) => {
            Needs::DutyOnly("the catalog")
        }
        StateCommand::KvReapTombstones { .. } => Needs::DutyOnly("collecting KV tombstones"),
        StateCommand::AclInit => Needs::DutyOnly("creating the ACL built-ins"),
        // Anyone may bootstrap, once (Consul's `PUT /v1/acl/bootstrap`): the state refuses a
        // second one.
        StateCommand::AclBootstrap { .. } => Needs::Nothing,
        StateCommand::AclPolicySet(_)
        | StateCommand::AclPolicyDelete(_)
        | StateCommand::AclTokenSet(_)
        | StateCommand::AclTokenDelete(_) => Needs::One(Permission::new(Resource::Acl, Write, "")),
    }
}

/// The KV entries (or names) of a filtered read that the token may see: values need read,
/// names need list or read (`list_policy`: `acl.enable_key_list_policy`; without it Consul
/// asks for read for names too).
pub fn visible_keys<'a, T>(
    authz: &Authorizer,
    items: impl IntoIterator<Item = (&'a str, T)>,
    names_only: bool,
    list_policy: bool,
) -> Vec<T> {
    items
        .into_iter()
        .filter(|(key, _)| {
            if names_only && list_policy {
                authz.key_list(key)
            } else {
                authz.key_read(key)
            }
        })
        .map(|(_, v)| v)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{policy, DefaultPolicy};
    use crate::server::protocol::{Consistency, ReadRequest};

    fn authz(rules: &str, default: DefaultPolicy) -> Authorizer {
        let p = policy::parse(rules).unwrap();
        Authorizer::new([&p], default, false)
    }

    fn read(query: KvQuery) -> Request {
        Request::KvRead(ReadRequest {
            query,
            consistency: Consistency::Default,
            min_index: 0,
            wait_ms: 0,
        })
    }

    fn set(key: &str) -> Request {
        Request::Write(StateCommand::KvSet {
            key: key.into(),
            value: b"v".to_vec(),
            flags: 0,
            cas: None,
        })
    }

    #[test]
    fn a_key_prefix_token_writes_under_its_prefix_only_and_is_told_consuls_words() {
        let a = authz(
            r#"key_prefix "app/" { policy = "write" }"#,
            DefaultPolicy::Deny,
        );
        assert_eq!(needs(&set("app/x")).check(&a, "acc-1"), Ok(()));
        assert_eq!(
            needs(&set("other")).check(&a, "acc-1"),
            Err(
                "Permission denied: token with AccessorID 'acc-1' lacks permission 'key:write' \
                 on \"other\""
                    .into()
            )
        );
        assert!(needs(&read(KvQuery::Get("app/x".into())))
            .check(&a, "acc-1")
            .is_ok());
        assert!(needs(&read(KvQuery::Get("etc".into())))
            .check(&a, "acc-1")
            .is_err());
        // A recursive read is filtered, never refused.
        assert!(needs(&read(KvQuery::Recurse("".into())))
            .check(&a, "acc-1")
            .is_ok());
        let keys = [("app/a", 1), ("etc/b", 2), ("app/c", 3)];
        assert_eq!(visible_keys(&a, keys, false, false), vec![1, 3]);
    }

    #[test]
    fn a_recursive_delete_needs_write_on_everything_under_it() {
        let a = authz(
            r#"key_prefix "app/" { policy = "write" }
               key "app/keep" { policy = "read" }"#,
            DefaultPolicy::Deny,
        );
        let delete = |key: &str, recurse| {
            Request::Write(StateCommand::KvDelete {
                key: key.into(),
                recurse,
                cas: None,
            })
        };
        assert!(needs(&delete("app/x", false)).check(&a, "a").is_ok());
        assert!(needs(&delete("app/", true)).check(&a, "a").is_err());
        assert!(needs(&delete("app/sub/", true)).check(&a, "a").is_ok());
    }

    #[test]
    fn operator_acl_and_duty_requests() {
        let op = authz(r#"operator = "read""#, DefaultPolicy::Deny);
        assert!(needs(&Request::AutopilotState).check(&op, "a").is_ok());
        let transfer = Request::TransferLeader { to: None };
        assert!(needs(&transfer)
            .check(&op, "a")
            .unwrap_err()
            .contains("'operator:write'"));
        let writer = authz(r#"operator = "write""#, DefaultPolicy::Deny);
        assert!(needs(&transfer).check(&writer, "a").is_ok());
        assert!(needs(&Request::RemovePeer { id: 1 })
            .check(&op, "a")
            .is_err());
        // A server's own token may remove that server (its leave), not another.
        let own = authz(r#"agent "s2" { policy = "write" }"#, DefaultPolicy::Deny);
        let remove = |name: &str| Needs::RemoveServer {
            id: 2,
            name: Some(name.into()),
        };
        assert!(remove("s2").check(&own, "a").is_ok());
        assert!(remove("s3")
            .check(&own, "a")
            .unwrap_err()
            .contains("'operator:write'"));
        let op_write = authz(r#"operator = "write""#, DefaultPolicy::Deny);
        assert!(needs(&Request::RemovePeer { id: 1 })
            .check(&op_write, "a")
            .is_ok());
        assert!(needs(&Request::SnapshotSave).check(&op, "a").is_err());
        let all = Authorizer::management();
        assert!(needs(&Request::SnapshotSave).check(&all, "a").is_ok());
        // The leader's duties are refused even to management.
        let upsert = Request::Write(StateCommand::CatalogRemove("n".into()));
        assert!(needs(&upsert)
            .check(&all, "a")
            .unwrap_err()
            .contains("leader's own duty"));
        // Raft and the gate need no token (TLS roles decide).
        assert_eq!(needs(&Request::PeerStatus), Needs::Nothing);
        // With the default allow, anything matching no rule passes.
        let open = authz(r#"key "secret" { policy = "deny" }"#, DefaultPolicy::Allow);
        assert!(needs(&set("x")).check(&open, "a").is_ok());
        assert!(needs(&set("secret")).check(&open, "a").is_err());
    }
}
