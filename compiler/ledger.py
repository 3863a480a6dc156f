"""`generated/ledger.json`: append-only memory of what releases contained (DESIGN §6).

It remembers every key and salt ever released and when each group or holdout went
live (first had a member that ran), by the content id of that release. `expc
compile` appends to it; `expc check` reads the previous side's copy, so that facts
survive deletions, and fails a change that edits past entries.
"""

from __future__ import annotations

from typing import Any

from compiler.bundle_types import Bundle
from compiler.views import RAN, views

LEDGER_VERSION = 1


def empty() -> dict[str, Any]:
    return {"version": LEDGER_VERSION, "released": {}, "live": {}}


def updated(ledger: dict[str, Any], bundle: Bundle) -> dict[str, Any]:
    """The ledger after releasing `bundle`: old entries untouched, new ones added."""
    result = empty()
    result["released"] = dict(ledger.get("released", {}))
    result["live"] = dict(ledger.get("live", {}))
    release = bundle["release"]["content_id"]
    seen = views(bundle)
    for key, view in sorted(seen.items()):
        result["released"].setdefault(
            key, {"kind": view.kind, "salt": view.salt, "first_release": release}
        )
        if view.kind == "experiment" and view.state in RAN:
            for container in [*view.groups, *view.holdouts]:
                result["live"].setdefault(container, release)
    return result


def edited_entries(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Past entries the current ledger changed or dropped."""
    problems = []
    for section in ("released", "live"):
        for key, entry in sorted(previous.get(section, {}).items()):
            if current.get(section, {}).get(key) != entry:
                problems.append(f"{section}.{key}")
    return problems


def released_salts(ledger: dict[str, Any]) -> dict[str, str]:
    return {
        entry["salt"]: key for key, entry in ledger.get("released", {}).items() if "salt" in entry
    }
