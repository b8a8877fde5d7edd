//! The bounded XML reader on arbitrary bytes: never a panic, every error is -40002, the
//! documented bounds hold on every tree it returns, every tree survives `xml::render` → parse
//! unchanged, and the lenient reader differs from the strict one only by what it reports in
//! its `Quirks`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxmp_fuzz::check_tree;
use wxmp_proto::xml;

fuzz_target!(|data: &[u8]| {
    let lenient = xml::parse_lenient(data);
    let root = match xml::parse(data) {
        Ok(root) => root,
        Err(e) => {
            assert_eq!(e.code(), -40002, "{e}");
            match lenient {
                Ok((root, quirks)) => {
                    assert!(
                        !quirks.is_empty(),
                        "lenient accepted what strict refused: {e}"
                    );
                    check_tree(&root);
                }
                Err(lenient) => assert_eq!(lenient.code(), -40002),
            }
            return;
        }
    };
    check_tree(&root);
    let (lenient_root, quirks) = lenient.expect("lenient accepts what strict accepts");
    assert!(quirks.is_empty());
    assert_eq!(lenient_root, root);

    let rendered = xml::render(&root);
    if rendered.len() <= xml::MAX_XML_BYTES {
        let again = xml::parse(rendered.as_bytes())
            .unwrap_or_else(|e| panic!("a rendered tree does not parse: {e}: {rendered:?}"));
        assert_eq!(again, root, "render → parse changed the tree: {rendered:?}");
    }
});
