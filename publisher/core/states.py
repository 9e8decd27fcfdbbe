"""The states of issues, subscribers and deliveries: the one place that names them.

Stored as their string values, so the database, the CLI and the desk all
speak the same words; every module takes its states from here.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import StateError


class IssueState(StrEnum):
    DRAFT = "draft"  # the story is a draft: nothing can be sent
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"  # released: the next drain sends it
    SCHEDULED = "scheduled"  # released for a set time (issues.send_at)
    HELD = "held"  # an editor stopped it; approve releases it again
    SENDING = "sending"  # ledger rows exist; a send is under way or resumable
    SENT = "sent"
    ERROR = "error"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def is_open(self) -> bool:
        """An edit of the story may still re-render the issue (nothing has gone out)."""
        return self in OPEN_STATES


# Every allowed move, in one table. A story edited back to a draft takes any
# open issue back to DRAFT; nothing leaves SENDING but SENT, and SENT is final.
_RELEASE = frozenset({IssueState.APPROVED, IssueState.SCHEDULED})
TRANSITIONS: dict[IssueState, frozenset[IssueState]] = {
    IssueState.DRAFT: frozenset({IssueState.AWAITING_APPROVAL}) | _RELEASE,
    IssueState.AWAITING_APPROVAL: frozenset({IssueState.HELD, IssueState.DRAFT}) | _RELEASE,
    IssueState.APPROVED: frozenset({IssueState.SCHEDULED, IssueState.HELD, IssueState.SENDING, IssueState.DRAFT}),
    IssueState.SCHEDULED: frozenset({IssueState.APPROVED, IssueState.HELD, IssueState.SENDING, IssueState.DRAFT}),
    IssueState.HELD: frozenset({IssueState.DRAFT}) | _RELEASE,
    IssueState.ERROR: frozenset({IssueState.HELD, IssueState.DRAFT}) | _RELEASE,
    IssueState.SENDING: frozenset({IssueState.SENT}),
    IssueState.SENT: frozenset(),
}

OPEN_STATES: frozenset[IssueState] = frozenset(
    {IssueState.DRAFT, IssueState.AWAITING_APPROVAL, IssueState.APPROVED, IssueState.SCHEDULED, IssueState.HELD, IssueState.ERROR}
)
# What a send or a drain picks up (a scheduled issue only once its time has come).
SENDABLE_STATES: tuple[IssueState, ...] = (IssueState.APPROVED, IssueState.SCHEDULED, IssueState.SENDING)
# The desk lists stories in this order of their issue's state, then newest first.
DESK_ORDER: tuple[IssueState, ...] = (
    IssueState.AWAITING_APPROVAL, IssueState.SCHEDULED, IssueState.APPROVED, IssueState.SENDING, IssueState.ERROR,
)


def can_move(current: str, target: IssueState) -> bool:
    return target in TRANSITIONS[IssueState(current)]


def check_move(what: str, current: str, target: IssueState) -> None:
    """Raise :class:`StateError` naming ``what`` unless ``current → target`` is allowed."""
    state = IssueState(current)
    if target not in TRANSITIONS[state]:
        raise StateError(f"{what} is {state.label}; it cannot become {target.label}")


class Cadence(StrEnum):
    INSTANT = "instant"  # one email per story
    DAILY = "daily"
    WEEKLY = "weekly"


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class DeliveryState(StrEnum):
    # queued → sending → sent | failed | queued (retry); skipped = the
    # subscriber left (unsubscribed, bounced, removed) before their turn came.
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


CADENCES: tuple[str, ...] = tuple(c.value for c in Cadence)
# The cadences that get digests (instant readers get every story issue).
DIGEST_CADENCES: tuple[Cadence, ...] = (Cadence.DAILY, Cadence.WEEKLY)
SUBSCRIBER_STATUSES: tuple[str, ...] = tuple(s.value for s in SubscriberStatus)
