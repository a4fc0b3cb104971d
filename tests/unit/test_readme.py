"""The README against the code it describes: the configuration table against the settings, the dead-letter
table against the reasons, the "Adding a device type" walk-through run as written, and a Layout of paths
that exist, with no link leaving the repository."""

from __future__ import annotations

import json
import random
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.events import RawMessage
from gateway.ingest.normalize import REASONS
from gateway.ingest.testcases import run_case
from gateway.profiles.codecs import CODECS
from gateway.profiles.decoded import Decoded, DecodeError
from gateway.profiles.loader import load_profiles
from gateway.settings import Settings
from tests.support import REPO
from tests.unit.profiles.codecs.test_codec_contract import check_outcome

README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """From a heading to the next heading of the same or a higher level (a `#` comment in a code block is
    not a heading)."""
    lines = README.splitlines(keepends=True)
    level, body, fenced = 0, [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"(#+) (.*)\n", line)
        if level and heading and len(heading.group(1)) <= level:
            break
        if level:
            body.append(line)
        elif heading and heading.group(2) == title:
            level = len(heading.group(1))
    assert level, f"no section {title!r} in the README"
    return "".join(body)


def table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block, dedented (blocks inside list items are indented)."""
    return [(m.group(2), textwrap.dedent(m.group(3)))
            for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```$", text, re.MULTILINE | re.DOTALL)]


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# -- Configuration -------------------------------------------------------------------------------------------

def _shown(value: Any) -> str:
    if value is None or value == [] or value == "":
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Path):
        return f"./{value}"
    return str(value)


def _configuration() -> dict[str, str]:
    documented: dict[str, str] = {}
    for cells in table_rows(section("Configuration")):
        names = backticked(cells[0])
        defaults = [d.strip().strip("`") for d in cells[1].split(" / ")]
        assert len(names) == len(defaults), f"{names}: one default each, separated by ' / ' ({cells[1]})"
        documented.update(zip(names, defaults, strict=True))
    return documented


def test_every_setting_is_in_the_configuration_table_with_its_default() -> None:
    documented = _configuration()
    defaults = Settings.model_construct()
    expected = {f"WASTEGATE_{name.upper()}": _shown(getattr(defaults, name)) for name in Settings.model_fields}
    assert set(documented) == set(expected), (
        f"missing: {sorted(set(expected) - set(documented))}, unknown: {sorted(set(documented) - set(expected))}")
    wrong = {name: (documented[name], default) for name, default in expected.items() if documented[name] != default}
    assert not wrong, f"README default ≠ settings default: {wrong}"


# -- The dead letter -----------------------------------------------------------------------------------------

def test_every_dead_letter_reason_is_in_the_table() -> None:
    documented = [name for cells in table_rows(section("The dead letter")) for name in backticked(cells[0])]
    assert sorted(documented) == sorted(REASONS)


# Where the code names a reason: DecodeError("…", Unrouted("…", reject("…", Rejection(message, "…".
_REASON_LITERAL = re.compile(r"(?:DecodeError|Unrouted|reject)\(\s*\"([a-z_]+)\"|Rejection\(\s*\w+,\s*\"([a-z_]+)\"")


def test_every_reason_the_code_gives_is_a_known_reason() -> None:
    found: dict[str, str] = {}
    for path in sorted((REPO / "gateway").rglob("*.py")):
        for match in _REASON_LITERAL.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match.group(1) or match.group(2), str(path.relative_to(REPO)))
    assert {"unknown_device", "rate_limited", "bad_payload", "store_error"} <= set(found)  # the scan still finds them
    unknown = {reason: where for reason, where in found.items() if reason not in REASONS}
    assert not unknown, f"reasons missing from REASONS (and the README): {unknown}"


# -- Adding a device type ------------------------------------------------------------------------------------

def _walkthrough() -> dict[str, str]:
    blocks = fenced_blocks(section("Adding a device type"))
    assert [language for language, _ in blocks] == ["yaml", "python", "yaml", "json", "json"], blocks
    names = ["json_profile", "codec", "codec_profile", "input", "expected"]
    return dict(zip(names, (code for _, code in blocks), strict=True))


def _profile_path(yaml_text: str) -> str:
    match = re.match(r"# (device_profiles/[a-z0-9_-]+/profile\.yaml)", yaml_text)
    assert match, "each profile snippet starts by saying where it goes"
    return match.group(1)


def test_the_json_profile_snippet_loads_and_reads_its_example(tmp_path: Path) -> None:
    snippet = _walkthrough()["json_profile"]
    path = tmp_path / _profile_path(snippet)
    path.parent.mkdir(parents=True)
    path.write_text(snippet)
    (profile,) = load_profiles(path.parent.parent).profiles
    example = re.search(r"^#\s+(\{.*\})$", snippet, re.MULTILINE)
    assert example, "the snippet shows the message it is for"
    (record,) = profile.decoder.decode(example.group(1).encode(), {"device_id": "A-1"})
    assert record.time is not None and record.time.timestamp() == 1795421702
    assert record.values["distance_mm"] == pytest.approx(410)
    assert record.values["temperature_c"] == pytest.approx(18.5)
    assert record.values["battery_pct"] == pytest.approx(87)
    assert record.extra == {"firmware": "2.1"}


def test_the_codec_walkthrough_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = _walkthrough()
    namespace: dict[str, Any] = {}
    exec(compile(steps["codec"], "README.md (codec)", "exec"), namespace)
    codec = namespace["us1"]
    key = re.search(r'`"([a-z0-9-]+)": acme\.us1,`', section("Adding a device type"))
    assert key, "the README says which line registers the codec"
    monkeypatch.setitem(CODECS, key.group(1), codec)

    # The codec keeps the contract it is written to.
    assert isinstance(codec(bytes.fromhex("5A01F401"), 1), Decoded)
    with pytest.raises(DecodeError, match="byte"):
        codec(b"\x5a\x01", 1)
    rng = random.Random(7)
    for _ in range(500):
        check_outcome(codec, rng.randbytes(rng.randrange(0, 8)), rng.choice([None, 0, 1, 85, 224]))

    # The profile loads beside the JSON one, and the test case passes as `wastegate profiles check` runs it.
    for name in ("json_profile", "codec_profile"):
        path = tmp_path / _profile_path(steps[name])
        path.parent.mkdir(parents=True)
        path.write_text(steps[name])
    case = tmp_path / Path(_profile_path(steps["codec_profile"])).parent / "testcases" / "readme"
    case.mkdir(parents=True)
    (case / "input.json").write_text(steps["input"])
    (case / "expected.json").write_text(steps["expected"])
    profiles = load_profiles(tmp_path / "device_profiles")
    outcome = run_case(case, profiles)
    assert outcome.ok, outcome.problems
    # …and it is a real check: the same case with a different expectation fails.
    expected = json.loads(steps["expected"])
    expected["readings"][0]["extra"].pop("f_port")
    (case / "expected.json").write_text(json.dumps(expected))
    assert not run_case(case, profiles).ok


def test_an_unregistered_device_of_the_walkthrough_is_dead_lettered(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # What step 4 says: until it is registered, its uplinks are unknown_device.
    steps = _walkthrough()
    namespace: dict[str, Any] = {}
    exec(compile(steps["codec"], "README.md (codec)", "exec"), namespace)
    monkeypatch.setitem(CODECS, "acme-us1", namespace["us1"])
    path = tmp_path / _profile_path(steps["codec_profile"])
    path.parent.mkdir(parents=True)
    path.write_text(steps["codec_profile"])
    from datetime import datetime

    from gateway.devices import DeviceDirectory
    from gateway.ingest import Ingestor

    now = datetime.fromisoformat(json.loads(steps["expected"])["now"])
    ingestor = Ingestor(load_profiles(path.parent.parent), DeviceDirectory(), lambda: now)
    result = ingestor.process([RawMessage(json.loads(steps["expected"])["topic"], steps["input"].encode(), now)])
    assert [r.reason for r in result.rejections] == ["unknown_device"] and not result.readings


# -- Layout and links ----------------------------------------------------------------------------------------

def _layout_paths() -> list[str]:
    return [path for cells in table_rows(section("Layout")) for path in backticked(cells[0])]


def test_every_path_in_the_layout_exists() -> None:
    paths = _layout_paths()
    assert paths
    missing = [path for path in paths if not (REPO / path).exists()]
    assert not missing, missing
    # The files a folder's row names are in that folder.
    for cells in table_rows(section("Layout")):
        folders = [p for p in backticked(cells[0]) if p.endswith("/")]
        for name in backticked(cells[1]):
            if re.fullmatch(r"[a-z_]+\.(py|sql)|[a-z_]+/", name) and folders:
                assert any((REPO / folder / name).exists() for folder in folders), (folders, name)


def test_the_layout_names_every_module_of_the_package() -> None:
    named = set(_layout_paths())
    children = {f"gateway/{p.name}" + ("/" if p.is_dir() else "") for p in (REPO / "gateway").iterdir()
                if p.name not in {"__init__.py", "py.typed", "__pycache__"}}
    assert children - named == set()


def test_every_path_the_readme_names_exists() -> None:
    # The walk-through names the files a new device type adds; every other path must be there.
    text = README.replace(section("Adding a device type"), "")
    named = {token for token in re.findall(r"`([^`\s]+)`", text)
             if re.match(r"(gateway|tests|device_profiles|deploy|bench|simulators|rules)/", token)
             and not re.search(r"[<{*…]|NNNN", token)}
    assert len(named) > 10
    assert sorted(path for path in named if not (REPO / path).exists()) == []


def test_no_link_leaves_the_repository() -> None:
    assert "../" not in README
    for target in re.findall(r"\]\(([^)]+)\)", README):
        assert not re.match(r"[a-z]+:", target), f"a link outside the repository: {target}"
        assert (REPO / target.split("#")[0]).exists(), target
