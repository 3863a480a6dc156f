"""hypothesis strategies for whole bundles: every field the evaluator reads, drawn at
random (overrides, cohorts, requirements on earlier flags, targeting, rollouts, traffic,
ranges with gaps and empty ranges), signed with their content id, and users to match.

`marker` is put in front of every text of the bundle (keys, salts, variant names,
attributes, condition values, reasons), so that a test can look for it elsewhere.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import strategies as st

from expc.sdk.bucketing import POINTS
from expc.sdk.evaluate import content_id_of

MARKER = "ZQX"
ATTRIBUTES = ["user_id", "account_id", "country", "plan", "n", "version"]
IDS = ["qa-1", "qa-2", "u-1", "u-2", "", "\u00e9l\u00e8ve"]
WORDS = ["NO", "SE", "DE", "pro", "free", "1", "2.5", "10", "1.2.3", "2.0.0-beta", "qa-1"]
PATTERNS = ["^q", "1$", "[0-9]+", "é"]
# Points near the places a range is decided: the ends, the middle, and either side.
EDGES = [0, 1, POINTS // 2 - 1, POINTS // 2, POINTS // 2 + 1, POINTS - 1, POINTS]
hostile_text = st.text(
    st.characters(exclude_categories=["Cs"]), min_size=0, max_size=8
) | st.sampled_from(['"); import os; os.system("x"); ("', "\\n\n'''", "{k0}", "__import__"])


@st.composite
def conditions(draw: st.DrawFn, depth: int = 0, marker: str = "") -> Any:
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        group = draw(st.sampled_from(["all", "any", "none"]))
        children = draw(st.lists(conditions(depth + 1, marker), max_size=3))
        return {group: children}
    attribute = marker + draw(st.sampled_from(ATTRIBUTES))
    op = draw(
        st.sampled_from(
            [
                *("is", "is_not", "in", "not_in", "contains", "starts_with", "ends_with"),
                *("matches", "lt", "gte", "version_gt", "version_lte", "exists", "not_exists"),
            ]
        )
    )
    if op == "matches":
        values = draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2))
    else:
        values = draw(st.lists(st.sampled_from(WORDS + IDS), min_size=1, max_size=3))
    return {"attribute": attribute, "op": op, "values": [marker + value for value in values]}


@st.composite
def _ranges(draw: st.DrawFn, count: int) -> list[list[int]]:
    bounds = sorted(
        draw(
            st.lists(
                st.sampled_from(EDGES) | st.integers(0, POINTS),
                min_size=2 * count,
                max_size=2 * count,
            )
        )
    )
    if draw(st.booleans()):  # often, variants that cover every point
        return [[start, end] for start, end in _tiles(count)]
    return [[bounds[2 * i], bounds[2 * i + 1]] for i in range(count)]


def _tiles(count: int) -> list[tuple[int, int]]:
    cuts = [POINTS * i // count for i in range(count + 1)]
    return list(itertools.pairwise(cuts))


@st.composite
def bundles(draw: st.DrawFn, marker: str = "", max_flags: int = 7) -> dict[str, Any]:
    """A valid bundle; with `marker`, every text in it starts with the marker."""

    def text(value: str) -> str:
        return marker + value if marker else value

    count = draw(st.integers(1, max_flags))
    flags: list[dict[str, Any]] = []
    for index in range(count):
        key = text(draw(hostile_text) + f"-{index}")
        names = [text(f"{draw(hostile_text)}-v{n}") for n in range(draw(st.integers(1, 4)))]
        ranges = draw(_ranges(len(names)))
        variants = []
        for name, bounds in zip(names, ranges, strict=True):
            variant: dict[str, Any] = {"key": name, "range": bounds}
            if draw(st.booleans()):
                variant["payload"] = draw(st.sampled_from([{"size": 3}, [1, 2], "blue", True, 7]))
            variants.append(variant)
        chosen = st.sampled_from(names)
        users = draw(st.dictionaries(st.sampled_from(IDS), chosen, max_size=2))
        cohorts = draw(
            st.lists(
                st.fixed_dictionaries({"variant": chosen, "when": conditions(marker=marker)}),
                max_size=2,
            )
        )
        requires = []
        for earlier in flags:
            if draw(st.integers(0, 2)) == 0:
                continue
            names_before = [v["key"] for v in earlier["variants"]]
            wanted = draw(st.lists(st.sampled_from([*names_before, text("gone")]), max_size=3))
            prefix = {"holdout": "holdout", "mutex": "mutex"}.get(earlier["kind"], "prerequisite")
            requires.append(
                {"flag": earlier["key"], "variants": wanted, "reason": f"{prefix}:{earlier['key']}"}
            )
        by = draw(st.sampled_from(["user_id", "user_id", "account_id"]))
        flags.append(
            {
                "key": key,
                "kind": draw(st.sampled_from(["experiment", "experiment", "mutex", "holdout"])),
                "state": "running",
                "serving": draw(st.sampled_from([True, True, True, False])),
                "bucketing": {"by": text(by) if marker else by, "salt": text(draw(hostile_text))},
                "overrides": {"users": users, "cohorts": cohorts},
                "requires": requires,
                "targeting": draw(st.none() | conditions(marker=marker)),
                "rollout": draw(st.sampled_from([None, None, None, *names])),
                "traffic": draw(st.sampled_from([100, 100, 0, 1, 50, 99]) | st.integers(0, 100)),
                "variants": variants,
            }
        )
    bundle: dict[str, Any] = {"schema_version": "1.0", "flags": flags}
    release: dict[str, Any] = {"content_id": content_id_of(bundle), "compiler_version": "test"}
    if draw(st.booleans()):
        release["environment"] = text("production")
    bundle["release"] = release
    return bundle


users = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.sampled_from(IDS) | st.text(max_size=6) | st.integers(-5, 5) | st.none(),
        "account_id": st.sampled_from(IDS) | st.text(max_size=4),
        "country": st.sampled_from(WORDS),
        "plan": st.sampled_from(WORDS) | st.lists(st.text(max_size=2), max_size=1),
        "n": st.sampled_from(WORDS) | st.integers(-3, 20) | st.floats(allow_nan=True),
        "version": st.sampled_from(WORDS),
    },
)
