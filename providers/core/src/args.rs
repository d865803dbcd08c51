//! The `provider=aws tag_key=role tag_value=consul` grammar, read as go-discover reads it:
//! space-separated `key=value` pairs, values optionally double-quoted with backslash escapes.
//! Stricter where go-discover is silent: a duplicate key, an empty key, or a pair without `=`
//! is an error that names it.

use std::collections::BTreeMap;
use std::fmt;

/// Parsed provider arguments: `provider` plus the other keys, in canonical (sorted) order.
/// Its `Debug` is its `Display`: secrets hidden (a `{:?}` in a log line must not leak them).
#[derive(Clone, PartialEq, Eq)]
pub struct ProviderArgs {
    pub provider: String,
    pub args: BTreeMap<String, String>,
    /// Keys whose values are secrets, redacted when displayed.
    pub secret_keys: Vec<String>,
}

/// Why a provider string could not be read. It never quotes the string: a string that does
/// not parse cannot be split safely into keys and values, so any part of it may be a secret
/// (the caller names the entry through [`redact`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse the provider string: {reason}")]
pub struct ParseError {
    pub reason: String,
}

/// Whether a retry-join entry is a provider string rather than an address (Consul's test:
/// it contains `provider=`).
pub fn is_provider_string(s: &str) -> bool {
    s.contains("provider=")
}

/// Key-name parts that mark a value as secret, whatever the provider.
const SECRET_KEY_PARTS: &[&str] = &[
    "secret",
    "key_id",
    "access_key",
    "credentials",
    "token",
    "password",
];

/// Whether a key's name marks its value as secret, whatever the provider.
pub fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|s| key.contains(s))
}

/// A provider string fit to show: parsed, then written in canonical form with the value of
/// every secret-looking key as `hidden`, for messages about an entry whose provider's key
/// list is not known (or that did not even parse) and for `/v1/agent/self`. Redaction works
/// on the parsed pairs, never on spaces, so quotes, tabs and line breaks cannot carry a secret
/// past it. A string that does not parse is shown as its provider name only (when one can be
/// read) and a note: none of its values.
pub fn redact(entry: &str) -> String {
    match ProviderArgs::parse(entry) {
        Ok(mut args) => {
            let secret: Vec<String> = args
                .args
                .keys()
                .filter(|k| looks_secret(k))
                .cloned()
                .collect();
            for k in secret {
                if !args.secret_keys.contains(&k) {
                    args.secret_keys.push(k);
                }
            }
            args.to_string()
        }
        Err(_) => match provider_name(entry) {
            Some(name) => format!("provider={name} … (the rest not shown: it does not parse)"),
            None => "… (not shown: it does not parse)".to_string(),
        },
    }
}

/// The provider's name in a string that may not parse: `provider=NAME` at a word's start,
/// NAME made of the characters provider names use.
fn provider_name(entry: &str) -> Option<&str> {
    let at = entry
        .match_indices("provider=")
        .find(|(i, _)| *i == 0 || entry[..*i].ends_with(char::is_whitespace))?
        .0;
    let rest = &entry[at + "provider=".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

impl ProviderArgs {
    /// Parses a provider string.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let fail = |reason: String| ParseError { reason };
        // Pairs read so far, to say where a bad word is without quoting it (it may be a
        // secret's second half: `secret_access_key=abc def`).
        let mut words = 0usize;
        let mut last_key: Option<String> = None;
        let mut pairs: BTreeMap<String, String> = BTreeMap::new();
        let mut chars = input.trim().chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(c);
                chars.next();
            }
            words += 1;
            if chars.next() != Some('=') {
                let after = match &last_key {
                    Some(k) => format!(" (after {k}=…)"),
                    None => String::new(),
                };
                return Err(fail(format!(
                    "word {words}{after} is not a key=value pair; a value with spaces needs \
                     quotes: key=\"a b\""
                )));
            }
            if key.is_empty() {
                return Err(fail("a pair has an empty key".into()));
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err(fail(format!("the value of {key:?} has no closing quote")))
                        }
                        Some('\\') => match chars.next() {
                            Some(c) => value.push(c),
                            None => {
                                return Err(fail(format!(
                                    "the value of {key:?} ends with a lone backslash"
                                )))
                            }
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                    }
                }
                if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                    return Err(fail(format!("text follows the closing quote of {key:?}")));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
            last_key = Some(key.clone());
            if pairs.insert(key.clone(), value).is_some() {
                return Err(fail(format!("key {key:?} is given twice")));
            }
        }
        let provider = pairs
            .remove("provider")
            .ok_or_else(|| fail("there is no provider=NAME".into()))?;
        if provider.is_empty() {
            return Err(fail("provider= is empty".into()));
        }
        Ok(Self {
            provider,
            args: pairs,
            secret_keys: Vec::new(),
        })
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.args.get(key).map(String::as_str)
    }

    /// A list of `k=v` pairs separated by commas (`tags="role=server,cluster=prod"`), in the
    /// order given; empty when the key is absent. Blanks around pairs and around `=` are
    /// dropped, as go-discover's callers write them either way.
    pub fn key_values(&self, key: &str) -> Result<Vec<(String, String)>, crate::ProviderError> {
        let Some(list) = self.get(key) else {
            return Ok(Vec::new());
        };
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    crate::ProviderError::BadArgs(format!(
                        "{key}: {pair:?} is not key=value (write {key}=\"k1=v1,k2=v2\")"
                    ))
                })?;
                Ok((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    }

    /// The value of `key` if it is one of `choices`, `default` when absent; otherwise an error
    /// that lists the choices.
    pub fn one_of<'a>(
        &'a self,
        key: &str,
        default: &'a str,
        choices: &[&str],
    ) -> Result<&'a str, crate::ProviderError> {
        let v = self.get(key).unwrap_or(default);
        if choices.contains(&v) {
            return Ok(v);
        }
        let list = match choices {
            [] => String::new(),
            [one] => one.to_string(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        Err(crate::ProviderError::BadArgs(format!(
            "{key}={v:?}: use {list}"
        )))
    }

    /// The value of `key` if it is an http:// or https:// URL (an API endpoint override).
    pub fn http_url(&self, key: &str) -> Result<Option<&str>, crate::ProviderError> {
        match self.get(key) {
            Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                Err(crate::ProviderError::BadArgs(format!(
                    "{key}={u:?} must be an http:// or https:// URL"
                )))
            }
            other => Ok(other),
        }
    }
}

fn quote(v: &str) -> String {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '='))
    {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v.to_string()
    }
}

impl fmt::Debug for ProviderArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProviderArgs({self})")
    }
}

/// Canonical form: `provider=…` first, the other keys sorted, secrets shown as `hidden`: the
/// provider's secret keys and every key whose name looks secret ([`looks_secret`]).
impl fmt::Display for ProviderArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "provider={}", quote(&self.provider))?;
        for (k, v) in &self.args {
            let shown = if looks_secret(k) || self.secret_keys.iter().any(|s| s == k) {
                "hidden".to_string()
            } else {
                quote(v)
            };
            write!(f, " {k}={shown}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_value_forms_and_their_errors() {
        let a = ProviderArgs::parse(
            r#"provider=x tags=" role = server ,cluster=prod," kind=b url=ftp://h bad="a,b=c""#,
        )
        .unwrap();
        assert_eq!(
            a.key_values("tags").unwrap(),
            vec![
                ("role".to_string(), "server".to_string()),
                ("cluster".to_string(), "prod".to_string())
            ]
        );
        assert!(a.key_values("absent").unwrap().is_empty());
        let e = a.key_values("bad").unwrap_err().to_string();
        assert!(e.contains(r#""a" is not key=value"#), "{e}");
        assert_eq!(a.one_of("kind", "a", &["a", "b"]).unwrap(), "b");
        assert_eq!(a.one_of("absent", "a", &["a", "b"]).unwrap(), "a");
        let e = a
            .one_of("kind", "a", &["x", "y", "z"])
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#"kind="b": use x, y or z"#), "{e}");
        let e = a.http_url("url").unwrap_err().to_string();
        assert!(e.contains("must be an http:// or https:// URL"), "{e}");
        assert_eq!(a.http_url("absent").unwrap(), None);
    }

    #[test]
    fn redact_hides_every_secret_looking_key() {
        let shown = redact(
            "provider=x access_key=A1 access_key_id=A2 secret_access_key=S credentials_file=/c \
             api_token=T password=P tag_key=role",
        );
        for secret in ["A1", "A2", "=S ", "/c", "=T ", "=P "] {
            assert!(!shown.contains(secret), "{secret:?} shown in {shown}");
        }
        assert!(shown.contains("tag_key=role") && shown.contains("password=hidden"));
    }

    /// Secrets that splitting on spaces let through: a quoted value with a space, a line
    /// break or a tab between pairs, a string that does not parse at all.
    #[test]
    fn redaction_works_on_the_parsed_pairs_not_on_spaces() {
        for (entry, secret) in [
            (
                r#"provider=aws secret_access_key="S3 CR3T" region=x"#,
                "CR3T",
            ),
            (
                "provider=aws\nsecret_access_key=S3CR3T\ttag_key=k",
                "S3CR3T",
            ),
            ("provider=aws\tsecret_access_key=S3CR3T", "S3CR3T"),
            (r#"provider=aws secret_access_key="S3CR3T"#, "S3CR3T"),
            ("provider=aws secret_access_key=abc S3CR3T", "S3CR3T"),
            // Key names in another case still look secret.
            ("provider=aws Secret_Access_Key=S3CR3T tag_key=k", "S3CR3T"),
        ] {
            let shown = redact(entry);
            assert!(!shown.contains(secret), "{entry:?} shown as {shown:?}");
            assert!(shown.starts_with("provider=aws"), "{shown}");
            let err = ProviderArgs::parse(entry).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_none_or(|e| !e.contains(secret)),
                "{entry:?}: {err:?}"
            );
        }
        // The hint names the pair read last, not the alphabetically last key.
        let e = ProviderArgs::parse("provider=aws tag_key=r secret_access_key=a B").unwrap_err();
        assert!(e.to_string().contains("after secret_access_key=…"), "{e}");
        assert_eq!(
            redact("region=x secret=\"open"),
            "… (not shown: it does not parse)"
        );
        let args = ProviderArgs::parse("provider=aws secret_access_key=S3CR3T").unwrap();
        assert!(!format!("{args:?}").contains("S3CR3T"), "{args:?}");
    }

    #[test]
    fn reads_go_discover_strings() {
        let a = ProviderArgs::parse("provider=aws region=eu-west-1 tag_key=role tag_value=consul")
            .unwrap();
        assert_eq!(a.provider, "aws");
        assert_eq!(a.get("tag_value"), Some("consul"));
        let q = ProviderArgs::parse(r#"provider=exec command="echo \"a b\"" timeout=5s"#).unwrap();
        assert_eq!(q.get("command"), Some(r#"echo "a b""#));
    }

    #[test]
    fn canonical_form_sorts_quotes_and_hides_secrets() {
        let mut a = ProviderArgs::parse(
            "tag_value=\"x y\" provider=aws secret_access_key=S3CR3T tag_key=k",
        )
        .unwrap();
        a.secret_keys = vec!["secret_access_key".into()];
        assert_eq!(
            a.to_string(),
            r#"provider=aws secret_access_key=hidden tag_key=k tag_value="x y""#
        );
        // A secret-looking key is hidden even when the provider's keys are not known.
        a.secret_keys.clear();
        assert!(a.to_string().contains("secret_access_key=hidden"));
        // Round trip of a string without secrets.
        let b = ProviderArgs::parse(r#"provider=aws tag_value="x y" tag_key=k"#).unwrap();
        assert_eq!(ProviderArgs::parse(&b.to_string()).unwrap(), b);
    }

    #[test]
    fn errors_name_the_problem() {
        for (input, needle) in [
            ("provider=aws tag_key", "not a key=value"),
            ("provider=aws =x", "empty key"),
            ("provider=aws a=1 a=2", "given twice"),
            ("tag_key=x", "no provider"),
            ("provider=aws a=\"open", "no closing quote"),
            ("provider=aws a=\"x\"y", "follows the closing quote"),
        ] {
            let e = ProviderArgs::parse(input).unwrap_err();
            assert!(e.to_string().contains(needle), "{input}: {e}");
        }
    }
}
