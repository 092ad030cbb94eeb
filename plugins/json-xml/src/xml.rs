//! XML read into a small tree with quick-xml, and the pieces of writing it: names and escaping.
//!
//! What is refused, so that a body can cost no more than its size: any DOCTYPE (no DTD, so no
//! entity declarations, no entity expansion such as billion laughs, no external entities), entity
//! references other than the five predefined ones and character references, encodings other than
//! UTF-8, nesting deeper than [`MAX_DEPTH`], and anything that is not one well-formed element
//! (a second root, text outside the root, an element left open).

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// The deepest nesting of elements read (the root is depth 1), as serde_json's limit for JSON.
pub const MAX_DEPTH: usize = 128;

/// An element: its name as written (with its prefix), its attributes in order, its child elements
/// in order, and its text (every text and CDATA piece directly inside it, joined).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// The name without its prefix.
    pub fn local_name(&self) -> &str {
        local(&self.name)
    }

    /// The first child element whose local name is `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local_name() == name)
    }

    /// The value of the attribute `name` (as written, prefix included).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The namespace URI the element's prefix (or the default namespace) is declared as on this
    /// element itself, if it is declared here.
    pub fn own_namespace(&self) -> Option<&str> {
        match self.name.split_once(':') {
            Some((prefix, _)) => self.attr(&format!("xmlns:{prefix}")),
            None => self.attr("xmlns"),
        }
    }
}

/// The part of a qualified name after its prefix.
pub fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Reads a document: UTF-8 (a byte order mark is skipped), one root element.
pub fn parse(bytes: &[u8]) -> Result<Element, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (at byte {}); only UTF-8 XML is accepted",
            e.valid_up_to()
        )
    })?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} (at byte {})", reader.error_position()))?;
        let outside = stack.is_empty();
        match event {
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| format!("{e} (at byte {at})"))?;
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("us-ascii") {
                        return Err(format!(
                            "the declared encoding `{enc}` is not supported; only UTF-8 XML is accepted"
                        ));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(format!(
                    "a DOCTYPE is not accepted (at byte {at}): no DTDs, entity declarations or \
                     external entities"
                ))
            }
            Event::Start(s) => {
                if outside && root.is_some() {
                    return Err(format!("a second root element (at byte {at})"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!(
                        "elements nested deeper than {MAX_DEPTH} levels (at byte {at})"
                    ));
                }
                stack.push(element(&s, at)?);
            }
            Event::Empty(s) => {
                if outside && root.is_some() {
                    return Err(format!("a second root element (at byte {at})"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!(
                        "elements nested deeper than {MAX_DEPTH} levels (at byte {at})"
                    ));
                }
                let e = element(&s, at)?;
                attach(&mut stack, &mut root, e);
            }
            Event::End(_) => {
                // quick-xml has checked that the end tag matches the open element.
                let e = stack
                    .pop()
                    .ok_or_else(|| format!("an end tag without a start (at byte {at})"))?;
                attach(&mut stack, &mut root, e);
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim_matches(is_xml_space).is_empty() => {}
                    None => return Err(format!("text outside the root element (at byte {at})")),
                }
            }
            Event::CData(c) => match stack.last_mut() {
                Some(top) => top.text.push_str(&c.xml10_content()),
                None => return Err(format!("CDATA outside the root element (at byte {at})")),
            },
            Event::GeneralRef(r) => {
                let Some(top) = stack.last_mut() else {
                    return Err(format!(
                        "a reference outside the root element (at byte {at})"
                    ));
                };
                match r.resolve_char_ref() {
                    Ok(Some(c)) => top.text.push(c),
                    Ok(None) => match resolve_predefined_entity(&r) {
                        Some(s) => top.text.push_str(s),
                        None => {
                            return Err(format!(
                                "the entity `&{};` is not defined (at byte {at}); only &lt; &gt; \
                                 &amp; &apos; &quot; and character references are accepted",
                                &*r
                            ))
                        }
                    },
                    Err(e) => return Err(format!("{e} (at byte {at})")),
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "the document ends inside <{}> (not closed)",
            open.name
        ));
    }
    root.ok_or_else(|| "no root element".to_string())
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, e: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None => *root = Some(e),
    }
}

fn element(s: &BytesStart, at: u64) -> Result<Element, String> {
    let name = s.name().into_inner();
    if !is_qname(name) {
        return Err(format!("`{name}` is not an element name (at byte {at})"));
    }
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| format!("{e} (in the tag at byte {at})"))?;
        let key = a.key.into_inner();
        if !is_qname(key) {
            return Err(format!("`{key}` is not an attribute name (at byte {at})"));
        }
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("{e} (in the tag at byte {at})"))?;
        attrs.push((key.to_owned(), value.into_owned()));
    }
    Ok(Element {
        name: name.to_owned(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// XML's white space (space, tab, CR, LF).
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Whether `s` is a name without a colon (XML Namespaces' NCName).
pub fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// Whether `s` is an element or attribute name: an NCName, or `prefix:local` of two.
pub fn is_qname(s: &str) -> bool {
    match s.split_once(':') {
        Some((p, l)) => is_ncname(p) && is_ncname(l),
        None => is_ncname(s),
    }
}

/// The first character of `s` that XML 1.0 cannot carry at all (controls other than tab, LF and
/// CR; U+FFFE, U+FFFF), if any.
pub fn bad_char(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}'
    })
}

/// Appends `s` escaped for element content (`&`, `<`, `>`, and CR, which a parser would turn
/// into LF).
pub fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// Appends `s` escaped for a double-quoted attribute value (also `"`, and tab, LF and CR, which
/// a parser would turn into spaces).
pub fn push_attr(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(xml: &str) -> String {
        parse(xml.as_bytes()).expect_err("should be refused")
    }

    #[test]
    fn reads_elements_attributes_text_and_references() {
        let doc =
            "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c --><a x=\"1 &amp; 2\" \
                   p:y='&#65;'><b>t &lt;&#x263A;&gt;<![CDATA[<raw>]]></b><c/><?pi x?></a>\n";
        let a = parse(doc.as_bytes()).unwrap();
        assert_eq!(a.name, "a");
        assert_eq!(
            a.attrs,
            [("x".into(), "1 & 2".into()), ("p:y".into(), "A".into())]
        );
        assert_eq!(a.children.len(), 2);
        assert_eq!(a.children[0].text, "t <\u{263A}><raw>");
        assert_eq!(a.children[1].name, "c");
        assert_eq!(a.child("c").unwrap().text, "");
        assert_eq!(local("soap:Body"), "Body");
    }

    #[test]
    fn refuses_doctypes_of_every_kind() {
        let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;
        assert!(err(billion_laughs).starts_with("a DOCTYPE is not accepted"));
        let xxe = r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
        assert!(err(xxe).starts_with("a DOCTYPE is not accepted"));
        let external_dtd = r#"<!DOCTYPE foo SYSTEM "http://evil.example/x.dtd"><foo/>"#;
        assert!(err(external_dtd).starts_with("a DOCTYPE is not accepted"));
        // Without a DTD, an entity is undefined.
        assert!(err("<foo>&xxe;</foo>").contains("`&xxe;` is not defined"));
        assert!(err("<foo a='&xxe;'/>").contains("xxe"));
    }

    #[test]
    fn refuses_what_is_not_one_well_formed_element() {
        assert_eq!(err(""), "no root element");
        assert_eq!(err("  <!-- only -->  "), "no root element");
        assert!(err("<a/><b/>").starts_with("a second root element"));
        assert!(err("<a></a><b></b>").starts_with("a second root element"));
        assert!(err("hello <a/>").starts_with("text outside the root element"));
        assert!(err("<a>").contains("ends inside <a>"));
        assert!(err("<a><b></a>").contains("byte"));
        assert!(err("<a x='1' x='2'/>").contains("byte"));
        assert!(err("<a>x & y</a>").contains("byte"));
        assert_eq!(err("<1a/>"), "`1a` is not an element name (at byte 0)");
        assert_eq!(
            err("<a><b:c:d/></a>"),
            "`b:c:d` is not an element name (at byte 3)"
        );
        assert_eq!(
            err("<a -x='1'/>"),
            "`-x` is not an attribute name (at byte 0)"
        );
        assert!(parse(b"<a>\xff</a>").unwrap_err().contains("not UTF-8"));
        assert!(err("<?xml version='1.0' encoding='ISO-8859-1'?><a/>").contains("`ISO-8859-1`"));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(err(&deep).starts_with("elements nested deeper than 128"));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn names_and_escaping() {
        for ok in ["a", "_a", "a-b.c", "ns:a", "\u{e9}t\u{e9}", "a1"] {
            assert!(is_qname(ok), "{ok}");
        }
        for bad in [
            "", "1a", "a b", ":a", "a:", "a:b:c", "-a", "@a", "#text", "a/b",
        ] {
            assert!(!is_qname(bad), "{bad}");
        }
        assert!(!is_ncname("a:b"));
        assert_eq!(bad_char("ok\t\n\r"), None);
        assert_eq!(bad_char("a\u{1}"), Some('\u{1}'));
        let mut s = String::new();
        push_text(&mut s, "a<b>&\"'\r");
        assert_eq!(s, "a&lt;b&gt;&amp;\"'&#13;");
        s.clear();
        push_attr(&mut s, "a<\"\t\n");
        assert_eq!(s, "a&lt;&quot;&#9;&#10;");
    }
}
