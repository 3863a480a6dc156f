"""The standard evaluation scenario of the evaluator benchmark, as a bundle.

One mutex group of 4 equal slots, 8 experiments (2 per slot, both gated on the same
slot) with 2 variants each, everything under a 5% holdout: 10 flags per user.
Definitions cannot put two experiments in one slot, so the bundle is written
directly; it is a valid bundle all the same (content id included).
"""

from __future__ import annotations

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
