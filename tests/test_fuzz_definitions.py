"""Hostile definitions through the command line: whatever a definitions directory
holds, `expc validate` and `expc compile` answer with exit 0, 1 or 2 (never 3, never
a crash), every diagnostic is located (`path:line:col: `), and a failed compile
writes nothing.

Two generators: hostile YAML text (random bytes, YAML-ish token soup, deep nesting,
tags on everything, anchors and aliases, forbidden characters, byte order marks, odd
numbers, long lines), and hostile definitions (well-formed YAML of every kind with
random fields, wrong types and references between the files). Both run in-process
through `cli.main`; a smaller corpus of the nastiest trees also runs as separate
`expc` processes, because only a process can show a segmentation fault.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import fuzz_examples, run_in_process
from hypothesis import event, given, settings
from hypothesis import strategies as st

from expc import cli
from expc.reading.yaml_values import MAX_DEPTH

# --- writing a tree ------------------------------------------------------------------

# A file's content as bytes, or a link: ("link", target relative to the file).
Entry = bytes | tuple[str, str]


@dataclass
class Tree:
    """Files below `definitions/` (path -> content), and files beside it."""

    files: dict[str, Entry]
    beside: dict[str, bytes]


@contextlib.contextmanager
def written(tree: Tree) -> Iterator[Path]:
    """The tree in a fresh directory; yields the definitions directory."""
    top = Path(tempfile.mkdtemp(prefix="expc-fuzz-"))
    try:
        definitions = top / "definitions"
        definitions.mkdir()
        for relative, content in tree.beside.items():
            (top / relative).parent.mkdir(parents=True, exist_ok=True)
            (top / relative).write_bytes(content)
        for relative, entry in tree.files.items():
            path = definitions / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(entry, bytes):
                if not path.is_dir():
                    path.write_bytes(entry)
            elif not path.exists() and not path.is_symlink():
                path.symlink_to(entry[1])
        yield definitions
    finally:
        shutil.rmtree(top, ignore_errors=True)


# --- what the command line may print --------------------------------------------------

_DIAGNOSTIC = re.compile(r"(error|warning|notice)\[[A-Z][0-9]{3} [a-z0-9-]+\] ")
_OTHER_LINES = re.compile(
    r"\d+ error\(s\), \d+ warning\(s\)$|ok: |compiled |nothing written|    |expc: (?!internal)"
)


run = run_in_process


def assert_located(printed: str, definitions: Path) -> None:
    for line in printed.splitlines():
        if not line:
            continue
        if _DIAGNOSTIC.search(line):
            location = re.match(r"(.+?):([0-9]+):([0-9]+): ", line)
            assert location is not None, line
            assert location.group(1).startswith(str(definitions)), line
            assert int(location.group(2)) >= 1 and int(location.group(3)) >= 1, line
        else:
            assert _OTHER_LINES.match(line), line


def assert_survives(tree: Tree) -> None:
    with written(tree) as definitions:
        status, printed = run(["validate", str(definitions)])
        assert status in (cli.EXIT_OK, cli.EXIT_FINDINGS, cli.EXIT_USAGE), printed
        assert_located(printed, definitions)
        event(f"validate exits {status}")  # --hypothesis-show-statistics: how far inputs get
        if status == cli.EXIT_FINDINGS:
            assert _DIAGNOSTIC.search(printed), printed
        out = definitions.parent / "out"
        compiled, printed = run(["compile", str(definitions), "--out", str(out)])
        assert compiled in (cli.EXIT_OK, cli.EXIT_FINDINGS, cli.EXIT_USAGE), printed
        assert_located(printed, definitions)
        if status != cli.EXIT_OK:
            assert compiled == status, printed
        if compiled != cli.EXIT_OK:
            assert not out.exists() or not any(out.iterdir()), printed


# --- hostile YAML text ----------------------------------------------------------------

TOKENS = [
    "{", "}", "[", "]", ": ", ":", ", ", "- ", "? ", "\n", "\n  ", "\n    ", "\t", " ",
    "#", "'", '"', "|", ">", "&a ", "&b ", "*a", "*b", "!!str ", "!!int ", "!!float ",
    "!!map ", "!!seq ", "!!omap ", "!!set ", "!!binary ", "!!python/object:os.system ",
    "!x ", "! ", "!<tag:yaml.org,2002:int> ", "%YAML 1.2\n", "%YAML 1.1\n",
    "%TAG !e! tag:e.com,2000:\n", "!e!x ", "---\n", "...\n", "<<: ", "~", "null",
    "true", "NO", "yes", "kind: ", "key: ", "experiment", "mutex", "holdout", "cohort",
    "project", "variants", "slots", "percent", "weight", "payload", "targeting", "all",
    "any", "users", "1e999999", "1e-999999", ".nan", ".inf", "-.inf", "0x", "0x1F",
    "0o17", "0o", "1_000", "010", "-0", "+1", "3.14159", "0.001", "1e400", "9" * 5000,
    "\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\ufeff", "\ufffe",
    "\U0001f600", "é", "\r", "\r\n", '"\\u0000"', '"\\x"', "'\\n'", "a" * 1100,
]  # fmt: skip

EXPERIMENT = (
    "kind: experiment\nkey: {key}\nstate: running\nvariants:\n"
    "  - key: control\n    payload: {{size: 1}}\n  - key: treatment\n"
)


def deep(levels: int, opener: str, alias: bool) -> str:
    closer = {"[": "]", "{a: ": "}", "- ": ""}[opener]
    if opener == "- ":
        body = "".join("  " * i + "- \n" for i in range(levels))
        return "x:\n" + body
    text = "x: " + opener * levels + "1" + closer * levels + "\n"
    if alias:
        text = "x: &a " + opener * levels + "1" + closer * levels + "\ny: [[*a]]\n"
    return "kind: cohort\nkey: k\n" + text


@st.composite
def hostile_text(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["bytes", "soup", "deep", "mutated", "long"]))
    if shape == "bytes":
        return draw(st.binary(max_size=400))
    if shape == "soup":
        text = "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=60)))
    elif shape == "deep":
        levels = draw(
            st.one_of(
                st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3),
                st.sampled_from([1000, 30_000, 100_000]),
            )
        )
        opener = draw(st.sampled_from(["[", "{a: ", "- "]))
        if opener == "- ":
            levels = min(levels, 300)
        text = deep(levels, opener, draw(st.booleans()))
    elif shape == "mutated":
        text = EXPERIMENT.format(key=draw(st.sampled_from(["a", "b", "x"])))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
    else:
        key = draw(st.sampled_from(["a" * 2000, "k", "\u00e9" * 600]))
        text = f"kind: cohort\nkey: c\n{key}: {'v' * draw(st.integers(0, 300_000))}\n"
    data = text.encode("utf-8")
    prefix = draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\xef\xbb\xbf" * 2]))
    return prefix + data


FILE_NAMES = ["a.yaml", "b.yaml", "x.yaml", "groups/g.yaml", "project.yaml", "c.yml"]


@st.composite
def links(draw: st.DrawFn) -> dict[str, Entry]:
    """Now and then a link: outside, inside, dangling, in a circle, or to a folder."""
    if draw(st.integers(0, 5)) < 5:
        return {}
    name, target = draw(
        st.sampled_from(
            [
                ("out.yaml", "../outside/o.yaml"),
                ("folder", "../outside"),
                ("in.yaml", "a.yaml"),
                ("nowhere.yaml", "missing.yaml"),
                ("circle.yaml", "circle.yaml"),
                ("self", "."),
            ]
        )
    )
    return {name: ("link", target)}


OUTSIDE = {"outside/o.yaml": EXPERIMENT.format(key="o").encode()}


@st.composite
def hostile_text_trees(draw: st.DrawFn) -> Tree:
    files: dict[str, Entry] = {}
    for name in draw(st.lists(st.sampled_from(FILE_NAMES), min_size=1, max_size=3, unique=True)):
        files[name] = draw(hostile_text())
    if draw(st.booleans()):
        files.setdefault("a.yaml", EXPERIMENT.format(key="a").encode())
    files.update(draw(links()))
    return Tree(files, OUTSIDE)


# --- hostile definitions: valid YAML, every kind, random fields -------------------------


class Raw(str):
    """A scalar written as it is, unquoted: `0x1F`, `1e999999`, `.nan`."""


KEYS = ["a", "b", "c", "g", "h", "cohort-1", "project", "Bad Key", "x" * 70]
ODD_SCALARS = [
    Raw(text)
    for text in [
        "1e999999", "1e-999999", ".nan", ".inf", "0x1F", "0o17", "1_000", "010", "-0",
        "50.5", "33.333", "1e2", "NO", "yes", "~", "0x", "9" * 4400, "0." + "0" * 5000 + "1",
    ]
]  # fmt: skip


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.integers(-5, 120),
        st.text(max_size=20),
        st.sampled_from(KEYS),
        st.sampled_from(ODD_SCALARS),
    )


def values() -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.sampled_from(["key", "a", "all", "any", "users", "1"]), inner, max_size=4
            ),
        ),
        max_leaves=8,
    )


def reference() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(KEYS), values())


def maybe(draw: st.DrawFn, sensible: st.SearchStrategy[Any]) -> Any:
    return draw(st.one_of(sensible, sensible, sensible, values()))


OPERATORS = ["is", "in", "lt", "version_gt", "matches", "exists", "in_cohort", "contains", "bogus"]


@st.composite
def conditions(draw: st.DrawFn, levels: int = 3) -> Any:
    if levels == 0 or draw(st.booleans()):
        op = draw(st.sampled_from(OPERATORS))
        return {
            "attribute": draw(st.sampled_from(["country", "user_id", "app_version", ""])),
            "op": op,
            "values": maybe(draw, st.lists(scalars(), max_size=3)),
        }
    group = draw(st.sampled_from(["all", "any", "none"]))
    return {group: draw(st.lists(conditions(levels - 1), min_size=0, max_size=3))}


def audiences() -> st.SearchStrategy[Any]:
    """Users by id, or cohorts by key, as overrides, pins and holdouts take them."""
    return st.one_of(
        st.lists(st.one_of(st.text(max_size=8), st.integers(0, 10**6)), max_size=3),
        st.fixed_dictionaries({"cohorts": st.lists(reference(), max_size=2)}),
    )


@st.composite
def definition(draw: st.DrawFn, kind: str, key: str) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "key": key}
    fields: dict[str, st.SearchStrategy[Any]] = {
        "name": st.text(max_size=10),
        "owners": st.lists(st.text(max_size=6), max_size=2),
        "tags": st.lists(st.text(max_size=6), max_size=2),
        "bucketing": st.fixed_dictionaries(
            {}, optional={"by": st.text(max_size=6), "salt": st.text(max_size=6)}
        ),
    }
    if kind == "experiment":
        fields |= {
            "state": st.sampled_from(["draft", "running", "stopped", "concluded", "paused"]),
            "traffic": st.integers(-10, 110),
            "variants": st.lists(
                st.fixed_dictionaries(
                    {"key": st.sampled_from(["control", "treatment", "b", "Bad key"])},
                    optional={
                        "weight": st.one_of(st.integers(0, 100), st.sampled_from(ODD_SCALARS)),
                        "payload": values(),
                    },
                ),
                max_size=4,
            ),
            "targeting": conditions(),
            "prerequisites": st.lists(
                st.fixed_dictionaries(
                    {
                        "experiment": reference(),
                        "variants": st.lists(st.sampled_from(["control", "treatment"]), max_size=2),
                    }
                ),
                max_size=2,
            ),
            "overrides": st.dictionaries(
                st.sampled_from(["control", "treatment", "nope"]), audiences(), max_size=2
            ),
            "rollout": st.sampled_from(["control", "treatment", "nope"]),
        }
    elif kind == "mutex":
        slot = st.fixed_dictionaries(
            {},
            optional={
                "percent": st.one_of(st.integers(0, 120), st.sampled_from(ODD_SCALARS)),
                "experiment": reference(),
                "group": reference(),
            },
        )
        fields |= {
            "slots": st.lists(slot, max_size=22),
            "pinned": st.dictionaries(st.integers(0, 25).map(str), audiences(), max_size=2),
        }
    elif kind == "holdout":
        fields |= {
            "percent": st.one_of(st.integers(-1, 101), st.sampled_from(ODD_SCALARS)),
            "members": st.fixed_dictionaries(
                {},
                optional={
                    "experiments": st.lists(reference(), max_size=3),
                    "groups": st.lists(reference(), max_size=2),
                },
            ),
            "include": audiences(),
            "exclude": audiences(),
        }
    elif kind == "cohort":
        fields |= {"users": st.lists(st.text(max_size=6), max_size=4), "match": conditions()}
    elif kind == "project":
        fields |= {
            "check": st.fixed_dictionaries(
                {},
                optional={
                    "disable": st.lists(st.text(max_size=5), max_size=2),
                    "severity": st.dictionaries(
                        st.text(max_size=5),
                        st.sampled_from(["error", "warning", "loud"]),
                        max_size=2,
                    ),
                },
            ),
            "warn_below_traffic": st.integers(0, 100),
            "targets": st.lists(st.sampled_from(["amplitude", "nope"]), max_size=2),
        }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    for name in chosen:
        body[name] = maybe(draw, fields[name])
    if kind == "experiment" and "variants" not in body and draw(st.booleans()):
        body["variants"] = [{"key": "control"}, {"key": "treatment"}]
    if kind in ("experiment", "mutex", "holdout", "cohort"):
        extra = draw(
            st.dictionaries(
                st.sampled_from(["overides", "percent", "slots", "users", "kind"]),
                values(),
                max_size=1,
            )
        )
        body |= {k: v for k, v in extra.items() if k not in body}
    return body


def emit(value: Any) -> str:
    """YAML flow text for a value; `Raw` scalars unquoted, other text double-quoted."""
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(emit(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{emit(k)}: {emit(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)  # pragma: no cover


def document(body: dict[str, Any]) -> bytes:
    return "".join(f"{json.dumps(k)}: {emit(v)}\n" for k, v in body.items()).encode()


KINDS = ["experiment", "experiment", "mutex", "holdout", "cohort", "project"]


@st.composite
def hostile_definition_trees(draw: st.DrawFn) -> Tree:
    files: dict[str, Entry] = {}
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(KINDS))
        key = "project" if kind == "project" else draw(st.sampled_from(KEYS[:6]))
        folder = draw(st.sampled_from(["", "", "experiments/", "groups/"]))
        name = draw(st.sampled_from([key, key, "other"]))
        files[f"{folder}{name}.yaml"] = document(draw(definition(kind, key)))
    files.update(draw(links()))
    return Tree(files, OUTSIDE)


# A consistent, valid tree of every kind; a few random edits make it a near miss, and
# without edits it compiles, so the compile path is fuzzed too.
VALID: dict[str, dict[str, Any]] = {
    "project.yaml": {"kind": "project", "key": "project", "targets": ["amplitude"]},
    "experiments/a.yaml": {
        "kind": "experiment",
        "key": "a",
        "state": "running",
        "variants": [
            {"key": "control", "payload": {"size": 1}},
            {"key": "treatment", "weight": 60, "payload": ["x", {"y": None}]},
        ],
        "targeting": {"all": [{"attribute": "country", "op": "in", "values": ["NO", "SE"]}]},
        "overrides": {"treatment": ["qa-anna"]},
    },
    "experiments/b.yaml": {
        "kind": "experiment",
        "key": "b",
        "state": "running",
        "traffic": 50,
        "variants": [{"key": "old"}, {"key": "new"}],
        "prerequisites": [{"experiment": "a", "variants": ["treatment"]}],
        "targeting": {"any": [{"attribute": "user_id", "op": "in_cohort", "values": ["beta"]}]},
    },
    "cohorts/beta.yaml": {
        "kind": "cohort",
        "key": "beta",
        "users": ["u-1", 12345],
        "match": {"all": [{"attribute": "app_version", "op": "version_gte", "values": ["2.1"]}]},
    },
    "groups/g.yaml": {
        "kind": "mutex",
        "key": "g",
        "slots": [{"percent": 50, "experiment": "a"}, {"percent": 25.5, "experiment": "b"}, {}],
        "pinned": {"1": ["qa-anna"]},
    },
    "holdouts/h.yaml": {
        "kind": "holdout",
        "key": "h",
        "percent": 5,
        "members": {"groups": ["g"]},
        "exclude": {"cohorts": ["beta"]},
    },
}


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value`."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _places(item, (*path, index))
    return found


def _edited(value: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: _edited(v, rest, replacement) if k == head else v for k, v in value.items()}
    return [_edited(v, rest, replacement) if i == head else v for i, v in enumerate(value)]


@st.composite
def near_valid_trees(draw: st.DrawFn) -> Tree:
    documents = dict(VALID)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        name = draw(st.sampled_from(sorted(documents)))
        path = draw(st.sampled_from(_places(documents[name])[1:]))
        replacement = draw(st.one_of(values(), reference(), conditions(), audiences()))
        documents[name] = _edited(documents[name], path, replacement)
    files: dict[str, Entry] = {name: document(body) for name, body in documents.items()}
    files.update(draw(links()))
    return Tree(files, OUTSIDE)


# --- the properties -------------------------------------------------------------------


@settings(max_examples=fuzz_examples(1000))
@given(hostile_text_trees())
def test_hostile_yaml_text_gets_located_errors_never_a_crash(tree: Tree) -> None:
    assert_survives(tree)


@settings(max_examples=fuzz_examples(350))
@given(st.one_of(hostile_definition_trees(), near_valid_trees(), near_valid_trees()))
def test_hostile_definitions_get_located_errors_never_a_crash(tree: Tree) -> None:
    assert_survives(tree)


# The nastiest inputs at once, each tree run by a separate `expc` process: a crash in C
# (libyaml, ruamel's composer, a stack overflow) kills a process with a signal.
NASTY = [
    deep(100_000, "[", False).encode(),
    deep(30_000, "{a: ", False).encode(),
    deep(MAX_DEPTH, "[", True).encode(),
    b"kind: cohort\nkey: n\nname: x\x00y\n",
    b"\xef\xbb\xbf\xef\xbb\xbfkind: cohort\n",
    b"\xff\xfek\x00i\x00n\x00d\x00",
    b"kind: cohort\nkey: t\nusers: !!python/object:os.system {a: 1}\n",
    b"kind: cohort\nkey: t\nusers: !whatever [a]\n",
    b"kind: experiment\nkey: e\ntraffic: 1e999999999\nvariants: [{key: a}, {key: b}]\n",
    b"kind: experiment\nkey: e\ntraffic: 0x" + b"f" * 5000 + b"\n",
    b"kind: cohort\nkey: b\n"
    + b"".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n".encode() for i in range(1, 9)
    ).replace(b"*l0", b"1"),
]


@st.composite
def nasty_trees(draw: st.DrawFn) -> Tree:
    chosen = draw(st.lists(st.sampled_from(NASTY), min_size=2, max_size=5, unique=True))
    files: dict[str, Entry] = {f"n{i}.yaml": text for i, text in enumerate(chosen)}
    files["mixed.yaml"] = draw(hostile_text())
    files.update(draw(links()))
    return Tree(files, OUTSIDE)


@settings(max_examples=fuzz_examples(20))
@given(nasty_trees())
def test_the_nastiest_trees_never_crash_the_process(tree: Tree) -> None:
    with written(tree) as definitions:
        result = subprocess.run(
            [sys.executable, "-m", "expc", "validate", str(definitions)],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=60,
            check=False,
        )
    assert result.returncode in (cli.EXIT_OK, cli.EXIT_FINDINGS, cli.EXIT_USAGE), result
