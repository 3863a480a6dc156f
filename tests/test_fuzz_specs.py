"""Hostile spec files through the command line: whatever a specs folder holds, `expc
test` answers with exit 0, 1 or 2 (never 3, never a traceback), and every diagnostic
is located (`path:line:col: `) in a spec file.

Two generators: hostile YAML text (token soup, deep nesting, tags, forbidden
characters, byte order marks), and well-formed specs with random fields, wrong types,
unknown names, odd percents, matrices and `${name}` references, written as JSON (which
is YAML) so that any value can be expressed.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from conftest import CASES, fuzz_examples, run_in_process
from hypothesis import event, given, settings
from hypothesis import strategies as st

from expc import cli

SHOP = CASES / "spec-shop" / "definitions"

_DIAGNOSTIC = re.compile(r"(error|warning|notice)\[[A-Z][0-9]{3} [a-z0-9-]+\] ")
_OTHER_LINES = re.compile(
    r"\d+ error\(s\), \d+ warning\(s\)$|\d+ passed, \d+ failed|  ok  |  FAILED  |    |"
    r"expc test: |expc: error: |no specs: |specs/[^ ]+\.yaml( \([a-z]+\))?$"
)


@contextlib.contextmanager
def written(files: dict[str, bytes]) -> Iterator[Path]:
    """The files in a fresh `specs/` folder; yields the folder."""
    top = Path(tempfile.mkdtemp(prefix="expc-fuzz-specs-"))
    try:
        specs = top / "specs"
        specs.mkdir()
        for name, content in files.items():
            (specs / name).write_bytes(content)
        yield specs
    finally:
        shutil.rmtree(top, ignore_errors=True)


run = run_in_process


def assert_survives(files: dict[str, bytes]) -> None:
    with written(files) as specs:
        status, printed = run(["test", str(specs), "--definitions", str(SHOP), "-n", "200"])
        event(f"expc test exits {status}")
        assert status in (cli.EXIT_OK, cli.EXIT_FINDINGS, cli.EXIT_USAGE), printed
        assert "Traceback" not in printed
        for line in printed.splitlines():
            if not line:
                continue
            if _DIAGNOSTIC.search(line) and not line.startswith(" "):
                location = re.match(r"(.+?):([0-9]+):([0-9]+): ", line)
                assert location is not None, line
                assert location.group(1).startswith(str(specs)), line
            else:
                assert _OTHER_LINES.match(line.replace(str(specs), "specs")), line


# --- hostile YAML text ------------------------------------------------------------------

TOKENS = [
    "{", "}", "[", "]", ": ", ":", ", ", "- ", "? ", "\n", "\n  ", "\n    ", "\t", " ",
    "#", "'", '"', "|", ">", "&a ", "*a", "!!str ", "!!int ", "!!map ", "!x ", "---\n",
    "~", "null", "true", "NO", "environment: ", "production", "staging", "cases: ",
    "user: ", "matrix: ", "at: ", "expect: ", "shares: ", "exclusive: ", "variant: ",
    "reason: ", "payload: ", "flag: ", "enrolled: ", "share: ", "banner", "surface",
    "long-term", "checkout", "search", "slot-2", "holdout", "25%", "100%", "101%",
    "0.5", "${x}", "${", "mutex:surface", "1e999999", ".nan", "9" * 5000, "\x00", "\x1b",
    "\x85", "\u2028", "\ufeff", "\ufffe", "\U0001f600", "\r\n", '"\\u0000"', "a" * 300,
]  # fmt: skip


@st.composite
def hostile_text(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["bytes", "soup", "deep"]))
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    if shape == "deep":
        levels = draw(st.sampled_from([60, 64, 65, 70, 5000]))
        return ("cases: " + "[" * levels + "]" * levels + "\n").encode()
    text = "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=60)))
    prefix = draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xff\xfe"]))
    return prefix + text.encode("utf-8")


@settings(max_examples=fuzz_examples(120))
@given(st.dictionaries(st.sampled_from(["a.yaml", "b.yaml", "c.yml"]), hostile_text(), max_size=2))
def test_hostile_spec_text_is_located_never_a_traceback(files: dict[str, bytes]) -> None:
    assert_survives(files)


# --- hostile specs ----------------------------------------------------------------------

FLAGS = ["banner", "surface", "long-term", "checkout", "search", "nordic-offer", "testers", "x"]
TEXT = st.one_of(
    st.sampled_from(
        [
            *FLAGS,
            "slot-2",
            "holdout",
            "on",
            "big",
            "${c}",
            "${",
            "mutex:surface",
            "25%",
            "x\n::error::y",
        ]
    ),
    st.text(max_size=12),
)
SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=False), TEXT
)
PERCENT = st.one_of(
    st.sampled_from(["0%", "25%", "47.5%", "100%", "100.0001%", "12.3456789%", "-1%", "5 %"]),
    SCALAR,
)


def _values(
    leaf: st.SearchStrategy[Any], keys: st.SearchStrategy[str] = TEXT
) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)
        ),
        max_leaves=8,
    )


EXPECTATION = st.one_of(
    st.none(),
    TEXT,
    st.fixed_dictionaries(
        {},
        optional={
            "variant": st.one_of(st.none(), TEXT),
            "reason": TEXT,
            "payload": _values(SCALAR),
        },
    ),
    _values(SCALAR),
)
CASE = st.fixed_dictionaries(
    {},
    optional={
        "description": st.one_of(TEXT, SCALAR),
        "user": st.one_of(st.dictionaries(TEXT, SCALAR, max_size=3), SCALAR),
        "matrix": st.one_of(
            st.dictionaries(st.sampled_from(["c", "1x", "d"]), st.lists(SCALAR, max_size=3)),
            SCALAR,
        ),
        "at": st.one_of(st.dictionaries(st.sampled_from(FLAGS), PERCENT, max_size=3), SCALAR),
        "expect": st.one_of(
            st.dictionaries(st.sampled_from(FLAGS), EXPECTATION, max_size=3), SCALAR
        ),
        "extra": SCALAR,
    },
)
SHARE = st.fixed_dictionaries(
    {},
    optional={
        "flag": st.sampled_from(FLAGS),
        "enrolled": PERCENT,
        "variant": TEXT,
        "share": PERCENT,
        "description": TEXT,
    },
)
SPEC = st.fixed_dictionaries(
    {},
    optional={
        "description": TEXT,
        "environment": st.one_of(
            st.sampled_from(["production", "staging", "prod"]),
            st.lists(st.sampled_from(["production", "staging", "qa"]), max_size=3),
            SCALAR,
        ),
        "cases": st.one_of(st.lists(CASE, max_size=4), SCALAR),
        "shares": st.one_of(st.lists(SHARE, max_size=2), SCALAR),
        "exclusive": st.one_of(
            st.lists(st.lists(st.sampled_from(FLAGS), max_size=3), max_size=2), SCALAR
        ),
        "caes": SCALAR,
    },
)


@settings(max_examples=fuzz_examples(150))
@given(st.lists(SPEC, min_size=1, max_size=2))
def test_hostile_specs_are_located_never_a_traceback(specs: list[dict[str, Any]]) -> None:
    files = {
        f"s{index}.yaml": json.dumps(spec, ensure_ascii=bool(index % 2)).encode(
            "utf-8", "surrogatepass"
        )
        for index, spec in enumerate(specs)
    }
    assert_survives(files)


# --- specs that run, with hostile users and expectations --------------------------------

# Text YAML can hold (a JSON escape of a lone surrogate is a YAML syntax error).
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
RUN_TEXT = st.text(st.characters(exclude_categories=SURROGATES), max_size=12)
RUN_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False),
    RUN_TEXT,
    st.sampled_from(["NO", "SE", "x\n::error::y", "\u202e", "${"]),
)

# What each flag can give in production: the expectations stay valid, so the cases run.
GIVES = {
    "banner": ([None, "small", "big"], ["bucketed", "override", "not-running"]),
    "surface": ([None, "slot-1", "slot-3"], ["bucketed", "holdout:long-term"]),
    "checkout": ([None, "control"], ["bucketed", "mutex:surface", "no-bucketing-value"]),
}


@st.composite
def expectation(draw: st.DrawFn, flag: str) -> dict[str, Any]:
    variants, reasons = GIVES[flag]
    given = draw(st.sets(st.sampled_from(["variant", "reason", "payload"]), min_size=1))
    chosen = {
        "variant": draw(st.sampled_from(variants)),
        "reason": draw(st.sampled_from(reasons)),
        "payload": draw(_values(RUN_SCALAR, RUN_TEXT)),
    }
    return {field: chosen[field] for field in given}


@st.composite
def running_case(draw: st.DrawFn) -> dict[str, Any]:
    case: dict[str, Any] = {
        "user": draw(
            st.dictionaries(st.sampled_from(["user_id", "country", "x"]), _values(SCALAR))
        ),
        "expect": {
            flag: draw(expectation(flag))
            for flag in draw(st.sets(st.sampled_from(sorted(GIVES)), min_size=1))
        },
    }
    if draw(st.booleans()):
        case["matrix"] = {"c": draw(st.lists(RUN_SCALAR, min_size=1, max_size=3))}
        case["user"]["country"] = draw(st.sampled_from(["${c}", "x-${c}-y"]))
    at = draw(
        st.dictionaries(
            st.sampled_from(["long-term", "search", "nordic-offer"]),
            st.sampled_from(["0%", "5%", "50%", "99.5%", "100%"]),
            max_size=2,
        )
    )
    if at:
        case["at"] = at
        case["user"].pop("user_id", None)
    return case


@settings(max_examples=fuzz_examples(100))
@given(st.lists(running_case(), min_size=1, max_size=4))
def test_specs_that_run_answer_for_any_user(cases: list[dict[str, Any]]) -> None:
    spec = {"environment": "production", "cases": cases}
    assert_survives({"s.yaml": as_yaml(spec).encode()})


_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def as_yaml(value: Any) -> str:
    """JSON, which is YAML, with every character escaped; a character beyond U+FFFF as
    YAML writes it (`\\U0001f600`): libyaml reads no JSON escape of a surrogate pair."""

    def joined(pair: re.Match[str]) -> str:
        high, low = int(pair[1], 16), int(pair[2], 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _PAIR.sub(joined, json.dumps(value))
