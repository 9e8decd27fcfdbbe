"""Email addresses: the one normalised form every room stores and compares."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from .errors import PublisherError

MAX_EMAIL = 254  # RFC 5321 path limit


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
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(raw, str(exc)) from exc
    return info.normalized.lower()
