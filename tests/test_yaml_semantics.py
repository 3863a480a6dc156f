"""YAML 1.2: `NO`, `yes`, `on` and `off` are strings, not booleans (the Norway problem)."""

from __future__ import annotations

from decimal import Decimal

from conftest import CASES

from compiler import api
from compiler.source import SourceFile


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
