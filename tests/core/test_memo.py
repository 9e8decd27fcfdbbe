"""IdentityMemo: keyed by who owns a value, least recently used out first."""

from __future__ import annotations

import threading

from publisher.core.memo import IdentityMemo


class Owner:
    """Stands for a Brief: equal by value would be wrong here, identity is the key."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


def test_a_value_is_found_by_its_owners_identity_and_extra_key() -> None:
    memo: IdentityMemo[str] = IdentityMemo(4)
    a, b, twin = Owner(), Owner(), Owner()
    memo.put((a,), (), "a")
    memo.put((a, b), ("x",), "ab-x")
    assert memo.get((a,)) == "a"
    assert memo.get((twin,)) is None  # equal, but not the same object
    assert memo.get((a, b), ("x",)) == "ab-x"
    assert memo.get((a, b), ("y",)) is None and memo.get((b, a), ("x",)) is None


def test_the_least_recently_used_entry_goes_first() -> None:
    memo: IdentityMemo[int] = IdentityMemo(3)
    owners = [Owner() for _ in range(4)]
    for n, owner in enumerate(owners[:3]):
        memo.put((owner,), (), n)
    assert memo.get((owners[0],)) == 0  # used: now the newest
    memo.put((owners[3],), (), 3)
    assert len(memo) == 3
    assert memo.get((owners[1],)) is None  # the oldest unused one went
    assert [memo.get((o,)) for o in (owners[0], owners[2], owners[3])] == [0, 2, 3]
    memo.put((owners[2],), (), 20)  # a new value for a kept owner replaces it, no eviction
    assert len(memo) == 3 and memo.get((owners[2],)) == 20 and memo.get((owners[0],)) == 0


def test_owners_stay_alive_while_their_entry_does() -> None:
    # The memo holds its owners, so an id cannot be reused by another object while the entry exists.
    memo: IdentityMemo[str] = IdentityMemo(2)
    memo.put((Owner(),), (), "gone?")
    fresh = [Owner() for _ in range(1000)]
    assert all(memo.get((o,)) is None for o in fresh)


def test_threads_share_one_memo() -> None:
    memo: IdentityMemo[int] = IdentityMemo(64)
    owners = [Owner() for _ in range(200)]

    def work() -> None:
        for n, owner in enumerate(owners):
            if memo.get((owner,)) is None:
                memo.put((owner,), (), n)
            value = memo.get((owner,))
            assert value is None or value == n

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(memo) == 64


def test_forget_all_empties_every_memo_and_lets_its_owners_go() -> None:
    import gc
    import weakref

    from publisher.core.memo import forget_all

    first: IdentityMemo[str] = IdentityMemo(4)
    second: IdentityMemo[str] = IdentityMemo(4)
    owner = Owner()
    gone = weakref.ref(owner)
    first.put((owner,), (), "a")
    second.put((owner,), ("x",), "b")
    del owner
    gc.collect()
    assert gone() is not None  # held by the memos
    forget_all()
    gc.collect()
    assert len(first) == len(second) == 0 and gone() is None
