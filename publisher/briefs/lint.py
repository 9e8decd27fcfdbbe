"""``publisher check``: lint many briefs; one bad file never stops the others."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .files import find_briefs
from .parse import lint
from ..core.errors import BriefError
from .model import Finding


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


def check_file(path: Path, *, base_url: str | None) -> list[Finding]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [Finding(str(path), None, "error", f"unreadable: {exc.strerror or exc}")]
    try:
        _, findings = lint(data, str(path), base_url=base_url)
    except BriefError as exc:
        return [Finding(exc.path, exc.line, "error", exc.message)]
    return sorted(findings, key=lambda f: (f.line or 0, f.severity != "error"))


def check_paths(paths: Iterable[Path], *, base_url: str | None) -> Report:
    files = find_briefs(paths)
    findings: list[Finding] = []
    for path in files:
        findings.extend(check_file(path, base_url=base_url))
    return Report(len(files), tuple(findings))
