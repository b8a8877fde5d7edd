//! Inputs the fuzz targets in `fuzz/` found (see docs/fuzzing.md), each pinned here with the
//! behaviour that is right for it, so the bug stays fixed without running a fuzzer.

use wxmp_proto::xml;

/// `xml` target: quick-xml takes everything between `<` and the first whitespace as the
/// element name, so `<""//>` was an empty element named `""/`. `xml::render` wrote it back as
/// `<""/></""/>`, which does not parse, breaking the render → parse identity the webhook JSON
/// relies on. Names must now be XML names.
#[test]
fn element_names_must_be_xml_names() {
    for doc in [
        &b"<\"\"//>"[..],
        b"<\x01//>",
        b"<\">\"//>",
        b"<a//>",
        b"<2x\0\0\x02\"\0 <\0\0\0\0\x02\"jjjjjj\0 </>",
        b"<xml><2x>1</2x></xml>",
        b"<xml><a\"b>1</a\"b></xml>",
        b"<xml><a\x01>1</a\x01></xml>",
    ] {
        let err = xml::parse(doc).unwrap_err();
        assert_eq!(err.code(), -40002, "{doc:?}");
        assert!(xml::parse_lenient(doc).is_err(), "{doc:?}");
    }
    // Real names still parse, prefixed and non-ASCII ones included, and render back.
    let doc = "<xml><a:b>1</a:b><名字>2</名字><_x.y-z9>3</_x.y-z9><c d=\"e\"/></xml>";
    let root = xml::parse(doc.as_bytes()).unwrap();
    let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a:b", "名字", "_x.y-z9", "c"]);
    assert_eq!(xml::parse(xml::render(&root).as_bytes()).unwrap(), root);
}
