//! Parsing one policy's rules: Consul's rule language, written in HCL or in JSON, into a
//! [`Policy`] (the rules muster enforces) plus the rules it accepts but ignores.
//!
//! Consul's documented rule shape: a segmented resource names a segment and holds a `policy`
//! (`key_prefix "app/" { policy = "write" }`); an unsegmented one (`operator`, `acl`, `keyring`)
//! takes its disposition directly (`operator = "read"`). The JSON form nests the segment as an
//! object key (`{"key_prefix": {"app/": {"policy": "write"}}}`). Both forms are first turned into
//! one small tree (`Node`) so one interpreter reads them and both give the same answers.

use std::fmt;

/// What a rule grants. Consul's documented dispositions: `read`, `write`, `deny`, and `list`
/// (only on `key_prefix`: list the keys under the prefix without reading their values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    List,
    Read,
    Write,
    Deny,
}

impl Disposition {
    /// The word in the rule language.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::List => "list",
            Disposition::Read => "read",
            Disposition::Write => "write",
            Disposition::Deny => "deny",
        }
    }

    /// Which of two rules for the same resource and segment wins when policies are merged.
    /// Consul's documented precedence: deny over write, write over read, read over list.
    pub(crate) fn merge_rank(self) -> u8 {
        match self {
            Disposition::List => 0,
            Disposition::Read => 1,
            Disposition::Write => 2,
            Disposition::Deny => 3,
        }
    }

    /// The stronger of two rules for the same segment (see `Disposition::merge_rank`).
    pub fn merge(self, other: Disposition) -> Disposition {
        if other.merge_rank() > self.merge_rank() {
            other
        } else {
            self
        }
    }

    fn parse(word: &str) -> Option<Disposition> {
        match word {
            "list" => Some(Disposition::List),
            "read" => Some(Disposition::Read),
            "write" => Some(Disposition::Write),
            "deny" => Some(Disposition::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resources muster enforces. `key`, `node` and `agent` are segmented (each has an exact
/// and a `_prefix` form); `operator`, `acl` and `keyring` are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Key,
    Node,
    Agent,
    Operator,
    Acl,
    Keyring,
}

impl Resource {
    /// The resource's name in the rule language and in Consul's permission words (`key:write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Key => "key",
            Resource::Node => "node",
            Resource::Agent => "agent",
            Resource::Operator => "operator",
            Resource::Acl => "acl",
            Resource::Keyring => "keyring",
        }
    }

    /// Whether rules for this resource name a segment.
    pub fn is_segmented(self) -> bool {
        matches!(self, Resource::Key | Resource::Node | Resource::Agent)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `key "foo"`: only the name `foo`.
    Exact(String),
    /// `key_prefix "foo"`: every name starting with `foo` (`""` matches everything).
    Prefix(String),
    /// `operator = "read"`: the whole resource.
    Whole,
}

/// One enforced rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub resource: Resource,
    pub scope: Scope,
    pub disposition: Disposition,
}

impl fmt::Display for Rule {
    /// As the rule is written: `key_prefix "app/" = write`, `operator = read`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Exact(s) => write!(f, "{} {:?} = {}", self.resource, s, self.disposition),
            Scope::Prefix(s) => {
                write!(f, "{}_prefix {:?} = {}", self.resource, s, self.disposition)
            }
            Scope::Whole => write!(f, "{} = {}", self.resource, self.disposition),
        }
    }
}

/// A rule muster accepted but does not enforce: a Consul resource muster does not implement
/// (`service "web"`, `session_prefix ""`, `mesh`, …) or a Consul Enterprise part of a rule it
/// does implement (`sentinel`). The caller warns about these; they grant nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredRule {
    /// The resource as written (`service_prefix`), or for a part of a rule, the rule and the part
    /// (`key_prefix "app/" sentinel`).
    pub resource: String,
    /// The segment, for a segmented resource.
    pub segment: Option<String>,
}

impl fmt::Display for IgnoredRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.segment {
            Some(s) => write!(f, "{} {:?}", self.resource, s),
            None => f.write_str(&self.resource),
        }
    }
}

/// One parsed policy: the rules muster enforces, in the order written, and the ones it ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub ignored: Vec<IgnoredRule>,
}

/// Why a policy's rules cannot be used. Each message names the culprit (the resource and, when
/// it has one, the segment) and says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the rules are not valid {format}: {detail}")]
    Syntax {
        format: &'static str,
        detail: String,
    },
    #[error("the rules are nested more than {limit} levels deep; a policy needs three at most")]
    TooDeep { limit: usize },
    #[error("the JSON rules must be an object such as {{\"key_prefix\": {{\"app/\": {{\"policy\": \"read\"}}}}}}, not {found}")]
    NotAnObject { found: &'static str },
    #[error("{rule}: policy {value:?} is not one of {allowed}")]
    UnknownDisposition {
        rule: String,
        value: String,
        allowed: &'static str,
    },
    #[error("{rule}: policy \"list\" is allowed only on key_prefix rules; {fix}")]
    ListOutsideKeyPrefix { rule: String, fix: String },
    #[error("{rule}: no policy; write {rule} {{ policy = \"read\" }} (or write, deny{list})")]
    MissingPolicy { rule: String, list: &'static str },
    #[error("{rule}: {what} must be a quoted string such as \"read\", not {found}")]
    NotAString {
        rule: String,
        what: &'static str,
        found: &'static str,
    },
    #[error("{resource} needs a segment: write {resource} \"<name>\" {{ policy = \"read\" }}")]
    MissingSegment { resource: String },
    #[error("{rule}: must hold a rule body such as {{ policy = \"read\" }}, not {found}")]
    NotABody { rule: String, found: &'static str },
    #[error("{resource} takes no segment: write {resource} = \"read\" (or write, deny)")]
    UnexpectedSegment { resource: String },
    #[error("{rule}: unknown field {field:?}; a rule holds only policy = \"<disposition>\"")]
    UnknownField { rule: String, field: String },
    #[error("unknown resource {resource:?}; muster enforces key, key_prefix, node, node_prefix, agent, agent_prefix, operator, acl, keyring and accepts (ignoring) Consul's other resources: {ignored}")]
    UnknownResource { resource: String, ignored: String },
}

/// How a resource name in the rules is handled.
enum Known {
    Segmented(Resource, bool),
    Unsegmented(Resource),
    Ignored,
}

/// Consul resources muster accepts and ignores: they exist in Consul's rule language but muster
/// has no service catalog, sessions, events, prepared queries, mesh, peering or Enterprise
/// namespaces and partitions to guard.
const IGNORED_RESOURCES: &[&str] = &[
    "service",
    "service_prefix",
    "session",
    "session_prefix",
    "event",
    "event_prefix",
    "query",
    "query_prefix",
    "identity",
    "identity_prefix",
    "mesh",
    "peering",
    "namespace",
    "namespace_prefix",
    "partition",
    "partition_prefix",
];

fn known(name: &str) -> Option<Known> {
    Some(match name {
        "key" => Known::Segmented(Resource::Key, false),
        "key_prefix" => Known::Segmented(Resource::Key, true),
        "node" => Known::Segmented(Resource::Node, false),
        "node_prefix" => Known::Segmented(Resource::Node, true),
        "agent" => Known::Segmented(Resource::Agent, false),
        "agent_prefix" => Known::Segmented(Resource::Agent, true),
        "operator" => Known::Unsegmented(Resource::Operator),
        "acl" => Known::Unsegmented(Resource::Acl),
        "keyring" => Known::Unsegmented(Resource::Keyring),
        n if IGNORED_RESOURCES.contains(&n) => Known::Ignored,
        _ => return None,
    })
}

/// Deeper nesting than this is refused before either parser sees it: a policy nests three
/// levels (resource, segment, body), and a parser's recursion must not be driven by input.
const MAX_DEPTH: usize = 32;

/// Parses one policy's rules. Text starting with `{` (after white space) is read as JSON, any
/// other text as HCL, the two forms Consul accepts for a policy's `Rules`.
pub fn parse(rules: &str) -> Result<Policy, PolicyError> {
    check_depth(rules)?;
    let entries = if rules.trim_start().starts_with('{') {
        from_json(rules)?
    } else {
        from_hcl(rules)?
    };
    let mut policy = Policy::default();
    for (name, node) in entries {
        interpret(&name, node, &mut policy)?;
    }
    Ok(policy)
}

/// Counts bracket nesting (strings included, which can only over-count) and refuses text nested
/// deeper than [`MAX_DEPTH`].
fn check_depth(text: &str) -> Result<(), PolicyError> {
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '{' | '[' | '(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PolicyError::TooDeep { limit: MAX_DEPTH });
                }
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Both rule forms, reduced to what the interpreter needs.
#[derive(Debug)]
enum Node {
    Text(String),
    /// An object or a block body: its entries in order (repeated names kept).
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
    /// Anything else (a number, a bool, an HCL expression): named for error messages.
    Other(&'static str),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Text(_) => "a string",
            Node::Map(_) => "a block",
            Node::List(_) => "a list",
            Node::Other(kind) => kind,
        }
    }
}

fn from_json(text: &str) -> Result<Vec<(String, Node)>, PolicyError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| PolicyError::Syntax {
        format: "JSON",
        detail: e.to_string(),
    })?;
    match json_node(value) {
        Node::Map(entries) => Ok(entries),
        other => Err(PolicyError::NotAnObject {
            found: other.kind(),
        }),
    }
}

fn json_node(value: serde_json::Value) -> Node {
    use serde_json::Value;
    match value {
        Value::String(s) => Node::Text(s),
        Value::Object(map) => Node::Map(map.into_iter().map(|(k, v)| (k, json_node(v))).collect()),
        Value::Array(items) => Node::List(items.into_iter().map(json_node).collect()),
        Value::Null => Node::Other("null"),
        Value::Bool(_) => Node::Other("a bool"),
        Value::Number(_) => Node::Other("a number"),
    }
}

fn from_hcl(text: &str) -> Result<Vec<(String, Node)>, PolicyError> {
    let body = hcl::parse(text).map_err(|e| PolicyError::Syntax {
        format: "HCL",
        detail: e.to_string(),
    })?;
    Ok(hcl_body(body))
}

/// A block body's attributes and blocks as map entries. A block `name "a" "b" { … }` becomes
/// `name = { a = { b = { … } } }`, the same nesting as the JSON form.
fn hcl_body(body: hcl::Body) -> Vec<(String, Node)> {
    body.into_inner()
        .into_iter()
        .map(|structure| match structure {
            hcl::Structure::Attribute(attr) => (attr.key.into_inner(), hcl_expr(attr.expr)),
            hcl::Structure::Block(block) => {
                let mut node = Node::Map(hcl_body(block.body));
                for label in block.labels.into_iter().rev() {
                    node = Node::Map(vec![(label.into_inner(), node)]);
                }
                (block.identifier.into_inner(), node)
            }
        })
        .collect()
}

fn hcl_expr(expr: hcl::Expression) -> Node {
    use hcl::{Expression, ObjectKey};
    match expr {
        Expression::String(s) => Node::Text(s),
        // Interpolations (`"${x}"`) and heredocs: no policy needs them.
        Expression::TemplateExpr(_) => Node::Other("a template"),
        Expression::Object(object) => Node::Map(
            object
                .into_iter()
                .map(|(key, value)| {
                    let key = match key {
                        ObjectKey::Identifier(id) => id.into_inner(),
                        ObjectKey::Expression(Expression::String(s)) => s,
                        _ => "<expression>".to_string(),
                    };
                    (key, hcl_expr(value))
                })
                .collect(),
        ),
        Expression::Array(items) => Node::List(items.into_iter().map(hcl_expr).collect()),
        Expression::Parenthesis(inner) => hcl_expr(*inner),
        Expression::Null => Node::Other("null"),
        Expression::Bool(_) => Node::Other("a bool"),
        Expression::Number(_) => Node::Other("a number"),
        Expression::Variable(_) => Node::Other("an unquoted word"),
        _ => Node::Other("an expression"),
    }
}

/// Reads one top-level entry into `policy`.
fn interpret(name: &str, node: Node, policy: &mut Policy) -> Result<(), PolicyError> {
    let Some(kind) = known(name) else {
        return Err(PolicyError::UnknownResource {
            resource: name.to_string(),
            ignored: IGNORED_RESOURCES.join(", "),
        });
    };
    match kind {
        Known::Unsegmented(resource) => {
            let rule = name.to_string();
            let word = match node {
                Node::Text(word) => word,
                Node::Map(_) => return Err(PolicyError::UnexpectedSegment { resource: rule }),
                other => {
                    return Err(PolicyError::NotAString {
                        rule,
                        what: "the disposition",
                        found: other.kind(),
                    })
                }
            };
            let disposition = disposition(&rule, &word, false)?;
            policy.rules.push(Rule {
                resource,
                scope: Scope::Whole,
                disposition,
            });
        }
        Known::Segmented(resource, prefix) => {
            for (segment, body) in segments(name, node)? {
                let rule = format!("{name} {segment:?}");
                let Node::Map(fields) = body else {
                    return Err(PolicyError::NotABody {
                        rule,
                        found: body.kind(),
                    });
                };
                let list_ok = resource == Resource::Key && prefix;
                let mut found = None;
                for (field, value) in fields {
                    match field.as_str() {
                        "policy" => {
                            let Node::Text(word) = value else {
                                return Err(PolicyError::NotAString {
                                    rule,
                                    what: "policy",
                                    found: value.kind(),
                                });
                            };
                            let d = disposition(&rule, &word, list_ok).map_err(|e| match e {
                                PolicyError::UnknownDisposition { .. } if word == "list" => {
                                    PolicyError::ListOutsideKeyPrefix {
                                        rule: rule.clone(),
                                        fix: if resource == Resource::Key {
                                            format!("use read, or write key_prefix {segment:?} {{ policy = \"list\" }}")
                                        } else {
                                            "use read".to_string()
                                        },
                                    }
                                }
                                e => e,
                            })?;
                            found = Some(found.map_or(d, |f: Disposition| f.merge(d)));
                        }
                        // Consul Enterprise's Sentinel policies on key rules.
                        "sentinel" if resource == Resource::Key => {
                            policy.ignored.push(IgnoredRule {
                                resource: format!("{name} {segment:?} sentinel"),
                                segment: None,
                            })
                        }
                        _ => return Err(PolicyError::UnknownField { rule, field }),
                    }
                }
                let Some(disposition) = found else {
                    return Err(PolicyError::MissingPolicy {
                        rule,
                        list: if list_ok { ", list" } else { "" },
                    });
                };
                policy.rules.push(Rule {
                    resource,
                    scope: if prefix {
                        Scope::Prefix(segment)
                    } else {
                        Scope::Exact(segment)
                    },
                    disposition,
                });
            }
        }
        Known::Ignored => match node {
            Node::Map(entries) if name != "mesh" && name != "peering" => {
                for (segment, _) in entries {
                    policy.ignored.push(IgnoredRule {
                        resource: name.to_string(),
                        segment: Some(segment),
                    });
                }
            }
            Node::List(items) => {
                for item in items {
                    interpret(name, item, policy)?;
                }
            }
            _ => policy.ignored.push(IgnoredRule {
                resource: name.to_string(),
                segment: None,
            }),
        },
    }
    Ok(())
}

/// The `(segment, body)` pairs of a segmented resource's entry. The JSON form may repeat a
/// resource as a list of objects, as HCL's JSON form allows for repeated blocks.
fn segments(name: &str, node: Node) -> Result<Vec<(String, Node)>, PolicyError> {
    match node {
        Node::Map(entries) => {
            // `key_prefix { policy = "write" }` (no segment) reads as a segment named `policy`
            // holding a string: say what is missing instead.
            if entries
                .iter()
                .any(|(k, v)| k == "policy" && matches!(v, Node::Text(_)))
            {
                return Err(PolicyError::MissingSegment {
                    resource: name.to_string(),
                });
            }
            Ok(entries)
        }
        Node::List(items) => {
            let mut all = Vec::new();
            for item in items {
                all.extend(segments(name, item)?);
            }
            Ok(all)
        }
        Node::Text(_) => Err(PolicyError::MissingSegment {
            resource: name.to_string(),
        }),
        other => Err(PolicyError::NotABody {
            rule: name.to_string(),
            found: other.kind(),
        }),
    }
}

fn disposition(rule: &str, word: &str, list_ok: bool) -> Result<Disposition, PolicyError> {
    match Disposition::parse(word) {
        Some(Disposition::List) if !list_ok => Err(PolicyError::UnknownDisposition {
            rule: rule.to_string(),
            value: word.to_string(),
            allowed: "read, write, deny",
        }),
        Some(d) => Ok(d),
        None => Err(PolicyError::UnknownDisposition {
            rule: rule.to_string(),
            value: word.to_string(),
            allowed: if list_ok {
                "read, write, deny, list"
            } else {
                "read, write, deny"
            },
        }),
    }
}

impl Policy {
    /// What a policy whose rules no longer parse grants: nothing, on every resource, so that a
    /// token holding it is never allowed more than its author meant. Rules are checked when set,
    /// so this is only reached if a later parser refuses rules an earlier one accepted.
    pub fn deny_everything() -> Policy {
        let rule = |resource, scope| Rule {
            resource,
            scope,
            disposition: Disposition::Deny,
        };
        Policy {
            rules: vec![
                rule(Resource::Key, Scope::Prefix(String::new())),
                rule(Resource::Node, Scope::Prefix(String::new())),
                rule(Resource::Agent, Scope::Prefix(String::new())),
                rule(Resource::Operator, Scope::Whole),
                rule(Resource::Acl, Scope::Whole),
                rule(Resource::Keyring, Scope::Whole),
            ],
            ignored: Vec::new(),
        }
    }
}
