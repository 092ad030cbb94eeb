//! The route's config: read from JSON, checked, and compiled into [`Acl`], the policy the handler
//! applies. Every error names the field it is about.

use plugin_config::{boolean, list, object, Fields};
use serde_json::Value;

/// One entry of `allow` or `deny`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `NAME`: a consumer called so, or any consumer in a group called so.
    Any(String),
    /// `consumer:NAME`: the consumer called so, only.
    Consumer(String),
    /// `group:NAME`: any consumer in the group called so, only.
    Group(String),
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::Any(n) => write!(f, "{n}"),
            Entry::Consumer(n) => write!(f, "consumer:{n}"),
            Entry::Group(n) => write!(f, "group:{n}"),
        }
    }
}

/// The compiled policy of one route.
#[derive(Debug)]
pub struct Acl {
    /// When not empty, a consumer must match one of these.
    pub allow: Vec<Entry>,
    /// A consumer matching one of these is refused, whatever `allow` says.
    pub deny: Vec<Entry>,
    /// Remove `x-consumer-groups` from the request before it goes upstream.
    pub hide_groups_header: bool,
}

const FIELDS: [&str; 3] = ["allow", "deny", "hide_groups_header"];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<Acl, String> {
    let m = object(config, &FIELDS, "allow, deny or both")?;
    if !m.contains_key("allow") && !m.contains_key("deny") {
        return Err(
            "allow: missing; list the consumers or groups allowed (allow), \
                    refused (deny), or both"
                .into(),
        );
    }
    Ok(Acl {
        allow: entries(&m, "allow")?,
        deny: entries(&m, "deny")?,
        hide_groups_header: boolean(&m, "hide_groups_header")?,
    })
}

/// A list of entries (absent: empty; given: not empty).
fn entries(m: &Fields, field: &str) -> Result<Vec<Entry>, String> {
    if matches!(m.get(field), Some(Value::Array(items)) if items.is_empty()) {
        return Err(format!(
            "{field}: empty; list consumer names or groups, or leave the field out"
        ));
    }
    list(m, field, "consumer names or groups", entry)
}

/// `NAME`, `consumer:NAME` or `group:NAME`. A name is not empty and has no white space at its ends;
/// an entry with another `word:` prefix is refused (a misspelt `group:` would otherwise be a name
/// nobody has, and the entry would silently match nothing).
fn entry(s: &str) -> Result<Entry, String> {
    let (kind, name) = match s.split_once(':') {
        None => ("", s),
        Some(("consumer", name)) => ("consumer", name),
        Some(("group", name)) => ("group", name),
        Some(_) => {
            return Err(format!(
                "`{s}`: expected a consumer name or group (`admins`), `consumer:NAME` or \
                 `group:NAME`; write `consumer:{s}` for a name with a colon"
            ))
        }
    };
    if name.is_empty() || name.trim() != name {
        return Err(format!(
            "`{s}`: expected a consumer name or group without white space at its ends"
        ));
    }
    let name = name.to_owned();
    Ok(match kind {
        "consumer" => Entry::Consumer(name),
        "group" => Entry::Group(name),
        _ => Entry::Any(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &str) -> String {
        parse(config).expect_err("the config should be refused")
    }

    fn any(s: &str) -> Entry {
        Entry::Any(s.into())
    }

    #[test]
    fn fields() {
        let a = parse(
            r#"{"allow": ["admins", "consumer:bob", "group:ops", "consumer:svc:billing"],
                "deny": ["group:interns"], "hide_groups_header": true}"#,
        )
        .unwrap();
        assert_eq!(
            a.allow,
            [
                any("admins"),
                Entry::Consumer("bob".into()),
                Entry::Group("ops".into()),
                Entry::Consumer("svc:billing".into()),
            ]
        );
        assert_eq!(a.deny, [Entry::Group("interns".into())]);
        assert!(a.hide_groups_header);

        let a = parse(r#"{"deny": ["mallory"]}"#).unwrap();
        assert!(a.allow.is_empty());
        assert_eq!(a.deny, [any("mallory")]);
        assert!(!a.hide_groups_header);
    }

    #[test]
    fn entries_print_as_written() {
        for s in ["admins", "consumer:bob", "group:ops"] {
            assert_eq!(entry(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("", "no config"),
            ("[\"admins\"]", "config"),
            ("{}", "allow: missing"),
            (r#"{"hide_groups_header": true}"#, "allow: missing"),
            (
                r#"{"allow": ["a"], "whitelist": ["b"]}"#,
                "whitelist: unknown field",
            ),
            (r#"{"allow": []}"#, "allow: empty"),
            (r#"{"allow": ["a"], "deny": []}"#, "deny: empty"),
            (r#"{"allow": "admins"}"#, "allow: expected a list"),
            (r#"{"allow": ["a", 1]}"#, "allow[1]: expected a string"),
            (r#"{"allow": ["a", ""]}"#, "allow[1]:"),
            (r#"{"deny": [" a"]}"#, "deny[0]:"),
            (r#"{"deny": ["consumer:"]}"#, "deny[0]:"),
            (r#"{"deny": ["group: ops"]}"#, "deny[0]:"),
            (r#"{"deny": ["a", "b", "groups:ops"]}"#, "deny[2]:"),
            (r#"{"deny": [":a"]}"#, "deny[0]:"),
            (
                r#"{"deny": ["a"], "hide_groups_header": "yes"}"#,
                "hide_groups_header:",
            ),
        ] {
            let e = err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
        assert!(err(r#"{"deny": ["groups:ops"]}"#).contains("group:NAME"));
    }
}
