"""Every PublisherError crosses a process boundary intact (a build's workers hand them back)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from typing import Any

import publisher
from publisher.core.errors import ConfigProblem, PublisherError


def _all_subclasses() -> list[type[PublisherError]]:
    for info in pkgutil.walk_packages(publisher.__path__, "publisher."):
        if ".migrations" in info.name:
            continue  # Alembic's scripts run only inside Alembic
        importlib.import_module(info.name)
    out: list[type[PublisherError]] = []
    todo: list[type[PublisherError]] = [PublisherError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _example(name: str, annotation: Any) -> Any:
    text = str(annotation)
    if "Sequence" in text or "ConfigProblem" in text:
        return [ConfigProblem("feeds.size", "must be positive")]
    if "SendReport" in text:
        from publisher.delivery.sender import SendReport

        return SendReport(sent=3)
    if "int" in text:
        return 7
    if "bool" in text:
        return True
    return f"{name}-value"


def _instance(cls: type[PublisherError]) -> PublisherError:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    args = [_example(p.name, p.annotation) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty]
    kwargs = {p.name: _example(p.name, p.annotation) for p in params if p.kind is p.KEYWORD_ONLY}
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        args.append("message")
    return cls(*args, **kwargs)


def test_every_publisher_error_pickles() -> None:
    classes = _all_subclasses()
    names = {c.__name__ for c in classes}
    assert {"BriefError", "RenderError", "ConfigError", "SendAborted", "TransportUnavailable", "NotFound"} <= names
    for cls in classes:
        err = _instance(cls)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is cls
        assert str(back) == str(err), cls
        assert back.args == err.args
        assert vars(back).keys() == vars(err).keys(), cls


def test_render_error_keeps_its_fields() -> None:
    from publisher.core.errors import BriefError, RenderError

    back = pickle.loads(pickle.dumps(RenderError("story x", "HTML is 155995 bytes without any takes")))
    assert back.what == "story x" and str(back) == "story x: HTML is 155995 bytes without any takes"
    brief = pickle.loads(pickle.dumps(BriefError("briefs/a.md", 4, "no title")))
    assert (brief.path, brief.line, brief.message) == ("briefs/a.md", 4, "no title")
