"""``config.toml`` + environment → one typed, immutable :class:`Config`.

Each key is declared once (type, default, one-line doc) in the section
dataclasses below; the loader checks every key, collects *all* problems
and raises one :class:`ConfigError` naming each bad key. Unknown keys are
warnings, not errors, so an old config keeps working. Relative paths are
resolved against the config file's folder, so a copied config works
anywhere. Secrets never live in the file: only the *name* of the
environment variable that holds them does.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, ConfigProblem
from .urls import is_http_url


def _doc(text: str, **kw: Any) -> Any:
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class SiteConfig:
    title: str = _doc("Name of the publication, in feeds and emails.", default="Publisher Briefs")
    subtitle: str = _doc("One-line description, feed subtitle.", default="News briefs: how the world covered each story")
    base_url: str = _doc("Public URL where public/ is served (feeds, web issues, unsubscribe).", default="http://127.0.0.1:8000/")
    author: str = _doc("Author name on feeds and entries.", default="Publisher Desk")
    author_email: str = _doc("Author email on feeds (optional).", default="")
    language: str = _doc("Language tag of the publication (BCP 47).", default="en")
    timezone: str = _doc("IANA time zone for dates without a time and for the schedule.", default="UTC")
    icon: str = _doc("Absolute URL of a square icon for feeds (optional).", default="")
    logo: str = _doc("Absolute URL of a logo image for feeds and emails (optional).", default="")

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def url(self, path: str = "") -> str:
        """An absolute URL under base_url."""
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class PathsConfig:
    briefs: Path = _doc("Folder the editors drop briefs into.", default=Path("briefs"))
    public: Path = _doc("Output folder: feeds and web issues.", default=Path("public"))
    state: Path = _doc("Folder for the database, Maildir outbox and generated keys.", default=Path("state"))
    templates: Path = _doc("Folder of template overrides (same layout as the built-in templates/), searched first; may be absent.", default=Path("templates"))


@dataclass(frozen=True)
class BriefsConfig:
    max_bytes: int = _doc("Largest brief file read, in bytes; a bigger file is refused without being read.", default=2 * 1024 * 1024)
    follow_symlinks: bool = _doc("Publish symbolic links in the briefs folder (only to files inside it); otherwise they are skipped with a warning.", default=False)


@dataclass(frozen=True)
class FeedsConfig:
    size: int = _doc("Newest stories per feed.", default=50)
    tag_feeds: bool = _doc("Also write one feed per tag and entity under tags/<tag>/.", default=True)
    hub: str = _doc("WebSub hub URL; empty for none.", default="")
    archive: bool = _doc("Write RFC 5005 archive pages for older stories.", default=False)
    archive_page_size: int = _doc("Stories per archive page.", default=50)
    max_takes: int = _doc("Takes shown in a feed entry before 'and N more' (a link to the web issue).", default=60)


@dataclass(frozen=True)
class EmailConfig:
    sender_name: str = _doc("Display name in From.", default="Publisher Briefs")
    sender_address: str = _doc("Address in From.", default="briefs@example.org")
    reply_to: str = _doc("Reply-To address (optional).", default="")
    postal_address: str = _doc("Sender's postal address, shown in every footer.", default="Publisher Briefs, 1 Example Street, 00000 Example City")
    list_id: str = _doc("List-Id header value, e.g. briefs.example.org.", default="briefs.example.org")
    unsubscribe_mailto: str = _doc("Mailbox for mailto: List-Unsubscribe (optional).", default="")
    max_html_bytes: int = _doc("HTML size budget; longer coverage tables are cut.", default=90_000)
    max_takes: int = _doc("Takes shown in an email before 'and N more'.", default=60)
    coverage_takes: int = _doc("Curated takes in a story email's coverage block, picked across lenses then regions; the rest are on the story's web page.", default=8)


@dataclass(frozen=True)
class SmtpConfig:
    host: str = _doc("SMTP server; empty means the Maildir outbox under state/.", default="")
    port: int = _doc("SMTP port.", default=587)
    security: Literal["starttls", "tls", "none"] = _doc("starttls, tls (implicit) or none.", default="starttls")
    username: str = _doc("Login name; empty for no login.", default="")
    password_env: str = _doc("Environment variable holding the SMTP password.", default="PUBLISHER_SMTP_PASSWORD")
    connections: int = _doc("Parallel SMTP connections.", default=4)
    rate_per_second: float = _doc("Messages per second across connections; 0 for no limit.", default=0.0)
    rate_per_hour: int = _doc("Messages per hour; 0 for no limit.", default=0)
    max_attempts: int = _doc("Attempts per message before it is marked failed.", default=5)
    retry_backoff: float = _doc("First retry delay in seconds; doubles each attempt.", default=30.0)
    bounce_after: int = _doc("Permanent failures before a subscriber is marked bounced.", default=1)
    batch_size: int = _doc("Deliveries a worker claims at once.", default=100)
    timeout: float = _doc("Socket timeout in seconds.", default=30.0)


@dataclass(frozen=True)
class ScheduleConfig:
    scan_interval: float = _doc("Seconds between scans of the briefs folder.", default=2.0)
    quiet_period: float = _doc("Seconds a file must stay unchanged before it is published.", default=0.5)
    watch_events: bool = _doc("Use filesystem events to trigger scans early.", default=True)
    full_scan_interval: float = _doc("With file events working, seconds between safety-net full scans (each event scans at once).", default=30.0)
    force_polling: bool = _doc("Poll instead of OS events (network mounts).", default=False)
    require_approval: bool = _doc("Story issues wait for an editor's approval before sending.", default=True)
    drain_interval: float = _doc("Seconds between delivery drains.", default=5.0)


@dataclass(frozen=True)
class DigestsConfig:
    daily: str = _doc("Crontab (min hour day month weekday) of the daily digest, in site.timezone; empty for none.", default="0 7 * * *")
    weekly: str = _doc("Crontab of the weekly digest, in site.timezone; empty for none.", default="0 7 * * mon")
    require_approval: bool = _doc("Digests wait for an editor's approval (else they are sent when made).", default=False)
    max_lateness: float = _doc("Seconds a digest missed while the service was down may still be made at restart.", default=3600.0)


@dataclass(frozen=True)
class DeliveryConfig:
    lease: float = _doc("Seconds without a heartbeat after which a `publisher worker` is presumed dead and its claimed deliveries are requeued by another.", default=60.0)


@dataclass(frozen=True)
class StoreConfig:
    url: str = _doc("SQLAlchemy URL (sqlite:///… or postgresql+psycopg://…); empty means sqlite in the state folder; $PUBLISHER_STORE_URL overrides it.", default="")


@dataclass(frozen=True)
class DeskConfig:
    host: str = _doc("Address the web app binds to.", default="127.0.0.1")
    port: int = _doc("Port of the web app.", default=8000)
    password_env: str = _doc("Environment variable holding the editors' password.", default="PUBLISHER_DESK_PASSWORD")
    session_max_age: int = _doc("Seconds an editor's session lasts.", default=43200)
    allowed_hosts: str = _doc("Comma-separated extra Host names the web app answers (besides site.base_url's host and the bind address); others get 400.", default="")
    trusted_proxies: str = _doc("Comma-separated proxy IPs whose X-Forwarded-For/-Proto are believed (uvicorn forwarded_allow_ips); empty trusts none.", default="")


@dataclass(frozen=True)
class SecurityConfig:
    signing_key_env: str = _doc("Environment variable with the HMAC key for tokens and sessions; else a key is generated once into the state folder.", default="PUBLISHER_SIGNING_KEY")


@dataclass(frozen=True)
class DkimConfig:
    domain: str = _doc("DKIM signing domain (d=), usually the From domain; empty: no signing.", default="")
    selector: str = _doc("DKIM selector (s=): the key's TXT record is <selector>._domainkey.<domain>.", default="")
    private_key: str = _doc("Path of the PEM private key (RSA or Ed25519), relative to the config file.", default="")
    private_key_env: str = _doc("Environment variable holding the PEM private key instead of a file.", default="")


@dataclass(frozen=True)
class BouncesConfig:
    return_path: str = _doc("VERP return path, e.g. bounce@news.example.org: each message's envelope sender becomes bounce+<token>@news.example.org; empty: the sender address.", default="")
    maildir: str = _doc("Maildir of returned mail (DSNs) that `publisher bounces scan` reads; relative to the config file.", default="")
    imap_host: str = _doc("IMAP server holding returned mail (instead of a Maildir); empty for none.", default="")
    imap_port: int = _doc("IMAP port.", default=993)
    imap_security: Literal["tls", "starttls", "none"] = _doc("tls (implicit), starttls or none.", default="tls")
    imap_user: str = _doc("IMAP login name.", default="")
    imap_password_env: str = _doc("Environment variable holding the IMAP password.", default="PUBLISHER_IMAP_PASSWORD")
    imap_folder: str = _doc("IMAP folder to scan.", default="INBOX")
    soft_after: int = _doc("Soft (temporary) bounces of one subscriber that count as one hard bounce; 0: never.", default=5)


@dataclass(frozen=True)
class WebhooksConfig:
    ses_topic_arn: str = _doc("Amazon SNS topic ARN whose notifications /webhooks/ses accepts; empty: endpoint off.", default="")
    ses_trust: str = _doc("PEM file of the CA certificates that SNS signing certificates must chain to; empty: the system store.", default="")
    ses_cert_hosts: str = _doc("Comma-separated host suffixes SigningCertURL may point at.", default=".amazonaws.com")
    postmark_token_env: str = _doc("Environment variable with the token Postmark sends (basic-auth password or X-Postmark-Token); empty: endpoint off.", default="")
    mailgun_key_env: str = _doc("Environment variable with the Mailgun webhook signing key; empty: endpoint off.", default="")
    sendgrid_key_env: str = _doc("Environment variable with SendGrid's event-webhook verification key (base64 ECDSA public key); empty: endpoint off.", default="")
    max_age: int = _doc("Seconds a signed webhook timestamp stays acceptable (replay window).", default=600)


@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    briefs: BriefsConfig = field(default_factory=BriefsConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    digests: DigestsConfig = field(default_factory=DigestsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    desk: DeskConfig = field(default_factory=DeskConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    bounces: BouncesConfig = field(default_factory=BouncesConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    source: str = "<defaults>"  # where it was loaded from
    warnings: tuple[str, ...] = ()

    @property
    def store_url(self) -> str:
        # The environment wins over the file, so one config.toml serves every machine of a deployment.
        return os.environ.get("PUBLISHER_STORE_URL") or self.store.url or f"sqlite:///{self.paths.state / 'publisher.db'}"

    def secret(self, env_name: str) -> str | None:
        value = os.environ.get(env_name)
        return value if value else None

    @property
    def smtp_password(self) -> str | None:
        return self.secret(self.smtp.password_env)

    @property
    def desk_password(self) -> str | None:
        return self.secret(self.desk.password_env)

    def with_paths(self, **paths: Path) -> Config:
        return dataclasses.replace(self, paths=dataclasses.replace(self.paths, **paths))


SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("source", "warnings")
}


_EMAILISH = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


def _check_url(v: str) -> str | None:
    return None if is_http_url(v) else "must be an absolute http(s) URL"


def _check_optional_url(v: str) -> str | None:
    return None if not v else _check_url(v)


def _check_tz(v: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {v!r}"
    return None


def _check_email(v: str) -> str | None:
    return None if _EMAILISH.match(v) else f"not an email address: {v!r}"


def _check_optional_email(v: str) -> str | None:
    return None if not v else _check_email(v)


def _check_cron(v: str) -> str | None:
    if not v:
        return None
    if len(v.split()) != 5:
        return "must be five crontab fields: minute hour day month weekday"
    # The scheduler's own parser, so what is accepted here is what runs.
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(v, timezone="UTC")
    except ValueError as exc:
        return f"not a valid crontab ({exc})"
    return None


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must not be negative"


def _port(v: int) -> str | None:
    return None if 0 < v < 65536 else "must be a port number 1-65535"


def _no_newlines(v: str) -> str | None:
    # These end up in mail headers: a newline would be header injection.
    return "must not contain line breaks" if ("\n" in v or "\r" in v) else None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "site.base_url": _check_url,
    "site.icon": _check_optional_url,
    "site.logo": _check_optional_url,
    "site.timezone": _check_tz,
    "site.title": _no_newlines,
    "site.author_email": _check_optional_email,
    "briefs.max_bytes": _positive,
    "feeds.size": _positive,
    "feeds.max_takes": _positive,
    "delivery.lease": _positive,
    "feeds.archive_page_size": _positive,
    "feeds.hub": _check_optional_url,
    "email.sender_name": _no_newlines,
    "email.sender_address": _check_email,
    "email.reply_to": _check_optional_email,
    "email.unsubscribe_mailto": _check_optional_email,
    "email.list_id": _no_newlines,
    "email.max_html_bytes": _positive,
    "email.max_takes": _positive,
    "email.coverage_takes": _positive,
    "smtp.port": _port,
    "smtp.connections": _positive,
    "smtp.rate_per_second": _non_negative,
    "smtp.rate_per_hour": _non_negative,
    "smtp.max_attempts": _positive,
    "smtp.retry_backoff": _non_negative,
    "smtp.bounce_after": _positive,
    "smtp.batch_size": _positive,
    "smtp.timeout": _positive,
    "schedule.scan_interval": _positive,
    "schedule.full_scan_interval": _positive,
    "schedule.quiet_period": _non_negative,
    "digests.daily": _check_cron,
    "digests.weekly": _check_cron,
    "digests.max_lateness": _non_negative,
    "schedule.drain_interval": _positive,
    "desk.port": _port,
    "bounces.return_path": _check_optional_email,
    "bounces.soft_after": _non_negative,
    "bounces.imap_port": _port,
    "webhooks.max_age": _positive,
    "desk.session_max_age": _positive,
}


def _coerce(key: str, hint: Any, value: Any, base: Path) -> tuple[Any, str | None]:
    """Check ``value`` against the declared type; paths resolve against ``base``."""
    if hint is Path:
        if not isinstance(value, str) or not value:
            return None, "must be a non-empty path string"
        p = Path(value).expanduser()
        return (p if p.is_absolute() else base / p), None
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            return None, f"must be one of {', '.join(map(str, allowed))}, not {value!r}"
        return value, None
    if hint is bool:
        return (value, None) if isinstance(value, bool) else (None, f"must be true or false, not {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be an integer, not {value!r}"
        return value, None
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, f"must be a number, not {value!r}"
        return float(value), None
    if hint is str:
        return (value, None) if isinstance(value, str) else (None, f"must be a string, not {value!r}")
    raise TypeError(f"unsupported config type for {key}: {hint!r}")  # a bug in this file


def _defaults_for(section_cls: type[Any], base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section_cls):
        value = f.default
        if isinstance(value, Path) and not value.is_absolute():
            value = base / value
        out[f.name] = value
    return out


# Keys that moved: an old config keeps working, with a warning naming the new key.
RENAMED: dict[str, str] = {
    "schedule.digest_cron": "digests.daily",
    "schedule.digest_max_lateness": "digests.max_lateness",
}


def _apply_renames(data: Mapping[str, Any], source: str, warnings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    for old, new in RENAMED.items():
        old_section, old_key = old.split(".")
        section = out.get(old_section)
        if isinstance(section, dict) and old_key in section:
            new_section, new_key = new.split(".")
            target = out.setdefault(new_section, {})
            if isinstance(target, dict):
                target.setdefault(new_key, section.pop(old_key))
                warnings.append(f"{source}: {old} is now {new}; please rename it")
    return out


def from_mapping(data: Mapping[str, Any], *, base: Path, source: str = "<mapping>") -> Config:
    """Build a Config from parsed TOML; raises ConfigError listing every bad key."""
    problems: list[ConfigProblem] = []
    warnings: list[str] = []
    sections: dict[str, Any] = {}
    data = _apply_renames(data, source, warnings)
    for name in data:
        if name not in SECTIONS:
            warnings.append(f"{source}: unknown section [{name}] ignored")
    for name, cls in SECTIONS.items():
        raw = data.get(name, {})
        values = _defaults_for(cls, base)
        if not isinstance(raw, Mapping):
            problems.append(ConfigProblem(name, "must be a table"))
            raw = {}
        hints = typing.get_type_hints(cls)
        for key, value in raw.items():
            dotted = f"{name}.{key}"
            if key not in hints:
                warnings.append(f"{source}: unknown key {dotted} ignored")
                continue
            coerced, err = _coerce(dotted, hints[key], value, base)
            if err is None and dotted in _CHECKS:
                err = _CHECKS[dotted](coerced)
            if err is not None:
                problems.append(ConfigProblem(dotted, err))
            else:
                values[key] = coerced
        sections[name] = cls(**values)
    if problems:
        raise ConfigError(source, problems)
    return Config(**sections, source=source, warnings=tuple(warnings))


def load(path: str | Path | None = None) -> Config:
    """Load ``path`` (default ``./config.toml``); a missing default file means defaults."""
    explicit = path is not None
    p = Path(path) if path is not None else Path("config.toml")
    if not p.exists():
        if explicit:
            raise ConfigError(str(p), [ConfigProblem("(file)", "no such file")])
        return from_mapping({}, base=Path.cwd(), source="<defaults>")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [ConfigProblem("(file)", f"cannot read: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), [ConfigProblem("(syntax)", str(exc))]) from exc
    return from_mapping(data, base=p.resolve().parent, source=str(p))


def documented_keys() -> dict[str, str]:
    """Every ``section.key`` with its one-line doc (used by docs and tests)."""
    out: dict[str, str] = {}
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f"{name}.{f.name}"] = f.metadata.get("doc", "")
    return out


__all__ = ["Config", "load", "from_mapping", "documented_keys", "ConfigError"]
