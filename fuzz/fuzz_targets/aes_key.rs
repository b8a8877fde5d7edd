//! The EncodingAESKey parser on arbitrary text. It must accept exactly the 43-character
//! strings of the base64 alphabet (the 43rd character's two spare bits may be set, as in the
//! official sample keys), and the canonical text of an accepted key must parse to the same
//! key and differ from the input at most in those two bits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxmp_proto::EncodingAesKey;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let well_formed = text.len() == 43 && text.bytes().all(|b| ALPHABET.contains(&b));
    let key = match EncodingAesKey::parse(text) {
        Ok(key) => key,
        Err(e) => {
            assert!(!well_formed, "refused a well-formed key: {e}");
            assert_eq!(e.code(), -40004);
            return;
        }
    };
    assert!(well_formed, "accepted {text:?}");
    // Independent decoding: 43 sextets = 258 bits, the first 256 are the key.
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut expected = Vec::with_capacity(33);
    for b in text.bytes() {
        let sextet = ALPHABET.iter().position(|&a| a == b).unwrap_or(0);
        bits = (bits << 6) | u32::try_from(sextet).unwrap_or(0);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            expected.push(((bits >> nbits) & 0xff) as u8);
        }
    }
    assert_eq!(&expected[..], &key.aes_key()[..]);
    assert_eq!(key.iv(), &key.aes_key()[..16]);

    let canonical = key.to_encoding_aes_key();
    assert_eq!(canonical.len(), 43);
    assert_eq!(canonical[..42], text[..42]);
    let last = |s: &str| {
        ALPHABET
            .iter()
            .position(|&a| a == s.as_bytes()[42])
            .unwrap_or(0)
    };
    assert_eq!(
        last(&canonical),
        last(text) & !0b11,
        "only the spare bits may differ"
    );
    assert_eq!(
        EncodingAesKey::parse(&canonical).expect("canonical parses"),
        key
    );
    assert_eq!(format!("{key:?}"), "EncodingAesKey(***)");
});
