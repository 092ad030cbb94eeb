//! JSON to XML, the inverse of `to_json` (README.md): a key is an element (an array repeats it),
//! an `@key` an attribute, `#text` the element's text; `null` is an empty element.

use crate::config::Mapping;
use crate::json::Json;
use crate::xml::{bad_char, is_qname, push_attr, push_text};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// The XML declaration every document written starts with.
pub const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// The element that holds each entry of a top-level array under a configured root.
pub const ARRAY_ITEM: &str = "item";

/// Writes `json` as a document. With `root`, the JSON is the root element's content (a top-level
/// array becomes one `<item>` per entry); without, it must be an object with one member, the root.
pub fn document(json: &Json, root: Option<&str>, m: &Mapping) -> Result<String, String> {
    let mut w = Writer {
        out: String::from(DECLARATION),
        m,
    };
    match (root, json) {
        (Some(root), Json::Array(items)) => {
            w.out.push('<');
            w.out.push_str(root);
            w.out.push('>');
            for (i, item) in items.iter().enumerate() {
                w.element(ARRAY_ITEM, item, &[], &At::Index(&At::Root, i))?;
            }
            w.out.push_str("</");
            w.out.push_str(root);
            w.out.push('>');
        }
        (Some(root), _) => w.element(root, json, &[], &At::Root)?,
        (None, Json::Object(members)) if members.len() == 1 => {
            let (name, value) = &members[0];
            let at = At::Key(&At::Root, name);
            if let Json::Array(_) = value {
                return Err(format!(
                    "{at}: an array at the top would be several root elements; set `root` to wrap them"
                ));
            }
            w.element(name, value, &[], &at)?;
        }
        (None, other) => {
            return Err(format!(
                "the JSON is {}, not an object with one member (the root element); set `root` \
                 to name a root element for it",
                match other {
                    Json::Object(m) => format!("an object with {} members", m.len()),
                    other => other.kind().to_string(),
                }
            ))
        }
    }
    Ok(w.out)
}

/// Where a value is in the JSON: a chain up to the document, written as a JSON Pointer only when an
/// error names it.
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    /// The whole document (the pointer ``).
    Root,
    /// A member of an object.
    Key(&'a At<'a>, &'a str),
    /// An entry of an array.
    Index(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Key(parent, key) => write!(f, "{parent}/{}", pointer(key)),
            At::Index(parent, i) => write!(f, "{parent}/{i}"),
        }
    }
}

/// Writes elements into a string.
pub struct Writer<'a> {
    pub out: String,
    pub m: &'a Mapping,
}

impl Writer<'_> {
    /// Writes `<name extra... attributes...>content</name>` for `value`, which is at `at`. `extra`
    /// attributes (namespace declarations) come first.
    pub fn element(
        &mut self,
        name: &str,
        value: &Json,
        extra: &[(&str, &str)],
        at: &At,
    ) -> Result<(), String> {
        if !is_qname(name) {
            return Err(format!("{at}: `{name}` is not an XML element name"));
        }
        match value {
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = At::Index(at, i);
                    if let Json::Array(_) = item {
                        return Err(format!(
                            "{at}: an array in an array has no XML form (each entry of an array \
                             is an element named by its key)"
                        ));
                    }
                    self.element(name, item, extra, &at)?;
                }
                return Ok(());
            }
            Json::Object(members) => {
                self.open(name, extra);
                let m: &Mapping = self.m;
                let ap = m.attribute_prefix.as_str();
                let attrs = members.iter().filter(|(k, _)| k.starts_with(ap));
                let mut written: HashSet<&str> = extra.iter().map(|(n, _)| *n).collect();
                for (k, v) in attrs {
                    let attr = &k[ap.len()..];
                    let at = At::Key(at, k);
                    if !is_qname(attr) {
                        return Err(format!("{at}: `{attr}` is not an XML attribute name"));
                    }
                    if !written.insert(attr) {
                        return Err(format!(
                            "{at}: the element already has an attribute `{attr}`"
                        ));
                    }
                    let Some(text) = scalar(v, &at)? else {
                        continue;
                    };
                    check_chars(&text, &at)?;
                    self.out.push(' ');
                    self.out.push_str(attr);
                    self.out.push_str("=\"");
                    push_attr(&mut self.out, &text);
                    self.out.push('"');
                }
                let mut content = members
                    .iter()
                    .filter(|(k, _)| !k.starts_with(ap))
                    .peekable();
                if content.peek().is_none() {
                    self.out.push_str("/>");
                    return Ok(());
                }
                self.out.push('>');
                for (k, v) in content {
                    let at = At::Key(at, k);
                    if *k == m.text_key {
                        if let Some(text) = scalar(v, &at)? {
                            check_chars(&text, &at)?;
                            push_text(&mut self.out, &text);
                        }
                    } else {
                        self.element(k, v, &[], &at)?;
                    }
                }
            }
            Json::Null => {
                self.open(name, extra);
                self.out.push_str("/>");
                return Ok(());
            }
            scalar_value => {
                let text = scalar(scalar_value, at)?.unwrap_or_default();
                check_chars(&text, at)?;
                self.open(name, extra);
                self.out.push('>');
                push_text(&mut self.out, &text);
            }
        }
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        Ok(())
    }

    fn open(&mut self, name: &str, extra: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(name);
        for (n, v) in extra {
            self.out.push(' ');
            self.out.push_str(n);
            self.out.push_str("=\"");
            push_attr(&mut self.out, v);
            self.out.push('"');
        }
    }
}

/// The text of a value that goes into an attribute or text: `None` for null (no attribute, no
/// text); an array or object has no such form.
fn scalar<'v>(v: &'v Json, at: &At) -> Result<Option<Cow<'v, str>>, String> {
    match v {
        Json::Null => Ok(None),
        Json::Bool(b) => Ok(Some(Cow::Borrowed(if *b { "true" } else { "false" }))),
        Json::Number(n) => Ok(Some(Cow::Owned(n.to_string()))),
        Json::String(s) => Ok(Some(Cow::Borrowed(s))),
        other => Err(format!(
            "{at}: an attribute or text is a string, number, boolean or null, not {}",
            other.kind()
        )),
    }
}

fn check_chars(text: &str, at: &At) -> Result<(), String> {
    match bad_char(text) {
        Some(c) => Err(format!(
            "{at}: the character U+{:04X} cannot be written in XML",
            c as u32
        )),
        None => Ok(()),
    }
}

/// A key as a JSON Pointer token (RFC 6901: `~` as `~0`, `/` as `~1`).
pub fn pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::json;
    use crate::to_json;
    use crate::xml;

    fn mapping(extra: &str) -> Mapping {
        config::parse(&format!("{{{extra}}}")).unwrap().mapping
    }

    fn write(json: &str, root: Option<&str>, extra: &str) -> Result<String, String> {
        let j = json::parse(json.as_bytes()).unwrap();
        document(&j, root, &mapping(extra)).map(|x| x.strip_prefix(DECLARATION).unwrap().into())
    }

    #[test]
    fn objects_arrays_attributes_and_text() {
        let got = write(
            r##"{"order": {"@id": 42, "@xmlns:x": "urn:x", "item": [{"@sku": "a1", "#text": "Pen"}, "Ink"],
                "x:tag": "t", "note": "a < b & \"c\"\r", "none": null, "ok": true, "n": 1.5,
                "nested": {"z": 1, "a": 2}, "@skipped": null}}"##,
            None,
            "",
        )
        .unwrap();
        assert_eq!(
            got,
            "<order id=\"42\" xmlns:x=\"urn:x\"><item sku=\"a1\">Pen</item><item>Ink</item>\
             <x:tag>t</x:tag><note>a &lt; b &amp; \"c\"&#13;</note><none/><ok>true</ok><n>1.5</n>\
             <nested><z>1</z><a>2</a></nested></order>"
        );
    }

    #[test]
    fn the_root() {
        assert_eq!(
            write(r#"{"id": 7, "name": "Ann"}"#, Some("user"), "").unwrap(),
            "<user><id>7</id><name>Ann</name></user>"
        );
        assert_eq!(
            write(r#"[{"id": 1}, 2]"#, Some("users"), "").unwrap(),
            "<users><item><id>1</id></item><item>2</item></users>"
        );
        assert_eq!(write("null", Some("r"), "").unwrap(), "<r/>");
        assert_eq!(write("\"x\"", Some("r"), "").unwrap(), "<r>x</r>");
        assert_eq!(
            write(r#"{"a": 1, "b": 2}"#, None, "").unwrap_err(),
            "the JSON is an object with 2 members, not an object with one member (the root \
             element); set `root` to name a root element for it"
        );
        assert!(write("[1]", None, "")
            .unwrap_err()
            .starts_with("the JSON is an array"));
        assert!(write(r#"{"a": [1, 2]}"#, None, "")
            .unwrap_err()
            .starts_with("/a: an array at the top"));
    }

    #[test]
    fn what_xml_cannot_say_is_an_error_with_its_pointer() {
        let e = |json: &str| write(json, Some("r"), "").unwrap_err();
        assert_eq!(
            e(r#"{"first name": 1}"#),
            "/first name: `first name` is not an XML element name"
        );
        assert_eq!(
            e(r#"{"a": {"1x": 1}}"#),
            "/a/1x: `1x` is not an XML element name"
        );
        assert_eq!(
            e(r#"{"a/b": 1}"#),
            "/a~1b: `a/b` is not an XML element name"
        );
        assert_eq!(
            e(r#"{"@a b": 1}"#),
            "/@a b: `a b` is not an XML attribute name"
        );
        assert_eq!(
            e(r#"{"@a": [1]}"#),
            "/@a: an attribute or text is a string, number, boolean or null, not an array"
        );
        assert_eq!(
            e(r##"{"#text": {}}"##),
            "/#text: an attribute or text is a string, number, boolean or null, not an object"
        );
        assert_eq!(
            e(r#"{"a": [[1]]}"#),
            "/a/0: an array in an array has no XML form (each entry of an array is an element \
             named by its key)"
        );
        assert_eq!(
            e(r#"{"a": "bell\u0007"}"#),
            "/a: the character U+0007 cannot be written in XML"
        );
        assert_eq!(
            e(r#"{"@a": "\u0000"}"#),
            "/@a: the character U+0000 cannot be written in XML"
        );
        assert_eq!(
            e(r#"{"@a": 1, "b": {"@c": 1}, "@a": 2}"#),
            "/@a: the element already has an attribute `a`"
        );
    }

    /// XML to JSON and back gives the same document, and JSON to XML and back the same JSON, for
    /// everything the mapping carries (README.md says what it does not).
    #[test]
    fn round_trips() {
        let m = mapping("");
        let docs = [
            "<a/>",
            "<a>text</a>",
            "<a x=\"1\" y=\"two words\"/>",
            "<a x=\"1\">t</a>",
            "<a><b>1</b><b>2</b><c/><d e=\"f\">g</d></a>",
            "<ns:a xmlns:ns=\"urn:n\"><ns:b ns:c=\"d\">e &amp; &lt;f&gt;</ns:b></ns:a>",
            "<a>  spaced  </a>",
            "<a><b><c><d>deep</d></c></b></a>",
            "<a b=\"line&#10;break&#9;tab\"/>",
        ];
        for doc in docs {
            let json = to_json::document(&xml::parse(doc.as_bytes()).unwrap(), &m, false);
            let back = document(&json, None, &m).unwrap();
            assert_eq!(back.strip_prefix(DECLARATION).unwrap(), doc);
        }
        let jsons = [
            r#"{"a":null}"#,
            r#"{"a":"x"}"#,
            r##"{"a":{"b":["1","2"],"c":{"@d":"e","#text":"f"}}}"##,
            r#"{"a":{"@x":"1","z":"last","y":"first"}}"#,
            r#"{"a":{"b":[{"c":"1"},{"c":["2","3"]}]}}"#,
            r#"{"a":"ünïcödé ☺ \n newline"}"#,
        ];
        for text in jsons {
            let json = json::parse(text.as_bytes()).unwrap();
            let doc = document(&json, None, &m).unwrap();
            let back = to_json::document(&xml::parse(doc.as_bytes()).unwrap(), &m, false);
            assert_eq!(serde_json::to_string(&back).unwrap(), text);
        }
        // With types inferred, numbers and booleans come back as they went.
        let typed = mapping(r#""infer_types": true"#);
        let text = r#"{"r":{"@n":1,"i":-3,"f":2.5,"b":[true,false],"s":"x"}}"#;
        let doc = document(&json::parse(text.as_bytes()).unwrap(), None, &typed).unwrap();
        let back = to_json::document(&xml::parse(doc.as_bytes()).unwrap(), &typed, false);
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        // With a root, the JSON is its content both ways.
        let text = r#"{"id":"7","tags":{"tag":["a","b"]}}"#;
        let doc = document(&json::parse(text.as_bytes()).unwrap(), Some("user"), &m).unwrap();
        let back = to_json::document(&xml::parse(doc.as_bytes()).unwrap(), &m, true);
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
