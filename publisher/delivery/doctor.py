"""``publisher doctor``: the DNS records to publish and the settings that hurt deliverability.

Everything here is computed from the config and the DKIM key; nothing
queries DNS (the machine that runs publisher may not see the public zone).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.config import Config
from ..mail.dkim import Signer, signer_for
from ..mail.message import message_domain


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    type: str
    value: str
    why: str


def delivery_warnings(cfg: Config) -> list[str]:
    """Problems worth a warning at start (``run``, ``send``) and in ``doctor``."""
    out: list[str] = []
    smtp = bool(cfg.smtp.host)
    # A Maildir outbox is a local preview: http is fine there.
    if smtp and not cfg.site.base_url.startswith("https://"):
        out.append(
            f"site.base_url is {cfg.site.base_url!r}: unsubscribe links are http, so messages carry no "
            "List-Unsubscribe-Post (RFC 8058 one-click needs https) and Gmail/Yahoo bulk-sender rules are not met"
        )
    if smtp and not (cfg.dkim.domain and cfg.dkim.selector):
        out.append("[dkim] is not configured: messages go out unsigned; bulk senders must sign (see docs/delivery.md)")
    sender_domain = message_domain(cfg.email.sender_address)
    if cfg.dkim.domain and not _aligned(cfg.dkim.domain, sender_domain):
        out.append(f"dkim.domain {cfg.dkim.domain!r} does not align with the From domain {sender_domain!r} (DMARC fails)")
    if smtp and not cfg.email.unsubscribe_mailto and not cfg.site.base_url.startswith("https://"):
        out.append("no working one-click unsubscribe: set an https site.base_url or email.unsubscribe_mailto")
    return out


def _aligned(a: str, b: str) -> bool:
    """DMARC relaxed alignment, approximated without a public-suffix list: one is a subdomain of the other."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def dns_records(cfg: Config, signer: Signer | None = None) -> list[DnsRecord]:
    """The TXT records that make SPF, DKIM and DMARC pass for this config."""
    domain = message_domain(cfg.email.sender_address)
    records: list[DnsRecord] = []
    signer = signer if signer is not None else signer_for(cfg)
    if signer is not None:
        records.append(
            DnsRecord(f"{signer.selector}._domainkey.{signer.domain}", "TXT", signer.dns_record(),
                      f"the public half of the {signer.algorithm} key that signs every message")
        )
    bounce_domain = message_domain(cfg.bounces.return_path) if cfg.bounces.return_path else domain
    relay = cfg.smtp.host or "<your relay>"
    records.append(
        DnsRecord(bounce_domain, "TXT", f"v=spf1 a:{relay} ~all",
                  "SPF for the envelope (return-path) domain; with a provider use its include: instead of a:")
    )
    records.append(
        DnsRecord(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=none; rua=mailto:dmarc@{domain}; adkim=r; aspf=r",
                  "start with p=none and read the reports; move to p=quarantine once DKIM and SPF pass")
    )
    return records


def verify_signature(signer: Signer) -> bool:
    """Sign a sample and check it with dkimpy against the record we would publish."""
    import dkim

    sample = (
        b"From: doctor@" + signer.domain.encode() + b"\r\nTo: reader@example.org\r\nSubject: check\r\n"
        b"Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nMessage-ID: <doctor@example.org>\r\n\r\nbody\r\n"
    )
    record = signer.dns_record().encode("ascii")

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return record

    return bool(dkim.verify(signer.sign(sample), dnsfunc=dnsfunc))


def report(cfg: Config) -> tuple[list[str], bool]:
    """What ``publisher doctor`` prints, and whether all is well."""
    signer = signer_for(cfg)
    lines = ["DNS records to publish:"]
    for record in dns_records(cfg, signer):
        lines += [f"  {record.name}  {record.type}  \"{record.value}\"", f"      ({record.why})"]
    ok = True
    if signer is not None:
        ok = verify_signature(signer)
        lines.append(
            f"DKIM: {signer.algorithm} key for {signer.selector}._domainkey.{signer.domain}: "
            + ("a test signature verifies" if ok else "A TEST SIGNATURE DOES NOT VERIFY")
        )
    warnings = delivery_warnings(cfg)
    lines += [f"warning: {w}" for w in warnings]
    return lines, ok and not warnings
