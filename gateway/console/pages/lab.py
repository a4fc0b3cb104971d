"""The rule lab: edit a deployed rule file in the browser (checked as you type, with the file:line messages
of `rules check`), backtest it on a chosen range of the stored history against the deployed version, see
the would-be incidents per rule, on a timeline and on the map, and download the file to commit. The
console never writes a rule file on the server: rules stay files in git.

The page's JSON endpoints (`check`, `run`, `jobs/<id>`) take the session and, for a POST, its CSRF token
in the `X-CSRF-Token` header."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.bounds import Text, Time
from gateway.api.rules import MAX_RULE_TEXT, history_end, jobs_of, resolve_range
from gateway.catalogue import Catalogue
from gateway.console.i18n import translations
from gateway.console.session import CityOperatorPage, ConsoleError, check_csrf, context_of
from gateway.console.templating import render
from gateway.lab.backtest import BacktestError, check_rule_text
from gateway.lab.jobs import CANDIDATE, DEPLOYED, JobsBusy, lab_plan

router = APIRouter()
TIMELINE_MAX = 5000  # incidents drawn; the download has them all
RANGES = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class LabCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: Text = Field(max_length=MAX_RULE_TEXT)
    file: Annotated[Text, Field(min_length=1, max_length=200)]


class LabRun(LabCheck):
    last: Literal["1d", "7d", "30d"] | None = None
    since: Time | None = None
    until: Time | None = None
    rule: Annotated[Text, Field(max_length=200)] | None = None


def _catalogue(request: Request) -> Catalogue:
    api = context_of(request)
    if not api.cities.single:  # not yet for several municipalities: their devices must not mix
        _ = translations(request.state.language).gettext
        raise ConsoleError(404, _("There is no such page."))
    return api.city("").catalogue


def _rule_files(request: Request) -> list[str]:
    _catalogue(request)
    return sorted(path.name for path in context_of(request).settings.rules_dir.glob("*.yaml"))


@router.get("/lab")
async def lab_page(request: Request, user: CityOperatorPage,
                   file: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    files = _rule_files(request)
    _ = translations(request.state.language).gettext
    if not files:
        raise ConsoleError(404, _("There are no rule files to edit."))
    chosen = file or files[0]
    if chosen not in files:
        raise ConsoleError(404, _("There is no rule file %(file)s.") % {"file": chosen})
    text = (context_of(request).settings.rules_dir / chosen).read_text(encoding="utf-8")
    return render(request, "lab.html", files=files, file=chosen, text=text, ranges=list(RANGES))


async def _json_body(request: Request, model: type[LabCheck]) -> Any:
    try:
        check_csrf(request, request.headers.get("x-csrf-token"))
    except ConsoleError as exc:
        raise _Refused([exc.message], exc.status_code) from None
    try:
        return model.model_validate(await request.json())
    except ValueError as exc:  # not JSON, or not the fields asked for
        problems = ([f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
                    if isinstance(exc, ValidationError) else [f"not a JSON body: {exc}"])
        raise _Refused(problems) from None


class _Refused(Exception):
    def __init__(self, problems: list[str], status: int = 400) -> None:
        self.problems, self.status = problems, status


def _refusal(refused: _Refused) -> JSONResponse:
    return JSONResponse({"ok": False, "problems": refused.problems}, status_code=refused.status)


@router.post("/lab/check")
async def lab_check(request: Request, user: CityOperatorPage) -> JSONResponse:
    try:
        body: LabCheck = await _json_body(request, LabCheck)
    except _Refused as refused:
        return _refusal(refused)
    api = context_of(request)
    problems = await asyncio.to_thread(check_rule_text, body.yaml, body.file, api.settings.rules_dir,
                                       _catalogue(request).codes or None)  # off the event loop the gateway shares
    return JSONResponse({"ok": not problems, "problems": problems})


@router.post("/lab/run")
async def lab_run(request: Request, user: CityOperatorPage) -> JSONResponse:
    try:
        body: LabRun = await _json_body(request, LabRun)
        api = context_of(request)
        latest = await history_end(api)
        if body.since is not None:
            since, until = resolve_range(body.since, body.until, None, latest, api.clock())
        else:
            since, until = resolve_range(None, None, body.last or "1d", latest, api.clock())
        replacing = body.file if body.file in _rule_files(request) else None
        plan = await asyncio.to_thread(
            lab_plan, api.settings.rules_dir, _catalogue(request).codes or None, since=since, until=until,
            rules_yaml=body.yaml, file=replacing, rule=body.rule or None,
            sweep_every=timedelta(seconds=api.settings.sweep_s))
        job = jobs_of(request).submit(plan, f"console:{user.name}")
    except _Refused as refused:
        return _refusal(refused)
    except (BacktestError, ValueError) as exc:
        return _refusal(_Refused(str(exc).splitlines()))
    except JobsBusy as exc:
        return _refusal(_Refused([str(exc)], 429))
    return JSONResponse({"ok": True, "id": job.id}, status_code=202)


@router.get("/lab/jobs/{job_id}")
async def lab_job(request: Request, user: CityOperatorPage,
                  job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]) -> JSONResponse:
    job = jobs_of(request).get(job_id)
    if job is None:
        _ = translations(request.state.language).gettext
        return JSONResponse({"ok": False, "problems": [_("This backtest is no longer known; run it again.")]},
                            status_code=404)
    found = job.as_json(with_result=False)
    if job.result is not None:
        found["view"] = page_view(job.result)
    return JSONResponse(found)


def page_view(result: dict[str, Any]) -> dict[str, Any]:
    """What the page draws: per rule, the two versions' counts and how they compare; each incident with
    its status (same, different, only in the edited version, only in the deployed one)."""
    comparison = result["comparisons"][0] if result["comparisons"] else None
    summaries = result["summaries"]
    rows = []
    for rule_id in result["rules"]:
        counts = (comparison or {}).get("per_rule", {}).get(rule_id, {})
        rows.append({
            "rule": rule_id,
            "candidate": summaries.get(CANDIDATE, {}).get(rule_id, {}).get("opened", 0),
            "deployed": summaries.get(DEPLOYED, {}).get(rule_id, {}).get("opened", 0),
            "flapping": summaries.get(CANDIDATE, {}).get(rule_id, {}).get("flapping", 0),
            "same": counts.get("same", 0), "different": counts.get("different", 0),
            "only_candidate": counts.get("only_a", 0), "only_deployed": counts.get("only_b", 0),
        })
    status: dict[tuple[str, str, str], str] = {}
    for difference in (comparison or {}).get("differences", []):
        for side in ("a", "b"):
            if difference[side] is not None:
                one = difference[side]
                status[(side, one["dedupe_key"], one["opened_at"])] = difference["status"]
    incidents = []
    for side, name in (("a", CANDIDATE), ("b", DEPLOYED)):
        for one in result["incidents"].get(name, []):
            state = status.get((side, one["dedupe_key"], one["opened_at"]), "same")
            if side == "b" and state == "same":
                continue  # drawn once, from the edited version
            incidents.append({"status": state, "rule_id": one["rule_id"], "subject": one["subject"],
                              "opened_at": one["opened_at"], "resolved_at": one["resolved_at"],
                              "lat": one["lat"], "lon": one["lon"], "title": one["title"],
                              "version": name})
    incidents.sort(key=lambda i: i["opened_at"])
    return {"since": result["since"], "until": result["until"], "readings": result["readings"],
            "readings_per_s": result["readings_per_s"], "rows": rows, "incidents": incidents[:TIMELINE_MAX],
            "truncated": len(incidents) > TIMELINE_MAX}
