"""The compiled DATA payload (mail/wire.py) against today's path: the email package's template,
personalised, put in wire form and signed message by message."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import random
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from publisher.briefs import load_brief
from publisher.core.addresses import header_address
from publisher.core.errors import DeliveryError
from publisher.mail import tokens
from publisher.mail.dkim import Signer, parse_key, unwire
from publisher.mail.message import MessageTemplate, to_seven_bit
from publisher.mail.wire import WireMessage, wire_data
from publisher.render.email import RenderedIssue, render_story, unsubscribe_placeholder

from tests.support.files import DATA
from tests.support.smtp import T0, make_cfg, synthetic_issue

# Addresses of every shape a reader can have: plain, tagged, dotted, an IDN domain
# (an A-label in headers without SMTPUTF8 needs), a UTF-8 local part (SMTPUTF8 only), long ones.
SHAPES = [
    "reader{i}@example.net", "first.last+news{i}@sub.example.co.uk", "x{i}@bücher.example", "müller{i}@bücher.example",
    "o'brien.{i}@example.org", "{i}" + "a" * 60 + "@" + "long-domain-" * 8 + "example.com", "δοκιμή{i}@παράδειγμα.δοκιμή",
    "user_{i}=x~y@xn--80ak6aa92e.com",
]


def _readers(cfg_url: str, n: int, seed: int = 17) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    links = tokens.LinkMaker(b"k" * 32, "unsubscribe", cfg_url + "unsubscribe?t=", clock=lambda: 1_790_000_000 + rng.randrange(10**6))
    out = []
    for i in range(n):
        to = SHAPES[i % len(SHAPES)].format(i=i)
        url = links.url(rng.randrange(1, 10**9), to)
        if i % 5 == 0:
            url += "&utm_source=x&a=b~c.d"  # '&' is escaped in the HTML part only
        mid = f"<{rng.randrange(10**6)}.{i}.{rng.randrange(16**12):012x}@news.example.org>"
        out.append((to, url, mid))
    return out


def _templates(tmp: Path) -> list[MessageTemplate]:
    cfg = make_cfg(tmp)
    reference = render_story(load_brief(str(DATA / "reference.txt"), base_url=cfg.site.base_url), cfg)
    # Placeholders at the start of lines, next to dots, and bare line ends: the edge cases of wire form.
    unsub = unsubscribe_placeholder("e" * 64)
    edgy = RenderedIssue(
        kind="story", key="edge", subject="Ünïcode subject that is long enough to be folded by the email package " * 2,
        preheader="p", mjml="", content_hash="e" * 64,
        text=f"{unsub}\n.{unsub}\n..\n.\nend {unsub}.\n\n\n",
        html=f"<p>\n.x <a href=\"{unsub}\">u</a>\n.</p>\n{unsub}\n",
    )
    mailto = dataclasses.replace(cfg, email=dataclasses.replace(cfg.email, unsubscribe_mailto="leave@news.example.org"))
    return [
        MessageTemplate.build(reference, cfg, sent_at=T0),
        MessageTemplate.build(synthetic_issue(), cfg, sent_at=T0),
        MessageTemplate.build(edgy, mailto, sent_at=T0),
    ]


def test_compiled_payloads_equal_todays_path_for_many_readers(tmp_path: Path) -> None:
    readers = _readers("https://news.example.org/", 400)
    for template in _templates(tmp_path):
        wire = WireMessage(template)
        assert wire.fast, template.issue_key
        for to, url, mid in readers:
            for test in (False, True):
                raw = template.personalize(to=to, unsubscribe_url=url, message_id=mid, test=test)
                assert wire.personalize(to=to, unsubscribe_url=url, message_id=mid, test=test) == wire_data(raw), (to, url)
        # What the email package reads back from the wire bytes is the reader's.
        for to, url, mid in readers[:16]:
            got = unwire(wire.personalize(to=to, unsubscribe_url=url, message_id=mid))
            msg = email.message_from_bytes(got, policy=email.policy.default)
            assert msg["To"] == header_address(to) and msg["Message-ID"] == mid
            assert msg["List-Unsubscribe"].startswith(f"<{url}>")
            text = msg.get_body(("plain",))
            assert text is not None and url in text.get_content()
            # The 7-bit path for relays without 8BITMIME starts from the same bytes.
            assert to_seven_bit(got) == to_seven_bit(template.personalize(to=to, unsubscribe_url=url, message_id=mid))


def test_the_compiled_path_refuses_what_the_template_refuses(tmp_path: Path) -> None:
    wire = WireMessage(_templates(tmp_path)[1])
    good = ("a@example.net", "https://news.example.org/unsubscribe?t=1", "<1.1.a@news.example.org>")
    for field, bad in [(0, "a@b.example\r\nBcc: x@y.z"), (0, "a b@example.net"), (1, "javascript:alert(1)"),
                       (1, "https://x.example/u?t=1\r\nX-Evil: 1"), (2, "<no-at-sign>"), (2, "<a@b>\r\nX: y")]:
        args = list(good)
        args[field] = bad
        with pytest.raises(DeliveryError) as info:
            wire.personalize(to=args[0], unsubscribe_url=args[1], message_id=args[2])
        assert info.value.permanent


def test_any_personalizer_gets_the_reference_path(tmp_path: Path) -> None:
    template = _templates(tmp_path)[1]

    class Plain:
        def personalize(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> bytes:
            return template.personalize(to=to, unsubscribe_url=unsubscribe_url, message_id=message_id, test=test)

    wire = WireMessage(Plain())
    assert not wire.fast
    to, url, mid = "a@example.net", "https://news.example.org/u?t=1", "<1@x.example>"
    assert wire.personalize(to=to, unsubscribe_url=url, message_id=mid) == wire_data(
        template.personalize(to=to, unsubscribe_url=url, message_id=mid))


def _key(kind: str) -> Signer:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return Signer("news.example.org", "s1", parse_key(pem, kind))


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_signed_payloads_equal_signing_each_message(tmp_path: Path, kind: str) -> None:
    signer = _key(kind)
    record = signer.dns_record().encode()
    readers = _readers("https://news.example.org/", 60, seed=3)
    for template in _templates(tmp_path):
        wire = WireMessage(template, signer)
        assert wire.fast, template.issue_key
        for i, (to, url, mid) in enumerate(readers):
            raw = template.personalize(to=to, unsubscribe_url=url, message_id=mid)
            fast = wire.personalize(to=to, unsubscribe_url=url, message_id=mid)
            assert fast == signer.sign_wire(wire_data(raw), raw), (to, url)
            if i < 4:
                assert dkim.verify(unwire(fast), dnsfunc=lambda name, timeout=5: record)
