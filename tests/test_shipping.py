"""Shipping bundles to SDKs: `expc serve` with ETags and the evaluator's poller, on
loopback, including a corrupted bundle that must not replace the good one."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CASES, REPO, compiled_bundle

from expc.sdk.poller import BundlePoller
from expc.tools.serve import make_server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "generated"
    root.mkdir()
    shutil.copy(REPO / "generated" / "production" / "bundle.json", root / "bundle.json")
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = str(server.server_address[0]), int(server.server_address[1])
    yield root, f"http://{host}:{port}/bundle.json"
    server.shutdown()
    server.server_close()


def test_poller_swaps_good_bundles_and_keeps_the_last_good_one(
    served: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    root, url = served
    poller = BundlePoller(url, interval=1, max_interval=8)
    assert poller.poll_once() is True
    first = poller.evaluator
    assert first is not None and len(first.flag_keys) == 21
    assert poller.poll_once() is False  # 304: nothing to do
    # A new release arrives.
    other = compiled_bundle(CASES / "evaluate" / "prerequisites" / "definitions")
    (root / "bundle.json").write_text(json.dumps(other))
    assert poller.poll_once() is True
    assert poller.evaluator is first and first.flag_keys == ["new-search", "search-filters"]
    good = first.content_id
    # A corrupted one (edited after compiling) must not replace it.
    other["flags"][0]["traffic"] = 5
    (root / "bundle.json").write_text(json.dumps(other))
    with caplog.at_level(logging.WARNING, logger="expc.poller"):
        assert poller.poll_once() is False
    assert first.content_id == good
    assert len(caplog.records) == 1
    assert "content id mismatch" in caplog.records[0].getMessage()
    assert poller.next_wait == 2  # backing off
    (root / "bundle.json").write_text("{not json")
    assert poller.poll_once() is False and poller.next_wait == 4
    assert first.content_id == good
    assert first.evaluate({"user_id": "u"}, "new-search").reason == "bucketed"


def test_poller_survives_the_server_going_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    poller = BundlePoller("http://127.0.0.1:9/bundle.json", interval=1, max_interval=3, timeout=2)
    with caplog.at_level(logging.WARNING, logger="expc.poller"):
        for _ in range(4):
            assert poller.poll_once() is False
    assert poller.evaluator is None
    assert poller.next_wait == 3  # capped
    assert all("keeping none yet" in r.getMessage() for r in caplog.records)


def test_poller_thread_starts_and_stops(served: tuple[Path, str]) -> None:
    _root, url = served
    poller = BundlePoller(url, interval=0.05)
    poller.start()
    for _ in range(100):
        if poller.evaluator is not None:
            break
        threading.Event().wait(0.05)
    poller.stop()
    assert poller.evaluator is not None
