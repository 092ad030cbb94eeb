//! SOAP 1.1 and 1.2: the request's JSON wrapped as the operation's element in an envelope, with
//! the version's content type (and action), and the answer's Body unwrapped; a Fault becomes an
//! HTTP error whose status follows its code (`Client`/`Sender`: 400, anything else: 502).

use crate::config::{Mapping, Soap, SoapVersion};
use crate::json::Json;
use crate::to_json;
use crate::to_xml::{At, Writer, DECLARATION};
use crate::xml::{local, Element};

/// The envelope namespace of SOAP 1.1.
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The envelope namespace of SOAP 1.2.
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The request's envelope: `json` is the operation element's content.
pub fn envelope(json: &Json, soap: &Soap, m: &Mapping) -> Result<String, String> {
    if let Json::Array(_) = json {
        return Err(
            "the JSON of a SOAP call is the operation's content: an object (or null), not an array"
                .into(),
        );
    }
    let ns = match soap.version {
        SoapVersion::V11 => SOAP11,
        SoapVersion::V12 => SOAP12,
    };
    let mut out = format!("{DECLARATION}<soap:Envelope xmlns:soap=\"{ns}\"><soap:Body>");
    let (name, declaration) = match &soap.prefix {
        Some(p) => (format!("{p}:{}", soap.operation), format!("xmlns:{p}")),
        None => (soap.operation.clone(), "xmlns".to_string()),
    };
    let extra: Vec<(&str, &str)> = soap
        .namespace
        .as_deref()
        .map(|ns| (declaration.as_str(), ns))
        .into_iter()
        .collect();
    let mut w = Writer { out, m };
    w.element(&name, json, &extra, &At::Root)?;
    out = w.out;
    out.push_str("</soap:Body></soap:Envelope>");
    Ok(out)
}

/// The headers the envelope goes with: SOAP 1.1's `text/xml` and `SOAPAction` (quoted; `""` when
/// no action is configured), or SOAP 1.2's `application/soap+xml` with its `action` parameter.
pub fn headers(soap: &Soap) -> Vec<(&'static str, String)> {
    match soap.version {
        SoapVersion::V11 => vec![
            ("content-type", "text/xml; charset=utf-8".into()),
            (
                "soapaction",
                format!("\"{}\"", soap.action.as_deref().unwrap_or("")),
            ),
        ],
        SoapVersion::V12 => vec![(
            "content-type",
            match &soap.action {
                Some(a) => format!("application/soap+xml; charset=utf-8; action=\"{a}\""),
                None => "application/soap+xml; charset=utf-8".into(),
            },
        )],
    }
}

/// What a SOAP answer comes to.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// The Body's element's content (`{}` for an empty Body).
    Body(Json),
    /// A Fault: the status it maps to, its reason, and its parts as JSON.
    Fault {
        status: u16,
        reason: String,
        fault: Json,
    },
}

/// Reads a SOAP envelope (1.1 or 1.2, told by its namespace).
pub fn unwrap(root: &Element, m: &Mapping) -> Result<Answer, String> {
    if root.local_name() != "Envelope" {
        return Err(format!(
            "the answer is not a SOAP envelope (its root element is <{}>)",
            root.name
        ));
    }
    let version = match root.own_namespace() {
        Some(SOAP11) => SoapVersion::V11,
        Some(SOAP12) => SoapVersion::V12,
        Some(other) => {
            return Err(format!(
                "the envelope's namespace `{other}` is neither SOAP 1.1's nor SOAP 1.2's"
            ))
        }
        None => return Err("the envelope has no SOAP namespace".into()),
    };
    let body = root
        .child("Body")
        .ok_or_else(|| "the SOAP envelope has no Body".to_string())?;
    match body.children.as_slice() {
        [] => Ok(Answer::Body(Json::Object(Vec::new()))),
        [first, ..] if first.local_name() == "Fault" => Ok(fault(first, version, m)),
        [only] => Ok(Answer::Body(to_json::content(only, m, &mut Vec::new()))),
        _ => Ok(Answer::Body(to_json::content(body, m, &mut Vec::new()))),
    }
}

fn text_of(e: Option<&Element>) -> Option<String> {
    e.map(|e| e.text.trim().to_string())
}

fn fault(f: &Element, version: SoapVersion, m: &Mapping) -> Answer {
    let mut members: Vec<(String, Json)> = Vec::new();
    let code;
    let reason;
    let detail;
    match version {
        SoapVersion::V11 => {
            code = text_of(f.child("faultcode")).unwrap_or_default();
            reason = text_of(f.child("faultstring")).unwrap_or_default();
            members.push(("code".into(), Json::String(code.clone())));
            if let Some(actor) = text_of(f.child("faultactor")) {
                members.push(("actor".into(), Json::String(actor)));
            }
            detail = f.child("detail");
        }
        SoapVersion::V12 => {
            let code_el = f.child("Code");
            code = text_of(code_el.and_then(|c| c.child("Value"))).unwrap_or_default();
            members.push(("code".into(), Json::String(code.clone())));
            let mut subcodes = Vec::new();
            let mut sub = code_el.and_then(|c| c.child("Subcode"));
            while let Some(s) = sub {
                if let Some(v) = text_of(s.child("Value")) {
                    subcodes.push(Json::String(v));
                }
                sub = s.child("Subcode");
            }
            if !subcodes.is_empty() {
                members.push(("subcodes".into(), Json::Array(subcodes)));
            }
            reason = text_of(f.child("Reason").and_then(|r| r.child("Text"))).unwrap_or_default();
            for (key, name) in [("node", "Node"), ("role", "Role")] {
                if let Some(v) = text_of(f.child(name)) {
                    members.push((key.into(), Json::String(v)));
                }
            }
            detail = f.child("Detail");
        }
    }
    if let Some(d) = detail {
        let json = match d.children.as_slice() {
            [] if d.text.trim().is_empty() => Json::Null,
            _ => to_json::content(d, m, &mut Vec::new()),
        };
        members.push(("detail".into(), json));
    }
    Answer::Fault {
        status: fault_status(&code),
        reason,
        fault: Json::Object(members),
    }
}

/// The HTTP status of a fault code (`soap:Client`, `env:Sender`, `Client.Authentication`): the
/// sender's fault is the client's (400); the server's, a version mismatch, an unknown header or
/// encoding, or any other code are the service's or the gateway's (502).
pub fn fault_status(code: &str) -> u16 {
    let class = local(code).split('.').next().unwrap_or("");
    match class {
        "Client" | "Sender" => 400,
        _ => 502,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::xml;

    fn soap(extra: &str) -> (Soap, Mapping) {
        let c = config::parse(&format!("{{\"soap\": {{{extra}}}}}")).unwrap();
        (c.soap.unwrap(), c.mapping)
    }

    fn answer(doc: &str) -> Answer {
        let (_, m) = soap(r#""version": "1.1", "operation": "X""#);
        unwrap(&xml::parse(doc.as_bytes()).unwrap(), &m).unwrap()
    }

    fn json(j: &Json) -> String {
        serde_json::to_string(j).unwrap()
    }

    #[test]
    fn envelopes_of_both_versions() {
        let (s, m) = soap(r#""version": "1.1", "operation": "GetUser", "namespace": "urn:users""#);
        let body = crate::json::parse(br#"{"id": 7, "@v": "2"}"#).unwrap();
        assert_eq!(
            envelope(&body, &s, &m).unwrap(),
            format!(
                "{DECLARATION}<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body><GetUser \
                 xmlns=\"urn:users\" v=\"2\"><id>7</id></GetUser></soap:Body></soap:Envelope>"
            )
        );
        assert_eq!(
            headers(&s),
            [
                ("content-type", "text/xml; charset=utf-8".to_string()),
                ("soapaction", "\"\"".to_string())
            ]
        );
        let (s, m) = soap(
            r#""version": "1.2", "operation": "GetUser", "namespace": "urn:users", "prefix": "u",
               "action": "urn:users/GetUser""#,
        );
        assert_eq!(
            envelope(&Json::Null, &s, &m).unwrap(),
            format!(
                "{DECLARATION}<soap:Envelope xmlns:soap=\"{SOAP12}\"><soap:Body><u:GetUser \
                 xmlns:u=\"urn:users\"/></soap:Body></soap:Envelope>"
            )
        );
        assert_eq!(
            headers(&s),
            [(
                "content-type",
                "application/soap+xml; charset=utf-8; action=\"urn:users/GetUser\"".to_string()
            )]
        );
        let (s, _) = soap(r#""version": "1.1", "operation": "A", "action": "urn:a#A""#);
        assert_eq!(headers(&s)[1].1, "\"urn:a#A\"");
        let dup = crate::json::parse(br#"{"@xmlns": "urn:other"}"#).unwrap();
        let (s2, m2) = soap(r#""version": "1.1", "operation": "A", "namespace": "urn:a""#);
        assert_eq!(
            envelope(&dup, &s2, &m2).unwrap_err(),
            "/@xmlns: the element already has an attribute `xmlns`"
        );
        assert!(envelope(&Json::Array(vec![]), &s, &m)
            .unwrap_err()
            .contains("not an array"));
    }

    #[test]
    fn the_body_is_unwrapped() {
        let doc = format!(
            "<s:Envelope xmlns:s=\"{SOAP11}\"><s:Header><t>1</t></s:Header><s:Body>\
             <GetUserResponse><user><id>7</id><name>Ann</name></user></GetUserResponse>\
             </s:Body></s:Envelope>"
        );
        let Answer::Body(j) = answer(&doc) else {
            panic!()
        };
        assert_eq!(json(&j), r#"{"user":{"id":"7","name":"Ann"}}"#);
        let empty = format!("<e:Envelope xmlns:e=\"{SOAP12}\"><e:Body/></e:Envelope>");
        assert_eq!(answer(&empty), Answer::Body(Json::Object(vec![])));
    }

    #[test]
    fn faults_of_both_versions() {
        let v11 = format!(
            "<soap:Envelope xmlns:soap=\"{SOAP11}\"><soap:Body><soap:Fault>\
             <faultcode>soap:Client</faultcode><faultstring>no user 99</faultstring>\
             <faultactor>urn:users</faultactor><detail><e><id>99</id></e></detail>\
             </soap:Fault></soap:Body></soap:Envelope>"
        );
        let Answer::Fault {
            status,
            reason,
            fault,
        } = answer(&v11)
        else {
            panic!()
        };
        assert_eq!((status, reason.as_str()), (400, "no user 99"));
        assert_eq!(
            json(&fault),
            r#"{"code":"soap:Client","actor":"urn:users","detail":{"e":{"id":"99"}}}"#
        );
        let v12 = format!(
            "<env:Envelope xmlns:env=\"{SOAP12}\"><env:Body><env:Fault>\
             <env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>m:Db\
             </env:Value><env:Subcode><env:Value>m:Down</env:Value></env:Subcode></env:Subcode>\
             </env:Code><env:Reason><env:Text xml:lang=\"en\">database down</env:Text>\
             </env:Reason><env:Node>urn:n</env:Node><env:Detail/></env:Fault></env:Body>\
             </env:Envelope>"
        );
        let Answer::Fault {
            status,
            reason,
            fault,
        } = answer(&v12)
        else {
            panic!()
        };
        assert_eq!((status, reason.as_str()), (502, "database down"));
        assert_eq!(
            json(&fault),
            r#"{"code":"env:Receiver","subcodes":["m:Db","m:Down"],"node":"urn:n","detail":null}"#
        );
    }

    #[test]
    fn fault_codes_map_to_statuses() {
        for (code, status) in [
            ("soap:Client", 400),
            ("Client.Authentication", 400),
            ("env:Sender", 400),
            ("soap:Server", 502),
            ("env:Receiver", 502),
            ("soap:VersionMismatch", 502),
            ("env:MustUnderstand", 502),
            ("env:DataEncodingUnknown", 502),
            ("", 502),
        ] {
            assert_eq!(fault_status(code), status, "{code}");
        }
    }

    #[test]
    fn what_is_not_an_envelope() {
        let (_, m) = soap(r#""version": "1.1", "operation": "X""#);
        let e = |doc: &str| unwrap(&xml::parse(doc.as_bytes()).unwrap(), &m).unwrap_err();
        assert_eq!(
            e("<user/>"),
            "the answer is not a SOAP envelope (its root element is <user>)"
        );
        assert_eq!(e("<Envelope/>"), "the envelope has no SOAP namespace");
        assert!(e("<s:Envelope xmlns:s=\"urn:x\"/>").contains("`urn:x` is neither"));
        assert_eq!(
            e(&format!("<s:Envelope xmlns:s=\"{SOAP11}\"/>")),
            "the SOAP envelope has no Body"
        );
    }
}
