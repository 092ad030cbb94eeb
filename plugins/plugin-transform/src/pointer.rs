//! JSON Pointers (RFC 6901) and the five operations on a document: remove, rename, replace, add and
//! append. Each returns whether it changed the document; a pointer that cannot be followed (through
//! a string, to an index past the end, to a name in an array) changes nothing.

use crate::json::Json;
use indexmap::IndexMap;

/// A JSON Pointer, read from a rule: `/a/b/0` (RFC 6901, `~1` for `/` and `~0` for `~` in a name),
/// or a name without a leading `/`, which is a member of the top-level object (Kong's form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// Reads a pointer. The whole document (`""`) is not a field, and is refused.
    pub fn parse(s: &str) -> Result<Pointer, String> {
        if s.is_empty() {
            return Err(
                "an empty name: write a field as a JSON Pointer (`/user/name`) or a top-level name"
                    .into(),
            );
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Ok(Pointer {
                tokens: vec![s.to_owned()],
            });
        };
        let tokens = rest
            .split('/')
            .map(|t| {
                let mut out = String::with_capacity(t.len());
                let mut chars = t.chars();
                while let Some(c) = chars.next() {
                    match (c, c == '~') {
                        (_, false) => out.push(c),
                        (_, true) => match chars.next() {
                            Some('0') => out.push('~'),
                            Some('1') => out.push('/'),
                            _ => {
                                return Err(format!(
                                    "`{s}` is not a JSON Pointer: `~` must be followed by 0 or 1 (`~0` is `~`, `~1` is `/`)"
                                ))
                            }
                        },
                    }
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pointer { tokens })
    }

    /// Whether the last token is `-`, the position after an array's last element: a place to add
    /// to, never an existing field.
    pub fn is_end(&self) -> bool {
        self.tokens.last().is_some_and(|t| t == "-")
    }

    /// Whether `other` is this pointer or lies inside it.
    pub fn contains(&self, other: &Pointer) -> bool {
        other.tokens.starts_with(&self.tokens)
    }

    fn split(&self) -> (&[String], &str) {
        let (last, parents) = self.tokens.split_last().expect("a pointer has a token");
        (parents, last)
    }
}

/// An array index token: `0` or digits without a leading zero (RFC 6901).
fn index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// Follows `tokens` from `node`. With `create`, a missing object member becomes an empty container
/// (an array if the token after it, or `last` after the final one, is `-`; an object otherwise), and
/// `-` (or the index just past the end) of an array a new empty object at its end; once something
/// was created the rest of the walk cannot fail, so a walk that fails has changed nothing.
fn walk<'a>(
    mut node: &'a mut Json,
    tokens: &[String],
    last: &str,
    create: bool,
) -> Option<&'a mut Json> {
    for (i, t) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).map_or(last, String::as_str);
        node = match node {
            Json::Object(m) => {
                if create {
                    m.entry(t.clone()).or_insert_with(|| container(next))
                } else {
                    m.get_mut(t)?
                }
            }
            Json::Array(a) => {
                let len = a.len();
                let i = if t == "-" { len } else { index(t)? };
                if i < len {
                    &mut a[i]
                } else if i == len && create {
                    a.push(container(next));
                    a.last_mut().expect("just pushed")
                } else {
                    return None;
                }
            }
            _ => return None,
        };
    }
    Some(node)
}

/// An empty container for the token `next` to go into: an array for `-`, else an object.
fn container(next: &str) -> Json {
    if next == "-" {
        Json::Array(Vec::new())
    } else {
        Json::object()
    }
}

/// The value at `p`, if there is one.
pub fn get<'a>(doc: &'a mut Json, p: &Pointer) -> Option<&'a mut Json> {
    walk(doc, &p.tokens, "", false)
}

/// Removes the field at `p`: an object member, or an array element (the elements after it move up).
pub fn remove(doc: &mut Json, p: &Pointer) -> bool {
    take(doc, p).is_some()
}

/// Removes and returns the field at `p` with its position in its parent.
fn take(doc: &mut Json, p: &Pointer) -> Option<(Json, usize)> {
    let (parents, last) = p.split();
    match walk(doc, parents, last, false)? {
        Json::Object(m) => m.shift_remove_full(last).map(|(i, _, v)| (v, i)),
        Json::Array(a) => {
            let i = index(last).filter(|i| *i < a.len())?;
            Some((a.remove(i), i))
        }
        _ => None,
    }
}

/// Puts `value` back where [`take`] took it from.
fn put_back(doc: &mut Json, p: &Pointer, value: Json, at: usize) {
    let (parents, last) = p.split();
    match walk(doc, parents, last, false) {
        Some(Json::Object(m)) => {
            m.shift_insert(at, last.to_owned(), value);
        }
        Some(Json::Array(a)) => a.insert(at, value),
        _ => unreachable!("the parent of a field just taken is still there"),
    }
}

/// How [`set`] treats a field that is already there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Only an existing field is set.
    Replace,
    /// Only a missing field is set (missing parents are created: arrays before `-`, objects
    /// otherwise).
    Add,
    /// Set either way (missing parents are created).
    Put,
}

fn set(doc: &mut Json, p: &Pointer, value: Json, mode: Mode) -> Result<bool, Json> {
    let (parents, last) = p.split();
    let Some(parent) = walk(doc, parents, last, mode != Mode::Replace) else {
        return Err(value);
    };
    match parent {
        Json::Object(m) => match (m.get_mut(last), mode) {
            (Some(old), Mode::Replace | Mode::Put) => *old = value,
            (None, Mode::Add | Mode::Put) => {
                m.insert(last.to_owned(), value);
            }
            _ => return Ok(false),
        },
        Json::Array(a) => {
            let len = a.len();
            let Some(i) = (if last == "-" { Some(len) } else { index(last) }) else {
                return Err(value);
            };
            match (i.cmp(&len), mode) {
                (std::cmp::Ordering::Less, Mode::Replace | Mode::Put) => a[i] = value,
                (std::cmp::Ordering::Equal, Mode::Add | Mode::Put) => a.push(value),
                (std::cmp::Ordering::Greater, _) => return Err(value),
                _ => return Ok(false),
            }
        }
        _ => return Err(value),
    }
    Ok(true)
}

/// Replaces the field at `p` with `value`, only if it is there.
pub fn replace(doc: &mut Json, p: &Pointer, value: Json) -> bool {
    set(doc, p, value, Mode::Replace).unwrap_or(false)
}

/// Sets the field at `p` to `value`, only if it is not there: missing parents are created (an
/// array where the next token is `-`, an object otherwise), and `-` (or the index just past the
/// end) of an array appends to it.
pub fn add(doc: &mut Json, p: &Pointer, value: Json) -> bool {
    set(doc, p, value, Mode::Add).unwrap_or(false)
}

/// Adds `value` to the field at `p` (Kong's append): an array gets it at its end, any other value
/// becomes an array of itself and `value`, and a missing field becomes `[value]`. At `-` (the end
/// of an array) it is [`add`].
pub fn append(doc: &mut Json, p: &Pointer, value: Json) -> bool {
    if p.is_end() {
        return add(doc, p, value);
    }
    if let Some(field) = get(doc, p) {
        match field {
            Json::Array(a) => a.push(value),
            other => {
                let old = std::mem::replace(other, Json::Null);
                *other = Json::Array(vec![old, value]);
            }
        }
        return true;
    }
    add(doc, p, Json::Array(vec![value]))
}

/// Moves the field at `from` to `to` (RFC 6902's move: removed first, then set at `to`, replacing
/// what is there; a new name in the same object keeps the member's place). Nothing changes if
/// `from` is missing or `to` cannot be reached.
pub fn rename(doc: &mut Json, from: &Pointer, to: &Pointer) -> bool {
    let Some((value, at)) = take(doc, from) else {
        return false;
    };
    // A new name in the same object takes the old one's place among its members.
    let ((parents, _), (to_parents, to_last)) = (from.split(), to.split());
    if parents == to_parents {
        if let Some(Json::Object(m)) = walk(doc, parents, to_last, false) {
            if !m.contains_key(to_last) {
                m.shift_insert(at, to_last.to_owned(), value);
                return true;
            }
        }
    }
    match set(doc, to, value, Mode::Put) {
        Ok(done) => done,
        Err(value) => {
            put_back(doc, from, value, at);
            false
        }
    }
}

/// An object with one member, for tests and callers that build documents.
pub fn object_of(name: &str, value: Json) -> Json {
    Json::Object(IndexMap::from([(name.to_owned(), value)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Json {
        Json::parse(text.as_bytes()).unwrap()
    }

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    fn text(d: &Json) -> String {
        String::from_utf8(d.to_vec()).unwrap()
    }

    fn v(text: &str) -> Json {
        doc(text)
    }

    #[test]
    fn parsing() {
        assert_eq!(p("/a~1b/~0c/0").tokens, ["a/b", "~c", "0"]);
        assert_eq!(p("name").tokens, ["name"]);
        assert_eq!(p("a/b").tokens, ["a/b"]);
        assert_eq!(p("/").tokens, [""]);
        assert!(Pointer::parse("").is_err());
        assert!(Pointer::parse("/a~2")
            .unwrap_err()
            .contains("`~` must be followed"));
        assert!(Pointer::parse("/a~").is_err());
        assert!(p("/a/-").is_end() && !p("/a/0").is_end());
        assert!(p("/a").contains(&p("/a/b")) && p("/a").contains(&p("/a")));
        assert!(!p("/a").contains(&p("/ab")) && !p("/a/b").contains(&p("/a")));
    }

    #[test]
    fn indexes() {
        assert_eq!(index("0"), Some(0));
        assert_eq!(index("12"), Some(12));
        for bad in ["", "01", "-1", "+1", "1a", "-"] {
            assert_eq!(index(bad), None, "{bad}");
        }
    }

    #[test]
    fn remove_members_and_elements() {
        let mut d = doc(r#"{"a":{"b":1,"c":2},"l":[1,2,3],"s":"x"}"#);
        assert!(remove(&mut d, &p("/a/b")));
        assert!(remove(&mut d, &p("/l/0")));
        assert!(!remove(&mut d, &p("/l/2")));
        assert!(!remove(&mut d, &p("/l/x")));
        assert!(!remove(&mut d, &p("/s/0")));
        assert!(!remove(&mut d, &p("/missing/x")));
        assert_eq!(text(&d), r#"{"a":{"c":2},"l":[2,3],"s":"x"}"#);
        assert!(remove(&mut d, &p("a")));
        assert_eq!(text(&d), r#"{"l":[2,3],"s":"x"}"#);
    }

    #[test]
    fn replace_only_what_is_there() {
        let mut d = doc(r#"{"a":1,"l":[1,2],"o":{"k":null}}"#);
        assert!(replace(&mut d, &p("/a"), v(r#"{"x":true}"#)));
        assert!(replace(&mut d, &p("/l/1"), v("3")));
        assert!(replace(&mut d, &p("/o/k"), v("\"v\"")));
        assert!(!replace(&mut d, &p("/b"), v("1")));
        assert!(!replace(&mut d, &p("/l/2"), v("1")));
        assert!(!replace(&mut d, &p("/l/-"), v("1")));
        assert!(!replace(&mut d, &p("/n/x"), v("1")));
        assert_eq!(text(&d), r#"{"a":{"x":true},"l":[1,3],"o":{"k":"v"}}"#);
    }

    #[test]
    fn add_only_what_is_missing_creating_parents() {
        let mut d = doc(r#"{"a":1,"l":[1]}"#);
        assert!(!add(&mut d, &p("/a"), v("2")));
        assert!(add(&mut d, &p("/b"), v("2")));
        assert!(add(&mut d, &p("/m/n/o"), v("3")));
        assert!(add(&mut d, &p("/l/-"), v("4")));
        assert!(add(&mut d, &p("/l/2"), v("5")));
        assert!(!add(&mut d, &p("/l/0"), v("6")));
        assert!(!add(&mut d, &p("/l/9"), v("6")));
        assert!(!add(&mut d, &p("/l/x"), v("6")));
        assert!(!add(&mut d, &p("/a/x"), v("6")));
        assert!(add(&mut d, &p("/k/-/id"), v("7")));
        assert!(add(&mut d, &p("/q/-"), v("8")));
        assert!(add(&mut d, &p("/r/0"), v("9")));
        assert_eq!(
            text(&d),
            r#"{"a":1,"l":[1,4,5],"b":2,"m":{"n":{"o":3}},"k":[{"id":7}],"q":[8],"r":{"0":9}}"#
        );
        let mut arr = doc("[]");
        assert!(add(&mut arr, &p("/-/id"), v("1")));
        assert_eq!(text(&arr), r#"[{"id":1}]"#);
    }

    #[test]
    fn append_makes_arrays() {
        let mut d = doc(r#"{"l":[1],"s":"x","o":{}}"#);
        assert!(append(&mut d, &p("/l"), v("2")));
        assert!(append(&mut d, &p("/s"), v("\"y\"")));
        assert!(append(&mut d, &p("/n"), v("3")));
        assert!(append(&mut d, &p("/o"), v("4")));
        assert!(append(&mut d, &p("/l/-"), v("5")));
        assert!(!append(&mut d, &p("/s/0/x"), v("5")));
        assert_eq!(
            text(&d),
            r#"{"l":[1,2,5],"s":["x","y"],"o":[{},4],"n":[3]}"#
        );
    }

    #[test]
    fn rename_moves() {
        let mut d = doc(r#"{"a":1,"b":{"c":2},"l":[1,2,3],"s":"x","t":0}"#);
        assert!(rename(&mut d, &p("/a"), &p("/z")));
        assert!(rename(&mut d, &p("/b/c"), &p("/b")));
        assert!(rename(&mut d, &p("/l/0"), &p("/l/-")));
        assert!(rename(&mut d, &p("/t"), &p("/s")));
        assert!(!rename(&mut d, &p("/missing"), &p("/y")));
        assert_eq!(text(&d), r#"{"z":1,"b":2,"l":[2,3,1],"s":0}"#);
        // A destination that cannot be reached leaves the field where it was.
        let mut d = doc(r#"{"a":1,"b":2,"s":"x"}"#);
        assert!(!rename(&mut d, &p("/a"), &p("/s/x")));
        assert!(!rename(&mut d, &p("/a"), &p("/s/x/y")));
        assert_eq!(text(&d), r#"{"a":1,"b":2,"s":"x"}"#);
        let mut d = doc(r#"{"l":[1,2,3]}"#);
        assert!(!rename(&mut d, &p("/l/1"), &p("/l/7")));
        assert_eq!(text(&d), r#"{"l":[1,2,3]}"#);
    }
}
