//! Helpers the fuzz targets share: splitting one fuzzer input into several fields, and the
//! properties every parsed XML tree must have.
//!
//! libFuzzer hands a target one byte string. Targets that need several inputs (a token, a
//! nonce, a plaintext …) split it at `0xFF` bytes, which never occur in UTF-8, so each field
//! is still free text and the committed seeds stay readable: `fields…\xFFplaintext`.

use wxmp_proto::xml::{Element, MAX_DEPTH, MAX_ELEMENTS};

/// The byte that separates fields; it cannot occur inside UTF-8 text.
pub const SEPARATOR: u8 = 0xFF;

/// Splits `data` at [`SEPARATOR`] into at most `n` fields; the last takes the rest, separators
/// included.
pub fn split_fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut fields = Vec::with_capacity(n);
    let mut rest = data;
    while fields.len() + 1 < n {
        match rest.iter().position(|&b| b == SEPARATOR) {
            Some(at) => {
                fields.push(&rest[..at]);
                rest = &rest[at + 1..];
            }
            None => break,
        }
    }
    fields.push(rest);
    fields
}

/// A field as text, or `default` when it is empty or not UTF-8.
pub fn text_or<'a>(field: Option<&&'a [u8]>, default: &'a str) -> &'a str {
    match field.map(|f| std::str::from_utf8(f)) {
        Some(Ok(text)) if !text.is_empty() => text,
        _ => default,
    }
}

/// Checks the reader's bounds and shape on a tree it returned: nesting within
/// [`MAX_DEPTH`], at most [`MAX_ELEMENTS`] elements, and no text kept on an element that has
/// children. Returns the element count.
pub fn check_tree(root: &Element) -> usize {
    fn walk(element: &Element, depth: usize, count: &mut usize) {
        assert!(depth <= MAX_DEPTH, "tree deeper than MAX_DEPTH");
        *count += 1;
        assert!(
            element.children.is_empty() || element.text.is_empty(),
            "an element with children kept its text"
        );
        for child in &element.children {
            walk(child, depth + 1, count);
        }
    }
    let mut count = 0;
    walk(root, 1, &mut count);
    assert!(count <= MAX_ELEMENTS, "more than MAX_ELEMENTS elements");
    count
}
