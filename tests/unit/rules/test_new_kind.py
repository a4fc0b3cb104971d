"""A new rule kind is one module: a config model and a RuleBase subclass. The engine runs it (readings,
sweep, state stored and loaded back) without knowing anything of it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from typing_extensions import TypedDict

from gateway.devices import DeviceDirectory
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import RuleSet
from gateway.rules.model import Outcome, RuleBase, RuleConfigBase, StateOf, SweepWorld, Verdict
from tests.unit.rules.helpers import T0, device, reading


class LidCountConfig(RuleConfigBase):
    kind: Literal["lid_count"]
    openings: int = 3

    def build(self, zones: object, directory: object = None) -> LidCountRule:
        return LidCountRule(self)


class LidCountState(TypedDict, total=False):
    opened: int


class LidCountRule(RuleBase):
    """Opens an incident on the third lid opening; the sweep resolves it."""

    kind = "lid_count"
    sweeps = True
    State = LidCountState

    def __init__(self, config: LidCountConfig) -> None:
        super().__init__(config)
        self.openings = config.openings

    def evaluate(self, reading: Any, context: Mapping[str, Any], state: Mapping[str, Any] | None,
                 now: datetime) -> Outcome:
        if reading.event != "lid_open":
            return Outcome(state)
        opened = int((state or {}).get("opened", 0)) + 1
        found = [self.finding("open", reading.device_id, reading.time, context)] if opened == self.openings else []
        return Outcome({"opened": opened}, found)

    def sweep(self, now: datetime, world: SweepWorld, state_of: StateOf) -> Verdict:
        verdict = Verdict()
        for d in world.devices:
            if (state_of(d.device_id) or {}).get("opened", 0) >= self.openings:
                verdict.findings.append(self.finding("resolve", d.device_id, now, {"device": {"id": d.device_id}}))
                verdict.states[d.device_id] = None
        return verdict


def test_a_kind_the_engine_has_never_heard_of_runs_end_to_end() -> None:
    config = LidCountConfig.model_validate({"id": "lids", "kind": "lid_count", "incident": {
        "service_code": "container_damaged", "title": "Lid of {device.name} opened again"}})
    rule = config.build({})
    directory = DeviceDirectory([device("D1")])
    engine = RuleEngine(RuleSet((rule,), ()), directory, {})
    lids = [reading(s, event="lid_open") for s in (0, 60, 120)]
    result = engine.evaluate(lids, T0)
    assert [(f.action, f.title) for f in result.findings] == [("open", "Lid of Dev D1 opened again")]
    stored = result.states[("lids", "D1")]
    assert stored is not None and stored["v"] == 1 and stored["s"] == {"opened": 3}
    # restarted from what was stored, the sweep sees the same state
    again = RuleEngine(RuleSet((rule,), ()), directory, {}, [("lids", "D1", stored)])
    swept = again.sweep(T0 + timedelta(hours=1))
    assert [f.action for f in swept.findings] == ["resolve"] and swept.states == {("lids", "D1"): None}
