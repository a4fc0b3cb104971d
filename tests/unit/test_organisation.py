"""Working time, routing by district and scopes, without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from gateway.catalogue import load_catalogue, unknown_organisations
from gateway.organisation.calendar import (
    CalendarConfig,
    CalendarError,
    WorkingCalendar,
    load_calendar,
    parse_working_duration,
)
from gateway.organisation.directory import DirectoryError, load_directory
from gateway.organisation.routing import Router
from gateway.organisation.scope import CITY, Scope, scope_of
from gateway.rules.zones import load_zones
from gateway.store.organisations import Membership
from tests.support import REPO

FRIDAY_2PM = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)  # the default calendar: Monday to Friday 08–15, UTC


@pytest.mark.parametrize(("within", "due"), [
    ("30m", datetime(2026, 12, 4, 14, 30, tzinfo=UTC)),
    ("1h", datetime(2026, 12, 4, 15, 0, tzinfo=UTC)),
    ("4h", datetime(2026, 12, 7, 11, 0, tzinfo=UTC)),  # one hour on Friday, three on Monday
    ("1d", datetime(2026, 12, 7, 14, 0, tzinfo=UTC)),
    ("1d2h", datetime(2026, 12, 8, 9, 0, tzinfo=UTC)),
    ("8h", datetime(2026, 12, 7, 15, 0, tzinfo=UTC)),  # one on Friday, seven on Monday: at its close
    ("9h", datetime(2026, 12, 8, 9, 0, tzinfo=UTC)),
])
def test_working_time_skips_the_weekend(within: str, due: datetime) -> None:
    assert WorkingCalendar(CalendarConfig()).add(FRIDAY_2PM, parse_working_duration(within)) == due


def test_a_report_on_saturday_counts_from_monday_morning_and_holidays_are_skipped() -> None:
    calendar = WorkingCalendar(CalendarConfig(), frozenset({date(2026, 12, 8)}))
    saturday = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    assert calendar.add(saturday, parse_working_duration("2h")) == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert calendar.add(datetime(2026, 12, 7, 14, 0, tzinfo=UTC), parse_working_duration("2h")) == \
        datetime(2026, 12, 9, 9, 0, tzinfo=UTC)  # Tuesday the 8th is a holiday


def test_the_shipped_calendar_is_barcelonas_with_its_holidays() -> None:
    calendar = load_calendar(REPO / "calendar.yaml")
    assert calendar.config.timezone == "Europe/Madrid" and date(2026, 12, 8) in calendar.holidays
    # Friday 14:00 in Barcelona (13:00 UTC) + 4 working hours: Monday 11:00 in Barcelona
    assert calendar.add(datetime(2026, 12, 4, 13, 0, tzinfo=UTC), parse_working_duration("4h")) == \
        datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert calendar.config.working_hours["mon"] == ((time(8), time(15)),)


@pytest.mark.parametrize("text", ["", "2 weeks", "h", "-1h", "1.5d"])
def test_a_working_time_that_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="working time"):
        parse_working_duration(text)


@pytest.mark.parametrize(("content", "message"), [
    ("timezone: Mars/Olympus\n", "unknown time zone"),
    ("working_hours: {mon: '15:00-08:00'}\n", "ends before it starts"),
    ("working_hours: {funday: '08:00-15:00'}\n", "unknown weekday"),
    ("working_hours: {mon: closed}\n", "no working hours"),
    ("holidays: missing.txt\n", "holidays"),
])
def test_a_bad_calendar_is_refused_with_its_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CalendarError, match=message) as refused:
        load_calendar(path)
    assert str(path) in str(refused.value)


def test_a_bad_holiday_line_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "holidays.txt").write_text("# comment\n2026-12-08 ok\n2026-13-01 nope\n", encoding="utf-8")
    (tmp_path / "calendar.yaml").write_text("holidays: holidays.txt\n", encoding="utf-8")
    with pytest.raises(CalendarError, match=r"holidays.txt:3: not a date"):
        load_calendar(tmp_path / "calendar.yaml")


def test_routing_by_district_and_the_services_responsible_elsewhere() -> None:
    catalogue = load_catalogue(REPO / "services.yaml")
    slugs = [o.slug for o in load_directory(REPO / "organisations.yaml").organisations]
    assert unknown_organisations(REPO / "services.yaml", catalogue, slugs) == []
    ids = {slug: number for number, slug in enumerate(slugs, 1)}
    router = Router(catalogue, ids, zones=load_zones(REPO / "rules" / "zones"))
    assert router.organisation_for("container_full", 41.4036, 2.1744) == "recollida-sud"  # Eixample
    assert router.organisation_for("container_full", 41.4420, 2.1770) == "recollida-nord"  # Nou Barris
    assert router.organisation_for("container_full", 41.0, 1.0) == "collection-operations"  # outside the city
    assert router.organisation_for("container_full", None, None) == "collection-operations"
    assert router.organisation_for("illegal_dumping", 41.4036, 2.1744) == "street-cleaning"
    overridden = router("container_full", 41.4036, 2.1744, FRIDAY_2PM,
                        {"organisation": "fleet-management", "priority": "urgent",
                         "resolve_within": parse_working_duration("1h")})
    assert (overridden.organisation, overridden.organisation_id, overridden.priority) == (
        "fleet-management", ids["fleet-management"], "urgent")
    assert overridden.respond_by is not None and overridden.resolve_by is not None
    # a fire is due in two hours of any day; a full container one working day after the next opening
    friday_evening = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    assert router("container_fire", 41.4036, 2.1744, friday_evening).resolve_by == datetime(2026, 12, 4, 22, 0,
                                                                                           tzinfo=UTC)
    assert router("container_full", 41.4036, 2.1744, friday_evening).resolve_by == datetime(2026, 12, 8, 8, 0,
                                                                                           tzinfo=UTC)


def test_an_unknown_organisation_in_the_catalogue_is_named_with_its_line() -> None:
    catalogue = load_catalogue(REPO / "services.yaml")
    problems = unknown_organisations(REPO / "services.yaml", catalogue, {"collection-operations"})
    lines = (REPO / "services.yaml").read_text(encoding="utf-8").splitlines()
    for problem in problems:
        line = int(problem.split(":")[1])
        assert problem.rsplit("'", 2)[1] in lines[line - 1], problem


def test_a_bad_organisations_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "organisations.yaml"
    path.write_text("organisations:\n  - slug: ok\n    name: OK\n    kind: partner\n    emails: [nope]\n",
                    encoding="utf-8")
    with pytest.raises(DirectoryError, match=r"organisations.yaml:5: organisations.0.emails: .*not an e-mail"):
        load_directory(path)


def test_partners_members_are_kept_to_their_organisations_and_city_staff_are_not() -> None:
    assert scope_of([]) == CITY and CITY.is_city
    assert scope_of([Membership(1, "ops", "department", "viewer"), Membership(2, "x", "partner", "admin")]) == CITY
    assert scope_of([], "girona") == Scope(None, "girona")
    assert not Scope(None, "girona").covers(None, "") and Scope(None, "girona").covers(None, "girona")
    partner = scope_of([Membership(2, "x", "partner", "operator"), Membership(3, "y", "partner", "viewer")])
    assert partner.organisations == [2, 3]
    assert partner.covers(2) and not partner.covers(4) and not partner.covers(None)
    assert partner.may("operator", 2, "viewer") and not partner.may("operator", 3, "admin")
    assert partner.best_role("viewer") == "operator"
