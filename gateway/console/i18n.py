"""The console's languages: English (the source strings), Catalan and Spanish, from the gettext catalogs
in `locale/<lang>/LC_MESSAGES/messages.po`, read at start with Babel (no compiled files to keep in step).

The language is the user's setting, else the best match of the browser's `Accept-Language`, else English.
Dates and numbers are formatted for that locale by the template filters in `templating.py`.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LANGUAGES = ("en", "ca", "es")
LANGUAGE_NAMES = {"en": "English", "ca": "Català", "es": "Español"}
LOCALE_DIR = Path(__file__).parent / "locale"


@cache
def translations(language: str) -> gettext.NullTranslations:
    if language == "en":
        return gettext.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def negotiate(accept_language: str | None, preferred: str | None = None) -> str:
    if preferred in LANGUAGES:
        return str(preferred)
    wanted = []
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            wanted.append((quality, tag.replace("_", "-")))
    for _, tag in sorted(wanted, key=lambda w: -w[0]):
        try:
            language = Locale.parse(tag, sep="-").language
        except (ValueError, UnknownLocaleError):
            continue
        if language in LANGUAGES:
            return language
    return "en"


def N_(message: str) -> str:
    return message


# Words the templates translate from data (`_(incident.status)`): listed here so extraction finds them.
DATA_WORDS = (
    N_("open"), N_("acknowledged"), N_("assigned"), N_("in_progress"), N_("resolved"), N_("closed"),
    N_("acknowledge"), N_("assign"), N_("start"), N_("resolve"), N_("close"), N_("reopen"),
    N_("citizen"), N_("staff"), N_("partner"), N_("device_rule"),
    N_("info"), N_("minor"), N_("major"), N_("critical"),
    N_("viewer"), N_("operator"), N_("admin"),
    N_("newest"), N_("oldest"), N_("severity"), N_("activity"),
    N_("created"), N_("occurrence"), N_("status"), N_("comment"), N_("assignment"), N_("merge"), N_("link"),
    N_("edit"), N_("phone"), N_("counter"), N_("email"),
    N_("reporting"), N_("silent"), N_("never_seen"), N_("battery_low"),
    N_("fill_pct"), N_("temperature_c"), N_("battery_pct"), N_("speed_kmh"),
    N_("median"), N_("p90"),
    N_("low"), N_("normal"), N_("high"), N_("urgent"), N_("department"),
    N_("web"), N_("app"), N_("letter"), N_("device"),
)
