"""Rendering a page with its security headers; the 404 page; redirects with a flash message."""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from . import auth
from .context import context

# Sandboxed iframes show untrusted-looking email HTML: no scripts, no
# plugins, images only from the web (as a mail client would fetch them).
CSP_EMAIL = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; font-src https: data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
CSP_DESK = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
CSP_PUBLIC_PAGE = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src https: http: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"


def page(request: Request, name: str, status: int = 200, *, csp: str = CSP_PUBLIC_PAGE, **ctx: Any) -> HTMLResponse:
    body = context(request).env.get_template(name).render(request=request, **ctx)
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": csp, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
        },
    )


def not_found(request: Request) -> HTMLResponse:
    return page(request, "not_found.html", 404)


def message(request: Request, status: int, title: str, text: str) -> HTMLResponse:
    return page(request, "message.html", status, title=title, message=text)


def desk_page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    cfg = context(request).cfg
    return page(
        request, name, status, csp=CSP_DESK, csrf=auth.csrf_token(request), open_desk=auth.desk_is_open(cfg),
        signed_in=getattr(request.state, "editor", False), flash=request.session.pop("flash", None), **ctx,
    )


def email_frame(request: Request, html: str) -> Response:
    """An email's HTML for the desk's sandboxed preview frames."""
    return HTMLResponse(
        html, headers={"Content-Security-Policy": CSP_EMAIL, "X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


def redirect(to: str, flash: str | None = None, request: Request | None = None, background: BackgroundTask | None = None) -> Response:
    if flash and request is not None:
        request.session["flash"] = flash
    return RedirectResponse(to, status_code=303, background=background)
