"""Jinja2 for the console: autoescaped templates, gettext in every template (the i18n extension, with the
request's translations), dates and numbers in the request's locale."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel.dates import format_datetime
from babel.numbers import format_decimal
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context

from gateway.console.i18n import LANGUAGE_NAMES, LANGUAGES, translations

TEMPLATES = Path(__file__).parent / "templates"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
    extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True,
)


@pass_context
def _datetime(context: Context, value: datetime | None, style: str = "short") -> str:
    if value is None:
        return "–"
    return format_datetime(value, format=style, locale=context.get("language", "en"),
                           tzinfo=context.get("timezone"))


@pass_context
def _number(context: Context, value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return str(format_decimal(value, format=pattern, locale=context.get("language", "en")))


def _with_page(params: Mapping[str, str], page: int) -> str:
    return urlencode([(key, value) for key, value in params.items() if key != "page"] + [("page", str(page))])


environment.filters["datetime"] = _datetime
environment.filters["number"] = _number
environment.filters["urlencode_page"] = _with_page


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """A page in the request's language (set by the console's middleware as `request.state.language`)."""
    language: str = getattr(request.state, "language", "en")
    catalog = translations(language)
    page = environment.get_template(template).render(
        request=request, language=language, languages=LANGUAGES, language_names=LANGUAGE_NAMES,
        gettext=catalog.gettext, ngettext=catalog.ngettext, _=catalog.gettext,
        user=getattr(request.state, "user", None), csrf_token=getattr(request.state, "csrf_token", ""),
        timezone=getattr(request.state, "timezone", None), **values,
    )
    return HTMLResponse(page, status_code=status_code)
