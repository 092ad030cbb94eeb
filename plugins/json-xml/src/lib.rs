//! json-xml: converts bodies between JSON and XML for a route. By default a JSON request becomes
//! XML for the backend and the backend's XML answer becomes JSON; the other way round by config.
//! With `soap`, the JSON is the operation of a SOAP 1.1/1.2 envelope and the answer's Body (or
//! Fault, as an HTTP error) comes back as JSON. Bodies of other content types pass unchanged. See
//! README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: json-xml
//!     config:
//!       soap: {version: "1.1", operation: GetUser, namespace: "urn:example:users"}
//! ```

mod config;
mod json;
mod soap;
mod to_json;
mod to_xml;
mod xml;

use config::{Config, Convert};
use gateway_plugin_sdk::{
    export_filter, facts, log, Action, BodyMode, Filter, Options, Request, Response,
};
use json::Json;
use std::cell::Cell;

#[derive(Default)]
struct JsonXml {
    /// The route's config (set by `init`).
    config: Option<Config>,
    /// The id of the request being served, for error bodies (set by `on_request`).
    request_id: String,
    /// This filter answered the request itself: its JSON error is not converted on the way out
    /// (set by the handlers, which hold the config borrowed).
    answered: Cell<bool>,
}

/// The media type of a `Content-Type` value, lower-cased, without parameters.
fn media_type(content_type: Option<String>) -> String {
    content_type
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// `application/json` and `+json` types (`application/problem+json`).
fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// `application/xml`, `text/xml` and `+xml` types (`application/soap+xml`).
fn is_xml(media: &str) -> bool {
    media == "application/xml"
        || media == "text/xml"
        || (media.contains('/') && media.ends_with("+xml"))
}

/// The gateway's error body: `{"error", "message", "request_id"}` and any more members.
fn error_body(code: &str, message: &str, id: &str, more: Vec<(String, Json)>) -> Vec<u8> {
    let mut members = vec![
        ("error".to_string(), Json::String(code.into())),
        ("message".to_string(), Json::String(message.into())),
        ("request_id".to_string(), Json::String(id.into())),
    ];
    members.extend(more);
    json::to_vec(&Json::Object(members))
}

/// What a response body was replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replaced {
    /// The converted body.
    Converted,
    /// A SOAP Fault's JSON error.
    Fault,
    /// The plugin's 502: the answer could not be converted.
    Failed,
}

/// A body that is neither identity-coded nor absent-coded cannot be read (`gzip`, say).
fn encoded(content_encoding: Option<String>) -> bool {
    content_encoding
        .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"))
}

impl JsonXml {
    /// A local answer to a request whose body cannot be converted (400) or that a SOAP route
    /// cannot take (415).
    fn refuse(&self, status: u16, code: &str, message: &str) -> Action {
        self.answered.set(true);
        log::debug(&format!(
            "json-xml: request {} refused ({status} {code}): {message}",
            self.request_id
        ));
        Action::Respond {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-request-id".into(), self.request_id.clone()),
            ],
            body: error_body(code, message, &self.request_id, Vec::new()),
        }
    }

    /// The backend's answer could not be converted: the client gets a 502 in its place.
    fn bad_gateway(&self, resp: &Response, code: &str, message: &str) -> Action {
        log::warn(&format!(
            "json-xml: request {}: the upstream's answer ({}) cannot be converted: {message}",
            self.request_id,
            resp.status()
        ));
        let body = error_body(code, message, &self.request_id, Vec::new());
        self.replace(resp, 502, &body, "application/json", Replaced::Failed)
    }

    /// Replaces the response's status, body and content type in place. The upstream's other
    /// headers stay, but an error body gets `x-request-id`, and the plugin's own 502 is not to be
    /// cached (`Cache-Control: no-store`; the old body's validators removed).
    fn replace(
        &self,
        resp: &Response,
        status: u16,
        body: &[u8],
        content_type: &str,
        kind: Replaced,
    ) -> Action {
        let mut edits = vec![
            resp.set_body(body),
            resp.set_header("content-type", content_type),
        ];
        if status != resp.status() {
            edits.push(resp.set_status(status));
        }
        if kind != Replaced::Converted {
            edits.push(resp.set_header("x-request-id", &self.request_id));
        }
        if kind == Replaced::Failed {
            edits.push(resp.set_header("cache-control", "no-store"));
            edits.push(resp.remove_header("etag"));
            edits.push(resp.remove_header("last-modified"));
        }
        self.applied(edits)
    }

    /// Continues when every edit took; otherwise answers 500 (the body may be half changed).
    fn applied(&self, edits: Vec<Result<(), gateway_plugin_sdk::Error>>) -> Action {
        match edits.into_iter().find_map(Result::err) {
            None => Action::Continue,
            Some(e) => {
                log::error(&format!(
                    "json-xml: request {}: cannot change the message: {e}",
                    self.request_id
                ));
                self.answered.set(true);
                Action::Respond {
                    status: 500,
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        ("x-request-id".into(), self.request_id.clone()),
                    ],
                    body: error_body(
                        "plugin_error",
                        "json-xml could not convert the body",
                        &self.request_id,
                        Vec::new(),
                    ),
                }
            }
        }
    }
}

export_filter! {
    impl Filter for JsonXml {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.config = Some(config::parse(config)?);
            Ok(())
        }

        fn options(&self) -> Options {
            let mode = |c: Convert| match c {
                Convert::None => BodyMode::Skip,
                _ => BodyMode::Whole,
            };
            match &self.config {
                Some(c) => Options {
                    request_body: mode(c.request),
                    response_body: mode(c.response),
                },
                None => Options::default(),
            }
        }

        fn on_request(&mut self, req: &Request) -> Action {
            // The id the gateway logs and writes in its own error bodies; the numeric one of `facts`
            // where the request has none (outside the gateway's proxy, as in `gateway plugin test`).
            self.request_id = req
                .header("x-request-id")
                .unwrap_or_else(|| facts::get().request_id.to_string());
            self.answered.set(false);
            let Some(c) = &self.config else {
                return Action::Continue;
            };
            // An answer to be converted must come uncompressed.
            if c.response != Convert::None {
                if let Err(e) = req.remove_header("accept-encoding") {
                    log::warn(&format!("json-xml: cannot remove accept-encoding: {e}"));
                }
            }
            Action::Continue
        }

        fn on_request_body(&mut self, req: &Request, _end_of_stream: bool) -> Action {
            let Some(c) = &self.config else {
                return Action::Continue;
            };
            // A request without a content type is taken for what this direction reads, as many
            // clients leave it out (request-validation does the same).
            let media = match req.header("content-type") {
                None if c.request == Convert::JsonToXml => "application/json".to_string(),
                None => "application/xml".to_string(),
                given => media_type(given),
            };
            let coded = encoded(req.header("content-encoding"));
            let body = req.body().unwrap_or_default();
            match c.request {
                Convert::None => Action::Continue,
                Convert::JsonToXml => {
                    if coded && c.soap.is_some() {
                        return self.refuse(
                            415,
                            "unsupported_media_type",
                            "this route calls a SOAP service with a JSON body: send it without a \
                             content-encoding",
                        );
                    }
                    if coded || !is_json(&media) {
                        if c.soap.is_some() {
                            return self.refuse(
                                415,
                                "unsupported_media_type",
                                "this route calls a SOAP service with a JSON body: send it with \
                                 content-type: application/json",
                            );
                        }
                        return Action::Continue;
                    }
                    let json = match json::parse(&body) {
                        Ok(j) => j,
                        Err(e) => {
                            return self.refuse(
                                400,
                                "invalid_json",
                                &format!("the request body is not valid JSON: {e}"),
                            )
                        }
                    };
                    let xml = match &c.soap {
                        Some(s) => soap::envelope(&json, s, &c.mapping),
                        None => to_xml::document(&json, c.root.as_deref(), &c.mapping),
                    };
                    let xml = match xml {
                        Ok(x) => x,
                        Err(e) => {
                            return self.refuse(
                                400,
                                "invalid_json",
                                &format!("the request body cannot be written as XML: {e}"),
                            )
                        }
                    };
                    let mut edits = vec![req.set_body(xml.as_bytes())];
                    match &c.soap {
                        Some(s) => {
                            edits.extend(soap::headers(s).iter().map(|(n, v)| req.set_header(n, v)));
                            if s.version == config::SoapVersion::V12 {
                                edits.push(req.remove_header("soapaction"));
                            }
                            if req.method() != "POST" {
                                edits.push(req.set_method("POST"));
                            }
                        }
                        None => edits.push(req.set_header("content-type", &c.xml_content_type)),
                    }
                    self.applied(edits)
                }
                Convert::XmlToJson => {
                    if coded || !is_xml(&media) {
                        return Action::Continue;
                    }
                    let root = match xml::parse(&body) {
                        Ok(r) => r,
                        Err(e) => {
                            return self.refuse(
                                400,
                                "invalid_xml",
                                &format!("the request body is not valid XML: {e}"),
                            )
                        }
                    };
                    let json = to_json::document(&root, &c.mapping, c.root.is_some());
                    self.applied(vec![
                        req.set_body(&json::to_vec(&json)),
                        req.set_header("content-type", "application/json"),
                    ])
                }
            }
        }

        fn on_response_body(&mut self, resp: &Response, _end_of_stream: bool) -> Action {
            let Some(c) = &self.config else {
                return Action::Continue;
            };
            if self.answered.get() {
                return Action::Continue;
            }
            if encoded(resp.header("content-encoding")) {
                log::debug(&format!(
                    "json-xml: request {}: the answer is content-coded; passed unchanged",
                    self.request_id
                ));
                return Action::Continue;
            }
            let media = media_type(resp.header("content-type"));
            let body = resp.body().unwrap_or_default();
            match c.response {
                Convert::None => Action::Continue,
                Convert::XmlToJson => {
                    if !is_xml(&media) {
                        return Action::Continue;
                    }
                    let root = match xml::parse(&body) {
                        Ok(r) => r,
                        Err(e) => {
                            return self.bad_gateway(
                                resp,
                                "upstream_invalid_xml",
                                &format!("the upstream's answer is not valid XML: {e}"),
                            )
                        }
                    };
                    let json = match &c.soap {
                        None => to_json::document(&root, &c.mapping, c.root.is_some()),
                        Some(_) => match soap::unwrap(&root, &c.mapping) {
                            Ok(soap::Answer::Body(j)) => j,
                            Ok(soap::Answer::Fault {
                                status,
                                reason,
                                fault,
                            }) => {
                                log::debug(&format!(
                                    "json-xml: request {}: SOAP fault ({status}): {reason}",
                                    self.request_id
                                ));
                                let body = error_body(
                                    "soap_fault",
                                    &reason,
                                    &self.request_id,
                                    vec![("fault".into(), fault)],
                                );
                                return self.replace(
                                    resp,
                                    status,
                                    &body,
                                    "application/json",
                                    Replaced::Fault,
                                );
                            }
                            Err(e) => {
                                return self.bad_gateway(
                                    resp,
                                    "upstream_invalid_xml",
                                    &format!("the upstream's answer is not a SOAP answer: {e}"),
                                )
                            }
                        },
                    };
                    let status = resp.status();
                    self.replace(
                        resp,
                        status,
                        &json::to_vec(&json),
                        "application/json",
                        Replaced::Converted,
                    )
                }
                Convert::JsonToXml => {
                    if !is_json(&media) {
                        return Action::Continue;
                    }
                    let json = match json::parse(&body) {
                        Ok(j) => j,
                        Err(e) => {
                            return self.bad_gateway(
                                resp,
                                "upstream_invalid_json",
                                &format!("the upstream's answer is not valid JSON: {e}"),
                            )
                        }
                    };
                    match to_xml::document(&json, c.root.as_deref(), &c.mapping) {
                        Ok(xml) => {
                            let status = resp.status();
                            self.replace(
                                resp,
                                status,
                                xml.as_bytes(),
                                &c.xml_content_type,
                                Replaced::Converted,
                            )
                        }
                        Err(e) => self.bad_gateway(
                            resp,
                            "upstream_invalid_json",
                            &format!("the upstream's answer cannot be written as XML: {e}"),
                        ),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let m = |v: &str| media_type(Some(v.into()));
        assert_eq!(m("Application/JSON; charset=utf-8"), "application/json");
        assert!(is_json(&m("application/json")));
        assert!(is_json(&m("application/problem+json")));
        assert!(!is_json(&m("text/json+xml")));
        assert!(!is_json(&m("text/plain")));
        assert!(!is_json(&media_type(None)));
        assert!(is_xml(&m("text/xml; charset=utf-8")));
        assert!(is_xml(&m("application/xml")));
        assert!(is_xml(&m("application/soap+xml; action=\"x\"")));
        assert!(!is_xml(&m("application/json")));
        assert!(!is_xml(&m("+xml")));
        assert!(!encoded(None));
        assert!(!encoded(Some("identity".into())));
        assert!(encoded(Some("gzip".into())));
    }

    #[test]
    fn error_bodies_have_the_gateways_shape() {
        let body = error_body(
            "soap_fault",
            "no \"user\"",
            "abc",
            vec![("fault".into(), Json::Null)],
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"error\":\"soap_fault\",\"message\":\"no \\\"user\\\"\",\"request_id\":\"abc\",\"fault\":null}\n"
        );
    }
}
