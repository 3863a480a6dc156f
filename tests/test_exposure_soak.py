"""Soak: evaluation on four threads while a fifth swaps bundles as fast as it can, with
exposures on, for 30 seconds. Nothing raises; every exposure any evaluation made is
one event, exactly once (the window is larger than the run), and each event is what the
bundle it names gives that user."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from conftest import REPO

from expc.sdk.evaluate import Evaluator, content_id_of
from expc.sdk.exposures import Exposures

SECONDS = 30.0  # bounded, yet thousands of swaps land mid-evaluation on two cores
FIRST = json.loads((REPO / "generated" / "production" / "bundle.json").read_bytes())


def _flipped() -> dict[str, Any]:
    """The example with the variants of two experiments trading places: a user in one
    gets the other variant in this bundle, so both bundles' events can be told apart."""
    bundle: dict[str, Any] = json.loads(json.dumps(FIRST))
    for flag in bundle["flags"]:
        if flag["key"] in ("checkout-one-page", "search-typo-tolerance"):
            first, second = flag["variants"]
            first["range"], second["range"] = second["range"], first["range"]
            flag["variants"] = [second, first]
    bundle["release"]["content_id"] = content_id_of(bundle)
    return bundle


SECOND = _flipped()
EXPERIMENTS = {f["key"] for f in FIRST["flags"] if f["kind"] == "experiment"}
USERS = [{"user_id": f"user-{i}", "country": "NO", "platform": "ios"} for i in range(400)]
Triple = tuple[str, str, str | None]


def _exposed(user: dict[str, Any], results: dict[str, Any]) -> set[Triple]:
    return {
        (user["user_id"], key, result.variant)
        for key, result in results.items()
        if key in EXPERIMENTS
        and (result.variant is not None or result.reason.startswith("holdout:"))
    }


def test_evaluate_under_concurrent_swaps_with_exposures_loses_and_repeats_nothing() -> None:
    events: list[dict[str, Any]] = []
    sink_threads: set[str] = set()

    def sink(batch: list[dict[str, Any]]) -> None:
        events.extend(batch)
        sink_threads.add(threading.current_thread().name)

    exposures = Exposures(sink, window=1_000_000, ttl=3600, capacity=10_000_000, batch_size=500)
    evaluator = Evaluator(FIRST, exposures=exposures)
    stop = threading.Event()
    errors: list[BaseException] = []
    expected: list[set[Triple]] = [set() for _ in range(4)]
    calls = [0] * 4
    swaps = [0]

    def evaluate(worker: int) -> None:
        chooser = random.Random(worker)
        keys = sorted(EXPERIMENTS)
        try:
            while not stop.is_set():
                user = chooser.choice(USERS)
                if chooser.random() < 0.5:
                    results = evaluator.evaluate(user)
                else:
                    key = chooser.choice(keys)
                    results = {key: evaluator.evaluate(user, key)}
                expected[worker] |= _exposed(user, results)
                calls[worker] += 1
        except BaseException as error:  # reported below
            errors.append(error)

    def swap() -> None:
        try:
            while not stop.is_set():
                evaluator.swap(SECOND if swaps[0] % 2 else FIRST)
                swaps[0] += 1
                time.sleep(0.002)  # a swap holds the GIL for milliseconds: let them run
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=evaluate, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=swap))
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join()
    evaluator.close()

    assert errors == []
    assert swaps[0] > 50 and sum(calls) > 5_000
    triples = [(e["bucketing_value"], e["flag"], e["variant"]) for e in events]
    assert len(triples) == len(set(triples)), "an exposure was delivered twice"
    assert set(triples) == set().union(*expected), "an exposure was lost or invented"
    counters = exposures.counters
    assert (counters.dropped, counters.failed, counters.waiting) == (0, 0, 0)
    assert counters.exposures == counters.deduplicated + counters.delivered
    assert counters.delivered == len(events)
    assert sink_threads <= {"expc-exposures", threading.current_thread().name}
    # Each event is what the bundle it names gives its user.
    bundles = {b["release"]["content_id"]: Evaluator(b) for b in (FIRST, SECOND)}
    assert {e["content_id"] for e in events} == set(bundles)
    for event in events:
        user = next(u for u in USERS if u["user_id"] == event["bucketing_value"])
        result = bundles[event["content_id"]].evaluate(user, event["flag"])
        assert (result.variant, result.reason) == (event["variant"], event["reason"])
