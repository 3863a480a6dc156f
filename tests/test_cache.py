"""The cache of read-and-validated files, and the memo of a whole release: a warm run
gives the same bytes as a cold one, whatever state the cache is in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from expc import cli
from expc.pipeline import cache


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "definitions", tmp_path / "definitions")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _compile(out: str, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, bytes], str]:
    assert cli.main(["compile", "--out", out]) == cli.EXIT_OK
    printed = capsys.readouterr()
    return _outputs(Path(out)), printed.out.replace(out, "OUT") + printed.err


def test_a_warm_run_writes_the_same_bytes_as_a_cold_one(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cold, cold_warnings = _compile("cold", capsys)
    assert sorted(p.name for p in (project / "cache").iterdir()) == [
        f"{name}.compile.json" for name in _cache_names(project)
    ] + [f"{name}.json" for name in _cache_names(project)]
    warm, warm_warnings = _compile("warm", capsys)
    assert warm == cold and warm_warnings == cold_warnings
    assert "W301" in warm_warnings  # the warning is reported from the memo too
    monkeypatch.setenv("EXPC_CACHE_DIR", "")
    uncached, _ = _compile("uncached", capsys)
    assert uncached == cold
    assert (
        cold["production/bundle.json"]
        == (REPO / "generated" / "production" / "bundle.json").read_bytes()
    )


def _cache_names(project: Path) -> list[str]:
    return sorted({p.name.split(".")[0] for p in (project / "cache").iterdir()})


def test_an_edit_is_seen_by_the_next_warm_run(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _compile("generated", capsys)
    experiment = project / "definitions" / "experiments" / "search" / "search-typo-tolerance.yaml"
    experiment.write_text(experiment.read_text().replace("state: running", "state: stopped"))
    edited, _ = _compile("generated", capsys)
    bundle = json.loads(edited["production/bundle.json"])
    flag = next(f for f in bundle["flags"] if f["key"] == "search-typo-tolerance")
    assert flag["state"] == "stopped"
    assert cli.main(["validate"]) == cli.EXIT_OK
    experiment.write_text(experiment.read_text() + "trafic: 5\n")
    assert cli.main(["validate"]) == cli.EXIT_FINDINGS
    assert "error[E101 unknown-field]" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["garbage", "truncated", "payload-edited", "other-reader"])
def test_a_damaged_cache_is_ignored(
    project: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    cold, _ = _compile("generated", capsys)
    for path in (project / "cache").iterdir():
        text = path.read_bytes()
        header, payload = text.split(b"\n", 1)
        if damage == "garbage":
            path.write_bytes(b"\x00not json at all")
        elif damage == "truncated":
            path.write_bytes(text[: len(text) // 2])
        elif damage == "payload-edited":
            path.write_bytes(header + b"\n" + payload.replace(b"running", b"stopped"))
        else:
            found = json.loads(header)
            found["reader"] = found.get("reader", "x")[::-1]
            found["key"] = found.get("key", "x")[::-1]
            path.write_bytes(json.dumps(found).encode() + b"\n" + payload)
    again, _ = _compile("generated", capsys)
    assert again == cold


def test_an_entry_that_no_longer_validates_is_read_again(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cold, _ = _compile("generated", capsys)
    files = next(p for p in (project / "cache").iterdir() if p.name.count(".") == 1)
    memo = next(p for p in (project / "cache").iterdir() if p.name.endswith(".compile.json"))
    memo.unlink()
    header = json.loads(files.read_bytes().split(b"\n", 1)[0])
    entries = json.loads(files.read_bytes().split(b"\n", 1)[1])
    for entry in entries.values():
        entry[1]["owners"] = "not a list"  # well framed, but not a definition any more
    files.write_text(cache._framed({"reader": header["reader"]}, entries))
    again, _ = _compile("generated", capsys)
    assert again == cold


def test_a_cache_that_cannot_be_written_changes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPC_CACHE_DIR", "/proc/expc-cache")
    outputs, _ = _compile("generated", capsys)
    assert (
        outputs["production/bundle.json"]
        == (REPO / "generated" / "production" / "bundle.json").read_bytes()
    )


def test_the_cache_is_data_not_code(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _compile("generated", capsys)
    for path in (project / "cache").iterdir():
        header, payload = path.read_bytes().split(b"\n", 1)
        assert isinstance(json.loads(header), dict) and json.loads(payload) is not None


def test_the_cache_sits_beside_the_definitions_by_default(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXPC_CACHE_DIR")
    assert cli.main(["validate"]) == cli.EXIT_OK
    assert (project / ".expc-cache").is_dir()
