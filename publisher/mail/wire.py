"""SMTP DATA payloads compiled once per issue: per reader, validation, joins and (with DKIM) one signature.

The message of an issue (:class:`~publisher.mail.message.MessageTemplate`)
is already bytes with slots for what differs per reader. Here those
chunks are put in wire form once: line ends normalised, leading dots
doubled (RFC 5321 4.5.2), the terminating dot appended, the subject of
the normal and the test copy filled in. That is exact because every
per-reader value is non-empty and holds no CR or LF (``values`` refuses
anything else): no line end or dot-stuffing can straddle a value, except
a value at the start of a line that starts with a dot, which is checked.

With DKIM the constant headers and the body up to the first per-reader
value are canonicalised and hashed once (:class:`~publisher.mail.dkim.SignPlan`).

Each compiled form is checked once against the reference path (the
template's ``personalize``, :func:`wire_data`, ``Signer.sign_wire``) with
two probe readers; a template that disagrees is sent by that path instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .dkim import SignPlan, Signer, plan_signing
from .message import SUBJECT, MessageTemplate, Personalizer

log = logging.getLogger(__name__)

_BARE_EOL = re.compile(rb"\r\n|\r|\n")

# Probe readers: distinct lengths and shapes, so a layout that only works for one fails the check.
_PROBES = (
    ("rcpt-probe-a1@probe.invalid", "https://probe.invalid/unsub-a1", "<mid-a1@probe.invalid>"),
    ("rcpt.probe+bb22c@xn--bcher-kva.invalid", "https://probe.invalid/u?t=bb22c&x=y.z", "<mid-bb22c.x@probe.invalid>"),
)


def wire_data(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, terminated.

    The fast check (a few C-level scans) spares the regex pass when the
    message already has CRLF line ends only.
    """
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        message = _BARE_EOL.sub(b"\r\n", message)
    if b"\n." in message:
        message = message.replace(b"\n.", b"\n..")
    if message.startswith(b"."):
        message = b"." + message
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


def _normalise(chunk: bytes) -> bytes:
    if chunk.count(b"\n") != chunk.count(b"\r\n") or chunk.count(b"\r") != chunk.count(b"\r\n"):
        chunk = _BARE_EOL.sub(b"\r\n", chunk)
    return chunk.replace(b"\n.", b"\n..")


@dataclass(frozen=True)
class _Form:
    """One compiled copy (normal or test): wire chunks interleaved with reader slots."""

    wire: tuple[bytes, ...]
    slots: tuple[int, ...]
    line_start: frozenset[int]  # positions whose value starts a line (a leading dot is doubled)
    signing: SignPlan | None

    def payload(self, values: Sequence[bytes]) -> bytes:
        parts: list[bytes] = []
        for i, (chunk, slot) in enumerate(zip(self.wire, self.slots)):
            value = values[slot]
            parts.append(chunk)
            parts.append(b"." + value if i in self.line_start and value[:1] == b"." else value)
        parts.append(self.wire[-1])
        body = b"".join(parts)
        return body if self.signing is None else self.signing.header(values) + body


def _compile(template: MessageTemplate, signer: Signer | None, test: bool) -> _Form | None:
    """The wire form of ``template`` with the subject filled in; None if it does not
    reproduce the reference path for the probe readers."""
    subject = template.values(to=_PROBES[0][0], unsubscribe_url=_PROBES[0][1], message_id=_PROBES[0][2], test=test)[SUBJECT]
    chunks: list[bytes] = [template.chunks[0]]
    slots: list[int] = []
    for slot, chunk in zip(template.slots, template.chunks[1:]):
        if slot == SUBJECT:  # the same for every reader: part of the constant bytes
            chunks[-1] += subject + chunk
        else:
            slots.append(slot)
            chunks.append(chunk)
    wire = [_normalise(c) for c in chunks]
    if wire[0][:1] == b".":
        wire[0] = b"." + wire[0]
    line_start = frozenset(i for i, c in enumerate(wire[:-1]) if c.endswith(b"\n") or (i == 0 and not c))
    if not wire[-1].endswith(b"\r\n"):
        wire[-1] += b"\r\n"
    wire[-1] += b".\r\n"
    signing = None
    if signer is not None:
        signing = plan_signing(signer, chunks, slots)
        if signing is None:
            return None
    form = _Form(tuple(wire), tuple(slots), line_start, signing)
    for to, url, mid in _PROBES:
        raw = template.personalize(to=to, unsubscribe_url=url, message_id=mid, test=test)
        expected = wire_data(raw) if signer is None else signer.sign_wire(wire_data(raw), raw)
        if form.payload(template.values(to=to, unsubscribe_url=url, message_id=mid, test=test)) != expected:
            log.warning("issue %s/%s: compiled wire form differs from the reference; using the slow path",
                        template.issue_kind, template.issue_key)
            return None
    return form


class WireMessage:
    """Per-reader SMTP DATA payloads of one issue, DKIM-signed when a signer is given.

    Any :class:`Personalizer` works; a :class:`MessageTemplate` (the
    newsletter) is compiled, anything else personalised and converted per reader.
    """

    def __init__(self, template: Personalizer, signer: Signer | None = None) -> None:
        self.template = template
        self.signer = signer
        self._forms: dict[bool, _Form | None] = {}
        if isinstance(template, MessageTemplate):
            self._forms[False] = _compile(template, signer, test=False)

    @property
    def fast(self) -> bool:
        return self._forms.get(False) is not None

    def personalize(self, *, to: str, unsubscribe_url: str, message_id: str, test: bool = False) -> bytes:
        """The DATA payload for one recipient (terminated, signed, ready for the SMTP transport)."""
        template = self.template
        if isinstance(template, MessageTemplate):
            if test not in self._forms:
                self._forms[test] = _compile(template, self.signer, test=test)
            form = self._forms[test]
            if form is not None:
                return form.payload(template.values(to=to, unsubscribe_url=unsubscribe_url, message_id=message_id, test=test))
        raw = template.personalize(to=to, unsubscribe_url=unsubscribe_url, message_id=message_id, test=test)
        wire = wire_data(raw)
        return wire if self.signer is None else self.signer.sign_wire(wire, raw)
