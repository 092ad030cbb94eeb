//! Where a request's key is, and what hiding it changes: pure functions of the config and the
//! request's method, headers and query, so the handler in `lib.rs` only reads and applies them.

use crate::config::KeyAuth;
use percent_encoding::percent_decode;

/// The request as the lookup sees it.
pub struct Incoming<'a> {
    /// The method.
    pub method: &'a str,
    /// The request's headers, in order (names in any case): every one it has, or at least those
    /// the lookup reads ([`KeyAuth::header_reads`], and [`PREFLIGHT_HEADERS`] for a preflight).
    pub headers: &'a [(String, String)],
    /// The query string without `?`, if any.
    pub query: Option<&'a str>,
}

/// Where a key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A request header.
    Header,
    /// A query parameter.
    Query,
    /// A cookie.
    Cookie,
}

impl Place {
    /// What it is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Place::Header => "header",
            Place::Query => "query parameter",
            Place::Cookie => "cookie",
        }
    }
}

/// What the lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A key (not empty), under `key_names[name]`, at `place`.
    Key {
        /// The key.
        key: String,
        /// Its name's index in `key_names`.
        name: usize,
        /// Where it was.
        place: Place,
    },
    /// No key anywhere the plugin looks (or only empty ones).
    Missing,
    /// A key that cannot be used: given more than once in one place, or not UTF-8 once
    /// percent-decoded. The message is for the client and never holds the key.
    Malformed(String),
}

impl KeyAuth {
    /// Looks for the key: for each name of `key_names` in order, in the header, the query
    /// parameters, then the cookies (each where the config says to look). The first place that has
    /// the name decides: one value is the key (an empty one is no key: the lookup goes on), several
    /// are refused (which one is meant is ambiguous, and a client may be trying to smuggle one past
    /// something that reads the other).
    pub fn lookup(&self, req: &Incoming) -> Lookup {
        let cookies = if self.in_cookie {
            cookie_pairs(req.headers)
        } else {
            Vec::new()
        };
        for (i, name) in self.key_names.iter().enumerate() {
            let mut places: Vec<(Place, Vec<Result<String, ()>>)> = Vec::with_capacity(3);
            if self.in_header {
                let values = header_values(req.headers, name).map(|v| Ok(v.to_owned()));
                places.push((Place::Header, values.collect()));
            }
            if self.in_query {
                let values = query_pairs(req.query.unwrap_or_default())
                    .filter(|p| p.name == name.as_bytes())
                    .map(|p| String::from_utf8(form_decode(p.value)).map_err(|_| ()));
                places.push((Place::Query, values.collect()));
            }
            if self.in_cookie {
                let values = cookies.iter().filter(|c| c.name == name);
                places.push((
                    Place::Cookie,
                    values.map(|c| Ok(c.value.to_owned())).collect(),
                ));
            }
            for (place, mut values) in places {
                let what = || format!("{} `{name}`", place.noun());
                match values.len() {
                    0 => continue,
                    1 => {}
                    _ => {
                        return Lookup::Malformed(format!(
                            "Duplicate API key found: {} given more than once",
                            what()
                        ))
                    }
                }
                match values.pop() {
                    Some(Ok(key)) if key.is_empty() => continue,
                    Some(Ok(key)) => {
                        return Lookup::Key {
                            key,
                            name: i,
                            place,
                        }
                    }
                    _ => {
                        return Lookup::Malformed(format!(
                            "The API key in {} is not UTF-8 once percent-decoded",
                            what()
                        ))
                    }
                }
            }
        }
        Lookup::Missing
    }

    /// What `hide_credentials` changes: every header, query parameter and cookie named in
    /// `key_names`, in the places the plugin looks, is removed (not only the one the key was
    /// found in, so no second copy of a key reaches the upstream either).
    pub fn hidden(&self, req: &Incoming) -> Hidden {
        let mut hidden = Hidden::default();
        if self.in_header {
            hidden.headers = self
                .key_names
                .iter()
                .filter(|n| header_values(req.headers, n).next().is_some())
                .map(|n| n.to_ascii_lowercase())
                .collect();
        }
        if let (true, Some(query)) = (self.in_query, req.query) {
            let kept: Vec<&str> = query_pairs(query)
                .filter(|p| !self.key_names.iter().any(|n| p.name == n.as_bytes()))
                .map(|p| p.raw)
                .collect();
            if kept.len() != query_pairs(query).count() {
                hidden.query = Some(kept.join("&"));
            }
        }
        if self.in_cookie {
            let pairs = cookie_pairs(req.headers);
            let kept: Vec<&str> = pairs
                .iter()
                .filter(|c| !self.key_names.iter().any(|n| c.name == n))
                .map(|c| c.raw)
                .collect();
            if kept.len() != pairs.len() {
                hidden.cookie = Some((!kept.is_empty()).then(|| kept.join("; ")));
            }
        }
        hidden
    }
}

/// The headers a preflight is recognized by ([`is_preflight`]), lower case.
pub const PREFLIGHT_HEADERS: [&str; 2] = ["origin", "access-control-request-method"];

impl KeyAuth {
    /// The request headers [`KeyAuth::lookup`] and [`KeyAuth::hidden`] read, lower case, each
    /// once: the key names when the key is looked for in headers (names that differ only in case
    /// are one header) and `cookie` when it is looked for in cookies. Worked out at `init`, so a
    /// request reads only these (one host call each) rather than every header it has.
    pub fn header_reads(&self) -> Vec<String> {
        let mut reads: Vec<String> = Vec::new();
        let names = self.key_names.iter().filter(|_| self.in_header);
        let cookie = self.in_cookie.then_some("cookie");
        for name in names.map(String::as_str).chain(cookie) {
            let name = name.to_ascii_lowercase();
            if !reads.contains(&name) {
                reads.push(name);
            }
        }
        reads
    }
}

/// What hiding the key changes in a request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hidden {
    /// Headers to remove (lower-case names).
    pub headers: Vec<String>,
    /// The new query string (without `?`; empty: no query left), when it changes.
    pub query: Option<String>,
    /// The new `Cookie` header (`None`: no cookie left, remove it), when it changes.
    pub cookie: Option<Option<String>>,
}

/// Whether the request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method` (the Fetch standard's definition, as the cors plugin's). Other
/// `OPTIONS` requests are authenticated like any request.
pub fn is_preflight(req: &Incoming) -> bool {
    req.method == "OPTIONS"
        && header_values(req.headers, "origin").next().is_some()
        && header_values(req.headers, "access-control-request-method")
            .next()
            .is_some()
}

/// The values of the header `name` (compared without case).
fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One `name=value` of a query string.
struct QueryPair<'a> {
    /// The name, decoded.
    name: Vec<u8>,
    /// The value as written (empty when there is no `=`).
    value: &'a str,
    /// The pair as written.
    raw: &'a str,
}

/// The pairs of a query string (`&`-separated, as `application/x-www-form-urlencoded` and every
/// gateway read it; empty pieces skipped).
fn query_pairs(query: &str) -> impl Iterator<Item = QueryPair<'_>> {
    query.split('&').filter(|p| !p.is_empty()).map(|raw| {
        let (name, value) = raw.split_once('=').unwrap_or((raw, ""));
        QueryPair {
            name: form_decode(name),
            value,
            raw,
        }
    })
}

/// Decodes a query name or value as `application/x-www-form-urlencoded` does: `+` is a space and
/// `%XX` a byte (a `%` not followed by two hex digits stays as it is).
fn form_decode(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

/// One cookie of a `Cookie` header.
#[derive(Debug)]
struct CookiePair<'a> {
    name: &'a str,
    /// The value, without the double quotes it may be written in.
    value: &'a str,
    /// The pair as written (without the spaces around it).
    raw: &'a str,
}

/// The cookies of every `Cookie` header, in order (RFC 6265: `name=value` pairs separated by
/// `;`; HTTP/2 clients may split them over several headers). A piece without `=` has no name.
fn cookie_pairs(headers: &[(String, String)]) -> Vec<CookiePair<'_>> {
    header_values(headers, "cookie")
        .flat_map(|v| v.split(';'))
        .map(|p| p.trim_matches([' ', '\t']))
        .filter(|p| !p.is_empty())
        .map(|raw| {
            let (name, value) = raw.split_once('=').unwrap_or(("", raw));
            let value = value.trim_matches([' ', '\t']);
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            CookiePair {
                name: name.trim_matches([' ', '\t']),
                value,
                raw,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn config(json: &str) -> KeyAuth {
        parse(json, |_| Ok(None)).unwrap()
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn lookup(c: &KeyAuth, h: &[(&str, &str)], query: Option<&str>) -> Lookup {
        let h = headers(h);
        c.lookup(&Incoming {
            method: "GET",
            headers: &h,
            query,
        })
    }

    fn key(key: &str, name: usize, place: Place) -> Lookup {
        Lookup::Key {
            key: key.into(),
            name,
            place,
        }
    }

    fn malformed(l: Lookup) -> String {
        match l {
            Lookup::Malformed(m) => m,
            other => panic!("not malformed: {other:?}"),
        }
    }

    #[test]
    fn defaults_look_in_the_header_then_the_query() {
        let c = config("{}");
        assert_eq!(
            lookup(&c, &[("apikey", "k1")], None),
            key("k1", 0, Place::Header)
        );
        assert_eq!(
            lookup(&c, &[("ApiKey", "k1")], None),
            key("k1", 0, Place::Header)
        );
        assert_eq!(
            lookup(&c, &[], Some("a=1&apikey=k2&b")),
            key("k2", 0, Place::Query)
        );
        // Both: the header wins, the query is not looked at.
        assert_eq!(
            lookup(&c, &[("apikey", "k1")], Some("apikey=k2&apikey=k3")),
            key("k1", 0, Place::Header)
        );
        // Cookies are off by default.
        assert_eq!(
            lookup(&c, &[("cookie", "apikey=k3")], None),
            Lookup::Missing
        );
        assert_eq!(
            lookup(&c, &[("x-other", "k")], Some("apikeys=k")),
            Lookup::Missing
        );
        assert_eq!(lookup(&c, &[], None), Lookup::Missing);
    }

    #[test]
    fn names_are_tried_in_order_each_in_every_place() {
        let c = config(r#"{"key_names": ["x-api-key", "token"], "key_in_cookie": true}"#);
        // `x-api-key` in the query comes before `token` in a header.
        assert_eq!(
            lookup(&c, &[("token", "t")], Some("x-api-key=q")),
            key("q", 0, Place::Query)
        );
        assert_eq!(
            lookup(&c, &[("token", "t"), ("cookie", "x-api-key=c")], None),
            key("c", 0, Place::Cookie)
        );
        assert_eq!(
            lookup(&c, &[("token", "t")], Some("apikey=q")),
            key("t", 1, Place::Header)
        );
        assert_eq!(
            lookup(&c, &[("cookie", "a=1; token=\"c2\"")], None),
            key("c2", 1, Place::Cookie)
        );
    }

    #[test]
    fn places_can_be_switched_off() {
        let c = config(r#"{"key_in_header": false, "key_in_cookie": true}"#);
        assert_eq!(lookup(&c, &[("apikey", "h")], None), Lookup::Missing);
        assert_eq!(
            lookup(&c, &[("apikey", "h")], Some("apikey=q")),
            key("q", 0, Place::Query)
        );
        let c = config(r#"{"key_in_query": false}"#);
        assert_eq!(lookup(&c, &[], Some("apikey=q")), Lookup::Missing);
        let c = config(r#"{"key_in_header": false, "key_in_query": false, "key_in_cookie": true}"#);
        assert_eq!(
            lookup(
                &c,
                &[("apikey", "h"), ("cookie", "apikey=c")],
                Some("apikey=q")
            ),
            key("c", 0, Place::Cookie)
        );
    }

    #[test]
    fn query_values_are_form_decoded() {
        let c = config("{}");
        for (query, want) in [
            ("apikey=a%2Bb%20c", "a+b c"),
            ("apikey=a+b", "a b"),
            ("apikey=%C3%A9t%C3%A9", "été"),
            ("apikey=50%", "50%"),
            ("apikey=a%zz", "a%zz"),
            ("api%6Bey=k", "k"),
            ("apikey=a=b", "a=b"),
        ] {
            assert_eq!(
                lookup(&c, &[], Some(query)),
                key(want, 0, Place::Query),
                "{query}"
            );
        }
        // Names are compared exactly once decoded.
        assert_eq!(lookup(&c, &[], Some("APIKEY=k")), Lookup::Missing);
        let m = malformed(lookup(&c, &[], Some("apikey=%FF%FE")));
        assert_eq!(
            m,
            "The API key in query parameter `apikey` is not UTF-8 once percent-decoded"
        );
    }

    #[test]
    fn empty_values_are_no_key() {
        let c = config(r#"{"key_names": ["apikey", "token"], "key_in_cookie": true}"#);
        assert_eq!(lookup(&c, &[("apikey", "")], None), Lookup::Missing);
        assert_eq!(lookup(&c, &[], Some("apikey=&token")), Lookup::Missing);
        assert_eq!(
            lookup(
                &c,
                &[("apikey", ""), ("cookie", "apikey=\"\"")],
                Some("apikey=&token=t")
            ),
            key("t", 1, Place::Query)
        );
    }

    #[test]
    fn a_key_given_twice_in_one_place_is_refused() {
        let c = config(r#"{"key_in_cookie": true}"#);
        let m = malformed(lookup(&c, &[("apikey", "k1"), ("APIKEY", "k1")], None));
        assert_eq!(
            m,
            "Duplicate API key found: header `apikey` given more than once"
        );
        // Even empty or identical values: a well-behaved client sends one.
        let m = malformed(lookup(&c, &[], Some("apikey=k&x=1&apikey=")));
        assert!(m.contains("query parameter `apikey`"), "{m}");
        let m = malformed(lookup(&c, &[], Some("apikey&apikey=k")));
        assert!(m.contains("query parameter `apikey`"), "{m}");
        let m = malformed(lookup(
            &c,
            &[("cookie", "apikey=a"), ("cookie", "b=1; apikey=a")],
            None,
        ));
        assert_eq!(
            m,
            "Duplicate API key found: cookie `apikey` given more than once"
        );
        // A comma-joined header is one value (and no key anyone holds).
        assert_eq!(
            lookup(&c, &[("apikey", "k1, k2")], None),
            key("k1, k2", 0, Place::Header)
        );
    }

    #[test]
    fn cookies_are_name_value_pairs() {
        let c = config(r#"{"key_in_header": false, "key_in_query": false, "key_in_cookie": true}"#);
        for (cookie, want) in [
            ("apikey=k", Some("k")),
            ("a=1;apikey=k;b=2", Some("k")),
            ("  a=1 ;  apikey = k  ; b", Some("k")),
            ("apikey=\"k\"", Some("k")),
            ("apikey=k=v", Some("k=v")),
            ("Apikey=k", None),
            ("xapikey=k; apikeyx=k", None),
            ("apikey", None),
            ("=apikey", None),
            ("", None),
        ] {
            let want = want.map_or(Lookup::Missing, |k| key(k, 0, Place::Cookie));
            assert_eq!(lookup(&c, &[("cookie", cookie)], None), want, "{cookie}");
        }
    }

    fn hidden(c: &KeyAuth, h: &[(&str, &str)], query: Option<&str>) -> Hidden {
        let h = headers(h);
        c.hidden(&Incoming {
            method: "GET",
            headers: &h,
            query,
        })
    }

    #[test]
    fn hiding_removes_every_key_name_where_the_plugin_looks() {
        let c = config(r#"{"key_names": ["apikey", "X-Token"], "key_in_cookie": true}"#);
        let h = hidden(
            &c,
            &[
                ("APIKEY", "k"),
                ("x-token", "t"),
                ("x-other", "o"),
                ("cookie", "a=1; apikey=k"),
                ("cookie", "X-Token=t; b=\"2\""),
            ],
            Some("page=2&apikey=k&X-Token=t&api%6Bey=k&q=a+b"),
        );
        assert_eq!(
            h,
            Hidden {
                headers: vec!["apikey".into(), "x-token".into()],
                query: Some("page=2&q=a+b".into()),
                cookie: Some(Some("a=1; b=\"2\"".into())),
            }
        );
        // Nothing to hide: nothing changes.
        let h = hidden(
            &c,
            &[("cookie", "a=1"), ("x-other", "o")],
            Some("a=1&x-token=t"),
        );
        assert_eq!(h, Hidden::default());
        // The key was the whole query, or the only cookie.
        let h = hidden(&c, &[("cookie", "apikey=k")], Some("apikey=k"));
        assert_eq!(h.query.as_deref(), Some(""));
        assert_eq!(h.cookie, Some(None));
    }

    #[test]
    fn hiding_leaves_places_the_plugin_does_not_look_at() {
        let c = config(r#"{"key_in_query": false}"#);
        let h = hidden(
            &c,
            &[("apikey", "k"), ("cookie", "apikey=k")],
            Some("apikey=k"),
        );
        assert_eq!(
            h,
            Hidden {
                headers: vec!["apikey".into()],
                query: None,
                cookie: None,
            }
        );
        let c = config(r#"{"key_in_header": false}"#);
        let h = hidden(&c, &[("apikey", "k")], Some("apikey=k"));
        assert_eq!(h.headers, Vec::<String>::new());
        assert_eq!(h.query.as_deref(), Some(""));
    }

    #[test]
    fn header_reads_are_the_key_names_and_the_cookie_once_each() {
        let c = config(
            r#"{"key_names": ["X-Key", "apikey", "x-key", "cookie"], "key_in_cookie": true}"#,
        );
        assert_eq!(c.header_reads(), ["x-key", "apikey", "cookie"]);
        let c =
            config(r#"{"key_names": ["a", "b"], "key_in_header": false, "key_in_cookie": true}"#);
        assert_eq!(c.header_reads(), ["cookie"]);
        assert_eq!(config("{}").header_reads(), ["apikey"]);
        let c = config(r#"{"key_in_header": false}"#);
        assert!(c.header_reads().is_empty());
    }

    #[test]
    fn preflights() {
        let h = headers(&[
            ("origin", "https://a.example"),
            ("access-control-request-method", "PUT"),
        ]);
        let req = |method, headers| Incoming {
            method,
            headers,
            query: None,
        };
        assert!(is_preflight(&req("OPTIONS", &h)));
        assert!(!is_preflight(&req("GET", &h)));
        assert!(!is_preflight(&req("OPTIONS", &h[..1])));
        assert!(!is_preflight(&req("OPTIONS", &h[1..])));
    }
}
