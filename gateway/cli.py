"""The `wastegate` command."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.lab.cli import backtest_command
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.replay import ReplayReport
    from gateway.store.dead_letter import DeadLetterFilter

app = typer.Typer(help="Wastegate: telemetry gateway for municipal waste services.", no_args_is_help=True)
devices_app = typer.Typer(help="The device registry.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
profiles_app = typer.Typer(help="Device profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
rules_app = typer.Typer(help="Rule files.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error")]


@app.command()
def migrate() -> None:
    """Apply the database migrations (a no-op when up to date) and the storage policies."""
    from gateway.store.migrate import apply_storage_policies
    from gateway.store.migrate import migrate as run_migrations

    settings = Settings()
    applied = run_migrations(settings.database_url)
    layout = apply_storage_policies(settings.database_url, settings)
    if applied:
        typer.echo("applied: " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    else:
        typer.echo("database is up to date")
    typer.echo(f"telemetry storage: {layout}")


@app.command()
def serve(
    log_level: LogLevel = "warning",
    api: Annotated[bool, typer.Option("--api/--no-api", help="serve the HTTP API")] = True,
    gateway: Annotated[bool, typer.Option("--gateway/--no-gateway", help="ingest from MQTT and run the rules")] = True,
) -> None:
    """Run the gateway and its HTTP API until SIGINT or SIGTERM, then flush, commit, acknowledge, exit."""
    from gateway.app import Gateway
    from gateway.logs import configure_logging

    if not api and not gateway:
        raise typer.BadParameter("--no-api and --no-gateway together leave nothing to run")
    configure_logging(log_level)
    overrides: dict[str, bool] = {}
    if not api:
        overrides["api_enabled"] = False
    if not gateway:
        overrides["gateway_enabled"] = False
    settings = Settings(**overrides)  # type: ignore[arg-type]
    from gateway.app import StartRefused

    try:
        clean = asyncio.run(_run_until_signal(Gateway(settings)))
    except StartRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if not clean:
        typer.echo("stopped with messages not committed (the broker redelivers them)", err=True)
        raise typer.Exit(1)


async def _run_until_signal(runner: Gateway) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await runner.run(stop)


@devices_app.command("import")
def devices_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a .csv, .yaml or .yml file")],
    jurisdiction: Annotated[str, typer.Option(help="the municipality the devices serve, on an instance of "
                                                   "several: only its rules apply to them")] = "",
) -> None:
    """Upsert devices from a CSV or YAML file: all rows or none."""
    from gateway.device_import import DeviceFileError, read_devices
    from gateway.profiles.loader import load_profiles
    from gateway.store.devices import upsert_devices

    settings = Settings()
    kinds = {p.name: p.config.kind for p in load_profiles(settings.profiles_dir).profiles}
    try:
        devices = read_devices(file, kinds)
    except DeviceFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if jurisdiction:
        devices = [replace(device, jurisdiction=jurisdiction) for device in devices]
    count = upsert_devices(settings.database_url, devices)
    typer.echo(f"{count} devices imported from {file}")


@devices_app.command("fiware")
def devices_fiware(
    device_ids: Annotated[list[str] | None, typer.Argument(help="devices to export (default: all)")] = None,
) -> None:
    """Print devices' latest state as FIWARE NGSI-LD entities (WasteContainer, Vehicle), a JSON array."""
    import json

    import psycopg

    from gateway.fiware import LocationUnknownError, device_entity
    from gateway.store.devices import devices_by_id
    from gateway.store.telemetry import latest_readings

    settings = Settings()
    with psycopg.connect(settings.database_url) as conn:
        devices = devices_by_id(conn, device_ids)
        latest = latest_readings(conn, device_ids)
    entities, skipped = [], []
    for device in devices:
        try:
            entities.append(device_entity(device, latest.get(device.device_id)))
        except (LocationUnknownError, ValueError) as exc:
            skipped.append(f"{device.device_id}: {exc}")
    typer.echo(json.dumps(entities, indent=2, ensure_ascii=False))
    for line in skipped:
        typer.echo(f"not exported: {line}", err=True)


@rules_app.command("check")
def rules_check(
    directory: Annotated[Path | None, typer.Argument(help="rules directory (default: the setting)")] = None,
) -> None:
    """Validate rule files and zones (every problem as file:line: rule: reason) and run the rules' test
    cases in rules/tests/; exit 1 on any problem."""
    from gateway.catalogue import CatalogueError, load_service_codes
    from gateway.rules.loader import RuleFileError, load_rules
    from gateway.rules.testcases import discover, run_case

    settings = Settings()
    directory = directory or settings.rules_dir
    try:
        codes = load_service_codes(settings.services_file)
        rules = load_rules(directory, codes)
    except (RuleFileError, CatalogueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    kinds: dict[str, int] = {}
    for rule in rules.rules:
        kinds[rule.kind] = kinds.get(rule.kind, 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    typer.echo(f"{len(rules.rules)} rules OK ({summary})" + ("" if codes else "; no service catalogue found"))
    outcomes = [run_case(path, rules) for path in discover(directory)]
    for outcome in outcomes:
        for problem in outcome.problems:
            typer.echo(f"FAIL {outcome.path}: {problem}", err=True)
    failed = sum(not o.ok for o in outcomes)
    typer.echo(f"{len(outcomes)} rule test cases, {failed} failed")
    if failed:
        raise typer.Exit(1)


rules_app.command("backtest")(backtest_command)


@profiles_app.command("check")
def profiles_check(
    directory: Annotated[Path | None, typer.Argument(help="profiles directory (default: the setting)")] = None,
) -> None:
    """Validate every profile and run its golden test cases, printing each failure."""
    from gateway.ingest.testcases import discover, run_case
    from gateway.profiles.loader import ProfileError, load_profiles

    directory = directory or Settings().profiles_dir
    try:
        profiles = load_profiles(directory)
    except ProfileError as exc:
        typer.echo(f"invalid profile: {exc}", err=True)
        raise typer.Exit(1) from None
    outcomes = [run_case(case, profiles) for case in discover(directory)]
    for outcome in outcomes:
        if not outcome.ok:
            typer.echo(f"FAIL {outcome.name}", err=True)
            for problem in outcome.problems:
                typer.echo(f"     {problem}", err=True)
    failed = sum(not o.ok for o in outcomes)
    untested = sorted(set(profiles.by_name) - {o.case.parent.parent.name for o in outcomes})
    typer.echo(f"{len(profiles.by_name)} profiles, {len(outcomes)} cases, {failed} failed"
               + (f"; without cases: {', '.join(untested)}" if untested else ""))
    if failed or untested:
        raise typer.Exit(1)


@app.command()
def sweep(
    at: Annotated[str | None, typer.Option(help="ISO 8601 time to sweep at (default: now)")] = None,
) -> None:
    """Run the sweeps (absence, missed collection) once, decided from what is committed, and commit what they
    find: what the replica holding the sweep lease does every WASTEGATE_SWEEP_S. Refused while one holds it."""
    from gateway.app import Gateway, StartRefused

    now = _when(at) if at else datetime.now(UTC)
    try:
        done = asyncio.run(Gateway(Settings()).sweep_once(now))
    except StartRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"swept at {now.isoformat()}: {done['findings']} findings, {done['opened']} incidents opened, "
               f"{done['resolved']} resolved")


@app.command()
def ledger(
    date_: Annotated[str, typer.Option("--date", help="the day (YYYY-MM-DD); --until for several")],
    until: Annotated[str | None, typer.Option(help="the last day of a range (YYYY-MM-DD)")] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="write the rows as CSV here ('-': stdout)")] = None,
    round_: Annotated[str | None, typer.Option("--round", help="only this round")] = None,
    district: Annotated[str | None, typer.Option(help="only this district (service area)")] = None,
    truck: Annotated[str | None, typer.Option(help="only stops this truck lifted or passed")] = None,
    rebuild: Annotated[bool, typer.Option(help="rebuild the days from the telemetry first")] = False,
) -> None:
    """The collection ledger of a day: every stop due (lifted, not presented, missed, pending) and every lift
    off schedule (extra), with each round's coverage."""
    from rich.console import Console
    from rich.table import Table

    from gateway.app import Gateway
    from gateway.ledger.report import coverage, select, to_csv

    try:
        first = date.fromisoformat(date_)
        last = date.fromisoformat(until) if until else first
    except ValueError as exc:
        raise typer.BadParameter(f"dates are YYYY-MM-DD: {exc}") from None
    if last < first:
        raise typer.BadParameter("--until is before --date")
    entries = select(asyncio.run(Gateway(Settings()).ledger(first, last, rebuild=rebuild)), round_, district, truck)
    if csv_file is not None:
        text = to_csv(entries)
        if str(csv_file) == "-":
            typer.echo(text, nl=False)
            return
        csv_file.write_text(text, encoding="utf-8")
    table = Table("day", "round", "due", "lifted", "not presented", "missed", "pending", "served", "kg")
    for line in coverage(entries):
        table.add_row(line["day"], line["round"], str(line["due"]), str(line["lifted"]), str(line["not_presented"]),
                      str(line["missed"]), str(line["pending"]), f"{line['served_share']:.0%}", str(line["kg"]))
    Console().print(table)
    extra = sum(1 for e in entries if e.status == "extra")
    typer.echo(f"{len(entries)} rows ({extra} lifts off schedule)" + (f"; written to {csv_file}" if csv_file else ""))


@app.command()
def plan(
    date_: Annotated[str, typer.Option("--date", help="the day to plan (YYYY-MM-DD)")],
    out: Annotated[Path, typer.Option(help="directory for plan.geojson, plan.json, <truck>.gpx and .html")],
    threshold: Annotated[float, typer.Option(help="a container forecast at this fill % by the shift's end is due")]
    = 80.0,
    jurisdiction: Annotated[str, typer.Option(help="the municipality, with several on one instance")] = "",
) -> None:
    """A day's collection routes: the containers due (scheduled, or forecast full), a route per truck within
    its capacity from its depot to the transfer station (VROOM), as GeoJSON, GPX and a driver's list."""
    from gateway.app import Gateway
    from gateway.plan.due import PlanRefused
    from gateway.plan.export import write
    from gateway.plan.routes import RoutingUnavailable

    try:
        day = date.fromisoformat(date_)
    except ValueError as exc:
        raise typer.BadParameter(f"--date is YYYY-MM-DD: {exc}") from None
    try:
        made = asyncio.run(Gateway(Settings()).plan(day, threshold, jurisdiction))
    except (PlanRefused, RoutingUnavailable) as exc:
        typer.echo(f"no plan: {exc}", err=True)
        raise typer.Exit(2) from None
    write(made, out)
    for route in made.routes:
        typer.echo(f"{route.truck.id}: {len(route.stops)} containers, {route.litres}/{route.truck.capacity_l} l, "
                   f"{route.distance_m / 1000:.1f} km")
    typer.echo(f"{sum(len(r.stops) for r in made.routes)} containers on {len(made.routes)} routes, "
               f"{made.distance_m / 1000:.1f} km; written to {out}")
    if made.not_served:
        typer.echo(f"not served (no capacity left): {', '.join(d.id for d in made.not_served)}", err=True)
        raise typer.Exit(3)


@app.command()
def demo(
    duration: Annotated[float | None, typer.Option(help="seconds to run; until Ctrl-C when omitted")] = None,
    api_port: Annotated[int, typer.Option(help="port of the HTTP API")] = 8000,
    speedup: Annotated[float, typer.Option(help="simulated seconds per real second")] = 60.0,
    live: Annotated[bool, typer.Option("--live/--no-live", help="the live terminal view")] = True,
    broker: Annotated[str, typer.Option(help="mosquitto, amqtt, or auto (Mosquitto when installed)")] = "auto",
    log_level: LogLevel = "error",
) -> None:
    """A throwaway broker and PostgreSQL, the gateway, its API and a simulated city; removed at the end.

    Prints the ground-truth score; exits 1 when precision or recall is below 0.95."""
    from gateway.demo import exit_code, run_demo
    from gateway.logs import configure_logging

    configure_logging(log_level)
    if broker not in ("auto", "mosquitto", "amqtt"):
        raise typer.BadParameter("--broker is mosquitto, amqtt or auto")
    raise typer.Exit(exit_code(run_demo(duration, api_port, speedup, live, broker_kind=broker)))


@app.command()
def bench(
    messages: Annotated[int, typer.Option(help="messages per throughput scenario")] = 100_000,
    name: Annotated[str, typer.Option(help="results go to bench/results/<name>.json")] = "latest",
    quick: Annotated[bool, typer.Option(help="shorter secondary scenarios, for a smoke run")] = False,
) -> None:
    """Benchmarks on a throwaway Mosquitto and PostgreSQL: limit, end to end, naive baseline, latency,
    scale-out, rule cost against zones, memory against devices. Prints a table and writes JSON."""
    import signal

    from bench.run import run

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, _stop)
    run(messages, name, quick)


simulate_app = typer.Typer(help="The simulated city: traffic with known ground truth, and its score.",
                           no_args_is_help=True)
app.add_typer(simulate_app, name="simulate")


@simulate_app.command("run")
def simulate_run(
    duration: Annotated[float, typer.Option(help="seconds to publish")] = 60.0,
    speedup: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1.0,
    containers: Annotated[int, typer.Option(help="street containers")] = 12,
    trucks: Annotated[int, typer.Option(help="trucks on door-to-door rounds")] = 3,
    seed: Annotated[int, typer.Option(help="the same seed gives the same city")] = 7,
    truth: Annotated[Path, typer.Option(help="where to write the ground truth (JSONL)")] = Path("truth.jsonl"),
    register: Annotated[bool, typer.Option(help="upsert the city's devices first")] = True,
) -> None:
    """Publish the city's traffic to WASTEGATE_MQTT_URL and write the incidents it causes on purpose.

    The gateway's clock is real time here: keep --speedup 1 for the timed rules (silence, collection
    windows); a higher speed-up is load with device times in the past."""
    import dataclasses
    import json
    import time as wall
    from datetime import UTC, datetime, timedelta

    from gateway.sources.mqtt import MqttPublisher
    from gateway.store.devices import upsert_devices
    from simulators.city import City
    from simulators.clock import SimClock

    settings = Settings()
    start = datetime.now(UTC) - timedelta(seconds=duration * speedup if speedup > 1 else 0)
    city = City(start, containers=containers, trucks=trucks, seed=seed)
    if register:
        upsert_devices(settings.database_url, city.registered_devices())
    truth.write_text("".join(json.dumps(dataclasses.asdict(e)) + "\n" for e in city.expected))
    clock = SimClock(start, speedup)
    sent = 0
    with MqttPublisher(settings.mqtt_url, f"wastegate-simulator-{seed}", settings.mqtt_protocol) as publisher:
        began = wall.monotonic()
        while wall.monotonic() - began < duration:
            for topic, payload in city.messages_until(clock.now()):
                publisher.publish(topic, payload)
                sent += 1
            wall.sleep(0.1)
    typer.echo(f"{sent} messages published; ground truth in {truth}")


@simulate_app.command("score")
def simulate_score(
    truth: Annotated[Path, typer.Option(exists=True, help="the ground truth written by `simulate run`")] = Path(
        "truth.jsonl"),
) -> None:
    """Precision and recall of the incidents in the store against the ground truth; misses and extras."""
    import json

    from simulators.city import Expected
    from simulators.score import describe, score

    expected = [Expected(**json.loads(line)) for line in truth.read_text().splitlines() if line.strip()]
    for line in describe(score(Settings().database_url, expected)):
        typer.echo(line)


users_app = typer.Typer(help="Staff accounts of the web console.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="the sign-in name: letters, digits and _ . @ -")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin")] = "viewer",
    language: Annotated[str | None, typer.Option(help="en, ca or es (default: the browser's)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="read the password from standard input")] = False,
    jurisdiction: Annotated[str, typer.Option(help="the municipality whose staff they are, on an instance of "
                                                   "several")] = "",
) -> None:
    """Create a console user, or give an existing one a new password, role and language."""
    import re
    import sys

    from gateway.console.auth import ROLES, hash_password
    from gateway.console.i18n import LANGUAGES
    from gateway.store.users import upsert_user

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}", name):
        raise typer.BadParameter("letters, digits and _ . @ - (at most 64), starting with a letter or digit",
                                 param_hint="NAME")
    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    if language is not None and language not in LANGUAGES:
        raise typer.BadParameter(f"one of {', '.join(LANGUAGES)}", param_hint="--language")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        typer.echo("the password must have at least 8 characters", err=True)
        raise typer.Exit(2)
    with _database_errors():
        created = upsert_user(Settings().database_url, name, hash_password(password), role, language, jurisdiction)
    typer.echo(f"{'created' if created else 'updated'} {name} ({role})")


orgs_app = typer.Typer(help="The city's departments and partner entities, and their members.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")


@orgs_app.command("add")
def orgs_add(
    slug: Annotated[str, typer.Argument(help="its short name: lower-case letters, digits and _ . -")],
    kind: Annotated[str, typer.Option(help="department or partner")],
    name: Annotated[str | None, typer.Option(help="its full name (default: the slug)")] = None,
    email: Annotated[list[str] | None, typer.Option(help="an address incidents are sent to (repeatable)")] = None,
    webhook: Annotated[str | None, typer.Option(help="a URL that gets its incidents' changes")] = None,
    jurisdiction: Annotated[str, typer.Option(help="the municipality, on an instance of several")] = "",
) -> None:
    """Add an organisation, or update the name, kind and addresses of an existing one."""
    from pydantic import ValidationError

    from gateway.organisation.directory import OrganisationSpec
    from gateway.store.organisations import NewOrganisation, save_organisation

    try:
        spec = OrganisationSpec.model_validate({"slug": slug, "name": name or slug, "kind": kind,
                                                "emails": tuple(email or ()), "webhook_url": webhook})
    except ValidationError as exc:
        for error in exc.errors():
            typer.echo(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}", err=True)
        raise typer.Exit(2) from None
    with _database_errors():
        created = save_organisation(Settings().database_url, NewOrganisation(
            spec.slug, spec.name, spec.kind, spec.emails, spec.webhook_url, jurisdiction))
    typer.echo(f"{'added' if created else 'updated'} {spec.slug} ({spec.kind})")


@orgs_app.command("import")
def orgs_import(file: Annotated[Path, typer.Argument(help="an organisations.yaml")],
                jurisdiction: Annotated[str, typer.Option(help="the municipality, on an instance of several")] = "",
                ) -> None:
    """Add the organisations of a file that are not in the store yet (as the gateway does at start)."""
    from gateway.organisation.directory import DirectoryError, load_directory
    from gateway.store.organisations import NewOrganisation, seed_organisations

    if not file.exists():
        typer.echo(f"{file}: no such file", err=True)
        raise typer.Exit(2)
    try:
        directory = load_directory(file)
    except DirectoryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    with _database_errors():
        added = seed_organisations(Settings().database_url, [
            NewOrganisation(o.slug, o.name, o.kind, o.emails, o.webhook_url, jurisdiction)
            for o in directory.organisations])
    typer.echo(f"{len(added)} added, {len(directory.organisations) - len(added)} already there")


@orgs_app.command("list")
def orgs_list() -> None:
    """The organisations and their members."""
    from rich.console import Console
    from rich.table import Table

    from gateway.store.organisations import list_members, list_organisations

    with _database_errors():
        settings = Settings()
        orgs, members = list_organisations(settings.database_url), list_members(settings.database_url)
    table = Table("slug", "name", "kind", "e-mail", "members")
    for org in orgs:
        table.add_row(org.slug, org.name, org.kind, ", ".join(org.emails),
                      ", ".join(f"{user} ({role})" for slug, user, role in members if slug == org.slug))
    Console(soft_wrap=True).print(table)


@orgs_app.command("member")
def orgs_member(
    slug: Annotated[str, typer.Argument(help="the organisation")],
    user: Annotated[str, typer.Argument(help="a console user (wastegate users add)")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin, within this organisation")] = "operator",
    remove: Annotated[bool, typer.Option("--remove", help="take the user out of the organisation")] = False,
    jurisdiction: Annotated[str, typer.Option(help="the municipality, on an instance of several")] = "",
) -> None:
    """Make a console user a member of an organisation (with a role there), or take them out. A member of
    partner entities only sees the incidents routed to them."""
    from gateway.organisation.scope import ROLES
    from gateway.store.organisations import remove_member, set_member

    if role not in ROLES:
        raise typer.BadParameter(f"one of {', '.join(ROLES)}", param_hint="--role")
    with _database_errors():
        url = Settings().database_url
        done = (remove_member(url, slug, user, jurisdiction) if remove
                else set_member(url, slug, user, role, jurisdiction))
    if not done:
        typer.echo(f"no organisation {slug!r} with {'a member' if remove else 'a user'} {user!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{user} {'removed from' if remove else f'is {role} in'} {slug}")


deadletter_app = typer.Typer(help="The dead letter: messages that did not become telemetry, and their replay.",
                             no_args_is_help=True)
app.add_typer(deadletter_app, name="deadletter")


def _when(value: str) -> datetime:
    from gateway.replay import parse_time

    try:
        return parse_time(value, datetime.now(UTC))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


ReasonOption = Annotated[list[str] | None, typer.Option(
    "--reason", help="only this reason (repeatable): unknown_device, payload_mismatch, … (see README)")]
TopicOption = Annotated[str | None, typer.Option(
    help="an MQTT topic filter (+ one level, # the rest) or, without wildcards, a topic prefix")]
SinceOption = Annotated[datetime | None, typer.Option(
    parser=_when, metavar="TIME", help="received at or after: 2026-11-23, 2026-11-23T08:00Z (UTC unless an "
                                       "offset is given), or a time ago such as 30m, 2h, 7d")]
UntilOption = Annotated[datetime | None, typer.Option(parser=_when, metavar="TIME",
                                                      help="received before (written as for --since)")]


def _dead_letter_filter(ids: list[int] | None, reasons: list[str] | None, topic: str | None,
                        since: datetime | None, until: datetime | None) -> DeadLetterFilter:
    from gateway.ingest.normalize import REASONS
    from gateway.store.dead_letter import DeadLetterFilter

    unknown = sorted(set(reasons or ()) - set(REASONS))
    if unknown:
        raise typer.BadParameter(f"unknown reason {', '.join(map(repr, unknown))}; the reasons are "
                                 + ", ".join(sorted(REASONS)), param_hint="--reason")
    try:
        return DeadLetterFilter(tuple(ids or ()), tuple(reasons or ()), topic, since, until)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--topic" if "topic" in str(exc) else "--since/--until") from None


@contextmanager
def _database_errors() -> Iterator[None]:
    import psycopg

    try:
        yield
    except (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable) as exc:
        typer.echo(f"the database schema is behind this version ({exc}): run `wastegate migrate`", err=True)
        raise typer.Exit(1) from None
    except psycopg.OperationalError as exc:
        typer.echo(f"cannot reach the database: {exc}", err=True)
        raise typer.Exit(1) from None


@deadletter_app.command("list")
def deadletter_list(
    reason: ReasonOption = None,
    topic: TopicOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line instead of a table")] = False,
    include_replayed: Annotated[bool, typer.Option(
        help="also the messages a replay took out of the dead letter")] = False,
) -> None:
    """List dead-letter messages, newest first: id, time received, reason, topic, detail."""
    import json

    import psycopg

    from gateway.store.dead_letter import list_dead_letter

    selection = _dead_letter_filter(None, reason, topic, since, until)
    with _database_errors(), psycopg.connect(Settings().database_url) as conn:
        entries = list_dead_letter(conn, selection, limit, include_replayed)
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry.as_json(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for column in ("id", "received (UTC)", "reason"):
        table.add_column(column, no_wrap=True)
    table.add_column("topic", overflow="fold")  # folded, never cut: it is what --topic filters on
    table.add_column("detail")
    if include_replayed:
        table.add_column("replay", no_wrap=True)
    for entry in entries:
        replay = [entry.replay_outcome or ""] if include_replayed else []
        table.add_row(str(entry.id), f"{entry.received_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}", entry.reason,
                      entry.topic, entry.detail, *replay)
    console = Console()
    console.print(table)
    console.print(f"{len(entries)} messages" + (f" (the newest {limit}; --limit for more)" if len(entries) == limit
                                                else ""))


@deadletter_app.command("replay")
def deadletter_replay(
    ids: Annotated[list[int] | None, typer.Option("--id", help="this message (repeatable)")] = None,
    reason: ReasonOption = None,
    topic: TopicOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many, oldest first")] = None,
    everything: Annotated[bool, typer.Option("--all", help="every message in the dead letter")] = False,
    dry_run: Annotated[bool, typer.Option(help="decode and report, write nothing")] = False,
) -> None:
    """Re-run dead-letter messages through the current profiles and device registry, and store them.

    For after a device is registered or a profile fixed. A stored message leaves the dead letter for good.

    A message that fails again keeps its one row, with the new reason. The rules do not see replays (README)."""
    from gateway.ingest import IngestLimits
    from gateway.profiles.loader import ProfileError, load_profiles
    from gateway.replay import replay
    from gateway.store.pool import open_pool

    selection = _dead_letter_filter(ids, reason, topic, since, until)
    if not everything and selection == type(selection)():
        raise typer.BadParameter("say which messages: --id, --reason, --topic, --since/--until, or --all")
    settings = Settings()
    try:
        profiles = load_profiles(settings.profiles_dir)
    except ProfileError as exc:
        typer.echo(f"invalid profile: {exc}", err=True)
        raise typer.Exit(1) from None
    limits = IngestLimits(settings.max_payload_bytes, timedelta(seconds=settings.max_future_s),
                          timedelta(seconds=settings.max_past_s))

    async def run() -> ReplayReport:
        pool = await open_pool(settings.database_url, min_size=1, max_size=2)
        try:
            return await replay(pool, profiles, selection, limits, limit=limit, dry_run=dry_run)
        finally:
            await pool.close()

    with _database_errors():
        report = asyncio.run(run())
    for line in describe_replay(report):
        typer.echo(line)


def describe_replay(report: ReplayReport) -> list[str]:
    if not report.selected:
        return ["nothing to replay: no message in the dead letter matches (replayed ones are not taken again)"]
    def count(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    lines = [("dry run, nothing written: " if report.dry_run else "")
             + f"{count(report.selected, 'message')} replayed: {report.stored} stored, {report.not_reading} no "
             f"reading, {len(report.rejected)} rejected again, {len(report.skipped)} skipped"]
    if report.readings:
        stored = f"{count(report.readings, 'reading')} {'would go' if report.dry_run else 'went'} to telemetry"
        if not report.dry_run and report.already_stored:
            stored += f" ({report.already_stored} of them already there)"
        lines.append(stored)
    if report.not_reading_kinds:
        lines.append("no reading: " + ", ".join(f"{kind} {n}" for kind, n in report.not_reading_kinds.most_common()))
    if report.rejected:
        lines.append("still in the dead letter: "
                     + ", ".join(f"{reason} {n}" for reason, n in report.rejected_reasons.most_common()))
    shown = 20
    for message_id, rejection in report.rejected[:shown]:
        lines.append(f"  #{message_id} {rejection.reason}: {rejection.detail}")
    if len(report.rejected) > shown:
        lines.append(f"  … and {len(report.rejected) - shown} more (`wastegate deadletter list`)")
    for message_id, why in report.skipped[:shown]:
        lines.append(f"  #{message_id} skipped: {why}")
    return lines


if __name__ == "__main__":
    app()
