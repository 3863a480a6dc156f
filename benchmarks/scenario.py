"""The standard evaluation scenario of the evaluator benchmark, as a bundle.

One mutex group of 4 equal slots, 8 experiments (2 per slot, both gated on the same
slot) with 2 variants each, everything under a 5% holdout: 10 flags per user.
Definitions cannot put two experiments in one slot, so the bundle is written
directly; it is a valid bundle all the same (content id included). The same scenario
is also written in Eppo's flag configuration, for the comparison in the benchmark.
"""

from __future__ import annotations

import json
from typing import Any

from expc.outputs.bundle_types import SCHEMA_VERSION, Flag
from expc.sdk.bucketing import POINTS, basis_points, boundary, ranges
from expc.sdk.evaluate import content_id_of

HOLDOUT = "global-holdout"
GROUP = "main-group"


def _flag(
    key: str, kind: str, variants: list[tuple[str, tuple[int, int]]], requires: list[Any]
) -> Flag:
    return {
        "key": key,
        "kind": kind,  # type: ignore[typeddict-item]
        "serving": True,
        "bucketing": {"by": "user_id", "salt": key},
        "overrides": {"users": {}, "cohorts": []},
        "requires": requires,
        "targeting": None,
        "rollout": None,
        "traffic": 100,
        "variants": [{"key": name, "range": [start, end]} for name, (start, end) in variants],
    }


def scenario_bundle() -> dict[str, Any]:
    held = boundary(basis_points(5))
    flags = [
        _flag(HOLDOUT, "holdout", [("holdout", (0, held)), ("on", (held, POINTS))], []),
        _flag(GROUP, "mutex", [(f"slot-{i + 1}", r) for i, r in enumerate(ranges([2500] * 4))], []),
    ]
    for index in range(8):
        slot = f"slot-{index // 2 + 1}"
        requires = [
            {"flag": HOLDOUT, "variants": ["on"], "reason": f"holdout:{HOLDOUT}"},
            {"flag": GROUP, "variants": [slot], "reason": f"mutex:{GROUP}"},
        ]
        variants = list(zip(["control", "treatment"], ranges([5000, 5000]), strict=True))
        flags.append(_flag(f"experiment-{index + 1}", "experiment", variants, requires))
    bundle: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "flags": flags}
    bundle["release"] = {"content_id": content_id_of(bundle), "compiler_version": "bench"}
    return bundle


def scenario_eppo_configuration(log: bool) -> bytes:
    """The same scenario in the flag configuration of Eppo's SDKs, for comparison: every
    flag one allocation whose splits need all their shards (holdout side, group slot,
    variant half), so Eppo does the same draws per user. Eppo hashes md5 into 10,000
    shards: the users land elsewhere, the work is the same. `log` sets `doLog`, so that
    Eppo builds an assignment event per evaluation, as expc does with exposures on."""
    shards = 10_000

    def shard(salt: str, start: int, end: int) -> dict[str, Any]:
        return {"salt": salt, "ranges": [{"start": start, "end": end}]}

    def flag(key: str, splits: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
        return {
            "key": key,
            "enabled": True,
            "variationType": "STRING",
            "variations": {name: {"key": name, "value": name} for name, _ in splits},
            "allocations": [
                {
                    "key": "everyone",
                    "rules": [],
                    "doLog": log,
                    "splits": [{"variationKey": n, "shards": s} for n, s in splits],
                }
            ],
            "totalShards": shards,
        }

    held = shards * 5 // 100
    slot = shards // 4
    flags = {
        HOLDOUT: flag(
            HOLDOUT,
            [("holdout", [shard(HOLDOUT, 0, held)]), ("on", [shard(HOLDOUT, held, shards)])],
        ),
        GROUP: flag(
            GROUP, [(f"slot-{i + 1}", [shard(GROUP, i * slot, (i + 1) * slot)]) for i in range(4)]
        ),
    }
    for index in range(8):
        key = f"experiment-{index + 1}"
        enrolled = [
            shard(HOLDOUT, held, shards),
            shard(GROUP, index // 2 * slot, (index // 2 + 1) * slot),
        ]
        flags[key] = flag(
            key,
            [
                ("control", [*enrolled, shard(key, 0, shards // 2)]),
                ("treatment", [*enrolled, shard(key, shards // 2, shards)]),
            ],
        )
    document = {
        "createdAt": "2026-01-01T00:00:00.000Z",
        "format": "SERVER",
        "environment": {"name": "bench"},
        "flags": flags,
    }
    return json.dumps(document).encode()
