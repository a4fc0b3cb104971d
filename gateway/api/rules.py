"""The rule lab in the API: check a rule file's text, and backtest a rule set on the stored history as a
job (202 and a job id; its progress; its result). Nothing here writes a rule file, an incident or a rule
state: rules stay files in git."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.api.auth import Staff, requires
from gateway.api.bounds import Text, Time
from gateway.api.context import ApiContext, context
from gateway.catalogue import Catalogue
from gateway.lab.backtest import BacktestError, check_rule_text
from gateway.lab.jobs import BacktestJobs, JobsBusy, lab_plan
from gateway.rules.durations import parse_duration
from gateway.store.queries import query

router = APIRouter(prefix="/api/v1/rules", tags=["rule lab"])
Ctx = Annotated[ApiContext, Depends(context)]
Operator = Annotated[Staff, Depends(requires("operator", city=True))]
MAX_RULE_TEXT = 200_000
MAX_RANGE = timedelta(days=400)
Name = Annotated[Text, Field(min_length=1, max_length=200)]


class RuleText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: Text = Field(max_length=MAX_RULE_TEXT)
    file: Name = Field(default="rules.yaml", description="the name its problems are reported under")


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Time | None = None
    until: Time | None = Field(default=None, description="default: now, or the latest stored reading if later")
    last: Annotated[Text, Field(max_length=20)] | None = Field(default=None, description="e.g. 1d, 30d: instead "
                                                                                        "of since")
    rules_yaml: Text | None = Field(default=None, max_length=MAX_RULE_TEXT,
                                    description="a rule file's text; with `file`, in place of that deployed file")
    file: Name | None = Field(default=None, description="a deployed rule file (its name)")
    rule: Name | None = None
    compare_with_deployed: bool = True
    with_store: bool | None = None
    devices: list[Name] = Field(default_factory=list, max_length=10_000)
    kinds: list[Name] = Field(default_factory=list, max_length=100)
    bbox: tuple[float, float, float, float] | None = Field(default=None, description="west, south, east, north")
    sweep_every_s: float | None = Field(default=None, ge=1, le=86400)
    warmup_s: float = Field(default=0, ge=0, le=30 * 86400)

    @model_validator(mode="after")
    def _one_start(self) -> BacktestRequest:
        if (self.since is None) == (self.last is None):
            raise ValueError("give since (and until) or last")
        return self


def jobs_of(request: Request) -> BacktestJobs:
    jobs: BacktestJobs | None = getattr(request.app.state, "backtests", None)
    if jobs is None:
        api: ApiContext = request.app.state.context
        intervals = {p.name: p.config.defaults.expected_interval_s for p in api.profiles.profiles}
        jobs = request.app.state.backtests = BacktestJobs(api.settings.lab_database_url or api.settings.database_url,
                                                          intervals)
    return jobs


async def history_end(api: ApiContext) -> datetime | None:
    async with api.pool.connection() as conn:
        row = await (await conn.execute(query("latest_telemetry_time"))).fetchone()
    return row[0] if row else None


def resolve_range(since: datetime | None, until: datetime | None, last: str | None, latest: datetime | None,
                  now: datetime) -> tuple[datetime, datetime]:
    end = until or (max(now, latest + timedelta(microseconds=1)) if latest else now)
    if last is not None:
        try:
            length = parse_duration(last)
        except ValueError as exc:
            raise BacktestError(f"last: {exc}") from None
        if length > MAX_RANGE:
            raise BacktestError(f"a backtest covers at most {MAX_RANGE.days} days")
        start = end - length
    else:
        assert since is not None
        start = since
    if start >= end:
        raise BacktestError(f"empty range: {start.isoformat()} is not before {end.isoformat()}")
    if end - start > MAX_RANGE:
        raise BacktestError(f"a backtest covers at most {MAX_RANGE.days} days")
    return start, end


def lab_catalogue(api: ApiContext) -> Catalogue:
    """The rule lab works on a single-city install's rules; with several municipalities it is not there
    yet (404), rather than mixing their devices."""
    if not api.cities.single:
        raise HTTPException(404, "the rule lab is not available on an instance of several jurisdictions")
    return api.city("").catalogue


def _refused(exc: Exception, status: int = 400) -> JSONResponse:
    problems = str(exc).splitlines()
    return JSONResponse({"message": problems[0] if len(problems) == 1 else f"{len(problems)} problems",
                         "problems": problems}, status_code=status)


@router.post("/check", summary="Check a rule file's text as `wastegate rules check` does")
async def check(body: RuleText, api: Ctx, staff: Operator) -> dict[str, Any]:
    # Loading rules builds their zone trees (tens of milliseconds): off the event loop the gateway shares.
    problems = await asyncio.to_thread(check_rule_text, body.yaml, body.file, api.settings.rules_dir,
                                       lab_catalogue(api).codes or None)
    return {"ok": not problems, "problems": problems}


@router.post("/backtest", status_code=202, summary="Backtest a rule set on the stored history (a job)")
async def start_backtest(body: BacktestRequest, request: Request, api: Ctx, staff: Operator) -> JSONResponse:
    try:
        since, until = resolve_range(body.since, body.until, body.last, await history_end(api), api.clock())
        plan = await asyncio.to_thread(
            lab_plan, api.settings.rules_dir, lab_catalogue(api).codes or None, since=since, until=until,
            rules_yaml=body.rules_yaml,
            file=body.file, rule=body.rule, compare_with_deployed=body.compare_with_deployed,
            with_store=body.with_store, devices=tuple(body.devices), kinds=tuple(body.kinds),
            bbox=body.bbox, sweep_every=timedelta(seconds=body.sweep_every_s or api.settings.sweep_s),
            warmup=timedelta(seconds=body.warmup_s))
        job = jobs_of(request).submit(plan, staff.actor)
    except (BacktestError, ValueError) as exc:
        return _refused(exc)
    except JobsBusy as exc:
        return _refused(exc, 429)
    location = f"/api/v1/rules/backtest/{job.id}"
    return JSONResponse({**job.as_json(with_result=False), "links": {"self": location}}, status_code=202,
                        headers={"Location": location})


@router.get("/backtest/{job_id}", summary="A backtest job: its progress, then its result")
async def backtest_job(request: Request, staff: Operator,
                       job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]) -> dict[str, Any]:
    job = jobs_of(request).get(job_id)
    if job is None:
        raise HTTPException(404, f"no backtest job {job_id} (jobs are kept until the server restarts)")
    return job.as_json()
