"""WebSub publish pings: tell the hub which feed URLs just changed.

Feeds name the hub in a ``rel=hub`` link (see :mod:`publisher.feeds`); the
hub fetches a topic again only when pinged, so subscribers get new stories
in seconds instead of at their next poll. The ping is the de-facto publish
request every public hub accepts (W3C WebSub leaves it to the hub): a form
POST of ``hub.mode=publish`` and one ``hub.url`` per changed topic, answered
with a 2xx (usually 204 No Content).

The body builder and topic selection are pure; :func:`ping` is the one
network call. It uses urllib so the service needs no extra HTTP client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

from ..core.config import Config
from ..core.errors import PublisherError
from ..core.urls import is_http_url

log = logging.getLogger(__name__)

FEED_FILES = ("feed.atom", "feed.rss", "feed.json")
USER_AGENT = "publisher-websub/1"
# Hubs answer at once and fetch later; a slow hub must not stall a publish.
DEFAULT_TIMEOUT = 10.0
# Public hubs cap the form size; pings are split into requests of this many topics.
MAX_TOPICS_PER_PING = 50


class WebSubError(PublisherError):
    """The hub refused or could not be reached; names the hub and the status."""

    def __init__(self, hub: str, message: str, *, status: int | None = None) -> None:
        self.hub = hub
        self.status = status
        super().__init__(f"WebSub hub {hub}: {message}")


def topics_for(cfg: Config, changed_paths: Iterable[str]) -> list[str]:
    """Public URLs of the feeds among ``changed_paths`` (relative output paths,
    as returned by :func:`publisher.feeds.render_feeds`), sorted and unique.
    Archive pages and web issues are not topics: nobody subscribes to them."""
    topics = {cfg.site.url(p) for p in changed_paths if p.rsplit("/", 1)[-1] in FEED_FILES}
    return sorted(topics)


def publish_body(topic_urls: Sequence[str]) -> bytes:
    """The form body of one publish ping."""
    fields = [("hub.mode", "publish")] + [("hub.url", url) for url in topic_urls]
    return urlencode(fields).encode("ascii")


def ping(hub: str, topic_urls: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """POST publish pings for ``topic_urls`` to ``hub``; returns the number of
    requests made. Raises :class:`WebSubError` on the first refusal or
    network failure (the caller logs it: a missed ping only delays readers)."""
    if not is_http_url(hub):
        raise WebSubError(hub, "hub must be an absolute http(s) URL")
    bad = [url for url in topic_urls if not is_http_url(url)]
    if bad:
        raise WebSubError(hub, f"topic is not an absolute http(s) URL: {bad[0]!r}")
    # Imported here: http.client and urllib.request cost 27 ms at every start, and most sites name no hub.
    import urllib.error
    import urllib.request

    requests = 0
    for start in range(0, len(topic_urls), MAX_TOPICS_PER_PING):
        batch = topic_urls[start : start + MAX_TOPICS_PER_PING]
        request = urllib.request.Request(
            hub,
            data=publish_body(batch),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode("utf-8", "replace").strip()
            raise WebSubError(hub, f"refused the ping with HTTP {exc.code}: {detail or exc.reason}", status=exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WebSubError(hub, f"unreachable: {reason}") from exc
        if not 200 <= status < 300:
            raise WebSubError(hub, f"answered HTTP {status}", status=status)
        requests += 1
        log.info("websub: pinged %s for %d topic(s), HTTP %d", hub, len(batch), status)
    return requests


def ping_changed(cfg: Config, changed_paths: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Ping the configured hub for the feeds among ``changed_paths``; does
    nothing (returns 0) when no hub is configured or no feed changed."""
    if not cfg.feeds.hub:
        return 0
    topics = topics_for(cfg, changed_paths)
    if not topics:
        return 0
    return ping(cfg.feeds.hub, topics, timeout=timeout)


__all__ = ["WebSubError", "ping", "ping_changed", "publish_body", "topics_for"]
