//! The ACL part of the state machine, driven through `State::apply` as the log drives it, and
//! `State::check_acl` as a proposer asks it.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use super::*;
use crate::acl::DefaultPolicy;
use crate::server::state::{
    CatalogNode, Changes, KvEntry, RecentWrites, Restoring, SnapshotBody, State, StateCommand,
};

fn apply(s: &mut State, index: u64, cmd: StateCommand) -> bool {
    s.apply(index, &cmd, &mut Changes::default())
}

/// Applies `cmd`, which must be refused: nothing changes, and the proposer's check says why.
fn refused(s: &mut State, index: u64, cmd: StateCommand) -> String {
    let before = s.clone();
    let why = match s.check_acl(&cmd) {
        Err(e) => e.to_string(),
        Ok(()) => panic!("the check should refuse {cmd:?}"),
    };
    assert!(!apply(s, index, cmd), "apply should refuse too: {why}");
    assert_eq!(*s, before, "a refused command changed the state ({why})");
    why
}

fn policy(id: u128, name: &str, rules: &str) -> AclPolicy {
    AclPolicy {
        id: Uuid::from_u128(id),
        name: name.into(),
        description: format!("{name} policy"),
        rules: rules.into(),
        ..AclPolicy::default()
    }
}

fn token(id: u128, secret: &str, policies: &[Uuid]) -> AclToken {
    AclToken {
        accessor_id: Uuid::from_u128(id),
        secret_id: secret.into(),
        description: format!("token {id}"),
        policies: policies.to_vec(),
        create_time_ms: 1_700_000_000_000 + id as u64,
        ..AclToken::default()
    }
}

const APP_WRITE: &str = r#"key_prefix "app/" { policy = "write" }"#;

fn initialized(index: u64) -> State {
    let mut s = State::default();
    assert!(apply(&mut s, index, StateCommand::AclInit));
    s
}

#[test]
fn the_built_in_rules_parse_and_the_ids_are_consuls() {
    assert!(crate::acl::parse(GLOBAL_MANAGEMENT_RULES).is_ok());
    assert_eq!(
        GLOBAL_MANAGEMENT_ID.to_string(),
        "00000000-0000-0000-0000-000000000001"
    );
    assert_eq!(
        ANONYMOUS_ID.to_string(),
        "00000000-0000-0000-0000-000000000002"
    );
}

/// Init creates both built-ins at its index; a second init changes nothing (the index
/// included), and keeps what an operator changed on the anonymous token.
#[test]
fn init_is_idempotent() {
    let mut s = initialized(3);
    let gm = &s.acl.policies[&GLOBAL_MANAGEMENT_ID];
    assert_eq!(
        (gm.name.as_str(), gm.rules.as_str()),
        (GLOBAL_MANAGEMENT_NAME, GLOBAL_MANAGEMENT_RULES)
    );
    assert_eq!((gm.create_index, gm.modify_index), (3, 3));
    let anon = &s.acl.tokens[&ANONYMOUS_ID];
    assert_eq!(anon.secret_id, ANONYMOUS_SECRET);
    assert!(anon.policies.is_empty());
    assert_eq!((s.acl.index, s.acl.bootstrapped_at), (3, None));

    let before = s.clone();
    assert!(apply(&mut s, 5, StateCommand::AclInit));
    assert_eq!(s, before);

    assert!(apply(
        &mut s,
        6,
        StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))
    ));
    let mut anon = AclToken::anonymous(0);
    anon.policies = vec![Uuid::from_u128(10)];
    assert!(apply(&mut s, 7, StateCommand::AclTokenSet(anon)));
    let before = s.clone();
    assert!(apply(&mut s, 8, StateCommand::AclInit));
    assert_eq!(s, before);
    assert_eq!(s.acl.tokens[&ANONYMOUS_ID].policies, [Uuid::from_u128(10)]);
}

/// Bootstrap works once, on a state without built-ins too; the token is linked to
/// global-management whatever it carried; a second bootstrap is refused with Consul's words.
#[test]
fn bootstrap_once_then_refused() {
    let mut s = State::default();
    // Refused before it ever succeeds: the anonymous token's accessor or secret.
    let why = refused(
        &mut s,
        2,
        StateCommand::AclBootstrap {
            token: token(50, ANONYMOUS_SECRET, &[]),
        },
    );
    assert!(why.contains("belongs to the anonymous token"), "{why}");
    refused(
        &mut s,
        2,
        StateCommand::AclBootstrap {
            token: AclToken {
                accessor_id: ANONYMOUS_ID,
                ..token(0, "s", &[])
            },
        },
    );

    let boot = token(50, "boot-secret", &[Uuid::from_u128(99)]);
    assert!(s
        .check_acl(&StateCommand::AclBootstrap {
            token: boot.clone()
        })
        .is_ok());
    assert!(apply(&mut s, 4, StateCommand::AclBootstrap { token: boot }));
    assert_eq!(s.acl.bootstrapped_at, Some(4));
    assert!(s.acl.policies.contains_key(&GLOBAL_MANAGEMENT_ID));
    assert!(s.acl.tokens.contains_key(&ANONYMOUS_ID));
    let t = &s.acl.tokens[&Uuid::from_u128(50)];
    assert_eq!(t.policies, [GLOBAL_MANAGEMENT_ID]);
    assert_eq!((t.create_index, t.modify_index, s.acl.index), (4, 4, 4));
    assert!(
        s.acl
            .resolve("boot-secret", DefaultPolicy::Deny)
            .unwrap()
            .management
    );

    let why = refused(
        &mut s,
        5,
        StateCommand::AclBootstrap {
            token: token(51, "other-secret", &[]),
        },
    );
    assert!(
        why.starts_with("ACL bootstrap no longer allowed") && why.contains("index 4"),
        "{why}"
    );
}

/// Create, update (create_index kept), a name taken by another policy, a rename, a bad name,
/// the reserved name, and rules that do not parse (the parser's message passed on).
#[test]
fn policies_are_checked_on_create_and_update() {
    let mut s = initialized(1);
    assert!(apply(
        &mut s,
        5,
        StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))
    ));
    let p = &s.acl.policies[&Uuid::from_u128(10)];
    assert_eq!((p.create_index, p.modify_index), (5, 5));

    let mut update = policy(10, "app", r#"key_prefix "app/" { policy = "read" }"#);
    update.create_index = 77; // what the command carries is not what is stored
    assert!(apply(&mut s, 7, StateCommand::AclPolicySet(update.clone())));
    let p = &s.acl.policies[&Uuid::from_u128(10)];
    assert_eq!((p.create_index, p.modify_index), (5, 7));
    assert_eq!(p.rules, update.rules);

    let why = refused(&mut s, 8, StateCommand::AclPolicySet(policy(11, "app", "")));
    assert!(
        why.contains(r#""app""#) && why.contains(&Uuid::from_u128(10).to_string()),
        "{why}"
    );
    // The policy itself may keep its name, and may take a free one.
    assert!(apply(
        &mut s,
        9,
        StateCommand::AclPolicySet(policy(10, "app-v2", APP_WRITE))
    ));
    assert!(apply(
        &mut s,
        10,
        StateCommand::AclPolicySet(policy(11, "app", ""))
    ));
    assert_eq!(s.acl.policies[&Uuid::from_u128(10)].name, "app-v2");

    for bad in [
        "",
        "has space",
        "dot.ted",
        "ünï",
        "x".repeat(MAX_POLICY_NAME + 1).as_str(),
    ] {
        let why = refused(&mut s, 11, StateCommand::AclPolicySet(policy(12, bad, "")));
        assert!(
            why.contains("is not valid") && why.contains("'-' or '_'"),
            "{why}"
        );
    }
    let longest = "A-_9".repeat(MAX_POLICY_NAME / 4);
    assert!(apply(
        &mut s,
        11,
        StateCommand::AclPolicySet(policy(12, &longest, ""))
    ));
    let why = refused(
        &mut s,
        12,
        StateCommand::AclPolicySet(policy(13, GLOBAL_MANAGEMENT_NAME, "")),
    );
    assert!(why.contains("reserved"), "{why}");
    assert!(refused(&mut s, 12, StateCommand::AclPolicySet(policy(0, "nil", ""))).contains("nil"));

    let typo = r#"kye_prefix "" { policy = "read" }"#;
    let parser = crate::acl::parse(typo).unwrap_err().to_string();
    let why = refused(
        &mut s,
        12,
        StateCommand::AclPolicySet(policy(13, "typo", typo)),
    );
    assert_eq!(
        why,
        format!("policy \"typo\" has rules that cannot be used: {parser}")
    );
    assert!(parser.contains("kye_prefix"), "{parser}");
}

/// Only the built-in policy's description may change; it cannot be deleted.
#[test]
fn global_management_is_immutable_but_for_its_description() {
    let mut s = initialized(2);
    let gm = AclPolicy::global_management(0);
    let why = refused(
        &mut s,
        3,
        StateCommand::AclPolicySet(AclPolicy {
            rules: r#"key_prefix "" { policy = "read" }"#.into(),
            ..gm.clone()
        }),
    );
    assert!(why.contains("global-management") && why.contains("only its description"));
    refused(
        &mut s,
        3,
        StateCommand::AclPolicySet(AclPolicy {
            name: "root".into(),
            ..gm.clone()
        }),
    );
    let why = refused(
        &mut s,
        3,
        StateCommand::AclPolicyDelete(GLOBAL_MANAGEMENT_ID),
    );
    assert!(why.contains("cannot be deleted"), "{why}");

    assert!(apply(
        &mut s,
        4,
        StateCommand::AclPolicySet(AclPolicy {
            description: "everything".into(),
            ..gm
        })
    ));
    let gm = &s.acl.policies[&GLOBAL_MANAGEMENT_ID];
    assert_eq!(gm.description, "everything");
    assert_eq!((gm.create_index, gm.modify_index), (2, 4));
}

#[test]
fn a_token_with_a_missing_policy_is_refused() {
    let mut s = initialized(1);
    assert!(apply(
        &mut s,
        2,
        StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))
    ));
    let missing = Uuid::from_u128(11);
    let why = refused(
        &mut s,
        3,
        StateCommand::AclTokenSet(token(20, "s20", &[Uuid::from_u128(10), missing])),
    );
    assert_eq!(
        why,
        format!(
            "token {}: policy {missing} does not exist; create it first or remove the link",
            Uuid::from_u128(20)
        )
    );
    // A policy linked twice is stored once.
    let ten = Uuid::from_u128(10);
    assert!(apply(
        &mut s,
        4,
        StateCommand::AclTokenSet(token(20, "s20", &[ten, ten]))
    ));
    assert_eq!(s.acl.tokens[&Uuid::from_u128(20)].policies, [ten]);
}

/// A secret belongs to one token: another token may not take it, nor `anonymous`, and a
/// token's own secret does not change. No refusal quotes the secret.
#[test]
fn secrets_are_unique_and_never_in_a_refusal() {
    let mut s = initialized(1);
    let secret = "3f5e0d86-6a3f-4bd8-9d51-4c0a8f2b7e11";
    assert!(apply(
        &mut s,
        2,
        StateCommand::AclTokenSet(token(20, secret, &[]))
    ));

    let why = refused(&mut s, 3, StateCommand::AclTokenSet(token(21, secret, &[])));
    assert!(
        why.contains(&Uuid::from_u128(21).to_string())
            && why.contains(&Uuid::from_u128(20).to_string()),
        "{why}"
    );
    let why = refused(
        &mut s,
        3,
        StateCommand::AclTokenSet(token(21, ANONYMOUS_SECRET, &[])),
    );
    assert!(why.contains("anonymous token"), "{why}");
    let why = refused(
        &mut s,
        3,
        StateCommand::AclTokenSet(token(20, "new-secret", &[])),
    );
    assert!(why.contains("cannot be changed"), "{why}");
    for bad in [
        "",
        "has space",
        "tab\there",
        "ünï",
        "x".repeat(MAX_SECRET + 1).as_str(),
    ] {
        let why = refused(&mut s, 3, StateCommand::AclTokenSet(token(22, bad, &[])));
        assert!(why.contains("visible ASCII"), "{why}");
    }
    let nil = refused(&mut s, 3, StateCommand::AclTokenSet(token(0, "nil", &[])));
    assert!(nil.contains("nil"), "{nil}");

    let boot = StateCommand::AclBootstrap {
        token: token(23, secret, &[]),
    };
    let why = refused(&mut s, 3, boot);
    assert!(why.contains("the one of token"), "{why}");
    let again = StateCommand::AclBootstrap {
        token: token(20, secret, &[]),
    };
    assert!(refused(&mut s, 3, again).contains("already exists"));

    // Its own update (the same secret) is fine.
    assert!(apply(
        &mut s,
        4,
        StateCommand::AclTokenSet(token(20, secret, &[]))
    ));
    let debug = format!(
        "{:?} {:?} {:?}",
        s,
        StateCommand::AclTokenSet(token(20, secret, &[])),
        s.acl
    );
    assert!(!debug.contains(secret), "a Debug shows the secret");
    assert!(debug.contains("secret_id: \"hidden\""), "{debug}");
}

/// The anonymous token's policies and description are the operator's; its secret and its
/// existence are not.
#[test]
fn the_anonymous_token_can_change_but_not_go() {
    let mut s = initialized(1);
    assert!(apply(
        &mut s,
        2,
        StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))
    ));
    let mut anon = AclToken::anonymous(0);
    anon.description = "requests without a token".into();
    anon.policies = vec![Uuid::from_u128(10)];
    assert!(apply(&mut s, 3, StateCommand::AclTokenSet(anon.clone())));
    let stored = &s.acl.tokens[&ANONYMOUS_ID];
    assert_eq!(stored.description, anon.description);
    assert_eq!((stored.create_index, stored.modify_index), (1, 3));
    assert!(s
        .acl
        .resolve(ANONYMOUS_SECRET, DefaultPolicy::Deny)
        .unwrap()
        .authorizer
        .key_write("app/x"));

    let why = refused(&mut s, 4, StateCommand::AclTokenDelete(ANONYMOUS_ID));
    assert!(why.contains("anonymous token cannot be deleted"), "{why}");
    let why = refused(
        &mut s,
        4,
        StateCommand::AclTokenSet(AclToken {
            secret_id: "s".into(),
            ..anon
        }),
    );
    assert!(why.contains("must stay"), "{why}");
}

/// Deleting a policy leaves the tokens' links; resolution skips them, and so does
/// management (a deleted policy grants nothing). A later set needs the link gone.
#[test]
fn a_deleted_policy_leaves_a_dangling_link_that_resolution_skips() {
    let mut s = initialized(1);
    let (app, ops) = (Uuid::from_u128(10), Uuid::from_u128(11));
    assert!(apply(
        &mut s,
        2,
        StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))
    ));
    assert!(apply(
        &mut s,
        3,
        StateCommand::AclPolicySet(policy(11, "ops", r#"operator = "read""#))
    ));
    assert!(apply(
        &mut s,
        4,
        StateCommand::AclTokenSet(token(20, "s20", &[app, ops]))
    ));
    let before = s.acl.resolve("s20", DefaultPolicy::Deny).unwrap();
    assert!(before.authorizer.key_write("app/x") && before.authorizer.operator_read());

    assert!(apply(&mut s, 5, StateCommand::AclPolicyDelete(app)));
    assert_eq!(s.acl.tokens[&Uuid::from_u128(20)].policies, [app, ops]);
    let after = s.acl.resolve("s20", DefaultPolicy::Deny).unwrap();
    assert!(
        !after.authorizer.key_write("app/x"),
        "the deleted policy grants nothing"
    );
    assert!(
        after.authorizer.operator_read(),
        "the other policy still does"
    );
    assert!(!after.management);
    refused(
        &mut s,
        6,
        StateCommand::AclTokenSet(token(20, "s20", &[app, ops])),
    );
    assert!(apply(
        &mut s,
        6,
        StateCommand::AclTokenSet(token(20, "s20", &[ops]))
    ));
}

#[test]
fn resolve_management_prefix_rules_unknown_and_anonymous() {
    let mut s = initialized(1);
    assert!(apply(
        &mut s,
        2,
        StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))
    ));
    assert!(apply(
        &mut s,
        3,
        StateCommand::AclTokenSet(token(20, "root", &[GLOBAL_MANAGEMENT_ID]))
    ));
    assert!(apply(
        &mut s,
        4,
        StateCommand::AclTokenSet(token(21, "app", &[Uuid::from_u128(10)]))
    ));

    let root = s.acl.resolve("root", DefaultPolicy::Deny).unwrap();
    assert!(root.management && root.accessor_id == Uuid::from_u128(20));
    let a = &root.authorizer;
    assert!(a.key_write_prefix("") && a.acl_write() && a.operator_write() && a.keyring_write());

    let app = s.acl.resolve("app", DefaultPolicy::Deny).unwrap();
    assert!(!app.management && app.accessor_id == Uuid::from_u128(21));
    let a = &app.authorizer;
    assert!(a.key_write("app/config") && a.key_read("app/config") && a.key_write_prefix("app/"));
    assert!(!a.key_write("other") && !a.key_read("other") && !a.key_write("ap"));
    assert!(!a.acl_read() && !a.operator_read());
    let lenient = s.acl.resolve("app", DefaultPolicy::Allow).unwrap();
    assert!(
        lenient.authorizer.key_write("other"),
        "the default decides outside app/"
    );

    assert_eq!(
        s.acl.resolve("no-such", DefaultPolicy::Allow).unwrap_err(),
        AclNotFound
    );
    assert_eq!(AclNotFound.to_string(), "ACL not found");
    assert!(s.acl.resolve("roo", DefaultPolicy::Allow).is_err());

    for (default, allowed) in [(DefaultPolicy::Deny, false), (DefaultPolicy::Allow, true)] {
        for acl in [&s.acl, &AclState::default()] {
            let anon = acl.resolve(ANONYMOUS_SECRET, default).unwrap();
            assert_eq!(anon.accessor_id, ANONYMOUS_ID);
            assert!(!anon.management);
            assert_eq!(anon.authorizer.key_read("app/x"), allowed);
            assert_eq!(anon.authorizer.operator_read(), allowed);
        }
    }
}

/// Rules a later parser refuses (here put in place by hand) deny everything rather than
/// being skipped, which could drop a deny.
#[test]
fn a_policy_whose_rules_no_longer_parse_denies_everything() {
    let mut s = initialized(1);
    assert!(apply(
        &mut s,
        2,
        StateCommand::AclTokenSet(token(20, "s20", &[]))
    ));
    let odd = policy(10, "odd", r#"kye_prefix "" { policy = "write" }"#);
    s.acl.policies.insert(odd.id, odd);
    s.acl.tokens.get_mut(&Uuid::from_u128(20)).unwrap().policies = vec![Uuid::from_u128(10)];
    let r = s.acl.resolve("s20", DefaultPolicy::Allow).unwrap();
    let a = &r.authorizer;
    assert!(!a.key_read("x") && !a.node_read("n") && !a.agent_read("n"));
    assert!(!a.operator_read() && !a.acl_read() && !a.keyring_read());
}

/// create_index and modify_index follow the entries' indexes; AclState.index is the highest
/// index that changed anything; refused commands and no-op deletes leave it; two replicas
/// fed the same entries end equal.
#[test]
fn indexes_follow_the_entries() {
    let entries = [
        (3, StateCommand::AclInit),
        (4, StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))),
        (
            5,
            StateCommand::AclTokenSet(token(20, "s20", &[Uuid::from_u128(10)])),
        ),
        (6, StateCommand::AclPolicySet(policy(11, "app", ""))), // refused: name taken
        (
            7,
            StateCommand::AclTokenSet(AclToken {
                create_time_ms: 5,
                ..token(20, "s20", &[])
            }),
        ),
        (8, StateCommand::AclPolicyDelete(Uuid::from_u128(99))), // nothing to delete
        (9, StateCommand::AclPolicySet(policy(10, "app", ""))),
        (10, StateCommand::AclTokenDelete(Uuid::from_u128(98))), // nothing to delete
    ];
    let replay = |upto: usize| {
        let mut s = State::default();
        for (index, cmd) in &entries[..upto] {
            apply(&mut s, *index, cmd.clone());
        }
        s
    };
    let s = replay(entries.len());
    assert_eq!(s, replay(entries.len()));
    let p = &s.acl.policies[&Uuid::from_u128(10)];
    assert_eq!((p.create_index, p.modify_index), (4, 9));
    let t = &s.acl.tokens[&Uuid::from_u128(20)];
    assert_eq!((t.create_index, t.modify_index), (5, 7));
    assert_eq!(t.create_time_ms, 1_700_000_000_020, "kept from the create");
    assert_eq!(replay(4).acl.index, 5, "a refused command moves nothing");
    assert_eq!(s.acl.index, 9);
    assert_eq!(
        (s.kv_index, s.catalog_index),
        (0, 0),
        "ACL entries touch only ACL state"
    );

    let mut s = s;
    assert!(apply(
        &mut s,
        11,
        StateCommand::AclTokenDelete(Uuid::from_u128(20))
    ));
    assert!(apply(
        &mut s,
        12,
        StateCommand::AclPolicyDelete(Uuid::from_u128(10))
    ));
    assert_eq!(s.acl.index, 12);
    assert!(s.acl.resolve("s20", DefaultPolicy::Allow).is_err());
}

/// An ACL policy with large rules weighs what its rules do, so the one-entry size limit
/// applies to it.
#[test]
fn acl_writes_weigh_their_text() {
    let big = policy(10, "big", &"#".repeat(2 << 20));
    assert!(crate::server::batch::weight(&StateCommand::AclPolicySet(big)) > 2 << 20);
    let t = token(20, &"s".repeat(200), &[Uuid::from_u128(1); 10]);
    assert!(crate::server::batch::weight(&StateCommand::AclTokenSet(t)) > 360);
}

/// The ACL commands follow every command that existed before them: old log entries read as
/// they were written.
#[test]
fn the_acl_commands_are_appended_to_the_encoding() {
    let tag = |c: &StateCommand| postcard::to_allocvec(c).unwrap()[0];
    assert_eq!(tag(&StateCommand::KvReapTombstones { upto: 1 }), 8);
    assert_eq!(tag(&StateCommand::AclInit), 9);
    let boot = StateCommand::AclBootstrap {
        token: token(1, "s", &[]),
    };
    assert_eq!(tag(&boot), 10);
    assert_eq!(tag(&StateCommand::AclPolicySet(policy(1, "p", ""))), 11);
    assert_eq!(tag(&StateCommand::AclPolicyDelete(Uuid::nil())), 12);
    assert_eq!(tag(&StateCommand::AclTokenSet(token(1, "s", &[]))), 13);
    assert_eq!(tag(&StateCommand::AclTokenDelete(Uuid::nil())), 14);
    // A UUID is its 16 bytes, length first (docs/state.md, "ACL state").
    let mut delete = vec![12, 16];
    delete.extend_from_slice(GLOBAL_MANAGEMENT_ID.as_bytes());
    assert_eq!(
        postcard::to_allocvec(&StateCommand::AclPolicyDelete(GLOBAL_MANAGEMENT_ID)).unwrap(),
        delete
    );
    for cmd in [
        boot,
        StateCommand::AclTokenSet(token(1, "s", &[GLOBAL_MANAGEMENT_ID])),
    ] {
        let bytes = postcard::to_allocvec(&cmd).unwrap();
        assert_eq!(postcard::from_bytes::<StateCommand>(&bytes).unwrap(), cmd);
    }
}

fn with_acl_state() -> State {
    let mut s = initialized(1);
    assert!(apply(
        &mut s,
        2,
        StateCommand::AclBootstrap {
            token: token(50, "boot", &[]),
        }
    ));
    assert!(apply(
        &mut s,
        3,
        StateCommand::AclPolicySet(policy(10, "app", APP_WRITE))
    ));
    assert!(apply(
        &mut s,
        4,
        StateCommand::AclTokenSet(token(20, "s20", &[Uuid::from_u128(10)]))
    ));
    assert!(apply(
        &mut s,
        5,
        StateCommand::KvSet {
            key: "app/x".into(),
            value: b"1".to_vec(),
            flags: 0,
            cas: None,
        }
    ));
    s
}

#[test]
fn snapshots_keep_the_acl_state() {
    let s = with_acl_state();
    let body = SnapshotBody {
        cluster_id: Some(Uuid::from_u128(7)),
        data: s.clone(),
    };
    let bytes = postcard::to_allocvec(&body).unwrap();
    let back = SnapshotBody::decode(&bytes).unwrap();
    assert_eq!(back, body);
    assert_eq!(back.data.acl.bootstrapped_at, Some(2));
    assert_eq!(
        back.data
            .acl
            .resolve("s20", DefaultPolicy::Deny)
            .unwrap()
            .accessor_id,
        Uuid::from_u128(20)
    );
}

/// [`State`] as snapshots wrote it before ACLs, field for field.
#[derive(Serialize)]
struct BeforeAcl<'a> {
    kv: &'a BTreeMap<String, KvEntry>,
    tombstones: &'a BTreeMap<String, u64>,
    kv_index: u64,
    catalog: &'a BTreeMap<String, CatalogNode>,
    catalog_index: u64,
    autopilot: &'a Option<(crate::server::autopilot::AutopilotConfig, u64)>,
    recent: &'a RecentWrites,
    restoring: &'a Option<Restoring>,
    reaped_index: u64,
}

#[derive(Serialize)]
struct BodyBeforeAcl<'a> {
    cluster_id: Option<Uuid>,
    data: BeforeAcl<'a>,
}

fn encode_before_acl(cluster_id: Option<Uuid>, s: &State) -> Vec<u8> {
    postcard::to_allocvec(&BodyBeforeAcl {
        cluster_id,
        data: BeforeAcl {
            kv: &s.kv,
            tombstones: &s.tombstones,
            kv_index: s.kv_index,
            catalog: &s.catalog,
            catalog_index: s.catalog_index,
            autopilot: &s.autopilot,
            recent: &s.recent,
            restoring: &s.restoring,
            reaped_index: s.reaped_index,
        },
    })
    .unwrap()
}

/// A body written before ACLs (a strict prefix of this version's) reads as the same state
/// with no ACL state, a restore under way and the reaped index included.
#[test]
fn a_snapshot_from_before_acls_reads_as_no_acl_state() {
    let mut s = with_acl_state();
    assert!(apply(
        &mut s,
        6,
        StateCommand::KvDelete {
            key: "app/x".into(),
            recurse: false,
            cas: None,
        }
    ));
    assert!(apply(&mut s, 7, StateCommand::KvReapTombstones { upto: 6 }));
    assert!(apply(
        &mut s,
        8,
        StateCommand::RestorePiece {
            id: Uuid::from_u128(3),
            offset: 0,
            bytes: b"half".to_vec(),
        }
    ));
    let bytes = postcard::to_allocvec(&SnapshotBody {
        cluster_id: Some(Uuid::from_u128(7)),
        data: s.clone(),
    })
    .unwrap();
    let old = encode_before_acl(Some(Uuid::from_u128(7)), &s);
    assert!(
        bytes.starts_with(&old),
        "the old body is a prefix of the new"
    );
    assert!(postcard::from_bytes::<SnapshotBody>(&old).is_err());

    let read = SnapshotBody::decode(&old).unwrap();
    assert_eq!(read.cluster_id, Some(Uuid::from_u128(7)));
    assert_eq!(
        read.data,
        State {
            acl: AclState::default(),
            ..s.clone()
        }
    );
    assert_eq!(read.data.reaped_index, 6);
    assert!(read.data.restoring.is_some());
}

/// An operator restore replaces the ACL state by the snapshot's (Consul's restore does), at
/// the restore's index; a snapshot from before ACLs leaves only the built-ins on a cluster
/// that had them, and bootstrap open again.
#[test]
fn a_restore_replaces_the_acl_state() {
    let mut other = initialized(1);
    assert!(apply(
        &mut other,
        2,
        StateCommand::AclTokenSet(token(30, "theirs", &[]))
    ));
    let snap = postcard::to_allocvec(&SnapshotBody {
        cluster_id: None,
        data: other.clone(),
    })
    .unwrap();

    let mut s = with_acl_state();
    assert!(apply(&mut s, 10, StateCommand::Restore(snap.clone())));
    assert_eq!(
        s.acl,
        AclState {
            index: 10,
            ..other.acl.clone()
        }
    );
    assert!(s.acl.resolve("s20", DefaultPolicy::Allow).is_err());
    assert!(s.acl.resolve("theirs", DefaultPolicy::Allow).is_ok());

    // The same through the pieces an agent sends.
    let mut s = with_acl_state();
    let id = Uuid::from_u128(4);
    let half = snap.len() / 2;
    for (index, offset, part) in [(11, 0, &snap[..half]), (12, half, &snap[half..])] {
        assert!(apply(
            &mut s,
            index,
            StateCommand::RestorePiece {
                id,
                offset: offset as u64,
                bytes: part.to_vec(),
            }
        ));
    }
    assert!(apply(
        &mut s,
        13,
        StateCommand::RestoreEnd {
            id,
            size: snap.len() as u64,
        }
    ));
    assert_eq!(
        s.acl,
        AclState {
            index: 13,
            ..other.acl
        }
    );

    // A snapshot from before ACLs: the built-ins only, at the restore's index.
    let mut s = with_acl_state();
    let old = encode_before_acl(None, &State::default());
    assert!(apply(&mut s, 14, StateCommand::Restore(old.clone())));
    let mut expected = AclState::default();
    expected.init(14);
    assert_eq!(s.acl, expected);
    assert_eq!(s.acl.bootstrapped_at, None);
    // On a cluster that never had ACLs, nothing is created.
    let mut plain = State::default();
    assert!(apply(&mut plain, 3, StateCommand::Restore(old)));
    assert!(plain.acl.policies.is_empty() && plain.acl.tokens.is_empty());
}
