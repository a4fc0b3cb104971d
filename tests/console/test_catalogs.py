"""Every string of the console goes through gettext and has a Catalan and a Spanish translation: the
messages are extracted from the templates and modules as `pybabel extract` would, and looked up."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from gateway.console.i18n import LANGUAGES, LOCALE_DIR, negotiate

CONSOLE = Path(__file__).resolve().parents[2] / "gateway" / "console"
METHODS = [("**.py", "python"), ("**/templates/**.html", "jinja2")]


def extracted() -> set[str]:
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _filename, _line, message, _comments, _context in extract_from_dir(
            str(CONSOLE), METHODS, keywords=keywords, options_map={"**/templates/**.html": {}}):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.mark.parametrize("language", [language for language in LANGUAGES if language != "en"])
def test_every_console_string_is_translated(language: str) -> None:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=language)
    translated = {message.id: message.string for message in catalog if message.id}
    messages = extracted()
    assert len(messages) > 100
    missing = sorted(m for m in messages if not translated.get(m))
    assert missing == []


def test_the_language_follows_the_user_then_the_browser() -> None:
    assert negotiate("es-ES,es;q=0.9", preferred="ca") == "ca"
    assert negotiate("fr, es;q=0.5, ca;q=0.7") == "ca"
    assert negotiate("en-GB") == "en" and negotiate(None) == "en" and negotiate("xx-invalid;q=abc") == "en"
