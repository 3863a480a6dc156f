"""Exposure events (DESIGN §12, docs/exposures.md) as an application sees them: what an
event says, when there is one, de-duplication, delivery off the calling thread, a sink
that fails or hangs, a full queue, shutdown, and the JSON-lines file sink."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from expc.sdk import specialise
from expc.sdk.evaluate import Evaluator, content_id_of
from expc.sdk.exposure_events import event_of, json_line, line_of, templates_for
from expc.sdk.exposures import ExposureCounters, Exposures
from expc.sdk.program import Program
from expc.sdk.sinks import JsonLinesSink

BUNDLE = json.loads((REPO / "generated" / "production" / "bundle.json").read_bytes())
CONTENT_ID = BUNDLE["release"]["content_id"]
EXPERIMENTS = {f["key"] for f in BUNDLE["flags"] if f["kind"] == "experiment"}


class Collect:
    """A sink that keeps every batch and the name of the thread that delivered it."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.threads: set[str] = set()

    def __call__(self, events: list[dict[str, Any]]) -> None:
        self.batches.append(events)
        self.threads.add(threading.current_thread().name)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch]


def _user_where(test: Callable[[dict[str, Any]], bool], evaluator: Evaluator) -> str:
    return next(
        f"user-{i}" for i in range(100_000) if test(evaluator.evaluate({"user_id": f"user-{i}"}))
    )


def _exposed(results: dict[str, Any]) -> set[tuple[str, str | None]]:
    """What DESIGN §12 says makes an event: an experiment that enrols (a variant) or
    holds out the user."""
    return {
        (key, result.variant)
        for key, result in results.items()
        if key in EXPERIMENTS
        and (result.variant is not None or result.reason.startswith("holdout:"))
    }


def test_an_enrolment_makes_one_event_with_every_field_design_lists() -> None:
    plain = Evaluator(BUNDLE)
    user = _user_where(lambda r: r["checkout-one-page"].reason == "bucketed", plain)
    sink = Collect()
    before = time.time_ns() // 1_000_000
    with Evaluator(BUNDLE, exposures=Exposures(sink)) as evaluator:
        results = evaluator.evaluate({"user_id": user, "country": "NO"})
    after = time.time_ns() // 1_000_000
    events = {event["flag"]: event for event in sink.events}
    assert {(e["flag"], e["variant"]) for e in sink.events} == _exposed(results)
    event = events["checkout-one-page"]
    assert before <= event.pop("timestamp") <= after
    assert event == {
        "version": 1,
        "flag": "checkout-one-page",
        "variant": results["checkout-one-page"].variant,
        "reason": "bucketed",
        "bucketing_attribute": "user_id",
        "bucketing_value": user,
        "holdouts": ("global-holdout",),
        "groups": ("checkout-surface",),
        "environment": "production",
        "content_id": CONTENT_ID,
    }
    # Groups and holdouts make no events of their own.
    assert not {"global-holdout", "checkout-surface", "search-ranking"} & set(events)


def test_holding_out_makes_an_event_without_variant_and_other_reasons_none() -> None:
    plain = Evaluator(BUNDLE)
    user = _user_where(lambda r: r["global-holdout"].variant == "holdout", plain)
    sink = Collect()
    with Evaluator(BUNDLE, exposures=sink) as evaluator:
        results = evaluator.evaluate({"user_id": user, "country": "DE"})
    events = {event["flag"]: event for event in sink.events}
    held = events["search-typo-tolerance"]
    assert (held["variant"], held["reason"]) == (None, "holdout:global-holdout")
    assert (held["holdouts"], held["groups"]) == ((), ())
    # Not running, targeting, traffic and mutual exclusion enrol nobody: no event.
    for key, result in results.items():
        if result.reason in ("not-running", "targeting", "traffic") or result.reason.startswith(
            ("mutex:", "prerequisite:")
        ):
            assert key not in events, key
    assert {(e["flag"], e["variant"]) for e in sink.events} == _exposed(results)


def test_overrides_pass_no_holdout_or_group_and_rollouts_are_enrolments() -> None:
    sink = Collect()
    with Evaluator(BUNDLE, exposures=sink) as evaluator:
        evaluator.evaluate({"user_id": "qa-anna"})
    events = {event["flag"]: event for event in sink.events}
    anna = events["checkout-one-page"]
    assert (anna["variant"], anna["reason"], anna["holdouts"], anna["groups"]) == (
        "one-page",
        "override",
        (),
        (),
    )
    assert events["pricing-usd-rounding"]["reason"] == "rollout"


def test_one_flag_evaluated_alone_makes_only_its_own_event_and_explain_none() -> None:
    sink = Collect()
    with Evaluator(BUNDLE, exposures=sink) as evaluator:
        evaluator.evaluate({"user_id": "qa-anna"}, "checkout-one-page")
        evaluator.explain({"user_id": "qa-anna"})
    assert [(e["flag"], e["bucketing_value"]) for e in sink.events] == [
        ("checkout-one-page", "qa-anna")
    ]


def test_events_are_deduplicated_per_user_flag_and_variant_within_the_ttl() -> None:
    sink = Collect()
    exposures = Exposures(sink, ttl=0.3)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    for _ in range(5):
        results = evaluator.evaluate({"user_id": "qa-anna"})
        evaluator.evaluate({"user_id": "qa-anna"}, "checkout-one-page")
    exposures.flush()
    exposed = _exposed(results)
    assert sorted((e["flag"], e["variant"]) for e in sink.events) == sorted(exposed)
    assert ("checkout-one-page", "one-page") in exposed
    counters = exposures.counters
    assert counters.exposures == 5 * len(exposed) + 5
    assert counters.deduplicated == counters.exposures - len(exposed)
    time.sleep(0.35)  # past the ttl: the next evaluation makes new events
    evaluator.evaluate({"user_id": "qa-anna"})
    evaluator.close()
    assert len(sink.events) == 2 * len(exposed)


def test_a_new_variant_for_the_same_user_makes_a_new_event_and_a_swap_keeps_the_window() -> None:
    flipped = json.loads(json.dumps(BUNDLE))
    flag = next(f for f in flipped["flags"] if f["key"] == "checkout-one-page")
    flag["overrides"]["users"]["qa-anna"] = "control"
    flipped["release"]["content_id"] = content_id_of(flipped)
    sink = Collect()
    with Evaluator(BUNDLE, exposures=sink) as evaluator:
        evaluator.evaluate({"user_id": "qa-anna"}, "checkout-one-page")
        evaluator.swap(json.loads(json.dumps(BUNDLE)))  # a copy: same flags and variants
        evaluator.evaluate({"user_id": "qa-anna"}, "checkout-one-page")
        evaluator.swap(flipped)
        evaluator.evaluate({"user_id": "qa-anna"}, "checkout-one-page")
    assert [(e["variant"], e["content_id"]) for e in sink.events] == [
        ("one-page", CONTENT_ID),
        ("control", flipped["release"]["content_id"]),
    ]


def test_the_window_forgets_the_least_recently_evaluated_user_first() -> None:
    sink = Collect()
    exposures = Exposures(sink, window=2)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    key = "pricing-usd-rounding"  # a rollout: everyone with an id is exposed
    for user in ["a", "b", "a", "c", "a", "b"]:  # "b" is forgotten when "c" comes
        evaluator.evaluate({"user_id": user}, key)
    evaluator.close()
    assert [e["bucketing_value"] for e in sink.events] == ["a", "b", "c", "b"]


def test_a_window_of_zero_deduplicates_nothing_and_users_without_id_make_no_event() -> None:
    sink = Collect()
    exposures = Exposures(sink, window=0)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    for _ in range(3):
        evaluator.evaluate({"user_id": "a"}, "pricing-usd-rounding")
    evaluator.evaluate({}, "pricing-usd-rounding")  # a rollout reaches users without id
    evaluator.close()
    assert len(sink.events) == 3
    assert exposures.counters.anonymous == 1


def test_events_are_delivered_in_batches_on_a_background_thread() -> None:
    sink = Collect()
    exposures = Exposures(sink, batch_size=10, flush_interval=60)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    for i in range(25):
        evaluator.evaluate({"user_id": f"u-{i}"}, "pricing-usd-rounding")
    # Ten evaluations waiting wake the delivery thread long before the interval.
    _wait(lambda: len(sink.events) >= 20)
    assert sink.threads == {"expc-exposures"}
    evaluator.close()
    assert len(sink.events) == 25
    assert all(len(batch) <= 10 for batch in sink.batches)


def test_a_sink_that_raises_costs_its_events_never_an_evaluation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(events: list[dict[str, Any]]) -> None:
        raise RuntimeError("warehouse down\n\x1b[2J")

    exposures = Exposures(broken)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    with caplog.at_level(logging.WARNING, logger="expc.exposures"):
        results = evaluator.evaluate({"user_id": "qa-anna"})
        evaluator.close()
    assert results["checkout-one-page"].variant == "one-page"
    counters = exposures.counters
    assert (counters.failed, counters.delivered) == (len(_exposed(results)), 0)
    message = caplog.records[-1].getMessage()
    assert "RuntimeError: warehouse down" in message and message.isprintable()


def test_a_hanging_sink_never_blocks_evaluation_and_a_full_queue_drops_and_counts() -> None:
    release = threading.Event()
    sink = Collect()

    def hanging(events: list[dict[str, Any]]) -> None:
        release.wait()
        sink(events)

    exposures = Exposures(hanging, capacity=3, batch_size=1, flush_interval=0.01)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    key = "pricing-usd-rounding"  # a rollout: one exposure per user with an id
    evaluator.evaluate({"user_id": "first"}, key)
    _wait(lambda: exposures.counters.waiting == 0)  # taken, and the sink hangs on it
    for i in range(10):  # all return while the sink hangs: nothing waits for it
        assert evaluator.evaluate({"user_id": f"u-{i}"}, key).enrolled
    counters = exposures.counters
    assert (counters.waiting, counters.dropped) == (3, 7)
    release.set()
    _wait(lambda: exposures.counters.delivered == 4)
    # A dropped exposure was not remembered: the user's next evaluation makes the event.
    evaluator.evaluate({"user_id": "u-5"}, key)
    evaluator.close()
    assert [e["bucketing_value"] for e in sink.events] == ["first", "u-0", "u-1", "u-2", "u-5"]
    assert exposures.counters == ExposureCounters(
        exposures=12, deduplicated=0, anonymous=0, dropped=7, delivered=5, failed=0, waiting=0
    )


def _wait(condition: Callable[[], bool]) -> None:
    """Wait for the delivery thread; the limit only keeps a broken build from hanging."""
    give_up = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < give_up, "gave up waiting"
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("flush_interval", float("inf")),  # once killed the delivery thread at its first wait
        ("flush_interval", threading.TIMEOUT_MAX * 2),
        ("flush_interval", float("nan")),
        ("flush_interval", 0),
        ("ttl", float("nan")),
        ("ttl", float("inf")),
        ("ttl", -1),
        ("ttl", 10**400),
        ("window", -1),
        ("window", 2.5),
        ("capacity", 0),
        ("batch_size", True),
        ("batch_size", "10"),
    ],
)
def test_settings_that_would_stop_delivery_are_refused_when_made(setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^Exposures: {setting} must be .*; got "):
        Exposures(Collect(), **{setting: value})


def test_the_longest_interval_threading_can_wait_still_delivers_full_batches() -> None:
    sink = Collect()
    exposures = Exposures(sink, batch_size=1, flush_interval=threading.TIMEOUT_MAX)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    evaluator.evaluate({"user_id": "u-1"}, "pricing-usd-rounding")
    _wait(lambda: exposures.counters.delivered == 1)
    assert sink.threads == {"expc-exposures"}
    with pytest.raises(ValueError, match=r"^Exposures: timeout must be"):
        exposures.close(timeout=float("inf"))  # refused before anything changes
    evaluator.evaluate({"user_id": "u-2"}, "pricing-usd-rounding")
    evaluator.close()
    assert [e["bucketing_value"] for e in sink.events] == ["u-1", "u-2"]


def test_a_sink_that_exits_costs_one_batch_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Collect()

    def exits_once(events: list[dict[str, Any]]) -> None:
        if not sink.batches and events[0]["bucketing_value"] == "first":
            sys.exit(3)  # on the delivery thread, this would end it quietly
        sink(events)

    exposures = Exposures(exits_once, batch_size=1, flush_interval=0.01)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    with caplog.at_level(logging.WARNING, logger="expc.exposures"):
        evaluator.evaluate({"user_id": "first"}, "pricing-usd-rounding")
        _wait(lambda: exposures.counters.failed == 1)
        evaluator.evaluate({"user_id": "second"}, "pricing-usd-rounding")
        _wait(lambda: exposures.counters.delivered == 1)
    assert sink.threads == {"expc-exposures"}
    assert "SystemExit: 3" in caplog.records[0].getMessage()
    evaluator.close()
    assert [e["bucketing_value"] for e in sink.events] == ["second"]


def test_an_unexpected_error_on_the_delivery_thread_is_logged_once_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expc.sdk import exposures as module

    def build(value: str, template: Any, milliseconds: int) -> dict[str, Any]:
        if value.startswith("bad"):
            raise RuntimeError(f"cannot build the event of {value}")
        return event_of(value, template, milliseconds)

    monkeypatch.setattr(module, "event_of", build)  # a defect in building events
    sink = Collect()
    exposures = Exposures(sink, batch_size=1, flush_interval=0.01)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    with caplog.at_level(logging.DEBUG, logger="expc.exposures"):
        evaluator.evaluate({"user_id": "bad-1"}, "pricing-usd-rounding")
        _wait(lambda: "event of bad-1" in caplog.text)
        evaluator.evaluate({"user_id": "bad-2"}, "pricing-usd-rounding")  # fails again
        _wait(lambda: "event of bad-2" in caplog.text)
        evaluator.evaluate({"user_id": "good"}, "pricing-usd-rounding")
        _wait(lambda: exposures.counters.delivered == 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "expc exposures: unexpected RuntimeError: cannot build the event of bad-1; delivery goes on"
    ]
    assert sink.threads == {"expc-exposures"}
    evaluator.close()


def test_close_delivers_everything_and_later_exposures_are_counted_as_dropped() -> None:
    sink = Collect()
    exposures = Exposures(sink, flush_interval=3600, batch_size=10_000)
    evaluator = Evaluator(BUNDLE, exposures=exposures)
    for i in range(100):
        evaluator.evaluate({"user_id": f"u-{i}"})
    assert sink.events == []  # nothing delivered yet: the interval is an hour
    evaluator.close()
    assert len(sink.events) == exposures.counters.delivered > 100
    evaluator.close()  # twice is fine
    assert evaluator.evaluate({"user_id": "later"}, "pricing-usd-rounding").enrolled
    assert exposures.counters.dropped == 1


def test_exposures_are_flushed_at_exit_without_close(tmp_path: Path) -> None:
    log_file = tmp_path / "exposures.jsonl"
    script = f"""
import json
from expc.sdk.evaluate import Evaluator
from expc.sdk.exposures import Exposures
from expc.sdk.sinks import JsonLinesSink
evaluator = Evaluator.load({str(REPO / "generated" / "production" / "bundle.json")!r},
    exposures=Exposures(JsonLinesSink({str(log_file)!r}), flush_interval=3600))
for i in range(50):
    evaluator.evaluate({{"user_id": f"u-{{i}}"}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=120)
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len({json.loads(line)["bucketing_value"] for line in lines}) == 50


def test_environment_of_the_bundle_is_in_every_event() -> None:
    staged = json.loads(json.dumps(BUNDLE))
    staged["release"]["environment"] = "staging"
    sink = Collect()
    with Evaluator(staged, exposures=sink) as evaluator:
        assert evaluator.environment == "staging"
        evaluator.evaluate({"user_id": "qa-anna"})
    assert {e["environment"] for e in sink.events} == {"staging"}


def test_bundles_too_large_to_specialise_make_the_same_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def events_of(evaluator_events: Collect) -> list[tuple[Any, ...]]:
        return sorted(
            (e["flag"], str(e["variant"]), e["reason"], e["bucketing_value"], e["holdouts"])
            for e in evaluator_events.events
        )

    users = [{"user_id": f"u-{i}", "country": "NO", "platform": "ios"} for i in range(300)]
    fast = Collect()
    with Evaluator(BUNDLE, exposures=fast) as evaluator:
        for user in users:
            evaluator.evaluate(user)
            evaluator.evaluate(user, "checkout-address-autocomplete")
    monkeypatch.setattr(specialise, "MAX_FLAGS", 0)  # the reference loop, for every call
    slow = Collect()
    with Evaluator(BUNDLE, exposures=slow) as evaluator:
        for user in users:
            evaluator.evaluate(user)
            evaluator.evaluate(user, "checkout-address-autocomplete")
    assert events_of(fast) == events_of(slow) and len(fast.events) > 300


def test_the_json_lines_sink_writes_one_event_per_line_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "exposures.jsonl"
    sink = JsonLinesSink(path, max_bytes=2_000, backups=2)
    exposures = Exposures(sink, batch_size=5)
    with Evaluator(BUNDLE, exposures=exposures) as evaluator:
        for i in range(60):
            evaluator.evaluate({"user_id": f"u-{i}"}, "pricing-usd-rounding")
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["exposures.jsonl", "exposures.jsonl.1", "exposures.jsonl.2"]
    kept = [
        json.loads(line)
        for name in reversed(files)
        for line in (path.parent / name).read_text(encoding="utf-8").splitlines()
    ]
    # The oldest are gone with the third rotation; what is kept is in order, whole.
    assert [e["bucketing_value"] for e in kept] == [f"u-{i}" for i in range(60 - len(kept), 60)]
    assert all((path.parent / name).stat().st_size <= 2_000 for name in files)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_bytes": float("nan")},
        {"max_bytes": float("inf")},
        {"max_bytes": 0},
        {"max_bytes": True},
        {"backups": -1},
        {"backups": 1.5},
    ],
)
def test_a_json_lines_sink_refuses_sizes_that_would_never_rotate(
    tmp_path: Path, settings: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="JsonLinesSink: max_bytes must be a whole number"):
        JsonLinesSink(tmp_path / "exposures.jsonl", **settings)


def test_a_json_lines_sink_without_backups_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "exposures.jsonl"
    sink = JsonLinesSink(path, max_bytes=500, backups=0)
    event = event_of("u-1", next(iter(templates_for(Program(BUNDLE)).values())), 1)
    for _ in range(10):
        sink([event])
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["exposures.jsonl"]
    assert path.stat().st_size <= 500


def test_a_batch_the_json_lines_sink_fails_to_write_is_wholly_absent_and_counted_failed(
    tmp_path: Path,
) -> None:
    """A file size limit (as a full disk would) cuts a batch short; afterwards the file
    must hold exactly the batches counted as delivered, each whole, once room is back."""
    log_file = tmp_path / "exposures.jsonl"
    script = f"""
import json, resource, signal
from expc.sdk.evaluate import Evaluator
from expc.sdk.exposures import Exposures
from expc.sdk.sinks import JsonLinesSink
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
exposures = Exposures(JsonLinesSink({str(log_file)!r}), flush_interval=3600, batch_size=10_000)
evaluator = Evaluator.load({str(REPO / "generated" / "production" / "bundle.json")!r},
    exposures=exposures)
delivered = []
def batch(users):
    before = exposures.counters.delivered
    for user in users:
        evaluator.evaluate({{"user_id": user}}, "pricing-usd-rounding")
    exposures.flush()
    if exposures.counters.delivered > before:
        delivered.append(users)
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1500, hard))
for b in range(6):
    batch([f"u-{{b}}-{{i}}" for i in range(3)])
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
for b in range(6, 8):
    batch([f"u-{{b}}-{{i}}" for i in range(3)])
evaluator.close()
counters = exposures.counters
print(json.dumps({{"delivered": delivered, "counted": [counters.delivered, counters.failed]}}))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, timeout=120, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    delivered, failed = report["counted"]
    assert failed > 0 and "events lost" in run.stderr  # some batches did fail
    assert report["delivered"][-2:] == [[f"u-{b}-{i}" for i in range(3)] for b in (6, 7)]
    text = log_file.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # no partial line
    assert [e["bucketing_value"] for e in lines] == [u for b in report["delivered"] for u in b]
    assert len(lines) == delivered


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(exclude_categories=["Cs"])),
    st.integers(0, 2**53),
    st.sampled_from([None, "staging", 'é"\n\\\u2028']),
)
def test_lines_written_from_templates_are_the_events_as_json(
    value: str, timestamp: int, environment: str | None
) -> None:
    staged = json.loads(json.dumps(BUNDLE))
    staged["release"]["environment"] = environment
    for template in templates_for(Program(staged)).values():
        line = line_of(value, template, timestamp)
        event = event_of(value, template, timestamp)
        assert line == json_line(event)
        assert json.loads(line) == json.loads(json.dumps(event))
