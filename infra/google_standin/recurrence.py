"""A small RFC 5545 recurrence expander (RRULE/EXRULE/RDATE/EXDATE) for the stand-in.

Supported: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY, INTERVAL, COUNT, UNTIL, BYDAY (with ordinals for MONTHLY/YEARLY),
BYMONTHDAY, BYMONTH, WKST (weeks start Monday). DTSTART always counts as the first occurrence, as Google shows it.
Wall-clock times are expanded in the event's time zone (zoneinfo), so DST shifts keep the local time.
"""

from __future__ import annotations

import calendar as pycalendar
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}
FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
MAX_PERIODS = 200_000


class RecurrenceError(ValueError):
    """The recurrence lines are malformed or use something this expander does not support."""


@dataclass
class Rule:
    freq: str
    interval: int = 1
    count: int | None = None
    until: datetime | date | None = None
    byday: list[tuple[int | None, int]] = field(default_factory=list)
    bymonthday: list[int] = field(default_factory=list)
    bymonth: list[int] = field(default_factory=list)


def _parse_stamp(text: str, tz: ZoneInfo | None, is_date: bool = False) -> datetime | date:
    text = text.strip()
    if is_date or re.fullmatch(r"\d{8}", text):
        return datetime.strptime(text, "%Y%m%d").date()
    if text.endswith("Z"):
        return datetime.strptime(text[:-1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    naive = datetime.strptime(text, "%Y%m%dT%H%M%S")
    return naive.replace(tzinfo=tz or UTC)


def parse_rule(text: str, tz: ZoneInfo | None) -> Rule:
    parts: dict[str, str] = {}
    for piece in text.split(";"):
        if "=" not in piece:
            raise RecurrenceError(f"malformed rule part {piece!r}")
        key, value = piece.split("=", 1)
        parts[key.upper()] = value.upper()
    freq = parts.pop("FREQ", None)
    if freq not in FREQS:
        raise RecurrenceError(f"unsupported FREQ {freq!r}")
    rule = Rule(freq=freq)
    try:
        if "INTERVAL" in parts:
            rule.interval = int(parts.pop("INTERVAL"))
            if rule.interval < 1:
                raise RecurrenceError("INTERVAL must be positive")
        if "COUNT" in parts:
            rule.count = int(parts.pop("COUNT"))
        if "UNTIL" in parts:
            rule.until = _parse_stamp(parts.pop("UNTIL"), tz)
        if "BYDAY" in parts:
            for token in parts.pop("BYDAY").split(","):
                match = re.fullmatch(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)", token)
                if not match:
                    raise RecurrenceError(f"bad BYDAY {token!r}")
                rule.byday.append((int(match.group(1)) if match.group(1) else None, WEEKDAYS[match.group(2)]))
        if "BYMONTHDAY" in parts:
            rule.bymonthday = [int(v) for v in parts.pop("BYMONTHDAY").split(",")]
        if "BYMONTH" in parts:
            rule.bymonth = [int(v) for v in parts.pop("BYMONTH").split(",")]
    except ValueError as error:
        if isinstance(error, RecurrenceError):
            raise
        raise RecurrenceError(str(error)) from error
    parts.pop("WKST", None)
    if parts:
        raise RecurrenceError(f"unsupported rule parts {sorted(parts)}")
    if rule.count is not None and rule.until is not None:
        raise RecurrenceError("COUNT and UNTIL are mutually exclusive")
    return rule


def _month_days(year: int, month: int, rule: Rule, default_day: int) -> list[int]:
    last = pycalendar.monthrange(year, month)[1]
    days: set[int] = set()
    if rule.byday:
        for ordinal, weekday in rule.byday:
            matching = [d for d in range(1, last + 1) if date(year, month, d).weekday() == weekday]
            if ordinal is None:
                days.update(matching)
            elif 0 < ordinal <= len(matching):
                days.add(matching[ordinal - 1])
            elif ordinal < 0 and -ordinal <= len(matching):
                days.add(matching[ordinal])
    if rule.bymonthday:
        by_month_day = {d if d > 0 else last + 1 + d for d in rule.bymonthday}
        days = (days & by_month_day) if rule.byday else by_month_day
    if not rule.byday and not rule.bymonthday:
        days = {default_day}
    return sorted(d for d in days if 1 <= d <= last)


def _period_dates(rule: Rule, start: date, index: int) -> list[date]:
    """Candidate dates of the index-th period (day/week/month/year) of the rule."""
    step = index * rule.interval
    if rule.freq == "DAILY":
        return [start + timedelta(days=step)]
    if rule.freq == "WEEKLY":
        week_start = start - timedelta(days=start.weekday()) + timedelta(weeks=step)
        weekdays = sorted({wd for _, wd in rule.byday}) if rule.byday else [start.weekday()]
        return [week_start + timedelta(days=wd) for wd in weekdays]
    if rule.freq == "MONTHLY":
        month_index = start.month - 1 + step
        year, month = start.year + month_index // 12, month_index % 12 + 1
        if rule.bymonth and month not in rule.bymonth:
            return []
        return [date(year, month, d) for d in _month_days(year, month, rule, start.day)]
    year = start.year + step
    months = rule.bymonth or [start.month]
    return [date(year, m, d) for m in months for d in _month_days(year, m, rule, start.day)]


def _to_instant(value: datetime | date, tz: ZoneInfo | None) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time(0), tzinfo=tz or UTC).astimezone(UTC)


def _expand_rule(rule: Rule, start: datetime | date, tz: ZoneInfo | None, window_end: datetime,
                 limit: int) -> list[datetime | date]:
    all_day = not isinstance(start, datetime)
    start_date = start if all_day else start.date()
    wall = None if all_day else start.timetz().replace(tzinfo=None)
    results: list[datetime | date] = []
    emitted = 0
    for index in range(MAX_PERIODS):
        candidates = _period_dates(rule, start_date, index)
        if not candidates and rule.freq in ("MONTHLY", "YEARLY") and index > 12 * 400:
            break
        for day in sorted(candidates):
            if day < start_date:
                continue
            occurrence: datetime | date = day if all_day else datetime.combine(day, wall, tzinfo=tz)
            if occurrence == start:
                continue  # DTSTART is emitted by the caller
            if rule.until is not None:
                if isinstance(rule.until, datetime):
                    if _to_instant(occurrence, tz) > rule.until:
                        return results
                elif (occurrence if all_day else occurrence.date()) > rule.until:
                    return results
            if rule.count is not None and emitted + 1 >= rule.count:
                return results
            if _to_instant(occurrence, tz) >= window_end or len(results) >= limit:
                return results
            results.append(occurrence)
            emitted += 1
        period_start = candidates[0] if candidates else None
        if period_start and _to_instant(period_start, tz) >= window_end + timedelta(days=400):
            break
    return results


def _parse_date_list(line: str, tz: ZoneInfo | None) -> list[datetime | date]:
    head, _, values = line.partition(":")
    params = dict(p.split("=", 1) for p in head.split(";")[1:] if "=" in p)
    value_tz = ZoneInfo(params["TZID"]) if "TZID" in params else tz
    is_date = params.get("VALUE", "").upper() == "DATE"
    return [_parse_stamp(v, value_tz, is_date) for v in values.split(",") if v.strip()]


def validate(lines: list[str], tz: ZoneInfo | None) -> None:
    """Raise RecurrenceError when any line is not understood."""
    for line in lines:
        upper = line.upper()
        if upper.startswith(("RRULE:", "EXRULE:")):
            parse_rule(line.split(":", 1)[1], tz)
        elif upper.startswith(("RDATE", "EXDATE")):
            try:
                _parse_date_list(line, tz)
            except (ValueError, KeyError) as error:
                raise RecurrenceError(str(error)) from error
        else:
            raise RecurrenceError(f"unsupported recurrence line {line!r}")


def expand(start: datetime | date, tz: ZoneInfo | None, lines: list[str], window_end: datetime,
           limit: int = 5000) -> list[datetime | date]:
    """Occurrence starts (local aware datetimes, or dates for all-day) beginning before window_end, sorted.

    At most `limit` occurrences: unbounded rules are cut at window_end and at the limit.
    """
    if isinstance(start, datetime) and tz is not None:
        start = start.astimezone(tz)
    occurrences: dict[datetime, datetime | date] = {}
    if _to_instant(start, tz) < window_end:
        occurrences[_to_instant(start, tz)] = start
    excluded: set[datetime] = set()
    excluded_dates: set[date] = set()
    for line in lines:
        upper = line.upper()
        if upper.startswith("RRULE:"):
            for value in _expand_rule(parse_rule(line.split(":", 1)[1], tz), start, tz, window_end, limit):
                occurrences[_to_instant(value, tz)] = value
        elif upper.startswith("EXRULE:"):
            for value in _expand_rule(parse_rule(line.split(":", 1)[1], tz), start, tz, window_end, limit):
                excluded.add(_to_instant(value, tz))
        elif upper.startswith("RDATE"):
            for value in _parse_date_list(line, tz):
                if isinstance(start, datetime) and not isinstance(value, datetime):
                    value = datetime.combine(value, start.timetz())
                elif not isinstance(start, datetime) and isinstance(value, datetime):
                    value = value.date()
                if _to_instant(value, tz) < window_end:
                    occurrences[_to_instant(value, tz)] = value.astimezone(tz) if isinstance(value, datetime) \
                        and tz else value
        elif upper.startswith("EXDATE"):
            for value in _parse_date_list(line, tz):
                if isinstance(value, datetime):
                    excluded.add(_to_instant(value, tz))
                else:
                    excluded_dates.add(value)
    result = []
    for instant in sorted(occurrences):
        value = occurrences[instant]
        local_date = value if not isinstance(value, datetime) else value.date()
        if instant in excluded or local_date in excluded_dates:
            continue
        result.append(value)
        if len(result) >= limit:
            break
    return result
