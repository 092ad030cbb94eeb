//! Finds the route for a request without scanning every route.
//!
//! Precedence, most specific first:
//! 1. host: an exact host, then the longest `*.suffix` wildcard, then routes without a host;
//! 2. path: exact, then templates (more literal segments first), then regular expressions (in config
//!    order), then prefixes (longest first), then routes without a path matcher;
//! 3. among routes with the same host and path matcher: more method/header/query matchers first;
//! 4. then the order in the config file.
//!
//! Lookup cost does not grow with the number of routes: hosts, exact paths and prefixes are hash lookups
//! (one per distinct prefix length), templates walk a segment trie, and all regular expressions of a
//! host are one `RegexSet` pass.

use http::{HeaderMap, Method};
use regex::{Regex, RegexSet};
use std::sync::Arc;

/// The router's maps: keys come from config and lookups only read them, so a fast hash for short
/// keys (no untrusted insertions to flood a table with).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A header or query matcher, compiled.
#[derive(Debug, Clone)]
pub enum ValueTest {
    /// Equal to.
    Exact(String),
    /// Whole value matches.
    Regex(Regex),
    /// Present (true) or absent (false).
    Present(bool),
}

impl ValueTest {
    /// Whether `value` (None: absent) passes.
    pub fn test(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (ValueTest::Present(want), v) => v.is_some() == *want,
            (ValueTest::Exact(e), Some(v)) => e == v,
            (ValueTest::Regex(r), Some(v)) => r.is_match(v),
            (_, None) => false,
        }
    }

    /// Whether a header's value passes. One that is not visible ASCII cannot equal or match text,
    /// but it is there: a presence test sees it (`present: false` does not match a header that is
    /// sent, whatever its bytes).
    pub fn test_header(&self, value: &http::HeaderValue) -> bool {
        match value.to_str() {
            Ok(v) => self.test(Some(v)),
            Err(_) => matches!(self, ValueTest::Present(true)),
        }
    }
}

/// How a route matches paths.
#[derive(Debug, Clone)]
pub enum PathSpec {
    /// Whole path.
    Exact(String),
    /// Whole leading segments: `/api` matches `/api`, `/api/...` and `/api;...`.
    Prefix(String),
    /// String prefix, on any character.
    StringPrefix(String),
    /// Segment template.
    Template(String),
    /// Whole-path regular expression.
    Regex(String),
}

/// Everything one route needs to match.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Lowercase exact host or `*.suffix`.
    pub host: Option<String>,
    /// Path matcher; None matches every path.
    pub path: Option<PathSpec>,
    /// Accepted methods; empty accepts all.
    pub methods: Vec<Method>,
    /// Header name (lowercase) and test.
    pub headers: Vec<(http::HeaderName, ValueTest)>,
    /// Query parameter name and test.
    pub query: Vec<(String, ValueTest)>,
    /// Client certificate matchers.
    pub client_cert: Vec<(CertField, ValueTest)>,
}

/// Which part of a client certificate a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertField {
    /// The subject distinguished name.
    Subject,
    /// Any subject alternative name.
    San,
}

impl RouteMatch {
    fn extra_matchers(&self) -> usize {
        usize::from(!self.methods.is_empty())
            + self.headers.len()
            + self.query.len()
            + self.client_cert.len()
    }

    fn rest_matches(&self, req: &RouteRequest<'_>, query: &Query) -> bool {
        let (method, headers) = (req.method, req.headers);
        (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|(name, test)| {
                let mut values = headers.get_all(name).iter().peekable();
                if values.peek().is_none() {
                    return test.test(None);
                }
                values.any(|v| test.test_header(v))
            })
            && self
                .query
                .iter()
                .all(|(name, test)| test.test(query.get(name)))
            && self
                .client_cert
                .iter()
                .all(|(field, test)| match (field, req.client_cert) {
                    (_, None) => test.test(None),
                    (CertField::Subject, Some(c)) => test.test(Some(&c.subject)),
                    (CertField::San, Some(c)) => match test {
                        ValueTest::Present(want) => *want,
                        _ => c.sans.iter().any(|s| test.test(Some(s))),
                    },
                })
    }
}

/// Template parameters captured by a match, in template order.
pub type Params = Vec<(Arc<str>, String)>;

/// The request facts routing looks at.
pub struct RouteRequest<'a> {
    /// Host without port, any case.
    pub host: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    /// Method.
    pub method: &'a Method,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// The verified client certificate, if any.
    pub client_cert: Option<&'a crate::tls::PeerCert>,
}

/// Lazily parsed query parameters.
struct Query<'a> {
    raw: Option<&'a str>,
    parsed: std::cell::OnceCell<Vec<(String, String)>>,
}

impl Query<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let pairs = self
            .parsed
            .get_or_init(|| parse_query(self.raw.unwrap_or("")));
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits and decodes a query string as `application/x-www-form-urlencoded` (`+` is a space,
/// percent escapes decoded, bad UTF-8 replaced).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[derive(Default)]
struct TemplateNode {
    literal: HashMap<String, TemplateNode>,
    param: Option<(Arc<str>, Box<TemplateNode>)>,
    /// `{*name}` as last segment: entries and the name.
    rest: Vec<(Arc<str>, u32)>,
    here: Vec<u32>,
}

#[derive(Default)]
struct PathIndex {
    exact: HashMap<String, Vec<u32>>,
    prefix: HashMap<String, Vec<u32>>,
    prefix_lens: Vec<usize>,
    templates: TemplateNode,
    regex_entries: Vec<u32>,
    regex_sources: Vec<String>,
    regex: Option<RegexSet>,
}

/// The compiled route table of one listener.
#[derive(Default)]
pub struct Router {
    matches: Vec<RouteMatch>,
    /// Literal segment count of template routes, for ordering.
    template_literals: Vec<usize>,
    hosts: HashMap<String, PathIndex>,
    /// `*.example.com` is stored under `.example.com`.
    wildcards: HashMap<String, PathIndex>,
    any_host: PathIndex,
}

/// A template route's literal segments, used for ordering.
fn literal_segments(t: &str) -> usize {
    t.split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .count()
}

/// An error in a route's matchers.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadTemplate(pub String);

impl Router {
    /// Builds the table. `matches[i]` belongs to route `i` of the caller's list.
    pub fn new(matches: Vec<RouteMatch>) -> Result<Router, BadTemplate> {
        let mut r = Router {
            template_literals: vec![0; matches.len()],
            ..Default::default()
        };
        for (i, m) in matches.iter().enumerate() {
            let idx = match m.host.as_deref() {
                None => &mut r.any_host,
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => r.wildcards.entry(suffix.to_owned()).or_default(),
                    None => r.hosts.entry(h.to_owned()).or_default(),
                },
            };
            let id = i as u32;
            match &m.path {
                None => idx.prefix.entry(String::new()).or_default().push(id),
                Some(PathSpec::Exact(p)) => idx.exact.entry(p.clone()).or_default().push(id),
                Some(PathSpec::Prefix(p)) | Some(PathSpec::StringPrefix(p)) => {
                    idx.prefix.entry(p.clone()).or_default().push(id)
                }
                Some(PathSpec::Template(t)) => {
                    insert_template(&mut idx.templates, t, id)?;
                    r.template_literals[i] = literal_segments(t);
                }
                Some(PathSpec::Regex(re)) => {
                    idx.regex_entries.push(id);
                    idx.regex_sources.push(format!("^(?:{re})$"));
                }
            }
        }
        let order = |v: &mut Vec<u32>, matches: &[RouteMatch]| {
            v.sort_by_key(|&i| (std::cmp::Reverse(matches[i as usize].extra_matchers()), i));
        };
        let all = r
            .hosts
            .values_mut()
            .chain(r.wildcards.values_mut())
            .chain(std::iter::once(&mut r.any_host));
        for idx in all {
            for v in idx.exact.values_mut().chain(idx.prefix.values_mut()) {
                order(v, &matches);
            }
            let mut lens: Vec<usize> = idx.prefix.keys().map(|k| k.len()).collect();
            lens.sort_unstable_by(|a, b| b.cmp(a));
            lens.dedup();
            idx.prefix_lens = lens;
            if !idx.regex_sources.is_empty() {
                idx.regex = Some(
                    RegexSet::new(&idx.regex_sources).map_err(|e| BadTemplate(e.to_string()))?,
                );
            }
        }
        r.matches = matches;
        Ok(r)
    }

    /// The first matching route by the precedence above, and its template parameters.
    pub fn find(&self, req: &RouteRequest<'_>) -> Option<(usize, Params)> {
        let query = Query {
            raw: req.query,
            parsed: Default::default(),
        };
        // Without host routes (the usual table) the host is not looked at: it is not made canonical.
        if self.hosts.is_empty() && self.wildcards.is_empty() {
            return self.find_in(&self.any_host, req, &query);
        }
        let host = normalize_host(req.host);
        if let Some(idx) = self.hosts.get(host.as_ref()) {
            if let Some(hit) = self.find_in(idx, req, &query) {
                return Some(hit);
            }
        }
        if !self.wildcards.is_empty() {
            // Try `.b.example.com`, then `.example.com`, then `.com`: the longest suffix first.
            let mut rest: &str = host.as_ref();
            while let Some(dot) = rest.find('.') {
                let suffix = &rest[dot..];
                if let Some(idx) = self.wildcards.get(suffix) {
                    if let Some(hit) = self.find_in(idx, req, &query) {
                        return Some(hit);
                    }
                }
                rest = &rest[dot + 1..];
            }
        }
        self.find_in(&self.any_host, req, &query)
    }

    fn find_in(
        &self,
        idx: &PathIndex,
        req: &RouteRequest<'_>,
        query: &Query<'_>,
    ) -> Option<(usize, Params)> {
        let ok = |i: u32| self.matches[i as usize].rest_matches(req, query);
        if let Some(ids) = idx.exact.get(req.path) {
            if let Some(&i) = ids.iter().find(|&&i| ok(i)) {
                return Some((i as usize, Vec::new()));
            }
        }
        if !idx.templates.is_empty() {
            let mut hits = Vec::new();
            let segs: Vec<&str> = req.path.split('/').skip(1).collect();
            if req.path.starts_with('/') {
                walk_template(&idx.templates, &segs, &mut Vec::new(), &mut hits);
            }
            hits.sort_by_key(|(i, _)| {
                (
                    std::cmp::Reverse(self.template_literals[*i as usize]),
                    std::cmp::Reverse(self.matches[*i as usize].extra_matchers()),
                    *i,
                )
            });
            if let Some((i, params)) = hits.into_iter().find(|(i, _)| ok(*i)) {
                return Some((i as usize, params));
            }
        }
        if let Some(set) = &idx.regex {
            for pos in set.matches(req.path).iter() {
                let i = idx.regex_entries[pos];
                if ok(i) {
                    return Some((i as usize, Vec::new()));
                }
            }
        }
        for &len in &idx.prefix_lens {
            if len > req.path.len() || !req.path.is_char_boundary(len) {
                continue;
            }
            if let Some(ids) = idx.prefix.get(&req.path[..len]) {
                // A segment prefix ends where a segment does: at the end, before `/` or `;`, or
                // with a `/` of its own.
                let boundary = len == req.path.len()
                    || matches!(req.path.as_bytes()[len], b'/' | b';')
                    || req.path[..len].ends_with('/');
                let fits = |i: u32| {
                    boundary || !matches!(self.matches[i as usize].path, Some(PathSpec::Prefix(_)))
                };
                if let Some(&i) = ids.iter().find(|&&i| fits(i) && ok(i)) {
                    return Some((i as usize, Vec::new()));
                }
            }
        }
        None
    }
}

impl TemplateNode {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.param.is_none()
            && self.rest.is_empty()
            && self.here.is_empty()
    }
}

fn insert_template(root: &mut TemplateNode, t: &str, id: u32) -> Result<(), BadTemplate> {
    if !t.starts_with('/') {
        return Err(BadTemplate(format!("template `{t}` must start with /")));
    }
    let segs: Vec<&str> = t.split('/').skip(1).collect();
    let mut node = root;
    for (n, seg) in segs.iter().enumerate() {
        if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if let Some(name) = inner.strip_prefix('*') {
                if n + 1 != segs.len() {
                    return Err(BadTemplate(format!(
                        "template `{t}`: {{*{name}}} must be the last segment"
                    )));
                }
                node.rest.push((Arc::from(name), id));
                return Ok(());
            }
            if inner.is_empty() || !inner.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(BadTemplate(format!(
                    "template `{t}`: parameter `{{{inner}}}` needs a name of letters, digits or _"
                )));
            }
            let entry = node
                .param
                .get_or_insert_with(|| (Arc::from(inner), Box::default()));
            if &*entry.0 != inner {
                // Two templates name the same position differently: keep both names working by
                // storing the parameter under the first name; report it instead of guessing.
                return Err(BadTemplate(format!(
                    "template `{t}`: parameter `{{{inner}}}` is at a position another template calls `{{{}}}`",
                    entry.0
                )));
            }
            node = &mut entry.1;
        } else if seg.contains('{') || seg.contains('}') {
            return Err(BadTemplate(format!(
                "template `{t}`: a parameter must be a whole segment, like /users/{{id}}"
            )));
        } else {
            node = node.literal.entry((*seg).to_owned()).or_default();
        }
    }
    node.here.push(id);
    Ok(())
}

fn walk_template(
    node: &TemplateNode,
    segs: &[&str],
    params: &mut Params,
    hits: &mut Vec<(u32, Params)>,
) {
    for (name, id) in &node.rest {
        if segs.iter().any(|s| crate::canonical::has_escaped_slash(s)) {
            continue;
        }
        let mut p = params.clone();
        p.push((name.clone(), segs.join("/")));
        hits.push((*id, p));
    }
    let Some((first, rest)) = segs.split_first() else {
        for &id in &node.here {
            hits.push((id, params.clone()));
        }
        return;
    };
    if let Some(child) = node.literal.get(*first) {
        walk_template(child, rest, params, hits);
    }
    if let Some((name, child)) = &node.param {
        // A parameter is one segment: never empty, a dot segment or one holding an encoded slash.
        if !first.is_empty()
            && *first != "."
            && *first != ".."
            && !crate::canonical::has_escaped_slash(first)
        {
            params.push((name.clone(), (*first).to_owned()));
            walk_template(child, rest, params, hits);
            params.pop();
        }
    }
}

/// Lowercases a host and drops its port (`Example.com:8080` -> `example.com`).
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let h = if host.starts_with('[') {
        host.find(']').map(|i| &host[..=i]).unwrap_or(host)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map(|(h, _)| h)
            .unwrap_or(host)
    };
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(h.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_that_is_not_visible_ascii_is_still_present() {
        let odd = http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert!(ValueTest::Present(true).test_header(&odd));
        assert!(!ValueTest::Present(false).test_header(&odd));
        assert!(!ValueTest::Exact(String::new()).test_header(&odd));
        let plain = http::HeaderValue::from_static("1");
        assert!(ValueTest::Exact("1".into()).test_header(&plain));
    }

    fn m(host: Option<&str>, path: Option<PathSpec>) -> RouteMatch {
        RouteMatch {
            host: host.map(str::to_owned),
            path,
            methods: vec![],
            headers: vec![],
            query: vec![],
            client_cert: vec![],
        }
    }

    fn find(r: &Router, host: &str, path_q: &str) -> Option<(usize, Params)> {
        let (path, query) = match path_q.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_q, None),
        };
        r.find(&RouteRequest {
            host,
            path,
            query,
            method: &Method::GET,
            headers: &HeaderMap::new(),
            client_cert: None,
        })
    }

    #[test]
    fn precedence() {
        use PathSpec::*;
        let r = Router::new(vec![
            m(None, None),                                       // 0
            m(None, Some(Prefix("/api".into()))),                // 1
            m(None, Some(Prefix("/api/v1".into()))),             // 2
            m(None, Some(Exact("/api/v1/x".into()))),            // 3
            m(None, Some(Template("/api/v1/{id}".into()))),      // 4
            m(None, Some(Template("/api/{v}/{id}".into()))),     // 5
            m(None, Some(Regex("/re/[0-9]+".into()))),           // 6
            m(Some("*.example.com"), None),                      // 7
            m(Some("a.example.com"), Some(Prefix("/a".into()))), // 8
            m(Some("*.b.example.com"), None),                    // 9
            m(None, Some(Template("/files/{*rest}".into()))),    // 10
        ])
        .unwrap();
        assert_eq!(find(&r, "x", "/").unwrap().0, 0);
        assert_eq!(find(&r, "x", "/api").unwrap().0, 1);
        assert_eq!(find(&r, "x", "/api/v1").unwrap().0, 2);
        assert_eq!(find(&r, "x", "/api/v1/x").unwrap().0, 3);
        let (i, p) = find(&r, "x", "/api/v1/42").unwrap();
        assert_eq!(i, 4);
        assert_eq!(p[0].1, "42");
        let (i, p) = find(&r, "x", "/api/v2/42").unwrap();
        assert_eq!(i, 5);
        assert_eq!((p[0].1.as_str(), p[1].1.as_str()), ("v2", "42"));
        assert_eq!(find(&r, "x", "/re/123").unwrap().0, 6);
        assert_eq!(find(&r, "x", "/re/12a").unwrap().0, 0);
        assert_eq!(find(&r, "z.example.com", "/a").unwrap().0, 7);
        assert_eq!(find(&r, "A.Example.com:8080", "/a").unwrap().0, 8);
        assert_eq!(find(&r, "a.example.com", "/b").unwrap().0, 7);
        assert_eq!(find(&r, "c.b.example.com", "/").unwrap().0, 9);
        assert_eq!(find(&r, "example.com", "/").unwrap().0, 0);
        let (i, p) = find(&r, "x", "/files/a/b/c").unwrap();
        assert_eq!(i, 10);
        assert_eq!(p[0].1, "a/b/c");
    }

    #[test]
    fn extra_matchers_win_then_declaration_order() {
        let mut with_q = m(None, Some(PathSpec::Exact("/q".into())));
        with_q.query = vec![("debug".into(), ValueTest::Exact("1".into()))];
        let r = Router::new(vec![
            m(None, Some(PathSpec::Exact("/q".into()))),
            m(None, Some(PathSpec::Exact("/q".into()))),
            with_q,
        ])
        .unwrap();
        assert_eq!(find(&r, "h", "/q?debug=1").unwrap().0, 2);
        assert_eq!(find(&r, "h", "/q?debug=0").unwrap().0, 0);
        assert_eq!(find(&r, "h", "/q").unwrap().0, 0);
    }

    #[test]
    fn no_match_and_bad_templates() {
        let r = Router::new(vec![m(None, Some(PathSpec::Exact("/only".into())))]).unwrap();
        assert!(find(&r, "h", "/other").is_none());
        assert!(Router::new(vec![m(None, Some(PathSpec::Template("/a{x}".into())))]).is_err());
        assert!(Router::new(vec![m(None, Some(PathSpec::Template("/{*r}/x".into())))]).is_err());
    }

    #[test]
    fn prefixes_end_on_segments_unless_string_prefixes() {
        use PathSpec::*;
        let r = Router::new(vec![
            m(None, None),                                // 0
            m(None, Some(Prefix("/api".into()))),         // 1
            m(None, Some(Prefix("/api/admin".into()))),   // 2
            m(None, Some(StringPrefix("/str".into()))),   // 3
            m(None, Some(Prefix("/slash/".into()))),      // 4
            m(None, Some(Template("/t/{id}".into()))),    // 5
            m(None, Some(Template("/r/{*rest}".into()))), // 6
        ])
        .unwrap();
        let route = |p: &str| find(&r, "h", p).unwrap().0;
        assert_eq!(route("/api"), 1);
        assert_eq!(route("/api/"), 1);
        assert_eq!(route("/apiadmin/x"), 0);
        assert_eq!(route("/api/admin"), 2);
        assert_eq!(route("/api/admin/x"), 2);
        assert_eq!(route("/api/admin;v=1/x"), 2);
        assert_eq!(route("/api/adminx"), 1);
        assert_eq!(route("/strx"), 3);
        assert_eq!(route("/slash/x"), 4);
        assert_eq!(route("/slash"), 0);
        assert_eq!(route("/t/42"), 5);
        assert_eq!(route("/t/a%2Fb"), 0);
        assert_eq!(route("/t/.."), 0);
        assert_eq!(route("/r/a/b"), 6);
        assert_eq!(route("/r/a%2F..%2Fb"), 0);
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("a=1&b=x%20y&c&d=%zz+"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into()),
                ("d".into(), "%zz ".into())
            ]
        );
    }
}
