"""The one exception tree of the project.

Every error carries the thing it is about (a file and line, a config key,
a slug) so that the CLI and the logs can say *where* without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def _rebuild(cls: type[PublisherError], args: tuple[object, ...], state: dict[str, object]) -> PublisherError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class PublisherError(Exception):
    """Root of every error this package raises on purpose.

    Subclasses take their own constructor arguments, which the default
    exception pickling (``cls(*self.args)``) cannot replay; a build's worker
    processes hand errors back to the parent, so every subclass is rebuilt
    from its attributes instead of its constructor.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class BriefError(PublisherError):
    """A brief that cannot be read or parsed; names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class BriefUnreadable(BriefError):
    """An I/O error while reading a brief (permissions, a failing disk): worth retrying, unlike its content."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(PublisherError):
    """One or more bad settings, each reported by its dotted key."""

    def __init__(self, path: str, problems: Sequence[ConfigProblem]) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        lines = [f"{self.path}: {p}" for p in self.problems]
        return "\n".join(lines) if lines else f"{self.path}: invalid configuration"


class StoreError(PublisherError):
    """The state database is unreachable or inconsistent."""


class NotFound(PublisherError):
    """A story, issue or subscriber that does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key!r}")


class StateError(PublisherError):
    """An action that the current state forbids (e.g. sending an unapproved issue)."""


class RenderError(PublisherError):
    """A template or MJML render failed; names the template or story."""

    def __init__(self, what: str, message: str) -> None:
        self.what = what
        super().__init__(f"{what}: {message}")


class DeliveryError(PublisherError):
    """A message could not be handed to the transport."""

    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None) -> None:
        self.permanent = permanent
        self.code = code
        super().__init__(message)


class TokenError(PublisherError):
    """A forged, truncated or tampered signed token."""
