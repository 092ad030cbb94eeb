//! What the policy decides: the request sent to the auth service, and what its answer (or the lack
//! of one) means for the client's request. Pure functions of the config and the request's values, so
//! the handlers in `lib.rs` only read and write headers and make the call.

use crate::config::ExtAuth;
use gateway_plugin_sdk::{http, Error};

/// The stable code in the body of the 503 answered when the auth service gives no answer.
pub const UNAVAILABLE_CODE: &str = "auth_unavailable";

/// The client's request, as far as the auth service is told about it.
#[derive(Debug, Default)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Every request header, in order, names lower case.
    pub headers: &'a [(String, String)],
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The client's `ip:port`.
    pub client_address: &'a str,
}

impl Incoming<'_> {
    /// Every value of the header `name` (lower case).
    fn values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the auth service's answer means for the request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A 2xx: the request goes on, with these headers set on it (the `upstream_headers` the answer
    /// had, every value; the listed ones it did not have stay removed).
    Allow(Vec<(String, String)>),
    /// Any other status: the client gets this answer and the upstream is not called.
    Deny {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// No answer. `degradable` is false when the call could never work (the upstream is not
    /// granted or does not exist, the request was refused as malformed): then even
    /// `allow_degradation` answers 503, so a missing grant does not switch auth off.
    Unavailable { why: String, degradable: bool },
}

impl ExtAuth {
    /// The request to the auth service: the configured method and path, the listed client headers,
    /// `x-forwarded-{method,uri,host,proto,for}`, the request id, and with `request_body` the body
    /// and its `content-type`.
    pub fn auth_request(
        &self,
        req: &Incoming,
        request_id: Option<&str>,
        body: Option<&[u8]>,
    ) -> http::Request {
        let mut out =
            http::Request::new(self.method.as_str(), &self.path).timeout_ms(self.timeout_ms);
        for name in &self.request_headers {
            for v in req.values(name) {
                out = out.header(name, v);
            }
        }
        let uri = match req.query {
            Some(q) => format!("{}?{q}", req.path),
            None => req.path.to_string(),
        };
        out = out
            .header("x-forwarded-method", req.method)
            .header("x-forwarded-uri", &uri)
            .header("x-forwarded-proto", req.scheme);
        if let Some(host) = req.values("host").next() {
            out = out.header("x-forwarded-host", host);
        }
        // As the gateway forwards it to upstreams: the values the client brought, then the client.
        let mut xff: Vec<&str> = req.values("x-forwarded-for").collect();
        let ip = client_ip(req.client_address);
        if !ip.is_empty() {
            xff.push(&ip);
        }
        if !xff.is_empty() {
            out = out.header("x-forwarded-for", &xff.join(", "));
        }
        if let Some(id) = request_id {
            out = out.header("x-request-id", id);
        }
        if let Some(body) = body {
            if !self.request_headers.iter().any(|h| h == "content-type") {
                for v in req.values("content-type") {
                    out = out.header("content-type", v);
                }
            }
            out = out.body(body);
        }
        out
    }

    /// What the auth service's answer (or the error instead of one) decides.
    pub fn verdict(&self, answer: Result<http::Response, Error>) -> Verdict {
        let resp = match answer {
            Ok(resp) => resp,
            Err(e) => {
                let degradable = matches!(e, Error::Timeout | Error::Failed(_));
                return Verdict::Unavailable {
                    why: format!("auth upstream `{}`: {e}", self.upstream),
                    degradable,
                };
            }
        };
        if (200..300).contains(&resp.status) {
            return Verdict::Allow(pick(&resp.headers, &self.upstream_headers));
        }
        // The body goes to the client as the service wrote it, so its type goes with it.
        let mut names = self.client_headers.clone();
        if !names.iter().any(|n| n == "content-type") {
            names.push("content-type".into());
        }
        Verdict::Deny {
            status: resp.status,
            headers: pick(&resp.headers, &names),
            body: resp.body,
        }
    }
}

/// The headers of `from` named in `names` (every value, in the order of `names`).
fn pick(from: &[(String, String)], names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .flat_map(|name| {
            from.iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(move |(_, v)| (name.clone(), v.clone()))
        })
        .collect()
}

/// The IP of an `ip:port` or `[ipv6]:port` address (the text as it is if it is not one).
fn client_ip(address: &str) -> String {
    match address.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => address.to_string(),
    }
}

/// The 503 answered when the auth service gives no answer: the gateway's error body shape
/// (`{"error", "message", "request_id"}`), with the request id also as `x-request-id`.
pub fn unavailable(request_id: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let body = serde_json::json!({
        "error": UNAVAILABLE_CODE,
        "message": "the authorization service did not answer",
        "request_id": request_id,
    });
    (
        503,
        vec![
            ("content-type".into(), "application/json".into()),
            ("x-request-id".into(), request_id.into()),
        ],
        format!("{body}\n").into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response {
        http::Response {
            status,
            headers: h(headers),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_auth_request() {
        let auth = parse(
            r#"{"upstream": "auth", "path": "/verify?rd=1", "request_headers": ["authorization", "x-tenant"]}"#,
        )
        .unwrap();
        let headers = h(&[
            ("host", "api.example"),
            ("authorization", "Bearer t"),
            ("cookie", "s=1"),
            ("x-tenant", "a"),
            ("x-tenant", "b"),
            ("x-forwarded-for", "10.0.0.1"),
            ("content-type", "text/plain"),
        ]);
        let req = Incoming {
            method: "DELETE",
            path: "/items/1",
            query: Some("force=1"),
            headers: &headers,
            scheme: "https",
            client_address: "[::1]:40000",
        };
        let out = auth.auth_request(&req, Some("abc"), None);
        assert_eq!(
            (out.method.as_str(), out.path_with_query.as_str()),
            ("GET", "/verify?rd=1")
        );
        assert_eq!(out.timeout_ms, 3000);
        assert_eq!(
            out.headers,
            h(&[
                ("authorization", "Bearer t"),
                ("x-tenant", "a"),
                ("x-tenant", "b"),
                ("x-forwarded-method", "DELETE"),
                ("x-forwarded-uri", "/items/1?force=1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api.example"),
                ("x-forwarded-for", "10.0.0.1, ::1"),
                ("x-request-id", "abc"),
            ])
        );
        assert!(out.body.is_empty());

        let auth =
            parse(r#"{"upstream": "auth", "method": "POST", "request_body": true}"#).unwrap();
        let req = Incoming {
            method: "POST",
            path: "/",
            headers: &headers,
            client_address: "127.0.0.1:1",
            ..Incoming::default()
        };
        let out = auth.auth_request(&req, None, Some(b"{}"));
        assert_eq!(out.method, "POST");
        assert_eq!(out.body, b"{}");
        assert!(out
            .headers
            .contains(&("content-type".into(), "text/plain".into())));
        assert!(out.headers.contains(&("cookie".into(), "s=1".into())));
        assert!(out
            .headers
            .contains(&("x-forwarded-for".into(), "10.0.0.1, 127.0.0.1".into())));
        assert!(!out.headers.iter().any(|(n, _)| n == "x-request-id"));
    }

    #[test]
    fn verdicts() {
        let auth = parse(r#"{"upstream": "auth", "upstream_headers": ["x-user-id", "x-roles"], "client_headers": ["www-authenticate", "set-cookie"]}"#).unwrap();
        let ok = answer(
            204,
            &[
                ("X-User-Id", "ann"),
                ("x-other", "no"),
                ("x-roles", "a"),
                ("x-roles", "b"),
            ],
            "ignored",
        );
        assert_eq!(
            auth.verdict(Ok(ok)),
            Verdict::Allow(h(&[
                ("x-user-id", "ann"),
                ("x-roles", "a"),
                ("x-roles", "b")
            ]))
        );
        let no = answer(
            401,
            &[
                ("www-authenticate", "Bearer"),
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("content-type", "application/json"),
                ("x-internal", "secret"),
            ],
            "{\"why\":\"expired\"}",
        );
        assert_eq!(
            auth.verdict(Ok(no)),
            Verdict::Deny {
                status: 401,
                headers: h(&[
                    ("www-authenticate", "Bearer"),
                    ("set-cookie", "a=1"),
                    ("set-cookie", "b=2"),
                    ("content-type", "application/json"),
                ]),
                body: b"{\"why\":\"expired\"}".to_vec(),
            }
        );
        assert!(matches!(
            auth.verdict(Ok(answer(302, &[("location", "/login")], ""))),
            Verdict::Deny { status: 302, .. }
        ));
        assert!(matches!(
            auth.verdict(Ok(answer(500, &[], "boom"))),
            Verdict::Deny { status: 500, .. }
        ));
        for (e, degradable) in [
            (Error::Timeout, true),
            (Error::Failed("refused".into()), true),
            (Error::Denied("not granted".into()), false),
            (Error::BadRequest("bad".into()), false),
        ] {
            assert!(matches!(
                auth.verdict(Err(e)),
                Verdict::Unavailable { degradable: d, .. } if d == degradable
            ));
        }
    }

    #[test]
    fn client_ips() {
        assert_eq!(client_ip("10.1.2.3:5000"), "10.1.2.3");
        assert_eq!(client_ip("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(client_ip("10.1.2.3"), "10.1.2.3");
    }

    #[test]
    fn the_unavailable_answer() {
        let (status, headers, body) = unavailable("7f3a");
        assert_eq!(status, 503);
        assert!(headers.contains(&("x-request-id".into(), "7f3a".into())));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "auth_unavailable");
        assert_eq!(v["request_id"], "7f3a");
    }
}
