"""Alert rules: a threshold per telemetry field, checked on every ingested reading.

A rule fires when a well's reading crosses its threshold, and again only after a reading
has come back inside it: a pump that vibrates for an hour raises one alert, not one per
reading. (That state is per instance; with several instances behind a load balancer a
well's readings should be routed to one of them, as the ingest path already is per device.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    field: str
    above: bool  # True: fires over the threshold; False: under it
    threshold: float
    type: str
    severity: str
    message: str

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.above else value < self.threshold


# The seed's example alert is high_vibration (critical over 4.0); the others follow ESP
# practice: a hot or overloaded motor, and an intake pressure low enough to starve the pump.
DEFAULT_RULES = (
    Rule("vibration", True, 4.0, "high_vibration", "critical", "Vibration exceeds threshold"),
    Rule("motor_temp", True, 120.0, "high_motor_temp", "critical",
         "Motor temperature exceeds threshold"),
    Rule("motor_current", True, 80.0, "high_motor_current", "warning",
         "Motor current exceeds threshold"),
    Rule("pip", False, 500.0, "low_intake_pressure", "warning",
         "Pump intake pressure below threshold"),
)


class AlertRules:
    def __init__(self, rules: tuple[Rule, ...] = DEFAULT_RULES) -> None:
        self.rules = rules
        self._active: set[tuple[str, str]] = set()  # (well_id, alert type) now breached
        self._lock = threading.Lock()

    def check(self, well_id: str, values: dict[str, float]) -> list[dict]:
        """The alerts this reading raises, in the seed's ``alert`` shape."""
        raised = []
        with self._lock:
            for rule in self.rules:
                value = values.get(rule.field)
                if value is None:
                    continue
                key = (well_id, rule.type)
                if not rule.breached(value):
                    self._active.discard(key)
                elif key not in self._active:
                    self._active.add(key)
                    raised.append({"type": rule.type, "severity": rule.severity,
                                   "message": rule.message, "value": value,
                                   "threshold": rule.threshold})
        return raised
