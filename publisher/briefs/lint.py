"""``publisher check``: lint many briefs; one bad file never stops the others."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import BriefError
from .files import DEFAULT_MAX_BYTES, find_briefs, read_brief_bytes
from .model import Brief, Finding
from .parse import lint

# A check beyond the brief format (e.g. the email size budget, which only the
# renderer knows): a message for an error on the brief, or None.
Extra = Callable[[Brief], str | None]


@dataclass(frozen=True)
class Report:
    files: int
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")


def check_file(path: Path, *, base_url: str | None, max_bytes: int = DEFAULT_MAX_BYTES, follow_symlinks: bool = False,
               extra: Extra | None = None) -> list[Finding]:
    try:
        # Read as the service reads it, so what check passes the service publishes.
        data = read_brief_bytes(path, max_bytes=max_bytes, follow_symlinks=follow_symlinks)
        brief, findings = lint(data, str(path), base_url=base_url)
    except BriefError as exc:
        return [Finding(exc.path, exc.line, "error", exc.message)]
    if brief is not None and extra is not None:
        problem = extra(brief)
        if problem is not None:
            findings = [*findings, Finding(str(path), None, "error", problem)]
    return sorted(findings, key=lambda f: (f.line or 0, f.severity != "error"))


def check_paths(paths: Iterable[Path], *, base_url: str | None, max_bytes: int = DEFAULT_MAX_BYTES,
                follow_symlinks: bool = False, extra: Extra | None = None) -> Report:
    files = find_briefs(paths)
    findings: list[Finding] = []
    for path in files:
        findings.extend(check_file(path, base_url=base_url, max_bytes=max_bytes, follow_symlinks=follow_symlinks, extra=extra))
    return Report(len(files), tuple(findings))
