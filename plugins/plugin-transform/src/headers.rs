//! Header rules applied to a request or a response, through [`HeaderAccess`] (the SDK's handles, or
//! a map in tests).

use crate::rules::Rules;
use gateway_plugin_sdk::{Error, Request, Response};

/// The header calls the rules need, as the SDK's `Request` and `Response` have them.
pub trait HeaderAccess {
    /// Every value of a header, in order.
    fn values(&self, name: &str) -> Vec<String>;
    /// Sets a header, replacing its values.
    fn set(&self, name: &str, value: &str) -> Result<(), Error>;
    /// Adds a value to a header.
    fn append(&self, name: &str, value: &str) -> Result<(), Error>;
    /// Removes a header.
    fn remove(&self, name: &str) -> Result<(), Error>;
}

impl HeaderAccess for Request<'_> {
    fn values(&self, name: &str) -> Vec<String> {
        self.header_all(name)
    }
    fn set(&self, name: &str, value: &str) -> Result<(), Error> {
        self.set_header(name, value)
    }
    fn append(&self, name: &str, value: &str) -> Result<(), Error> {
        self.append_header(name, value)
    }
    fn remove(&self, name: &str) -> Result<(), Error> {
        self.remove_header(name)
    }
}

impl HeaderAccess for Response<'_> {
    fn values(&self, name: &str) -> Vec<String> {
        self.header_all(name)
    }
    fn set(&self, name: &str, value: &str) -> Result<(), Error> {
        self.set_header(name, value)
    }
    fn append(&self, name: &str, value: &str) -> Result<(), Error> {
        self.append_header(name, value)
    }
    fn remove(&self, name: &str) -> Result<(), Error> {
        self.remove_header(name)
    }
}

/// Applies header rules (names lower-case, values checked), in Kong's order: remove; rename (the
/// new name gets every value of the old one, replacing its own); replace (only a header that is
/// there); add (only a header that is not); append (one more value). Returns the first error of a
/// host call, after trying every rule.
pub fn apply(h: &impl HeaderAccess, r: &Rules<String, String>) -> Result<(), Error> {
    let mut first: Option<Error> = None;
    let mut note = |res: Result<(), Error>| {
        if let Err(e) = res {
            first.get_or_insert(e);
        }
    };
    for name in &r.remove {
        note(h.remove(name));
    }
    for (from, to) in &r.rename {
        let values = h.values(from);
        if values.is_empty() || from == to {
            continue;
        }
        note(h.remove(from));
        note(h.remove(to));
        for v in &values {
            note(h.append(to, v));
        }
    }
    for (name, value) in &r.replace {
        if !h.values(name).is_empty() {
            note(h.set(name, value));
        }
    }
    for (name, value) in &r.add {
        if h.values(name).is_empty() {
            note(h.set(name, value));
        }
    }
    for (name, value) in &r.append {
        note(h.append(name, value));
    }
    match first {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// Headers in memory, for tests of rules.
#[cfg(test)]
pub(crate) mod mem {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    pub struct Headers(pub RefCell<Vec<(String, String)>>);

    impl Headers {
        pub fn of(pairs: &[(&str, &str)]) -> Headers {
            Headers(RefCell::new(
                pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ))
        }
        pub fn all(&self) -> Vec<(String, String)> {
            self.0.borrow().clone()
        }
    }

    impl HeaderAccess for Headers {
        fn values(&self, name: &str) -> Vec<String> {
            self.0
                .borrow()
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect()
        }
        fn set(&self, name: &str, value: &str) -> Result<(), Error> {
            self.remove(name)?;
            self.append(name, value)
        }
        fn append(&self, name: &str, value: &str) -> Result<(), Error> {
            if value.contains('\n') {
                return Err(Error::Invalid(format!("bad value for {name}")));
            }
            self.0.borrow_mut().push((name.into(), value.into()));
            Ok(())
        }
        fn remove(&self, name: &str) -> Result<(), Error> {
            self.0.borrow_mut().retain(|(n, _)| n != name);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mem::Headers;
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn kong_order_and_semantics() {
        let h = Headers::of(&[
            ("x-debug", "1"),
            ("x-old", "a"),
            ("x-old", "b"),
            ("x-new", "gone"),
            ("x-env", "dev"),
            ("x-have", "mine"),
        ]);
        let r = Rules {
            remove: vec!["x-debug".into(), "x-absent".into()],
            rename: vec![
                ("x-old".into(), "x-new".into()),
                ("x-none".into(), "x-other".into()),
            ],
            replace: s(&[("x-env", "prod"), ("x-missing", "v")]),
            add: s(&[("x-have", "theirs"), ("x-added", "1"), ("x-new", "no")]),
            append: s(&[("x-have", "more"), ("x-list", "1"), ("x-list", "2")]),
        };
        apply(&h, &r).unwrap();
        assert_eq!(
            h.all(),
            s(&[
                ("x-have", "mine"),
                ("x-new", "a"),
                ("x-new", "b"),
                ("x-env", "prod"),
                ("x-added", "1"),
                ("x-have", "more"),
                ("x-list", "1"),
                ("x-list", "2"),
            ])
        );
    }

    #[test]
    fn a_rule_that_fails_does_not_stop_the_others() {
        let h = Headers::default();
        let r = Rules {
            add: s(&[("x-a", "bad\nvalue"), ("x-b", "ok")]),
            ..Rules::default()
        };
        assert!(matches!(apply(&h, &r), Err(Error::Invalid(_))));
        assert_eq!(h.all(), s(&[("x-b", "ok")]));
    }
}
