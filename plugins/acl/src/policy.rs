//! What the policy decides about the request's consumer, and the refusals. Pure functions of the
//! config and the consumer, so the handler in `lib.rs` only reads them.

use crate::config::{Acl, Entry};
use gateway_plugin_sdk::consumers::Consumer;

/// The code of the refusal of a request without a consumer (401).
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// The code of the refusal of a consumer the lists keep out (403).
pub const FORBIDDEN: &str = "forbidden";

/// What the policy decides about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// The request goes on.
    Allow,
    /// Refused: no filter before this one authenticated the request.
    Unauthenticated,
    /// Refused: the consumer matches this `deny` entry.
    Denied(&'a Entry),
    /// Refused: `allow` is given and the consumer matches none of its entries.
    NotAllowed,
}

impl Entry {
    /// Whether the entry names `consumer` or one of its groups.
    pub fn matches(&self, consumer: &Consumer) -> bool {
        let in_group = |g: &str| consumer.groups.iter().any(|c| c == g);
        match self {
            Entry::Any(n) => consumer.name == *n || in_group(n),
            Entry::Consumer(n) => consumer.name == *n,
            Entry::Group(g) => in_group(g),
        }
    }
}

impl Acl {
    /// The verdict on a request authenticated as `consumer` (if any). A `deny` entry wins over an
    /// `allow` entry.
    pub fn verdict(&self, consumer: Option<&Consumer>) -> Verdict<'_> {
        let Some(c) = consumer else {
            return Verdict::Unauthenticated;
        };
        if let Some(e) = self.deny.iter().find(|e| e.matches(c)) {
            return Verdict::Denied(e);
        }
        if self.allow.is_empty() || self.allow.iter().any(|e| e.matches(c)) {
            Verdict::Allow
        } else {
            Verdict::NotAllowed
        }
    }

    /// The `consumer:` entries of both lists, with their paths (`deny[2]`), for the check that
    /// each names a consumer of the config.
    pub fn named_consumers(&self) -> impl Iterator<Item = (String, &str)> {
        let allow = self.allow.iter().enumerate().map(|(i, e)| ("allow", i, e));
        let deny = self.deny.iter().enumerate().map(|(i, e)| ("deny", i, e));
        allow.chain(deny).filter_map(|(field, i, e)| match e {
            Entry::Consumer(n) => Some((format!("{field}[{i}]"), n.as_str())),
            _ => None,
        })
    }
}

/// The refusal for `verdict` (not `Allow`): status and code.
pub fn refusal(verdict: &Verdict<'_>) -> (u16, &'static str, &'static str) {
    match verdict {
        Verdict::Unauthenticated => (401, UNAUTHENTICATED, "the request is not authenticated"),
        _ => (403, FORBIDDEN, "you cannot consume this service"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn consumer(name: &str, groups: &[&str]) -> Consumer {
        Consumer {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn entries_match_names_groups_or_either() {
        let alice = consumer("alice", &["admins", "ops"]);
        let admins = consumer("admins", &[]);
        for (entry, matches_alice, matches_admins) in [
            (Entry::Any("alice".into()), true, false),
            (Entry::Any("admins".into()), true, true),
            (Entry::Any("ops".into()), true, false),
            (Entry::Any("Admins".into()), false, false),
            (Entry::Consumer("alice".into()), true, false),
            (Entry::Consumer("admins".into()), false, true),
            (Entry::Group("admins".into()), true, false),
            (Entry::Group("alice".into()), false, false),
            (Entry::Any("admin".into()), false, false),
        ] {
            assert_eq!(entry.matches(&alice), matches_alice, "{entry} / alice");
            assert_eq!(entry.matches(&admins), matches_admins, "{entry} / admins");
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let acl = parse(
            r#"{"allow": ["admins", "consumer:carol"], "deny": ["group:interns", "mallory"]}"#,
        )
        .unwrap();
        let alice = consumer("alice", &["admins"]);
        let intern = consumer("ivan", &["admins", "interns"]);
        let carol = consumer("carol", &[]);
        let mallory = consumer("mallory", &["admins"]);
        let bob = consumer("bob", &["devs"]);
        assert_eq!(acl.verdict(Some(&alice)), Verdict::Allow);
        assert_eq!(acl.verdict(Some(&carol)), Verdict::Allow);
        assert_eq!(
            acl.verdict(Some(&intern)),
            Verdict::Denied(&Entry::Group("interns".into()))
        );
        assert_eq!(
            acl.verdict(Some(&mallory)),
            Verdict::Denied(&Entry::Any("mallory".into()))
        );
        assert_eq!(acl.verdict(Some(&bob)), Verdict::NotAllowed);
        assert_eq!(acl.verdict(None), Verdict::Unauthenticated);
    }

    #[test]
    fn deny_alone_lets_everyone_else_in() {
        let acl = parse(r#"{"deny": ["guests"]}"#).unwrap();
        assert_eq!(acl.verdict(Some(&consumer("bob", &[]))), Verdict::Allow);
        assert_eq!(
            acl.verdict(Some(&consumer("anon", &["guests"]))),
            Verdict::Denied(&Entry::Any("guests".into()))
        );
        // Not even a deny list lets a request without a consumer through.
        assert_eq!(acl.verdict(None), Verdict::Unauthenticated);
    }

    #[test]
    fn a_consumer_without_groups_is_matched_by_name_only() {
        let acl = parse(r#"{"allow": ["group:admins"]}"#).unwrap();
        assert_eq!(
            acl.verdict(Some(&consumer("admins", &[]))),
            Verdict::NotAllowed
        );
    }

    #[test]
    fn named_consumers_have_their_paths() {
        let acl = parse(r#"{"allow": ["a", "consumer:bob"], "deny": ["group:x", "consumer:eve"]}"#)
            .unwrap();
        let named: Vec<_> = acl.named_consumers().collect();
        assert_eq!(
            named,
            [
                ("allow[1]".to_string(), "bob"),
                ("deny[1]".to_string(), "eve")
            ]
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(refusal(&Verdict::Unauthenticated).0, 401);
        assert_eq!(refusal(&Verdict::Unauthenticated).1, "unauthenticated");
        assert_eq!(refusal(&Verdict::NotAllowed).0, 403);
        let e = Entry::Any("x".into());
        assert_eq!(refusal(&Verdict::Denied(&e)).1, "forbidden");
    }
}
