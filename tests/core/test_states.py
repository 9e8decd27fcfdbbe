"""The issue state machine: one table of moves, the one the docs show."""

from __future__ import annotations

import re

import pytest

from publisher.core.errors import StateError
from publisher.core.states import OPEN_STATES, TRANSITIONS, IssueState, check_move
from tests.support.files import ROOT


def test_docs_show_exactly_the_moves_the_code_allows() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| (.+) \|$", docs, re.M))
    assert set(table) == {s.value for s in IssueState}
    for state, targets in TRANSITIONS.items():
        assert set(re.findall(r"`(\w+)`", table[state.value])) == {t.value for t in targets}, state


def test_moves_outside_the_table_are_refused_by_name() -> None:
    check_move("story x", "held", IssueState.APPROVED)
    with pytest.raises(StateError, match="story x is sent; it cannot become approved"):
        check_move("story x", "sent", IssueState.APPROVED)
    with pytest.raises(StateError, match="awaiting approval"):
        check_move("story x", "awaiting_approval", IssueState.SENT)


def test_nothing_leaves_sending_but_sent_and_sent_is_final() -> None:
    assert TRANSITIONS[IssueState.SENDING] == {IssueState.SENT}
    assert TRANSITIONS[IssueState.SENT] == frozenset()
    assert IssueState.SENDING not in OPEN_STATES and IssueState.SENT not in OPEN_STATES
