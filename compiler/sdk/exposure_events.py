"""What an exposure event says (docs/exposures.md), prepared once per bundle.

Every result of an experiment that enrols the user (a variant: `bucketed`, `override`,
`rollout`) or holds them out (`holdout:<key>`) has an `ExposureTemplate`: everything
its events share, so that the evaluating thread hands over only the template and the
bucketing value, and the event itself is built on the delivery thread.
"""

from __future__ import annotations

import threading
from json.encoder import encode_basestring as encode_text
from typing import Any

from expc.sdk.bundle import compact_json
from expc.sdk.program import PreparedFlag, Program, Result

EVENT_VERSION = 1


class ExposureTemplate:
    """The part of an exposure event that does not depend on the user."""

    __slots__ = (
        "attribute",
        "bit",
        "content_id",
        "dedup",
        "environment",
        "fields",
        "flag",
        "groups",
        "holdouts",
        "line_parts",
        "reason",
        "variant",
    )

    def __init__(
        self,
        program: Program,
        flag: PreparedFlag,
        result: Result,
        holdouts: tuple[str, ...],
        groups: tuple[str, ...],
    ) -> None:
        self.flag = flag.key
        self.variant = result.variant
        self.reason = result.reason
        self.attribute = flag.by
        self.holdouts = holdouts
        self.groups = groups
        self.environment = program.environment
        self.content_id = program.content_id
        # De-duplication is per user, flag and variant: the same text in every bundle,
        # so that a user keeps their window across bundle swaps. The key is this prefix
        # and the bucketing value; lengths make the prefix end unambiguously, and "-"
        # (never a length) marks a held-out user, who has no variant.
        variant = "-" if result.variant is None else f"{len(result.variant)}:{result.variant}"
        self.dedup = f"{len(flag.key)}:{flag.key}{variant}"
        self.bit = bit_of(self.dedup)
        # Prepared by the delivery thread on first use (`event_of`, `line_of`).
        self.fields: dict[str, Any] | None = None
        self.line_parts: tuple[str, str, str] | None = None


# Flag and variant (`ExposureTemplate.dedup`) -> a power of two of its own, the same in
# every bundle this process loads. The sum of an evaluation's bits says which flags and
# variants it exposed in one integer, which the de-duplication window compares with the
# last one (`expc.sdk.exposures`). Grows with the flags and variants ever loaded.
_BITS: dict[str, int] = {}
_BITS_LOCK = threading.Lock()


def bit_of(dedup: str) -> int:
    with _BITS_LOCK:
        if dedup not in _BITS:
            _BITS[dedup] = 1 << len(_BITS)
        return _BITS[dedup]


def templates_for(program: Program) -> dict[Result, ExposureTemplate]:
    """The template of every result that makes an exposure, keyed by the result (shared
    objects, so the lookup is by identity)."""
    kinds = {flag.key: flag.kind for flag in program.flags}
    templates: dict[Result, ExposureTemplate] = {}
    for flag in program.flags:
        if flag.kind != "experiment":
            continue
        holdouts: list[str] = []
        groups: list[str] = []
        for requirement in flag.requires:
            kind = kinds[requirement.flag]
            if kind == "holdout":
                templates[requirement.failed] = ExposureTemplate(
                    program, flag, requirement.failed, tuple(holdouts), tuple(groups)
                )
                holdouts.append(requirement.flag)
            elif kind == "mutex":
                groups.append(requirement.flag)
        # Overrides bypass holdouts and groups (DESIGN §4): none were passed.
        for overridden in (results[0] for results in flag.giving.values()):
            templates[overridden] = ExposureTemplate(program, flag, overridden, (), ())
        reached = [*flag.outcomes, *([flag.rollout] if flag.rollout else [])]
        for result in reached:
            templates[result] = ExposureTemplate(
                program, flag, result, tuple(holdouts), tuple(groups)
            )
    return templates


def event_of(value: str, template: ExposureTemplate, timestamp_ms: int) -> dict[str, Any]:
    """One exposure event as JSON data (docs/exposures.md): a new dict each time, so that
    a sink may keep or change it; `holdouts` and `groups` are tuples (JSON arrays),
    shared between events and so immutable."""
    fields = template.fields
    if fields is None:
        fields = template.fields = {
            "version": EVENT_VERSION,
            "timestamp": 0,
            "flag": template.flag,
            "variant": template.variant,
            "reason": template.reason,
            "bucketing_attribute": template.attribute,
            "bucketing_value": "",
            "holdouts": template.holdouts,
            "groups": template.groups,
            "environment": template.environment,
            "content_id": template.content_id,
        }
    # A copy of the prepared dict and two stores: a third of building it anew.
    event = fields.copy()
    event["timestamp"] = timestamp_ms
    event["bucketing_value"] = value
    return event


def json_line(event: Any) -> str:
    """An event as one line of compact JSON, keys sorted, non-ASCII as UTF-8."""
    return compact_json(event) + "\n"


def line_of(value: str, template: ExposureTemplate, timestamp_ms: int) -> str:
    """`json_line(event_of(value, template, timestamp_ms))`, written from text prepared
    once per template: only the bucketing value is encoded per event."""
    parts = template.line_parts
    if parts is None:
        parts = template.line_parts = _line_parts(template)
    head, middle, tail = parts
    return f"{head}{encode_text(value)}{middle}{timestamp_ms}{tail}"


def _line_parts(template: ExposureTemplate) -> tuple[str, str, str]:
    """`json_line` of an event of `template`, cut around its two values that vary: the
    text before the bucketing value, between it and the timestamp, and after. The keys
    are written in sorted order, as `json_line` writes them (a test holds them equal)."""
    head = f'{{"bucketing_attribute":{compact_json(template.attribute)},"bucketing_value":'
    middle = (
        f',"content_id":{compact_json(template.content_id)}'
        f',"environment":{compact_json(template.environment)}'
        f',"flag":{compact_json(template.flag)}'
        f',"groups":{compact_json(list(template.groups))}'
        f',"holdouts":{compact_json(list(template.holdouts))}'
        f',"reason":{compact_json(template.reason)}'
        ',"timestamp":'
    )
    tail = f',"variant":{compact_json(template.variant)},"version":{EVENT_VERSION}}}\n'
    return head, middle, tail
