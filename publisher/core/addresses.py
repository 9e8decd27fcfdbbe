"""Email addresses: the one normalised form every room stores and compares."""

from __future__ import annotations

import re

import idna

from .errors import PublisherError

MAX_EMAIL = 254  # RFC 5321 path limit

# A local part that goes through an SMTP envelope and a To header unquoted:
# RFC 5322 atext in dot-atom form, plus any non-ASCII character (RFC 6531,
# needs a relay with SMTPUTF8). Quoted local parts ("a b"@x) are refused at
# sign-up: they would need quoting in every header and most relays mangle them.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
SENDABLE_LOCAL = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*$")
SENDABLE_DOMAIN = re.compile(r"^[^\s@<>()\[\],;:\"\\]+$")


class InvalidAddress(PublisherError):
    """An email address that fails validation; carries the address as given."""

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        self.message = message
        super().__init__(f"{address!r}: {message}")

    def __reduce__(self) -> tuple[type[InvalidAddress], tuple[str, str]]:
        return (type(self), (self.address, self.message))


def normalize_email(raw: str) -> str:
    """The canonical form of an address, or :class:`InvalidAddress`.

    Syntax only (no DNS: imports must not depend on the network). The whole
    address is lower-cased: every real mailbox provider treats the local part
    case-insensitively, and two rows for one person mean double sends.
    """
    text = raw.strip()
    if not text or len(text) > MAX_EMAIL or any(c in text for c in "\r\n\0<>,;"):
        raise InvalidAddress(raw, "not a single email address")
    # Imported on first use: its tables cost 25-40 ms at every start of a
    # command that never reads an address (a build).
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(raw, str(exc)) from exc
    address: str = info.normalized.lower()
    check_sendable(address, raw)
    return address


def check_sendable(address: str, raw: str | None = None) -> None:
    """:class:`InvalidAddress` for an address no SMTP envelope or To header can carry as is."""
    local, _, domain = address.rpartition("@")
    if not SENDABLE_LOCAL.match(local):
        raise InvalidAddress(raw or address, f"the part before @ ({local!r}) cannot be sent: use letters, digits and .!#$%&'*+/=?^_`{{|}}~- only")
    if not SENDABLE_DOMAIN.match(domain):
        raise InvalidAddress(raw or address, f"the domain {domain!r} cannot be sent")
    try:
        idna_domain(domain)
    except InvalidAddress as exc:
        raise InvalidAddress(raw or address, exc.message) from exc


def idna_domain(domain: str) -> str:
    """The ASCII (A-label) form of a domain, for relays without SMTPUTF8 and for headers."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidAddress(domain, f"not an internationalised domain name: {exc}") from exc


def header_address(address: str) -> str:
    """The address as a To header writes it: ASCII with an A-label domain when the local
    part allows (valid through any relay), else UTF-8 as is (RFC 6532, SMTPUTF8 only)."""
    local, _, domain = address.rpartition("@")
    if address.isascii() or not local.isascii():
        return address
    return f"{local}@{idna_domain(domain)}"
