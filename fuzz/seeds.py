#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs (fuzz/seeds/<target>/) from the repo's own fixtures.

Sources: the protocol vectors of the test suite (crates/wxmp-proto/tests/vectors/vectors.json),
the example config in docs/configuration.md and the webhook answers documented in
crates/wxmp/src/callback/webhook.rs. Rerun it after those change; the output is committed.
"""
import hashlib
import json
import pathlib
import re
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"
SEP = b"\xff"


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    folder = OUT / target
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:60]
    (folder / f"{slug}-{hashlib.sha1(data).hexdigest()[:8]}").write_bytes(data)


def envelope(op, plaintext, token="", timestamp="", nonce="", appid="", random=b"aaaabbbbccccdddd"):
    """The envelope target's layout: op, pos(2), value, random(16), then the text fields."""
    header = bytes([op, 7, 0, ord("A")]) + random
    fields = [token, timestamp, nonce, appid]
    return header + SEP.join(f.encode() for f in fields) + SEP + plaintext


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    vectors = json.loads((ROOT / "crates/wxmp-proto/tests/vectors/vectors.json").read_text())

    inbound = {name: sample["xml"] for name, sample in vectors["xml_inbound_samples"].items()}
    replies = vectors["passive_reply_samples"]["replies"]
    crypto = vectors["crypto_official"] + vectors["crypto_generated"]

    for name, xml in inbound.items():
        write("xml", name, xml)
        write("message", name, xml)
    for name, xml in replies.items():
        write("xml", f"reply-{name}", xml)
    for case in vectors["crypto_negative"]:
        if "post_body" in case:
            write("xml", case["id"], case["post_body"])
    for case in crypto:
        if "reply_xml_java_sample_format" in case:
            write("xml", f"{case['id']}-reply", case["reply_xml_java_sample_format"])

    # Envelope: every inbound sample under every mutation, and each crypto vector's fields.
    for name, xml in inbound.items():
        for op in range(10):
            write("envelope", f"{name}-op{op}", envelope(op, xml.encode()))
    for case in crypto:
        msg = case.get("msg")
        if msg is None:
            continue
        random = bytes.fromhex(case["random_hex"]) if "random_hex" in case else b"aaaabbbbccccdddd"
        for op in (0, 3, 8):
            plain = msg.encode()
            if op == 3 and "full_str_hex" in case:
                full = bytes.fromhex(case["full_str_hex"])
                pad = 32 - len(full) % 32
                plain = full + bytes([pad]) * pad
            write("envelope", f"{case['id']}-op{op}",
                  envelope(op, plain, case["token"], case["timestamp"], case["nonce"],
                           case["appid"], random))

    keys = {case["encoding_aes_key"] for case in vectors["aes_key_derivation"]}
    keys |= {case["encoding_aes_key"] for case in crypto + vectors["crypto_negative"]
             if "encoding_aes_key" in case}
    for key in sorted(keys):
        write("aes_key", key[:8], key)
        write("aes_key", key[:8] + "-padded", key + "=")

    # Config: the documented example, with and without its environment, and one app per mode.
    doc = (ROOT / "docs/configuration.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    env = b"\0WXMP_API_KEY=0123456789abcdef0123\nWXMP_DEMO_SECRET=s3cret\n"
    write("config", "example", example)
    write("config", "example-env", example.encode() + env)
    for mode in ("plain", "compat", "safe"):
        write("config", f"mode-{mode}", example.replace('mode = "safe"', f'mode = "{mode}"').encode() + env)
    write("config", "redis", '[store]\nbackend = "redis"\nurl = "$REDIS"\n\0REDIS=redis://127.0.0.1:6379/0\n')
    write("config", "empty", "")

    # Webhook answers: the documented shapes.
    source = (ROOT / "crates/wxmp/src/callback/webhook.rs").read_text()
    for line in re.findall(r"^//! (\{\"type\".*?\})[ \t]*(?://.*)?$", source, re.M):
        kind = json.loads(line)["type"]
        write("webhook_reply", kind, line)
    write("webhook_reply", "blank", " \n")
    write("webhook_reply", "news-9", json.dumps({"type": "news", "articles": [{"title": "t"}] * 9}))


if __name__ == "__main__":
    main()
