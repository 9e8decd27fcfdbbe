"""Message standards: one-click only over https, List-Archive, Feedback-ID, internationalised addresses."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from publisher.core.addresses import InvalidAddress, header_address, normalize_email
from publisher.core.errors import DeliveryError
from publisher.mail.message import MessageTemplate, confirmation_message, to_seven_bit

from tests.support.smtp import T0, make_cfg, synthetic_issue
from tests.support.project import build_config


def _message(base_url: str, tmp: Path, to: str = "reader@example.net") -> email.message.EmailMessage:
    cfg = build_config(tmp, site={"base_url": base_url}, email={"sender_address": "briefs@news.example.org"})
    template = MessageTemplate.build(synthetic_issue(), cfg, sent_at=T0)
    raw = template.personalize(to=to, unsubscribe_url=cfg.site.url("unsubscribe?t=abc"), message_id="<1.2.x@news.example.org>")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_one_click_only_with_an_https_unsubscribe_url(tmp_path: Path) -> None:
    https = _message("https://news.example.org/", tmp_path)
    assert https["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert https["List-Archive"] == "<https://news.example.org/issues/harbour-strike.html>"
    assert https["Feedback-ID"] == "story-harbour-strike:briefs.example.org:news.example.org"
    plain = _message("http://127.0.0.1:8000/", tmp_path)
    assert plain["List-Unsubscribe-Post"] is None
    assert plain["List-Unsubscribe"] == "<http://127.0.0.1:8000/unsubscribe?t=abc>"


def test_the_http_warning_names_the_setting(tmp_path: Path) -> None:
    from publisher.delivery.doctor import delivery_warnings

    cfg = build_config(tmp_path, site={"base_url": "http://news.example.org/"}, smtp={"host": "smtp.example.org"})
    warnings = delivery_warnings(cfg)
    assert any("site.base_url" in w and "List-Unsubscribe-Post" in w for w in warnings)
    assert delivery_warnings(make_cfg(tmp_path)) == []  # https, Maildir


def test_idn_addresses_in_headers(tmp_path: Path) -> None:
    msg = _message("https://news.example.org/", tmp_path, to="müller@bücher.example")
    assert msg["To"] == "müller@bücher.example"
    # An ASCII local part keeps an ASCII header, valid through any relay.
    assert header_address("anna@bücher.example") == "anna@xn--bcher-kva.example"
    with pytest.raises(DeliveryError, match="refusing recipient"):
        _message("https://news.example.org/", tmp_path, to="a b@example.org")


def test_confirmation_to_an_idn_address_is_utf8_not_encoded_words(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    raw = confirmation_message(cfg, "müller@bücher.example", "https://news.example.org/confirm?t=x", now=T0)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert "To: müller@bücher.example".encode() in head
    assert b"=?utf-8?" not in head.lower().split(b"\r\nsubject:")[0]


@pytest.mark.parametrize("bad", ['"john doe"@example.org', "a..b@example.org", "a(b)@example.org"])
def test_sign_up_refuses_local_parts_that_cannot_be_sent(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_email(bad)
    assert normalize_email("Müller@Bücher.example") == "müller@bücher.example"


def test_seven_bit_keeps_the_text(tmp_path: Path) -> None:
    raw = _message("https://news.example.org/", tmp_path).as_bytes()
    cfg = make_cfg(tmp_path)
    template = MessageTemplate.build(synthetic_issue(), cfg, sent_at=T0)
    raw = template.personalize(to="a@example.net", unsubscribe_url="https://news.example.org/u?t=1", message_id="<1.2.x@n.org>")
    seven = to_seven_bit(raw)
    assert seven.isascii() and b"\r\n" in seven and b"\n" not in seven.replace(b"\r\n", b"")
    msg = email.message_from_bytes(seven, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    html = msg.get_body(("html",))
    assert html is not None and "https://news.example.org/u?t=1" in html.get_content() and "東京" in html.get_content()
