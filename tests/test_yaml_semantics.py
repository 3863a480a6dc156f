"""YAML 1.2: `NO`, `yes`, `on` and `off` are strings, not booleans (the Norway problem)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from conftest import CASES

from compiler import api
from compiler.source import SourceFile
from compiler.yaml_values import SourceError


def test_country_codes_and_variant_names_stay_strings() -> None:
    snapshot = api.load_snapshot(CASES / "yaml" / "nordic-countries" / "definitions")
    assert snapshot.diagnostics == []
    flag = api.bundle(snapshot)["flags"][0]
    assert flag["targeting"] == {
        "all": [
            {"attribute": "country", "op": "in", "values": ["NO", "SE"]},
            {"attribute": "newsletter", "op": "is", "values": ["yes"]},
        ]
    }
    assert [variant["key"] for variant in flag["variants"]] == ["off", "on"]


def test_core_schema_scalars() -> None:
    source = SourceFile(
        "x.yaml",
        "a: true\nb: 010\nc: 2.50\nd: ~\ne: '5'\nf: 0x1F\ng: Yes\nh: 1e2\n",
    )
    assert source.parse() == {
        "a": True,
        "b": 10,
        "c": Decimal("2.50"),
        "d": None,
        "e": "5",
        "f": 31,
        "g": "Yes",
        "h": Decimal("1e2"),
    }


def test_locate_points_at_values_and_keys() -> None:
    source = SourceFile("x.yaml", "kind: mutex\nslots:\n  - percent: 5\n    group: g\n")
    assert source.locate(("slots", 0, "group")) == (4, 12)
    assert source.locate(("slots", 0, "group"), key=True) == (4, 5)
    # pydantic's union tags in a location are skipped, not followed.
    assert source.locate(("slots", "function-after[x]", 0, "percent")) == (3, 14)


def test_tags_quotes_and_aliases() -> None:
    source = SourceFile(
        "x.yaml",
        "a: !!str 5\nb: ! 5\nc: '010'\nd: &shared [1, 2]\ne: *shared\nf: !!int '7'\n",
    )
    assert source.parse() == {"a": "5", "b": "5", "c": "010", "d": [1, 2], "e": [1, 2], "f": 7}


def test_reading_problems_are_located_errors() -> None:
    problems = {
        "a: *nowhere\n": ("E001", 1, 4),
        "? [a, b]\n: c\n": ("E001", 1, 3),
        "a: .inf\n": ("E103", 1, 4),
        "a: 1\nb: 2\na: 3\n": ("E002", 3, 1),
        "- a\n": ("E003", 1, 1),
        "---\n...\n": ("E006", 1, 1),
    }
    for text, (code, line, column) in problems.items():
        with pytest.raises(SourceError) as raised:
            SourceFile("x.yaml", text).parse()
        assert (raised.value.code.id, raised.value.line, raised.value.column) == (
            code,
            line,
            column,
        ), text


def test_deep_nesting_is_not_a_crash() -> None:
    text = "a: " + "[" * 5000 + "]" * 5000 + "\n"
    value = SourceFile("x.yaml", text).parse()["a"]
    depth = 0
    while value:
        value, depth = value[0], depth + 1
    assert depth == 4999
