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

The daemon keeps the cooldowns running in ``<state_dir>/alert-cooldowns.json``
(:class:`SavedCooldowns`), so that a restart (an update, a crash, a power cut) does not alert the
staff twice about one zone within a rule's ``cooldown_s``: what the staff get does not depend on
whether the daemon restarted.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from intentcam.analytics.shelf import ShelfStay
from intentcam.config import ALERT_ZONE_KIND, AlertRuleConfig, AlertsConfig, ZoneConfig
from intentcam.durable import RewrittenFile
from intentcam.records import Record, iso, people_in_words, wall_of

log = logging.getLogger(__name__)
COOLDOWNS_FILE = "alert-cooldowns.json"
#: (rule id, zone id): what a cooldown is kept by.
CooldownKey = tuple[str, str]


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


class SavedCooldowns:
    """The cooldowns a run leaves for the next: ``<state_dir>/alert-cooldowns.json``, the
    wall-clock time each (rule, zone) may alert again. Written when an alert starts a cooldown
    (rare: at most once per rule, zone and ``cooldown_s``), read once at the first frame."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / COOLDOWNS_FILE
        self._file = RewrittenFile(self.path, "the alert cooldowns", log)

    def load(self, wall: float) -> dict[CooldownKey, float]:
        """The cooldowns still running at ``wall``: an unreadable file is logged and read as
        none (the staff may then get one alert too many, never one too few)."""
        if not self.path.exists():
            return {}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))["quiet_until"]
            ends = {(str(item["rule"]), str(item["zone"])): wall_of(item["until"])
                    for item in saved}  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("alert cooldowns %s unreadable (%s): starting without them",
                        self.path, exc)  # fmt: skip
            return {}
        return {key: end for key, end in ends.items() if end > wall}

    def save(self, ends: dict[CooldownKey, float]) -> None:
        """Replace the file with these wall-clock ends; a storage fault is logged once (the
        alerts go on, the next restart may repeat one)."""
        saved = [{"rule": rule, "zone": zone, "until": iso(end)}
                 for (rule, zone), end in sorted(ends.items())]  # fmt: skip
        self._file.write(json.dumps({"quiet_until": saved}, indent=1).encode())


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
    """The configured rules and their cooldowns; see the module docstring.

    ``saved``: where the cooldowns outlive the run (the daemon's); ``None`` keeps them in
    memory only (a walk test, a benchmark: their alerts reach no staff).
    """

    config: AlertsConfig
    tz: ZoneInfo | None = None
    saved: SavedCooldowns | None = None
    #: Monotonic frame time until which each (rule, zone) keeps quiet.
    _quiet_until: dict[CooldownKey, float] = field(default_factory=dict)
    _queue_since: dict[CooldownKey, float] = field(default_factory=dict)
    _restored: bool = False

    @classmethod
    def from_config(
        cls, config: AlertsConfig, timezone: str | None, saved: SavedCooldowns | None = None
    ) -> AlertRules:
        return cls(config, ZoneInfo(timezone) if timezone else None, saved)

    def quiet(self, wall: float) -> list[str]:
        """The ids of the active rules that keep quiet at ``wall`` (their quiet hours)."""
        return [rule.id for rule in self.config.active
                if in_quiet_hours(wall, rule.quiet_hours, self.tz)]  # fmt: skip

    def check(self, watched: Watched) -> list[Record]:
        """The alerts this frame raises."""
        if not self._restored:
            self._restore(watched)
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
        if alerts and self.saved is not None:
            self.saved.save({key: watched.wall + until - watched.timestamp
                             for key, until in self._quiet_until.items()
                             if until > watched.timestamp})  # fmt: skip
        return alerts

    def _restore(self, watched: Watched) -> None:
        """Take up the cooldowns the last run left, on this run's frame clock; none outlasts
        its rule's ``cooldown_s`` as configured now (it may have been shortened since)."""
        self._restored = True
        if self.saved is None:
            return
        cooldowns = {rule.id: rule.cooldown_s for rule in self.config.active}
        for (rule, zone), end in self.saved.load(watched.wall).items():
            if rule in cooldowns:
                left = min(end - watched.wall, cooldowns[rule])
                self._quiet_until[(rule, zone)] = watched.timestamp + left
                log.info("alert rule %s keeps quiet at %s for %.0f s more (cooldown of the "
                         "last run)", rule, zone, left)  # fmt: skip

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
                reached = {0: " without reaching in", 1: " and reached once"}.get(
                    stay.reaches, f" and reached {stay.reaches} times"
                )
                reason = f"a shopper has been at {stay.zone} for {lingered:.0f} s{reached}{nobody}"
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
                reason = f"{people_in_words(people)} in {zone}, at least {rule.min_people} for {held:.0f} s"
                found.append((zone, reason, {"people": people, "for_s": round(held, 1)}))
        return found
