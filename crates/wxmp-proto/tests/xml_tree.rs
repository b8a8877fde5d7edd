//! The element tree survives render → parse unchanged, for arbitrary trees: the property the
//! webhook JSON of `wxmp` (tree → JSON → tree) is built on.

use proptest::prelude::*;
use wxmp_proto::xml::{self, Element};

/// Element names: WeChat's list names, which are the interesting ones, and arbitrary names.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["item", "List", "fail_idx", "PicList", "xml"])
            .prop_map(String::from),
        "[A-Za-z_][A-Za-z0-9_.-]{0,10}",
    ]
}

/// Leaf text: anything XML 1.0 carries except a carriage return (parsers normalise it),
/// with the characters that need care over-represented.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("]]>".to_owned()),
            Just("<".to_owned()),
            Just("&amp;".to_owned()),
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            "[a-z0-9]{1,4}",
            "[\u{4e00}-\u{9fff}😀]{1,2}",
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

/// A tree up to four levels deep: each element a leaf with text, or a container.
pub fn tree() -> impl Strategy<Value = Element> {
    let leaf = (name(), text()).prop_map(|(name, text)| Element {
        name,
        text,
        children: vec![],
    });
    leaf.prop_recursive(4, 48, 5, |inner| {
        (name(), prop::collection::vec(inner, 1..5)).prop_map(|(name, children)| Element {
            name,
            text: String::new(),
            children,
        })
    })
}

proptest! {
    #[test]
    fn render_then_parse_is_the_identity(root in tree()) {
        let text = xml::render(&root);
        let parsed = xml::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(parsed, root);
    }
}
