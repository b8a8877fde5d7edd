//! The XML envelopes around ciphertext: the inbound `<Encrypt>` body of 兼容/安全模式 and the
//! encrypted passive reply.
//!
//! Inbound, WeChat sends `<xml><ToUserName/><Encrypt/></xml>` (安全模式) or the plaintext
//! fields plus `<Encrypt>` (兼容模式); the official extractor reads `Encrypt` and `ToUserName`
//! by name, and so does [`EncryptedRequest::parse`]. The raw `Encrypt` text is kept verbatim
//! because `msg_signature` covers exactly those characters.
//!
//! Outbound, [`EncryptedReply`] renders the official sample's layout byte for byte
//! (`TimeStamp` without CDATA, `Nonce` with), which every WeChat client library parses.

use crate::crypto::{MsgCrypt, Plaintext};
use crate::signature::{msg_signature, verify_msg_signature, Signature, Token};
use crate::xml::{self, Element};
use crate::Error;

/// An encrypted callback body, as found on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedRequest {
    /// `ToUserName` (the account's `gh_…` id), when present.
    pub to_user_name: Option<String>,
    /// The `Encrypt` text, verbatim.
    pub encrypt: String,
    /// The whole parsed body (in 兼容模式 it also carries the plaintext fields).
    pub body: Element,
}

impl EncryptedRequest {
    /// Parses a callback body that must carry an `<Encrypt>` element (-40002 otherwise).
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::from_element(xml::parse(body)?)
    }

    /// Reads `Encrypt` and `ToUserName` out of an already parsed body.
    pub fn from_element(body: Element) -> Result<Self, Error> {
        let encrypt = body
            .child_text("Encrypt")
            .ok_or_else(|| Error::xml("no <Encrypt> element"))?
            .to_owned();
        let to_user_name = body.child_text("ToUserName").map(str::to_owned);
        Ok(EncryptedRequest {
            to_user_name,
            encrypt,
            body,
        })
    }

    /// Checks `msg_signature` (from the URL) over `Encrypt`, then decrypts it.
    pub fn open(
        &self,
        crypt: &MsgCrypt,
        token: &Token,
        timestamp: &str,
        nonce: &str,
        msg_signature: &str,
    ) -> Result<Plaintext, Error> {
        let verified = verify_msg_signature(token, timestamp, nonce, &self.encrypt, msg_signature)?;
        crypt.decrypt(verified)
    }
}

/// The encrypted passive reply: `Encrypt`, `MsgSignature`, `TimeStamp`, `Nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedReply {
    /// Base64 ciphertext of the reply XML.
    pub encrypt: String,
    /// `msg_signature` over token, timestamp, nonce and `encrypt`.
    pub msg_signature: Signature,
    /// Unix seconds chosen by the replier.
    pub timestamp: String,
    /// The nonce; WeChat's docs suggest echoing the request's.
    pub nonce: String,
}

impl EncryptedReply {
    /// Encrypts `reply_xml` with the caller's random prefix and signs it.
    pub fn seal(
        crypt: &MsgCrypt,
        token: &Token,
        reply_xml: &str,
        timestamp: &str,
        nonce: &str,
        random: [u8; 16],
    ) -> Result<Self, Error> {
        let encrypt = crypt.encrypt(reply_xml, random)?;
        let msg_signature = msg_signature(token, timestamp, nonce, &encrypt);
        Ok(EncryptedReply {
            encrypt,
            msg_signature,
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
        })
    }

    /// Renders the official reply layout.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.encrypt.len() + 160);
        out.push_str("<xml>\n");
        xml::push_cdata_element(&mut out, "Encrypt", &self.encrypt);
        out.push('\n');
        xml::push_cdata_element(&mut out, "MsgSignature", self.msg_signature.as_str());
        out.push('\n');
        xml::push_text_element(&mut out, "TimeStamp", &self.timestamp);
        out.push('\n');
        xml::push_cdata_element(&mut out, "Nonce", &self.nonce);
        out.push_str("\n</xml>");
        out
    }

    /// Parses an encrypted reply (what `wxmp send` receives back). The signature is not
    /// checked here: see [`EncryptedReply::open`].
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let root = xml::parse(body)?;
        let field = |name: &str| {
            root.child_text(name)
                .map(str::to_owned)
                .ok_or_else(|| Error::xml(format_args!("encrypted reply has no <{name}>")))
        };
        let provided = field("MsgSignature")?;
        let encrypt = field("Encrypt")?;
        let timestamp = field("TimeStamp")?;
        let nonce = field("Nonce")?;
        // Keep what was sent; `open` verifies it against a recomputed signature.
        let msg_signature = parse_signature_text(&provided)?;
        Ok(EncryptedReply {
            encrypt,
            msg_signature,
            timestamp,
            nonce,
        })
    }

    /// Verifies this reply's `MsgSignature` and decrypts it.
    pub fn open(&self, crypt: &MsgCrypt, token: &Token) -> Result<Plaintext, Error> {
        let verified = verify_msg_signature(
            token,
            &self.timestamp,
            &self.nonce,
            &self.encrypt,
            self.msg_signature.as_str(),
        )?;
        crypt.decrypt(verified)
    }
}

/// Reads a 40-hex-character signature as sent by a peer.
fn parse_signature_text(text: &str) -> Result<Signature, Error> {
    let bytes = hex::decode(text).map_err(|_| Error::ValidateSignature)?;
    if bytes.len() != 20 {
        return Err(Error::ValidateSignature);
    }
    Ok(Signature::from_raw_digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{AppId, EncodingAesKey};

    fn crypt() -> MsgCrypt {
        MsgCrypt::new(
            EncodingAesKey::parse("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap(),
            AppId::new("wxb11529c136998cb6").unwrap(),
        )
    }

    #[test]
    fn reply_round_trips_and_detects_tampering() {
        let token = Token::new("pamtest").unwrap();
        let reply = EncryptedReply::seal(
            &crypt(),
            &token,
            "<xml>hi</xml>",
            "1409304348",
            "xxxxxx",
            [1; 16],
        )
        .unwrap();
        let wire = reply.render();
        let parsed = EncryptedReply::parse(wire.as_bytes()).unwrap();
        assert_eq!(parsed, reply);
        assert_eq!(parsed.open(&crypt(), &token).unwrap().msg, "<xml>hi</xml>");

        let tampered = wire.replace("<TimeStamp>1409304348", "<TimeStamp>1409304349");
        let parsed = EncryptedReply::parse(tampered.as_bytes()).unwrap();
        assert_eq!(parsed.open(&crypt(), &token).unwrap_err().code(), -40001);
    }

    #[test]
    fn request_without_encrypt_is_40002() {
        let err =
            EncryptedRequest::parse(b"<xml><ToUserName><![CDATA[gh_test]]></ToUserName></xml>")
                .unwrap_err();
        assert_eq!(err.code(), -40002);
    }
}
