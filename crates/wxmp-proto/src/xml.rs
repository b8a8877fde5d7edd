//! A small, hostile-input-safe XML reader for WeChat's `<xml>…</xml>` documents.
//!
//! WeChat's XML is flat and simple: elements, text and CDATA, never attributes that matter,
//! never a DTD. So this reader accepts exactly that and refuses the rest: a `<!DOCTYPE` (and
//! with it every entity declaration, XXE and "billion laughs") is an error, only the five
//! predefined entities and character references are understood, and size, depth and element
//! count are bounded before any allocation can grow with the input. It is built on
//! quick-xml's pull parser, which never expands custom entities on its own.
//!
//! The result is a tree of [`Element`]s: a leaf's text is kept byte-exact (CDATA and escaped
//! text concatenated), whitespace between child elements is dropped. [`render`] writes a tree
//! back, so a tree survives render → parse unchanged; the webhook JSON of `wxmp` is built on
//! this tree, and its property tests on this round trip.
//!
//! Well-formedness is checked where quick-xml is lenient, as in any conforming parser: an
//! element name must be an XML name (XML 1.0 §2.3), and a `]]>` in text outside a CDATA
//! section is an error (§2.4). A sender that writes the latter has almost always pasted text
//! into a template without escaping, and the same text would break the next parser on the way. [`parse_lenient`] reads such a document anyway and
//! reports what it let through, for tools (`wxmp send`) that warn instead of refusing.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::Error;

/// The largest document accepted (1 MiB), as bytes of UTF-8.
pub const MAX_XML_BYTES: usize = 1 << 20;
/// The deepest nesting accepted. WeChat's deepest push is 5 levels
/// (`xml/SendPicsInfo/PicList/item/PicMd5Sum`).
pub const MAX_DEPTH: usize = 16;
/// The most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 10_000;

/// One XML element: its name, its text (for leaves) and its child elements, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// The tag name, e.g. `ToUserName`.
    pub name: String,
    /// The text content with CDATA sections and entities resolved; empty for elements that
    /// have children.
    pub text: String,
    /// The child elements, in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The children named `name`, in order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parses a complete document and returns its root element.
///
/// Errors (all -40002) for: more than [`MAX_XML_BYTES`], invalid UTF-8, a DOCTYPE, an unknown
/// entity, mismatched or unclosed tags, more than one root, text outside the root, nesting
/// deeper than [`MAX_DEPTH`] or more than [`MAX_ELEMENTS`] elements.
pub fn parse(input: &[u8]) -> Result<Element, Error> {
    read(input, false).map(|(root, _)| root)
}

/// What [`parse_lenient`] let through that [`parse`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// A `]]>` in text outside a CDATA section; it was read as the three characters.
    pub raw_cdata_end: bool,
}

impl Quirks {
    /// True when the document was well-formed after all.
    pub fn is_empty(&self) -> bool {
        *self == Quirks::default()
    }
}

/// Parses like [`parse`], but reads a raw `]]>` in text as text and reports it in
/// [`Quirks`]. Everything else [`parse`] refuses is still an error.
pub fn parse_lenient(input: &[u8]) -> Result<(Element, Quirks), Error> {
    read(input, true)
}

fn read(input: &[u8], lenient: bool) -> Result<(Element, Quirks), Error> {
    let mut quirks = Quirks::default();
    if input.len() > MAX_XML_BYTES {
        return Err(Error::xml(format_args!(
            "document larger than {MAX_XML_BYTES} bytes"
        )));
    }
    let text = std::str::from_utf8(input).map_err(|_| Error::xml("document is not UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.expand_empty_elements = false;

    // The open elements; the last one is the innermost.
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;

    loop {
        let event = reader
            .read_event()
            .map_err(|e| Error::xml(format_args!("malformed XML: {e}")))?;
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                if root.is_some() {
                    return Err(Error::xml("more than one root element"));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(Error::xml(format_args!(
                        "more than {MAX_ELEMENTS} elements"
                    )));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::xml(format_args!(
                        "nesting deeper than {MAX_DEPTH} levels"
                    )));
                }
                let qname = start.name();
                let name = std::str::from_utf8(qname.as_ref())
                    .map_err(|_| Error::xml("element name is not UTF-8"))?;
                if !is_xml_name(name) {
                    return Err(Error::xml(
                        "malformed XML: an element name is not an XML name",
                    ));
                }
                let name = name.to_owned();
                let element = Element {
                    name,
                    ..Element::default()
                };
                if is_empty {
                    close(element, &mut stack, &mut root);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the name matches the open element.
                let element = stack
                    .pop()
                    .ok_or_else(|| Error::xml("closing tag without an opening tag"))?;
                close(element, &mut stack, &mut root);
            }
            Event::Text(text) => {
                if contains_cdata_end(text.as_ref()) {
                    if !lenient {
                        return Err(Error::xml(
                            "malformed XML: `]]>` in text outside a CDATA section",
                        ));
                    }
                    quirks.raw_cdata_end = true;
                }
                let unescaped = text
                    .unescape()
                    .map_err(|e| Error::xml(format_args!("bad text or entity: {e}")))?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&unescaped),
                    None if unescaped.trim().is_empty() => {}
                    None => return Err(Error::xml("text outside the root element")),
                }
            }
            Event::CData(cdata) => {
                let raw = std::str::from_utf8(cdata.as_ref())
                    .map_err(|_| Error::xml("CDATA is not UTF-8"))?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(raw),
                    None => return Err(Error::xml("CDATA outside the root element")),
                }
            }
            Event::DocType(_) => {
                return Err(Error::xml(
                    "DOCTYPE and entity declarations are not allowed",
                ))
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(Error::xml("unexpected end of document: unclosed element"));
    }
    root.map(|root| (root, quirks))
        .ok_or_else(|| Error::xml("no root element"))
}

fn contains_cdata_end(raw: &[u8]) -> bool {
    raw.windows(3).any(|w| w == b"]]>")
}

/// True for an XML 1.0 `Name` (§2.3). quick-xml takes everything between `<` and the first
/// whitespace as the name, quotes, slashes and control characters included (`<a"b//>` is an
/// empty element named `a"b/`), and [`render`] could not write such a name back.
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(|c| {
        is_name_start_char(c)
            || matches!(
                c,
                '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}'
            )
    })
}

/// XML 1.0 `NameStartChar`.
fn is_name_start_char(c: char) -> bool {
    matches!(
        c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}'
    )
}

/// Writes `element` as XML: leaves as `<name><![CDATA[text]]></name>` (or `<name></name>`
/// when empty), elements with children as their children in order, no whitespace between.
/// The text of an element that has children is not written, as [`parse`] drops it.
///
/// Names are written as given: they must be XML names (every parsed tree's are). Text
/// survives any content, `]]>` included (see [`push_cdata`]), except that a parser
/// normalises a carriage return, so `\r\n` reads back as `\n`.
pub fn render(element: &Element) -> String {
    let mut out = String::new();
    render_into(&mut out, element);
    out
}

fn render_into(out: &mut String, element: &Element) {
    out.push('<');
    out.push_str(&element.name);
    out.push('>');
    if element.children.is_empty() {
        if !element.text.is_empty() {
            push_cdata(out, &element.text);
        }
    } else {
        for child in &element.children {
            render_into(out, child);
        }
    }
    out.push_str("</");
    out.push_str(&element.name);
    out.push('>');
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(mut element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    if !element.children.is_empty() {
        // Whitespace between child elements is layout, not content.
        element.text.clear();
    }
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Appends `text` to `out` as a CDATA section. A `]]>` inside the text is split across two
/// sections, so any string survives a render/parse round trip.
pub fn push_cdata(out: &mut String, text: &str) {
    out.push_str("<![CDATA[");
    let mut rest = text;
    while let Some(at) = rest.find("]]>") {
        out.push_str(&rest[..at + 2]);
        out.push_str("]]><![CDATA[");
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out.push_str("]]>");
}

/// Appends `<name><![CDATA[text]]></name>` to `out`.
pub fn push_cdata_element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    push_cdata(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// Appends `<name>text</name>` to `out`, escaping `&`, `<` and `>` (for numbers and other
/// values WeChat writes without CDATA).
pub fn push_text_element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdata_entities_emoji_and_cjk() {
        let doc = "<xml><A><![CDATA[你好 😀 <b>]]></A><B>a &amp; b &lt; &#x4F60;</B>\n<C/></xml>";
        let root = parse(doc.as_bytes()).unwrap();
        assert_eq!(root.name, "xml");
        assert_eq!(root.text, "");
        assert_eq!(root.child_text("A"), Some("你好 😀 <b>"));
        assert_eq!(root.child_text("B"), Some("a & b < 你"));
        assert_eq!(root.child_text("C"), Some(""));
    }

    #[test]
    fn refuses_doctype_and_unknown_entities() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><xml><A>&lol2;</A></xml>"#;
        assert!(parse(bomb.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("DOCTYPE"));
        let xxe = "<xml><A>&xxe;</A></xml>";
        assert_eq!(parse(xxe.as_bytes()).unwrap_err().code(), -40002);
    }

    #[test]
    fn refuses_malformed_documents() {
        for bad in [
            "",
            "   ",
            "<xml>",
            "<xml><A></B></xml>",
            "<xml></xml><xml></xml>",
            "text<xml></xml>",
            "<xml><A>x</A>",
            "</xml>",
            "{\"json\":true}",
        ] {
            assert_eq!(parse(bad.as_bytes()).unwrap_err().code(), -40002, "{bad:?}");
        }
        assert!(parse(&[0xff, 0xfe, b'<']).is_err());
    }

    #[test]
    fn bounds_depth_and_size() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("deeper"));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        let big = vec![b' '; MAX_XML_BYTES + 1];
        assert!(parse(&big).unwrap_err().to_string().contains("larger"));
        let many = format!("<xml>{}</xml>", "<a/>".repeat(MAX_ELEMENTS));
        assert!(parse(many.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("elements"));
    }

    #[test]
    fn a_raw_cdata_end_in_text_is_refused_and_leniently_reported() {
        for bad in [
            "<xml><A>a]]>b</A></xml>",
            "<xml><A><![CDATA[ok]]>]]></A></xml>",
            "<xml><A>x</A>]]></xml>",
        ] {
            let err = parse(bad.as_bytes()).unwrap_err();
            assert_eq!(err.code(), -40002, "{bad}");
            assert!(err.to_string().contains("]]>"), "{err}");
            let (root, quirks) = parse_lenient(bad.as_bytes()).unwrap();
            assert!(quirks.raw_cdata_end, "{bad}");
            assert_eq!(root.name, "xml");
        }
        let (root, quirks) = parse_lenient(b"<xml><A>a]]>b</A></xml>").unwrap();
        assert_eq!(root.child_text("A"), Some("a]]>b"));
        assert!(!quirks.is_empty());
        // Escaped, or inside CDATA, it is fine; so are a lone `]]` and `>`.
        for good in [
            "<xml><A>a]]&gt;b</A></xml>",
            "<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A></xml>",
            "<xml><A>a]]b></A></xml>",
        ] {
            assert!(parse(good.as_bytes()).is_ok(), "{good}");
            assert!(
                parse_lenient(good.as_bytes()).unwrap().1.is_empty(),
                "{good}"
            );
        }
        // Lenience stops at this one quirk.
        assert!(parse_lenient(b"<xml><A></B></xml>").is_err());
        assert!(parse_lenient(b"<!DOCTYPE x><xml/>").is_err());
    }

    #[test]
    fn render_writes_a_tree_that_parses_back() {
        let tree = parse(
            "<xml><A><![CDATA[x]]>y]]&gt;</A><L><item><K>1</K></item><item><K>2</K></item></L><E/></xml>"
                .as_bytes(),
        )
        .unwrap();
        let text = render(&tree);
        assert_eq!(
            text,
            "<xml><A><![CDATA[xy]]]]><![CDATA[>]]></A><L><item><K><![CDATA[1]]></K></item>\
             <item><K><![CDATA[2]]></K></item></L><E></E></xml>"
        );
        assert_eq!(parse(text.as_bytes()).unwrap(), tree);
    }

    #[test]
    fn cdata_with_terminator_round_trips() {
        for text in ["plain", "a]]>b", "]]>]]>", "]]", "x]]"] {
            let mut doc = String::from("<xml>");
            push_cdata_element(&mut doc, "A", text);
            doc.push_str("</xml>");
            assert_eq!(parse(doc.as_bytes()).unwrap().child_text("A"), Some(text));
        }
    }
}
