"""Accepting a blocked change knowingly (DESIGN §6): fingerprints and matching.

A fingerprint hashes the rule, the object, the normalised before/after values of a
change and the environments it holds in, so an acknowledgement fits one exact change
and goes stale when the change is edited. Matching is a pure function: which findings
are accepted, and which acknowledgements accept nothing (rule C125 reports those).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from expc.check.rules import Change, Raised
from expc.diagnostics import printable
from expc.pipeline.snapshot import Snapshot


def fingerprint(code: str, key: str, change: Change, environments: Sequence[str] = ()) -> str:
    """Covers the environments a finding holds in (none without environments, so that
    acknowledgements written before environments keep their fingerprints)."""
    material_of: list[object] = [code, key, change.before, change.after]
    if environments:
        material_of.append(list(environments))
    material = json.dumps(material_of, sort_keys=True, default=str)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Declared:
    """An acknowledgement written in a definition's file (or in project.yaml)."""

    owner: str
    rule: str
    fingerprint: str
    reason: str


def declared_in(snapshot: Snapshot) -> list[Declared]:
    return [
        Declared(key, a.rule, a.fingerprint, a.reason)
        for key, loaded in sorted(snapshot.objects.items())
        for a in loaded.definition.acknowledge
    ]


@dataclass(frozen=True)
class Matching:
    accepted: dict[int, str]  # index into the raised changes -> the reason given
    unused: tuple[Declared, ...]


def match(raised: Sequence[Raised], declared: Sequence[Declared]) -> Matching:
    """Which raised changes an acknowledgement accepts, and which acknowledgements
    accept nothing. An acknowledgement goes into the object's file, the file that holds
    the change (a group's, for a slot), or project.yaml."""
    accepted: dict[int, str] = {}
    used: set[int] = set()
    for position, (code, key, change, environments) in enumerate(raised):
        printed = fingerprint(code.id, key, change, environments)
        for index, ack in enumerate(declared):
            if (
                ack.rule in (code.id, code.name)
                and ack.fingerprint == printed
                and ack.owner in (key, *change.where, "project")
            ):
                accepted[position] = printable(ack.reason)
                used.add(index)
    unused = tuple(ack for index, ack in enumerate(declared) if index not in used)
    return Matching(accepted, unused)
