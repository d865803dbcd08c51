//! The rule language and the authorizer, checked against Consul's documented examples and
//! rules (see the module docs of `policy` and `authorizer` for the facts relied on).

use super::*;

fn policy(rules: &str) -> Policy {
    match parse(rules) {
        Ok(p) => p,
        Err(e) => panic!("rules should parse: {e}\n{rules}"),
    }
}

fn error(rules: &str) -> String {
    match parse(rules) {
        Ok(p) => panic!("rules should be refused, parsed as {p:?}\n{rules}"),
        Err(e) => e.to_string(),
    }
}

fn authorizer(rules: &[&str], default: DefaultPolicy) -> Authorizer {
    let policies: Vec<Policy> = rules.iter().map(|r| policy(r)).collect();
    Authorizer::new(&policies, default, false)
}

/// Consul's classic example policy, in HCL.
const CLASSIC_HCL: &str = r#"
# the key/value store
key_prefix "" {
  policy = "read"
}
key_prefix "foo/" {
  policy = "write"
}
key_prefix "foo/private/" {
  policy = "deny"
}
# an exact key
key "foo/bar/secret" {
  policy = "deny"
}

operator = "read"
"#;

/// The same policy in the JSON form.
const CLASSIC_JSON: &str = r#"{
  "key_prefix": {
    "": { "policy": "read" },
    "foo/": { "policy": "write" },
    "foo/private/": { "policy": "deny" }
  },
  "key": {
    "foo/bar/secret": { "policy": "deny" }
  },
  "operator": "read"
}"#;

/// `(key, read, write, list)` under the classic policy; the default policy never decides a key
/// here, since `key_prefix ""` matches every key.
const CLASSIC_KEYS: &[(&str, bool, bool, bool)] = &[
    ("", true, false, true),
    ("other", true, false, true),
    ("fo", true, false, true),
    ("foo", true, false, true),
    ("foo/", true, true, true),
    ("foo/x", true, true, true),
    ("foo/bar/secret", false, false, false),
    ("foo/bar/secret2", true, true, true),
    ("foo/bar/secre", true, true, true),
    ("foo/private", true, true, true),
    ("foo/private/", false, false, false),
    ("foo/private/x/y", false, false, false),
];

#[test]
fn consuls_classic_example_with_either_default() {
    for default in [DefaultPolicy::Deny, DefaultPolicy::Allow] {
        for text in [CLASSIC_HCL, CLASSIC_JSON] {
            let a = authorizer(&[text], default);
            for &(key, read, write, list) in CLASSIC_KEYS {
                assert_eq!(a.key_read(key), read, "key_read({key:?}) {default:?}");
                assert_eq!(a.key_write(key), write, "key_write({key:?}) {default:?}");
                assert_eq!(a.key_list(key), list, "key_list({key:?}) {default:?}");
            }
            assert!(a.operator_read());
            assert!(!a.operator_write(), "read does not grant write");
            // No rule for these: the default decides.
            let allow = default == DefaultPolicy::Allow;
            assert_eq!(a.node_read("n1"), allow);
            assert_eq!(a.node_write("n1"), allow);
            assert_eq!(a.agent_read("n1"), allow);
            assert_eq!(a.agent_write("n1"), allow);
            assert_eq!(a.acl_read(), allow);
            assert_eq!(a.acl_write(), allow);
            assert_eq!(a.keyring_read(), allow);
            assert_eq!(a.keyring_write(), allow);
            // A recursive delete of foo/ would reach foo/private/ and foo/bar/secret.
            assert!(!a.key_write_prefix("foo/"));
            assert!(a.key_write_prefix("foo/public/"));
            assert!(!a.key_write_prefix(""), "key_prefix \"\" is read only");
        }
    }
}

#[test]
fn hcl_and_json_forms_parse_to_the_same_rules() {
    let (hcl, json) = (policy(CLASSIC_HCL), policy(CLASSIC_JSON));
    let sorted = |p: &Policy| {
        let mut rules: Vec<String> = p.rules.iter().map(|r| r.to_string()).collect();
        rules.sort();
        rules
    };
    assert_eq!(sorted(&hcl), sorted(&json));
    assert_eq!(
        sorted(&hcl),
        vec![
            "key \"foo/bar/secret\" = deny",
            "key_prefix \"\" = read",
            "key_prefix \"foo/\" = write",
            "key_prefix \"foo/private/\" = deny",
            "operator = read",
        ]
    );
    assert!(hcl.ignored.is_empty() && json.ignored.is_empty());
}

#[test]
fn no_rule_means_the_default_policy() {
    let empty = authorizer(&[""], DefaultPolicy::Deny);
    assert!(!empty.key_read("a") && !empty.key_list("") && !empty.operator_read());
    assert!(!empty.key_write_prefix("a/"));
    let empty = authorizer(&["{}"], DefaultPolicy::Allow);
    assert!(empty.key_write("a") && empty.node_write("n") && empty.keyring_write());
    assert!(empty.key_write_prefix("a/"));
}

#[test]
fn management_allows_everything() {
    let deny_all = policy(
        r#"key_prefix "" { policy = "deny" }
           node_prefix "" { policy = "deny" }
           operator = "deny"
           acl = "deny""#,
    );
    let a = Authorizer::new([&deny_all], DefaultPolicy::Deny, true);
    assert!(a.key_read("x") && a.key_write("x") && a.key_list("") && a.key_write_prefix(""));
    assert!(a.node_write("n") && a.agent_write("n") && a.operator_write() && a.acl_write());
    assert!(a.keyring_write());
    let m = Authorizer::management();
    assert!(m.key_write_prefix("") && m.acl_write() && m.agent_read("x"));
}

#[test]
fn write_implies_read_and_list_read_does_not_imply_write_deny_denies_both() {
    let a = authorizer(
        &[r#"
        key_prefix "w/" { policy = "write" }
        key_prefix "r/" { policy = "read" }
        key_prefix "d/" { policy = "deny" }
        key_prefix "l/" { policy = "list" }
        "#],
        DefaultPolicy::Allow,
    );
    assert!(a.key_read("w/a") && a.key_write("w/a") && a.key_list("w/"));
    assert!(a.key_read("r/a") && !a.key_write("r/a") && a.key_list("r/"));
    assert!(!a.key_read("d/a") && !a.key_write("d/a") && !a.key_list("d/"));
    // list: the keys under the prefix, not their values.
    assert!(a.key_list("l/") && a.key_list("l/sub/"));
    assert!(!a.key_read("l/a") && !a.key_write("l/a"));
}

#[test]
fn unsegmented_resources() {
    let a = authorizer(
        &[r#"acl = "write"
             keyring = "deny"
             operator = "read""#],
        DefaultPolicy::Allow,
    );
    assert!(a.acl_read() && a.acl_write());
    assert!(!a.keyring_read() && !a.keyring_write());
    assert!(a.operator_read() && !a.operator_write());
}

#[test]
fn nodes_and_agents_follow_the_same_precedence() {
    let a = authorizer(
        &[r#"
        node_prefix "" { policy = "read" }
        node "web-1" { policy = "write" }
        agent_prefix "db-" { policy = "write" }
        agent "db-9" { policy = "deny" }
        "#],
        DefaultPolicy::Deny,
    );
    assert!(a.node_write("web-1") && a.node_read("web-1"));
    assert!(!a.node_write("web-2") && a.node_read("web-2"));
    assert!(
        !a.node_write("web-10"),
        "an exact rule does not cover longer names"
    );
    assert!(a.agent_write("db-1") && a.agent_read("db-"));
    assert!(!a.agent_read("db-9") && a.agent_write("db-90"));
    assert!(!a.agent_read("web-1"), "the default decides");
    // Rules of one resource never answer for another.
    assert!(!a.key_read("web-1"));
}

#[test]
fn exact_beats_prefix_in_both_directions() {
    // A grant on an exact key inside a denied prefix.
    let a = authorizer(
        &[r#"key_prefix "a" { policy = "deny" }
             key "a/b" { policy = "write" }"#],
        DefaultPolicy::Allow,
    );
    assert!(a.key_write("a/b") && a.key_read("a/b"));
    assert!(!a.key_read("a/bc") && !a.key_read("a/b/c") && !a.key_read("a"));
    // A denial on an exact key inside a writable prefix.
    let b = authorizer(
        &[r#"key_prefix "a" { policy = "write" }
             key "a/b" { policy = "deny" }"#],
        DefaultPolicy::Deny,
    );
    assert!(!b.key_read("a/b") && !b.key_write("a/b"));
    assert!(b.key_write("a/b/c") && b.key_write("a/bc") && b.key_write("a"));
    // The same, with the exact rule and the prefix rule in different policies: merging joins
    // only rules of the same kind, so the exact rule still decides its key.
    let c = authorizer(
        &[
            r#"key_prefix "a" { policy = "deny" }"#,
            r#"key "a/b" { policy = "read" }"#,
        ],
        DefaultPolicy::Deny,
    );
    assert!(c.key_read("a/b") && !c.key_write("a/b") && !c.key_read("a/c"));
    // An exact rule and a prefix rule on the very same string are different rules.
    let d = authorizer(
        &[r#"key "x" { policy = "deny" }
             key_prefix "x" { policy = "write" }"#],
        DefaultPolicy::Deny,
    );
    assert!(!d.key_read("x") && d.key_write("xy") && d.key_write("x/"));
}

#[test]
fn merging_policies_on_the_same_segment() {
    let merged = |first: &str, second: &str| {
        let a = authorizer(
            &[
                &format!(r#"key_prefix "app/" {{ policy = "{first}" }}"#),
                &format!(r#"key_prefix "app/" {{ policy = "{second}" }}"#),
            ],
            DefaultPolicy::Allow,
        );
        (
            a.key_list("app/"),
            a.key_read("app/x"),
            a.key_write("app/x"),
        )
    };
    // (list, read, write) whichever order the policies come in.
    let cases = [
        ("write", "deny", (false, false, false)),
        ("read", "deny", (false, false, false)),
        ("list", "deny", (false, false, false)),
        ("read", "write", (true, true, true)),
        ("list", "write", (true, true, true)),
        ("list", "read", (true, true, false)),
        ("list", "list", (true, false, false)),
    ];
    for (first, second, expected) in cases {
        assert_eq!(merged(first, second), expected, "{first} + {second}");
        assert_eq!(merged(second, first), expected, "{second} + {first}");
    }
    // Unsegmented resources merge the same way.
    let a = authorizer(
        &[r#"operator = "write""#, r#"operator = "deny""#],
        DefaultPolicy::Allow,
    );
    assert!(!a.operator_read());
    let a = authorizer(
        &[r#"acl = "read""#, r#"acl = "write""#],
        DefaultPolicy::Deny,
    );
    assert!(a.acl_write());
    // Within one policy, a repeated rule merges too.
    let a = authorizer(
        &[r#"key "k" { policy = "write" }
             key "k" { policy = "deny" }"#],
        DefaultPolicy::Allow,
    );
    assert!(!a.key_read("k"));
}

#[test]
fn a_longer_prefix_in_another_policy_still_wins_by_length() {
    let a = authorizer(
        &[
            r#"key_prefix "app/" { policy = "deny" }"#,
            r#"key_prefix "app/public/" { policy = "write" }"#,
        ],
        DefaultPolicy::Deny,
    );
    assert!(a.key_write("app/public/x") && a.key_read("app/public/"));
    assert!(!a.key_read("app/x") && !a.key_read("app/public"));
    let b = authorizer(
        &[
            r#"key_prefix "app/" { policy = "write" }"#,
            r#"key_prefix "app/secret/" { policy = "deny" }"#,
        ],
        DefaultPolicy::Allow,
    );
    assert!(b.key_write("app/x") && !b.key_read("app/secret/x"));
}

#[test]
fn key_write_prefix_needs_write_all_the_way_down() {
    let a = authorizer(
        &[r#"
        key_prefix "app/" { policy = "write" }
        key_prefix "app/secret/" { policy = "deny" }
        key "app/pinned" { policy = "read" }
        key "app/free" { policy = "write" }
        "#],
        DefaultPolicy::Deny,
    );
    // Each key alone may be written, except the ones the rules underneath protect...
    assert!(a.key_write("app/x") && !a.key_write("app/pinned"));
    // ...so the whole prefix may not be, nor any prefix reaching a protected rule.
    assert!(!a.key_write_prefix("app/"));
    assert!(!a.key_write_prefix("app/s"), "reaches app/secret/");
    assert!(
        !a.key_write_prefix("app/pin"),
        "reaches the exact key app/pinned"
    );
    assert!(!a.key_write_prefix("app/secret/inner/"));
    // A prefix clear of them is fine, and a write rule underneath never hurts.
    assert!(a.key_write_prefix("app/other/"));
    assert!(a.key_write_prefix("app/fr"));
    assert!(
        a.key_write_prefix("app/pinned/"),
        "the exact rule does not cover longer keys"
    );
    // No covering prefix rule: the default decides, unless a rule underneath refuses.
    assert!(!a.key_write_prefix("elsewhere/"));
    let allow = authorizer(
        &[r#"key_prefix "x/locked/" { policy = "read" }"#],
        DefaultPolicy::Allow,
    );
    assert!(allow.key_write_prefix("y/"));
    assert!(!allow.key_write_prefix("x/"));
    assert!(!allow.key_write_prefix(""));
    // A covering rule that is only read refuses, whatever the default.
    let read = authorizer(
        &[r#"key_prefix "" { policy = "read" }"#],
        DefaultPolicy::Allow,
    );
    assert!(!read.key_write_prefix("z/"));
    // Deny in another policy counts as well.
    let two = authorizer(
        &[
            r#"key_prefix "" { policy = "write" }"#,
            r#"key "a/b" { policy = "deny" }"#,
        ],
        DefaultPolicy::Deny,
    );
    assert!(two.key_write_prefix("b/") && !two.key_write_prefix("a/"));
    assert!(!two.key_write_prefix(""));
}

#[test]
fn permission_denied_in_consuls_words() {
    let id = "b1e5ad2e-6c4f-4a3a-9f0e-3c3f1c1a2b3d";
    assert_eq!(
        permission_denied(id, Resource::Key, AccessLevel::Write, "foo"),
        "Permission denied: token with AccessorID 'b1e5ad2e-6c4f-4a3a-9f0e-3c3f1c1a2b3d' lacks permission 'key:write' on \"foo\""
    );
    assert_eq!(
        permission_denied(id, Resource::Node, AccessLevel::Read, ""),
        format!(
            "Permission denied: token with AccessorID '{id}' lacks permission 'node:read' on \"\""
        )
    );
    assert_eq!(
        permission_denied(
            "anonymous",
            Resource::Operator,
            AccessLevel::Read,
            "ignored"
        ),
        "Permission denied: token with AccessorID 'anonymous' lacks permission 'operator:read'"
    );
    assert_eq!(
        permission_denied("a", Resource::Key, AccessLevel::List, "say \"hi\"\n"),
        "Permission denied: token with AccessorID 'a' lacks permission 'key:list' on \"say \\\"hi\\\"\\n\""
    );
}

#[test]
fn parse_errors_name_the_culprit_and_the_fix() {
    let cases: &[(&str, &str)] = &[
        (
            r#"key_prefix "app/" { policy = "writ" }"#,
            r#"key_prefix "app/": policy "writ" is not one of read, write, deny, list"#,
        ),
        (
            r#"node "web" { policy = "Read" }"#,
            r#"node "web": policy "Read" is not one of read, write, deny"#,
        ),
        (
            r#"operator = "writ""#,
            r#"operator: policy "writ" is not one of read, write, deny"#,
        ),
        (
            r#"operator = "list""#,
            r#"operator: policy "list" is not one of read, write, deny"#,
        ),
        (
            r#"key "app" { policy = "list" }"#,
            r#"key "app": policy "list" is allowed only on key_prefix rules; use read, or write key_prefix "app" { policy = "list" }"#,
        ),
        (
            r#"node_prefix "" { policy = "list" }"#,
            r#"node_prefix "": policy "list" is allowed only on key_prefix rules; use read"#,
        ),
        (
            r#"key_prefix = "write""#,
            r#"key_prefix needs a segment: write key_prefix "<name>" { policy = "read" }"#,
        ),
        (
            r#"agent { policy = "write" }"#,
            r#"agent needs a segment: write agent "<name>" { policy = "read" }"#,
        ),
        (
            r#"operator "x" { policy = "read" }"#,
            r#"operator takes no segment: write operator = "read" (or write, deny)"#,
        ),
        (
            r#"{"keyring": {"x": {"policy": "read"}}}"#,
            r#"keyring takes no segment: write keyring = "read" (or write, deny)"#,
        ),
        (
            r#"key "a" { }"#,
            r#"key "a": no policy; write key "a" { policy = "read" } (or write, deny)"#,
        ),
        (
            r#"key_prefix "a" { }"#,
            r#"key_prefix "a": no policy; write key_prefix "a" { policy = "read" } (or write, deny, list)"#,
        ),
        (
            r#"key "a" { policy = read }"#,
            r#"key "a": policy must be a quoted string such as "read", not an unquoted word"#,
        ),
        (
            r#"{"acl": 1}"#,
            r#"acl: the disposition must be a quoted string such as "read", not a number"#,
        ),
        (
            r#"key "a" { polcy = "read" }"#,
            r#"key "a": unknown field "polcy"; a rule holds only policy = "<disposition>""#,
        ),
        (
            r#"{"key": {"a": "read"}}"#,
            r#"key "a": must hold a rule body such as { policy = "read" }, not a string"#,
        ),
        (
            r#"{"node_prefix": true}"#,
            r#"node_prefix: must hold a rule body such as { policy = "read" }, not a bool"#,
        ),
    ];
    for (rules, expected) in cases {
        assert_eq!(&error(rules), expected, "for {rules}");
    }
    let unknown = error(r#"kye_prefix "a" { policy = "read" }"#);
    assert!(
        unknown.starts_with(r#"unknown resource "kye_prefix"; muster enforces key, key_prefix"#),
        "{unknown}"
    );
    assert!(
        unknown.ends_with("service, service_prefix, session, session_prefix, event, event_prefix, query, query_prefix, identity, identity_prefix, mesh, peering, namespace, namespace_prefix, partition, partition_prefix"),
        "{unknown}"
    );
    let syntax = error(r#"key_prefix "a" { policy = "read" "#);
    assert!(
        syntax.starts_with("the rules are not valid HCL: "),
        "{syntax}"
    );
    let syntax = error(r#"{"key_prefix": {"a": {"policy": "read"}}"#);
    assert!(
        syntax.starts_with("the rules are not valid JSON: "),
        "{syntax}"
    );
    assert!(error("{} trailing").starts_with("the rules are not valid JSON"));
    let deep = "[".repeat(100_000);
    assert_eq!(
        error(&deep),
        "the rules are nested more than 32 levels deep; a policy needs three at most"
    );
    assert!(error(&format!("{{{}", "{".repeat(50))).contains("nested more than"));
}

#[test]
fn consul_resources_muster_does_not_enforce_are_listed_not_refused() {
    let hcl = policy(
        r#"
        key_prefix "app/" {
          policy = "write"
          sentinel {
            code = "main = rule { true }"
            enforcementlevel = "soft-mandatory"
          }
        }
        service "web" { policy = "write" }
        service_prefix "" {
          policy = "read"
          intentions = "read"
        }
        session_prefix "" { policy = "write" }
        event_prefix "" { policy = "read" }
        query_prefix "" { policy = "read" }
        identity_prefix "" { policy = "read" }
        mesh = "write"
        peering = "read"
        namespace "team" {
          key_prefix "" { policy = "write" }
        }
        partition "p1" {
          mesh = "write"
        }
        "#,
    );
    let ignored: Vec<String> = hcl.ignored.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        ignored,
        vec![
            r#"key_prefix "app/" sentinel"#,
            r#"service "web""#,
            r#"service_prefix """#,
            r#"session_prefix """#,
            r#"event_prefix """#,
            r#"query_prefix """#,
            r#"identity_prefix """#,
            "mesh",
            "peering",
            r#"namespace "team""#,
            r#"partition "p1""#,
        ]
    );
    assert_eq!(hcl.rules.len(), 1, "{:?}", hcl.rules);
    // Nothing inside an ignored rule grants anything: the namespace's key_prefix "" write is
    // not applied.
    let a = Authorizer::new([&hcl], DefaultPolicy::Deny, false);
    assert!(a.key_write("app/x") && !a.key_read("other"));

    let json = policy(
        r#"{"service_prefix": {"": {"policy": "read"}, "api": {"policy": "write"}},
            "mesh": "read",
            "key": {"k": {"policy": "read"}}}"#,
    );
    let mut ignored: Vec<String> = json.ignored.iter().map(|i| i.to_string()).collect();
    ignored.sort();
    assert_eq!(
        ignored,
        vec!["mesh", r#"service_prefix """#, r#"service_prefix "api""#]
    );
    assert_eq!(json.rules.len(), 1);
}

#[test]
fn repeated_blocks_and_json_lists_of_blocks() {
    let hcl = policy(
        r#"key_prefix "a/" { policy = "read" }
           key_prefix "b/" { policy = "write" }"#,
    );
    let json =
        policy(r#"{"key_prefix": [{"a/": {"policy": "read"}}, {"b/": {"policy": "write"}}]}"#);
    assert_eq!(hcl, json);
    // The HCL object form of the same rules reads the same.
    let object =
        policy(r#"key_prefix = { "a/" = { policy = "read" }, "b/" = { policy = "write" } }"#);
    assert_eq!(hcl, object);
}

#[test]
fn segments_with_multibyte_characters() {
    let a = authorizer(
        &[r#"key_prefix "é" { policy = "write" }
             key_prefix "日本/" { policy = "deny" }"#],
        DefaultPolicy::Allow,
    );
    assert!(a.key_write("été") && a.key_write("é"));
    assert!(!a.key_read("日本/x") && a.key_read("日本") && a.key_read("日"));
    assert!(a.key_write_prefix("ét") && !a.key_write_prefix("日"));
}

#[test]
fn every_segmented_resource_and_disposition_in_both_forms() {
    let resources = [
        ("key", Resource::Key),
        ("key_prefix", Resource::Key),
        ("node", Resource::Node),
        ("node_prefix", Resource::Node),
        ("agent", Resource::Agent),
        ("agent_prefix", Resource::Agent),
    ];
    let words = ["list", "read", "write", "deny", "writ", ""];
    for (name, resource) in resources {
        for word in words {
            let hcl = format!(r#"{name} "s/" {{ policy = "{word}" }}"#);
            let json = format!(r#"{{"{name}": {{"s/": {{"policy": "{word}"}}}}}}"#);
            let valid = matches!(word, "read" | "write" | "deny")
                || (word == "list" && name == "key_prefix");
            for text in [&hcl, &json] {
                match parse(text) {
                    Ok(p) => {
                        assert!(valid, "{text} should be refused");
                        let a = Authorizer::new([&p], DefaultPolicy::Allow, false);
                        let (list, read, write) = match word {
                            "list" => (true, false, false),
                            "read" => (true, true, false),
                            "write" => (true, true, true),
                            _ => (false, false, false),
                        };
                        assert_eq!(a.allowed(resource, AccessLevel::List, "s/"), list, "{text}");
                        assert_eq!(a.allowed(resource, AccessLevel::Read, "s/"), read, "{text}");
                        assert_eq!(
                            a.allowed(resource, AccessLevel::Write, "s/"),
                            write,
                            "{text}"
                        );
                        // The prefix form covers longer names, the exact form does not.
                        let covers = name.ends_with("_prefix");
                        assert_eq!(
                            a.allowed(resource, AccessLevel::Write, "s/x"),
                            !covers || write,
                            "{text}"
                        );
                    }
                    Err(e) => {
                        assert!(!valid, "{text} should parse: {e}");
                        let message = e.to_string();
                        assert!(
                            message.starts_with(&format!(r#"{name} "s/": policy "{word}""#)),
                            "{message}"
                        );
                    }
                }
            }
        }
    }
}

/// A small deterministic generator (xorshift), so the garbage below is the same on every run.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A string of policy-ish pieces and stray characters.
    fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "key_prefix",
            "key",
            "node",
            "agent_prefix",
            "operator",
            "acl",
            "service",
            "mesh",
            "policy",
            "=",
            "\"",
            "\"\"",
            "\"read\"",
            "\"write\"",
            "\"deny\"",
            "\"list\"",
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            " ",
            "\n",
            "#",
            "//",
            "/*",
            "*/",
            "${",
            "<<EOF\n",
            "\nEOF\n",
            "1",
            "true",
            "null",
            "é",
            "\u{0}",
            "\\",
            "sentinel",
            "namespace",
        ];
        let len = (self.next() % 24) as usize;
        (0..len)
            .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
            .collect()
    }
}

#[test]
fn garbage_never_panics() {
    let fixed = [
        "",
        " ",
        "{",
        "}",
        "{{",
        "[",
        "\"",
        "=",
        "key",
        "key \"",
        "key \"a\"",
        "key \"a\" {",
        "key \"a\" { policy",
        "key \"a\" { policy = ",
        "operator =",
        "operator = \"",
        "{\"key\":",
        "{\"key\": []}",
        "{\"key\": [1]}",
        "{\"key\": {\"\": {}}}",
        "{\"key\": null}",
        "{\"\": \"\"}",
        "\u{feff}{}",
        "key \"a\" \"b\" { policy = \"read\" }",
        "key \"a\" { policy = [\"read\"] }",
        "key \"a\" { policy = \"${x}\" }",
        "key \"a\" { policy = <<EOF\nread\nEOF\n }",
        "operator = upper(\"read\")",
        "key_prefix \"\" { policy = \"read\" } garbage",
        "\u{0}\u{1}\u{2}",
    ];
    let mut generated = Garbage(0x9e37_79b9_7f4a_7c15);
    let texts: Vec<String> = fixed
        .iter()
        .map(|s| s.to_string())
        .chain((0..3000).map(|_| generated.text()))
        .collect();
    let mut parsed = 0;
    for text in &texts {
        if let Ok(p) = parse(text) {
            parsed += 1;
            // Whatever parsed must also be usable.
            let a = Authorizer::new([&p], DefaultPolicy::Deny, false);
            for q in ["", "a", "é", "key"] {
                let _ = (a.key_read(q), a.key_write_prefix(q), a.node_write(q));
            }
        }
    }
    assert!(
        parsed > 0,
        "some of the generated text should parse (the empty one at least)"
    );
}

/// The one way servers and client agents build a token's authorizer from rule texts.
#[test]
fn from_rules_denies_everything_for_rules_that_do_not_parse_and_allows_all_to_management() {
    let rules = vec![
        r#"key_prefix "" { policy = "write" }"#.to_string(),
        "this is not a policy".to_string(),
    ];
    let a = Authorizer::from_rules(&rules, DefaultPolicy::Allow, false);
    // The broken policy's deny wins over the other's write, and over the default allow.
    assert!(!a.key_write("x") && !a.key_read("x") && !a.operator_read());
    let m = Authorizer::from_rules(&rules, DefaultPolicy::Deny, true);
    assert!(m.key_write("x") && m.acl_write());
    let none = Authorizer::from_rules(&[], DefaultPolicy::Deny, false);
    assert!(!none.key_read("x"));
}
