"""Three-way merge of a meeting's synced content: what the CRM and Google each changed since they last agreed.

How concurrent edits merge (two sentences for the README's CRM contract, once both directions call the merge): when
a meeting was edited both in the CRM and in Google since the two last agreed, every field that only one side changed
(title, description, location, start and end, reminders, recurrence, visibility, transparency, attachments, ...)
keeps that side's edit, and guests merge one by one, so one side adding a guest while the other changes another
guest's `optional` flag keeps both (a guest's `response_status` is always Google's, and `start` and `end` never come
from different sides). Only a field or a guest that both sides changed to different values goes to the conflict rule
(last write wins), and the decision in `sync.decisions` names the fields merged (`fields_merged`) and the fields
decided (`fields_decided`).

Why a base of digests: the merge needs to know *whether* a side changed a field since the last agreement, not what the
field held (both current values are at hand), so `sync.base` keeps one 8-byte blake2b digest per field and one per
guest, keyed by lower-cased e-mail, instead of a copy of the content. A digest skips attributes at their default, so
adding an attribute with a default to a model keeps every stored base valid.

Rules the merge keeps, and why:
- `meta` is not merged: it is CRM-owned and never taken from Google. `deleted` is not merged: a deletion is the
  conflict rule's (a Google deletion wins over any CRM edit).
- `start` and `end` never come from different sides, since a mix could end a meeting before it starts: when one side
  changed one and the other side the other (or one of them conflicts beside a one-sided change of the other), both
  go to the conflict rule, whose winner brings its own pair.
- A guest's answer (`response_status`) and Google's own flags (`organizer`, `is_self`) are the guest's and Google's,
  never edits to merge: they are left out of the guest's digest and always taken from Google's copy of the guest.
  One exception: the user's own answer (the guest entry Google marks `is_self`) is theirs to change from the CRM (an
  RSVP), so it has its own base digest (`SyncBase.own_answer`): changed in the CRM only, the CRM's answer is kept
  (`OWN_ANSWER` among `fields_from_crm`); otherwise Google's copy holds the answer, as for every other guest.
  Guest order is not content: the merged list follows Google's order, then guests only the CRM has.
- No base (events synced before bases were stored), or a base without a field added since: every field the two sides
  hold differently conflicts, which is plain last-write-wins.

Pure: no I/O, no clock. `three_way_merge` classifies; `MergeResult.merged(winner)` builds the event for either winner of
the conflicting fields, so the caller applies the conflict rule without re-deriving anything.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from shared.models import CONTENT_FIELDS, Attendee, CrmEvent, SyncBase

Side = Literal["crm", "google"]

ATTENDEES = "attendees"
# Content fields the merge leaves alone (see the module docstring); every other content field merges, including
# fields added to CONTENT_FIELDS later.
NOT_MERGED: frozenset[str] = frozenset({"meta", "deleted"})
MERGED_FIELDS: tuple[str, ...] = tuple(name for name in CONTENT_FIELDS if name not in NOT_MERGED)
# Fields whose values must come from one side together when taking them from different sides could be invalid.
COUPLED_FIELDS: tuple[frozenset[str], ...] = (frozenset({"start", "end"}),)
# Attendee attributes Google owns: the guest's answer and Google's flags. Never merged, always Google's.
GOOGLE_OWNED_ATTENDEE_FIELDS: frozenset[str] = frozenset({"response_status", "organizer", "is_self"})
DIGEST_BYTES = 8
OWN_ANSWER = "attendees[self].response_status"  # the user's own answer, as a MergeResult / decision names it

_WHOLE_FIELDS: tuple[str, ...] = tuple(name for name in MERGED_FIELDS if name != ATTENDEES)


class _Unknown:
    """A base value that is not known (no base, or a field added since it was stored): equal to nothing."""


_UNKNOWN = _Unknown()


def attendee_key(email: str) -> str:
    """The key a guest merges by: e-mail addresses are case-insensitive in practice, and Google may re-case them."""
    return email.lower()


def attendee_field(key: str) -> str:
    """The name a guest goes by in a MergeResult and a decision record, e.g. `attendees[ana@example.com]`."""
    return f"{ATTENDEES}[{key}]"


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw = hashlib.blake2b(canonical.encode(), digest_size=DIGEST_BYTES).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _field_digests(event: CrmEvent) -> dict[str, str]:
    """One digest per whole field; a field at its default digests as `{}`, any other value as `{"v": value}`.
    Date-times digest as instants: Google re-spells an offset (`Z`, `+00:00`, the calendar's own) at will."""
    from shared.gcal.wire import date_times_as_instants

    dumped = event.model_dump(mode="json", include=set(_WHOLE_FIELDS), exclude_defaults=True)
    date_times_as_instants(dumped)
    return {name: _digest({"v": dumped[name]} if name in dumped else {}) for name in _WHOLE_FIELDS}


def _guests(event: CrmEvent) -> dict[str, list[Attendee]]:
    """Guests by key, in the event's order (a key the CRM listed twice keeps both entries together)."""
    guests: dict[str, list[Attendee]] = {}
    for attendee in event.attendees:
        guests.setdefault(attendee_key(attendee.email), []).append(attendee)
    return guests


def _guest_digest(entries: list[Attendee]) -> str:
    excluded = {"email", *GOOGLE_OWNED_ATTENDEE_FIELDS}
    return _digest([a.model_dump(mode="json", exclude=excluded, exclude_defaults=True) for a in entries])


def _guest_digests(event: CrmEvent) -> dict[str, str]:
    return {key: _guest_digest(entries) for key, entries in _guests(event).items()}


def _own_answer(event: CrmEvent) -> str | None:
    """The user's own answer: the response of the guest entry Google marks as the calendar's owner."""
    return next((a.response_status for a in event.attendees if a.is_self), None)


def base_of(event: CrmEvent) -> SyncBase:
    """The base to store once both sides hold this event's content (after a successful push or pull).

    Compute it from the content both sides then hold: the event as pushed, or as pulled.
    """
    own = _own_answer(event)
    return SyncBase(
        fields=_field_digests(event),
        attendees=_guest_digests(event),
        own_answer=None if own is None else _digest({"v": own}),
    )


_Verdict = Literal["same", "agreed", "crm", "google", "conflict"]


def _verdict(base: object, crm: object, google: object) -> _Verdict:
    if crm == google:
        return "agreed" if base is not _UNKNOWN and base != crm else "same"
    if base == google:
        return "crm"
    if base == crm:
        return "google"
    return "conflict"


@dataclass(frozen=True)
class MergeResult:
    """How each synced field (and guest) of one event merges. Field names are `MERGED_FIELDS` and `attendee_field`s.

    - fields_from_crm / fields_from_google: changed on that side only since the base; taken from it.
    - fields_conflicting: changed on both sides to different values (or no base to tell); the conflict rule's.
    - fields_agreed: changed on both sides to the same value; nothing to decide.
    A field in none of these holds the same value on both sides. Google-owned guest attributes are never listed.
    """

    crm: CrmEvent
    google: CrmEvent
    fields_from_crm: tuple[str, ...]
    fields_from_google: tuple[str, ...]
    fields_conflicting: tuple[str, ...]
    fields_agreed: tuple[str, ...]

    @property
    def fields_merged(self) -> tuple[str, ...]:
        """Taken from one side without a decision (the decision record's `fields_merged`)."""
        return self.fields_from_crm + self.fields_from_google

    @property
    def has_conflict(self) -> bool:
        """Whether the conflict rule has anything to decide (its decision records `fields_decided`)."""
        return bool(self.fields_conflicting)

    def source(self, name: str, winner: Side) -> Side:
        """The side a field (or guest) comes from when `winner` wins the conflicting ones."""
        if name in self.fields_conflicting:
            return winner
        if name in self.fields_from_google:
            return "google"
        return "crm"  # changed in the CRM only, or equal on both sides

    def merged(self, winner: Side) -> CrmEvent:
        """The merged event when `winner` wins the conflicting fields.

        Only MERGED_FIELDS are merged: everything else (`meta`, `deleted`, ids, the Google link, `sync`, the CRM's
        times) is the CRM event's as it is; the caller records the link, the decision and the new base.
        """
        sides = {"crm": self.crm, "google": self.google}
        update: dict[str, Any] = {name: getattr(sides[self.source(name, winner)], name) for name in _WHOLE_FIELDS}
        update[ATTENDEES] = self._merged_guests(winner)
        return self.crm.model_copy(update=copy.deepcopy(update))

    def _merged_guests(self, winner: Side) -> list[Attendee]:
        crm_guests, google_guests = _guests(self.crm), _guests(self.google)
        order = [*google_guests, *(key for key in crm_guests if key not in google_guests)]
        merged: list[Attendee] = []
        for key in order:
            if self.source(attendee_field(key), winner) == "google":
                merged.extend(google_guests.get(key, []))
                continue
            entries = crm_guests.get(key, [])
            answers = google_guests.get(key)
            if answers:
                # The guest's answer and Google's flags stay Google's whichever side the guest's entry comes from.
                entries = [
                    entry.model_copy(
                        update={
                            name: getattr(answers[min(i, len(answers) - 1)], name)
                            for name in GOOGLE_OWNED_ATTENDEE_FIELDS
                        }
                    )
                    for i, entry in enumerate(entries)
                ]
            merged.extend(entries)
        if OWN_ANSWER in self.fields_from_crm:
            # The user answered in the CRM only since the base: their answer, on their own entry.
            answer = _own_answer(self.crm)
            merged = [a.model_copy(update={"response_status": answer}) if a.is_self else a for a in merged]
        return merged


def _coupled(verdicts: dict[str, _Verdict], crm: dict[str, str], google: dict[str, str]) -> dict[str, _Verdict]:
    """Coupled fields that would mix sides (one from each, or one-sided beside a conflict) conflict together."""
    for group in COUPLED_FIELDS:
        names = [name for name in _WHOLE_FIELDS if name in group]
        one_sided = {verdicts[name] for name in names} & {"crm", "google"}
        conflicting = any(verdicts[name] == "conflict" for name in names)
        if len(one_sided) == 2 or (one_sided and conflicting):
            for name in names:
                if crm[name] != google[name]:
                    verdicts[name] = "conflict"
    return verdicts


def three_way_merge(base: SyncBase | None, crm: CrmEvent, google: CrmEvent) -> MergeResult:
    """Classify every synced field and guest of one event by who changed it since `base` (None: no base known).

    `crm` is the CRM's event; `google` is Google's current version of it as a CRM event (its content mapped in).
    """
    crm_fields, google_fields = _field_digests(crm), _field_digests(google)
    verdicts: dict[str, _Verdict] = {
        name: _verdict(base.fields.get(name, _UNKNOWN) if base else _UNKNOWN, crm_fields[name], google_fields[name])
        for name in _WHOLE_FIELDS
    }
    verdicts = _coupled(verdicts, crm_fields, google_fields)
    crm_guests, google_guests = _guest_digests(crm), _guest_digests(google)
    for key in sorted({*crm_guests, *google_guests, *(base.attendees if base else ())}):
        base_guest = base.attendees.get(key) if base else _UNKNOWN  # None: not a guest at the base
        verdicts[attendee_field(key)] = _verdict(base_guest, crm_guests.get(key), google_guests.get(key))
    own_crm, own_google = _own_answer(crm), _own_answer(google)
    if own_crm is not None and own_google is not None and own_crm != own_google:
        base_own = base.own_answer if base is not None and base.own_answer is not None else _UNKNOWN
        if _verdict(base_own, _digest({"v": own_crm}), _digest({"v": own_google})) == "crm":
            verdicts[OWN_ANSWER] = "crm"  # anything else: Google's copy holds the answer, as for any guest
    by_verdict: dict[_Verdict, tuple[str, ...]] = {
        verdict: tuple(name for name, found in verdicts.items() if found == verdict)
        for verdict in ("crm", "google", "conflict", "agreed")
    }
    return MergeResult(
        crm=crm,
        google=google,
        fields_from_crm=by_verdict["crm"],
        fields_from_google=by_verdict["google"],
        fields_conflicting=by_verdict["conflict"],
        fields_agreed=by_verdict["agreed"],
    )
