"""read_brief_bytes gives a file's bytes exactly, in as few reads as it can, and refuses what it must."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from publisher.briefs.files import read_brief_bytes
from publisher.core.errors import BriefError, BriefUnreadable

MB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 9_000, MB - 1, MB, MB + 1, 3 * MB + 7])
def test_every_size_reads_back_whole(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "b.md").write_bytes(data)
    assert read_brief_bytes(tmp_path / "b.md", root=tmp_path, max_bytes=4 * MB) == data


def test_the_size_limit_is_inclusive(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_bytes(b"x" * 1000)
    assert len(read_brief_bytes(tmp_path / "b.md", root=tmp_path, max_bytes=1000)) == 1000
    with pytest.raises(BriefError, match="over briefs.max_bytes"):
        read_brief_bytes(tmp_path / "b.md", root=tmp_path, max_bytes=999)


def test_a_link_is_refused_by_the_open_itself_with_the_setting_named(tmp_path: Path) -> None:
    (tmp_path / "real.md").write_bytes(b"# Real\n")
    (tmp_path / "link.md").symlink_to(tmp_path / "real.md")
    (tmp_path / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    for name in ("link.md", "dangling.md"):
        with pytest.raises(BriefError, match="a symbolic link \\(set briefs.follow_symlinks"):
            read_brief_bytes(tmp_path / name, root=tmp_path, follow_symlinks=False)
    assert read_brief_bytes(tmp_path / "link.md", root=tmp_path, follow_symlinks=True) == b"# Real\n"


def test_a_missing_file_is_unreadable_not_refused(tmp_path: Path) -> None:
    with pytest.raises(BriefUnreadable, match="unreadable: No such file"):
        read_brief_bytes(tmp_path / "gone.md", root=tmp_path)
