//! A filter that encrypts pushes as WeChat does, for load scripts that cannot do AES themselves.
//!
//! `bench/soak.sh` drives wxmp from Python, whose standard library has no AES, and the
//! 兼容/安全模式 pushes it sends need an `<Encrypt>` value. This example is that one step: each
//! input line is `ENCODING_AES_KEY<TAB>APPID<TAB>RANDOM_HEX<TAB>XML` (the 16 random bytes as 32
//! hex digits, the XML on one line), and each output line is the Base64 `Encrypt` text, flushed
//! at once so the caller can use it as a coprocess. The signatures are plain SHA-1 and stay with
//! the caller. A line that cannot be used is answered `ERROR <reason>`, so the two sides never
//! fall out of step.
//!
//! ```sh
//! cargo run --release -p wxmp-proto --example seal
//! ```

use std::io::{self, BufRead, Write};

use wxmp_proto::{AppId, EncodingAesKey, MsgCrypt};

fn seal(line: &str) -> Result<String, String> {
    let mut fields = line.splitn(4, '\t');
    let (Some(key), Some(appid), Some(random), Some(xml)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("expected KEY<TAB>APPID<TAB>RANDOM_HEX<TAB>XML".to_owned());
    };
    let key = EncodingAesKey::parse(key).map_err(|e| format!("EncodingAESKey: {e}"))?;
    let appid = AppId::new(appid).map_err(|e| format!("AppID: {e}"))?;
    let random: [u8; 16] = hex::decode(random)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("RANDOM_HEX must be 32 hex digits")?;
    MsgCrypt::new(key, appid)
        .encrypt(xml, random)
        .map_err(|e| e.to_string())
}

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        match seal(line.trim_end_matches('\r')) {
            Ok(encrypt) => writeln!(out, "{encrypt}")?,
            Err(reason) => writeln!(out, "ERROR {reason}")?,
        }
        out.flush()?;
    }
    Ok(())
}
