"""Staff-assist alerts: rules over shelf stays, interactions and zone occupancy.

Each rule of ``[alerts]`` watches its zones once per frame and raises an ``alert`` record when its
condition holds (docs/alerts.md says what each means):

- ``shelf_help``: someone has been at one shelf zone for at least ``linger_s`` and reached into
  it at least ``min_reaches`` times, and nobody is in the rule's ``staff_zone`` (when it names
  one): a shopper who may want help with a product.
- ``long_queue``: a queue zone has held at least ``min_people`` for ``for_s`` without a break.

After an alert the same rule stays quiet in the same zone for ``cooldown_s``; no rule fires in
its ``quiet_hours`` (local time) or when ``[alerts] enabled`` is off. An alert names the rule,
the zone, the reason and the time, under a random short-lived ``alert_id``: never a session
token or anything else that follows a person. :func:`make_test_alert` is the alert an installer asks
for (``cmd/test_alert``) to try the staff's app without a shopper.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from intentcam.analytics.shelf import ShelfStay
from intentcam.config import ALERT_ZONE_KIND, AlertRuleConfig, AlertsConfig, ZoneConfig
from intentcam.records import Record, iso


def in_quiet_hours(wall: float, quiet: str | None, tz: ZoneInfo | None) -> bool:
    """Whether the wall-clock time ``wall`` falls in ``"HH:MM-HH:MM"`` local time (the span
    may run past midnight; the end minute is not quiet)."""
    if not quiet:
        return False
    start, end = (time.fromisoformat(part) for part in quiet.split("-"))
    local = (datetime.fromtimestamp(wall, tz) if tz else datetime.fromtimestamp(wall)).time()
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def zone_for_test_alert(rule: AlertRuleConfig, zones: list[ZoneConfig]) -> str | None:
    """The zone a test alert of ``rule`` names: the first it watches, or ``None`` when there
    is no zone of its kind."""
    kind = ALERT_ZONE_KIND[rule.kind]
    watched = rule.zones or [zone.id for zone in zones if zone.kind == kind]
    return watched[0] if watched else None


def make_test_alert(rule: AlertRuleConfig, zone: str, wall: float) -> Record:
    """An alert of ``rule`` at ``zone`` marked ``test``, saying so in its reason, with none of
    the figures a real one carries: an installer sends it (``cmd/test_alert``) to see it reach
    the staff's app or a Home Assistant automation. The cooldown and quiet hours do not hold
    it back, and it starts no cooldown; the daily report leaves it out."""
    reason = f"a test of rule {rule.id}: nobody needs help"
    return {"type": "alert", "alert_id": secrets.token_hex(4), "rule": rule.id, "kind": rule.kind,
            "zone": zone, "reason": reason, "at": iso(wall), "test": True}  # fmt: skip


@dataclass(frozen=True)
class Watched:
    """What the rules look at in one frame."""

    #: Monotonic frame time (what stays and the cooldowns are measured in) and its wall clock.
    timestamp: float
    wall: float
    stays: list[ShelfStay]
    #: Debounced occupancy and kind of every zone.
    occupancy: dict[str, int]
    kinds: dict[str, str]


@dataclass
class AlertRules:
    """The configured rules and their cooldowns; see the module docstring."""

    config: AlertsConfig
    tz: ZoneInfo | None = None
    _quiet_until: dict[tuple[str, str], float] = field(default_factory=dict)
    _queue_since: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: AlertsConfig, timezone: str | None) -> AlertRules:
        return cls(config, ZoneInfo(timezone) if timezone else None)

    def quiet(self, wall: float) -> list[str]:
        """The ids of the active rules that keep quiet at ``wall`` (their quiet hours)."""
        return [rule.id for rule in self.config.active
                if in_quiet_hours(wall, rule.quiet_hours, self.tz)]  # fmt: skip

    def check(self, watched: Watched) -> list[Record]:
        """The alerts this frame raises."""
        alerts: list[Record] = []
        for rule in self.config.active:
            for zone, reason, details in self._findings(rule, watched):
                key = (rule.id, zone)
                if watched.timestamp < self._quiet_until.get(key, float("-inf")):
                    continue
                if in_quiet_hours(watched.wall, rule.quiet_hours, self.tz):
                    continue
                self._quiet_until[key] = watched.timestamp + rule.cooldown_s
                alerts.append({"type": "alert", "alert_id": secrets.token_hex(4), "rule": rule.id,
                               "kind": rule.kind, "zone": zone, "reason": reason,
                               "at": iso(watched.wall), **details})  # fmt: skip
        return alerts

    def _findings(
        self, rule: AlertRuleConfig, watched: Watched
    ) -> list[tuple[str, str, dict[str, float | int]]]:
        """(zone, reason, figures) for every watched zone where the rule's condition holds."""
        if rule.kind == "shelf_help":
            return self._shelf_help(rule, watched)
        return self._long_queue(rule, watched)

    @staticmethod
    def _shelf_help(
        rule: AlertRuleConfig, watched: Watched
    ) -> list[tuple[str, str, dict[str, float | int]]]:
        if rule.staff_zone is not None and watched.occupancy.get(rule.staff_zone, 0) > 0:
            return []  # staff are at hand
        found: dict[str, tuple[str, str, dict[str, float | int]]] = {}
        for stay in watched.stays:
            lingered = watched.timestamp - stay.since
            if (rule.zones and stay.zone not in rule.zones) or stay.zone in found:
                continue
            if lingered >= rule.linger_s and stay.reaches >= rule.min_reaches:
                nobody = f", nobody in {rule.staff_zone}" if rule.staff_zone else ""
                reason = (f"a shopper has been at {stay.zone} for {lingered:.0f} s and reached "
                          f"{stay.reaches} times{nobody}")  # fmt: skip
                found[stay.zone] = (stay.zone, reason,
                                    {"lingered_s": round(lingered, 1), "reaches": stay.reaches})  # fmt: skip
        return list(found.values())

    def _long_queue(
        self, rule: AlertRuleConfig, watched: Watched
    ) -> list[tuple[str, str, dict[str, float | int]]]:
        zones = rule.zones or [z for z, kind in watched.kinds.items() if kind == "queue"]
        found = []
        for zone in zones:
            people = watched.occupancy.get(zone, 0)
            key = (rule.id, zone)
            if people < rule.min_people:
                self._queue_since.pop(key, None)
                continue
            since = self._queue_since.setdefault(key, watched.timestamp)
            if watched.timestamp - since >= rule.for_s:
                held = watched.timestamp - since
                reason = f"{people} people in {zone}, at least {rule.min_people} for {held:.0f} s"
                found.append((zone, reason, {"people": people, "for_s": round(held, 1)}))
        return found
