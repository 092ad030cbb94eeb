//! Query rules applied to a query string. Parameters are compared by their decoded names
//! (`application/x-www-form-urlencoded`, as servers read queries); those no rule touches keep their
//! bytes exactly, and the ones a rule writes are encoded by `form_urlencoded` (space as `+`).

use plugin_transform::rules::Rules;

/// One `name=value` (or bare `name`) of a query string.
#[derive(Debug, Clone)]
struct Param {
    /// As written.
    raw: String,
    /// The decoded name.
    name: String,
}

impl Param {
    fn parse(raw: &str) -> Param {
        let name = form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(n, _)| n.into_owned())
            .unwrap_or_default();
        Param {
            raw: raw.to_owned(),
            name,
        }
    }

    fn new(name: &str, value: &str) -> Param {
        Param {
            raw: format!("{}={}", encode(name), encode(value)),
            name: name.to_owned(),
        }
    }

    /// The same value under another name.
    fn renamed(&self, to: &str) -> Param {
        let raw = match self.raw.split_once('=') {
            Some((_, value)) => format!("{}={value}", encode(to)),
            None => encode(to),
        };
        Param {
            raw,
            name: to.to_owned(),
        }
    }
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Applies query rules (Kong's order and meaning: remove every occurrence; rename every occurrence,
/// replacing the new name's own; replace the value of a parameter that is there, leaving one; add
/// one that is not; append another occurrence) to `query` (without `?`). Returns the new query
/// (empty for none), or `None` when nothing changed.
pub fn apply(query: &str, r: &Rules<String, String>) -> Option<String> {
    let mut params: Vec<Param> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(Param::parse)
        .collect();
    let mut changed = false;
    let has = |params: &[Param], name: &str| params.iter().any(|p| p.name == name);
    for name in &r.remove {
        let before = params.len();
        params.retain(|p| p.name != *name);
        changed |= params.len() != before;
    }
    for (from, to) in &r.rename {
        if !has(&params, from) || from == to {
            continue;
        }
        params.retain(|p| p.name != *to);
        for p in params.iter_mut().filter(|p| p.name == *from) {
            *p = p.renamed(to);
        }
        changed = true;
    }
    for (name, value) in &r.replace {
        let Some(first) = params.iter().position(|p| p.name == *name) else {
            continue;
        };
        params[first] = Param::new(name, value);
        let mut i = 0;
        params.retain(|p| {
            i += 1;
            i - 1 == first || p.name != *name
        });
        changed = true;
    }
    for (name, value) in &r.add {
        if !has(&params, name) {
            params.push(Param::new(name, value));
            changed = true;
        }
    }
    for (name, value) in &r.append {
        params.push(Param::new(name, value));
        changed = true;
    }
    changed.then(|| {
        params
            .iter()
            .map(|p| p.raw.as_str())
            .collect::<Vec<_>>()
            .join("&")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn untouched_parameters_keep_their_bytes() {
        let r = Rules {
            add: s(&[("new", "a b&c=d/é")]),
            ..Rules::default()
        };
        assert_eq!(
            apply("q=x%20y+z&flag&e=%7e", &r).as_deref(),
            Some("q=x%20y+z&flag&e=%7e&new=a+b%26c%3Dd%2F%C3%A9")
        );
    }

    #[test]
    fn kong_order_and_semantics() {
        let r = Rules {
            remove: vec!["debug".into(), "absent".into()],
            rename: vec![("old".into(), "new".into()), ("none".into(), "x".into())],
            replace: s(&[("page", "1"), ("missing", "v")]),
            add: s(&[("page", "9"), ("size", "10")]),
            append: s(&[("tag", "b"), ("tag", "c")]),
        };
        assert_eq!(
            apply("debug=1&old=a&page=3&new=gone&tag=a&old=b&page=4&debug", &r).as_deref(),
            Some("new=a&page=1&tag=a&new=b&size=10&tag=b&tag=c")
        );
    }

    #[test]
    fn names_are_compared_decoded() {
        let r = Rules {
            remove: vec!["a b".into()],
            rename: vec![("c/d".into(), "e f".into())],
            ..Rules::default()
        };
        assert_eq!(
            apply("a+b=1&a%20b=2&c%2Fd=%41&k=v", &r).as_deref(),
            Some("e+f=%41&k=v")
        );
    }

    #[test]
    fn nothing_changed_is_none() {
        let r = Rules {
            remove: vec!["x".into()],
            replace: s(&[("y", "1")]),
            ..Rules::default()
        };
        assert_eq!(apply("a=1&b", &r), None);
        assert_eq!(apply("", &r), None);
        let all = Rules {
            remove: vec!["a".into()],
            ..Rules::default()
        };
        assert_eq!(apply("a=1&a=2", &all).as_deref(), Some(""));
        let add = Rules {
            add: s(&[("a", "")]),
            ..Rules::default()
        };
        assert_eq!(apply("", &add).as_deref(), Some("a="));
    }
}
