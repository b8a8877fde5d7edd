//! The bounded XML reader on arbitrary bytes: never a panic, the documented bounds hold on
//! every tree it returns, and every tree with plain element names survives render → parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxmp_fuzz::{check_tree, plain_names, render_tree};
use wxmp_proto::xml;

fuzz_target!(|data: &[u8]| {
    let root = match xml::parse(data) {
        Ok(root) => root,
        Err(e) => {
            assert_eq!(e.code(), -40002, "{e}");
            return;
        }
    };
    check_tree(&root);
    if plain_names(&root) {
        let mut rendered = String::new();
        render_tree(&root, &mut rendered);
        if rendered.len() > xml::MAX_XML_BYTES {
            return;
        }
        let again = xml::parse(rendered.as_bytes()).expect("a rendered tree parses");
        assert_eq!(again, root, "render → parse changed the tree");
    }
});
