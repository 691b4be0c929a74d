"""Benchmark: CPU per DKIM signature, ``mailer.dkim.Signer`` against dkimpy's ``dkim.sign``.

Composes personalised digest messages (the synthetic issue of bench_compose.py, cut to
about 30 KB a message), then signs them relaxed/relaxed with RSA-2048 and with Ed25519,
ours (OpenSSL through ``cryptography``) and dkimpy's (pure-Python RSA), and reports CPU
milliseconds per signature and the ratio. It also reports composing throughput with
signing off, RSA, and RSA + Ed25519, in the same run. One signature of each kind is
checked with dkimpy's verifier first.

    .venv/bin/python bench/bench_dkim.py                  # 2,000 ours, 50 dkimpy
    .venv/bin/python bench/bench_dkim.py --n 500 --dkimpy 20 --check

Target (issue 15): at most 1.5 ms of CPU per signed message with RSA-2048. A benchmark,
not a test: run it by hand; ``--check`` exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dkim as dkimpy
from bench_compose import ISSUE_DATE, NEWSLETTER, SECRET, UNSUBSCRIBE_URL, recipient, write_articles
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailer.articles import load_articles
from mailer.digest import build_digest
from mailer.dkim import SIGNED, Signer, SigningKey
from mailer.messages import Composer, Envelope
from mailer.render import make_environment, render_digest
from mailer.tokens import make_token

TARGET_MS = 1.5
DOMAIN = "example.com"
ARTICLES = 6  # about 35 KB a message with the bench articles


def cpu_ms(function: Callable[[bytes], object], messages: list[bytes]) -> float:
    start = time.process_time()
    for message in messages:
        function(message)
    return (time.process_time() - start) * 1000 / len(messages)


def verify(signed: bytes, keys: list[SigningKey], index: int) -> bool:
    records = {f"{k.selector}._domainkey.{DOMAIN}.".encode(): k.txt_value().encode() for k in keys}
    return bool(
        dkimpy.DKIM(signed).verify(idx=index, dnsfunc=lambda name, timeout=5: records.get(name))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages signed by ours (2,000)")
    parser.add_argument("--dkimpy", type=int, default=50, help="messages signed by dkimpy (50)")
    parser.add_argument("--check", action="store_true", help="exit 1 if over the target")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        folder = Path(tmp) / "articles"
        folder.mkdir()
        write_articles(folder, count=ARTICLES)
        digest = build_digest(
            load_articles(folder), newsletter=str(NEWSLETTER["name"]), issue_date=ISSUE_DATE
        )
    rendered = render_digest(
        digest, env=make_environment(None), newsletter=NEWSLETTER, extra_fields=["city"]
    )
    composer = Composer(
        rendered,
        Envelope(
            from_name=str(NEWSLETTER["name"]),
            from_address=str(NEWSLETTER["from_address"]),
            list_id="bench.example.com",
            unsubscribe_url=UNSUBSCRIBE_URL,
        ),
        unsubscribe_token=lambda r: make_token(SECRET, "bench", r.email),
        campaign_key="The Bench Weekly 2026-11-27",
    )
    people = [recipient(i) for i in range(args.n)]
    messages = [composer.compose(p, i).data for i, p in enumerate(people, 1)]
    sizes = [len(m) / 1024 for m in messages]
    print(
        f"messages: {len(messages)} digests of {ARTICLES} articles, "
        f"{min(sizes):.1f}-{max(sizes):.1f} KB (median {statistics.median(sizes):.1f} KB)"
    )

    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_private = ed25519.Ed25519PrivateKey.generate()
    rsa_key, ed_key = SigningKey("rsa", rsa_private), SigningKey("ed", ed_private)
    ours_rsa, ours_ed = Signer(DOMAIN, [rsa_key]), Signer(DOMAIN, [ed_key])
    both = Signer(DOMAIN, [rsa_key, ed_key])
    signed = both.sign(messages[0])
    assert verify(signed, [rsa_key, ed_key], 0) and verify(signed, [rsa_key, ed_key], 1)
    print("check: our RSA and Ed25519 signatures verify with dkimpy")

    rsa_pem = rsa_private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    ed_raw = base64.b64encode(
        ed_private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )
    include = [h.encode() for h in SIGNED]

    def dkimpy_sign(key: bytes, algorithm: bytes, selector: bytes) -> Callable[[bytes], object]:
        return lambda message: dkimpy.sign(
            message,
            selector,
            DOMAIN.encode(),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=algorithm,
            include_headers=include,
        )

    few = messages[: args.dkimpy]
    theirs_rsa = dkimpy_sign(rsa_pem, b"rsa-sha256", b"rsa")
    theirs_ed = dkimpy_sign(ed_raw, b"ed25519-sha256", b"ed")
    rows = [
        ("RSA-2048", cpu_ms(ours_rsa.sign, messages), cpu_ms(theirs_rsa, few)),
        ("Ed25519", cpu_ms(ours_ed.sign, messages), cpu_ms(theirs_ed, few)),
    ]
    print(f"{'key':<10} {'ours ms/sig':>12} {'dkimpy ms/sig':>14} {'dkimpy/ours':>12}")
    for name, ours, theirs in rows:
        print(f"{name:<10} {ours:>12.3f} {theirs:>14.2f} {theirs / ours:>11.0f}x")

    def compose_rate(sign: Callable[[bytes], bytes] | None) -> float:
        start = time.process_time()
        for index, person in enumerate(people, 1):
            data = composer.compose(person, index).data
            if sign is not None:
                sign(data)
        return len(people) / (time.process_time() - start)

    off, on_rsa, on_both = compose_rate(None), compose_rate(ours_rsa.sign), compose_rate(both.sign)
    print(
        f"compose throughput (CPU, one core): DKIM off {off:,.0f} msg/s, RSA {on_rsa:,.0f} msg/s, "
        f"RSA + Ed25519 {on_both:,.0f} msg/s"
    )
    ok = rows[0][1] <= TARGET_MS
    print(
        f"OK: RSA-2048 {rows[0][1]:.3f} ms <= {TARGET_MS} ms"
        if ok
        else f"OVER TARGET: RSA-2048 {rows[0][1]:.3f} ms > {TARGET_MS} ms"
    )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
