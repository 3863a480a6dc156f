"""OFREP from `expc serve`, as a client sees it over raw HTTP: every endpoint, every
error shape, the reasons, the ETag of bulk evaluation, hot swapping, environments, and
what hostile or broken clients get (an answer, one log line, never a traceback).

The server runs in a thread of the test process (`serving_here`), so its log is in
caplog; `test_ofrep_command.py` runs it as a command."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ofrep_support import (
    Response,
    bundle_bytes,
    content_id,
    exchange,
    post,
    replace_atomically,
    serving_here,
    status_of,
    write_definitions,
)

from expc.errors import UsageError
from expc.sdk import Evaluator
from expc.tools import asgi, ofrep
from expc.tools.serve import open_serving

SINGLE = "/ofrep/v1/evaluate/flags/"
BULK = "/ofrep/v1/evaluate/flags"


@dataclass(frozen=True)
class Bundles:
    first: bytes
    second: bytes  # the same company after a change: another content id


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    folder = tmp_path_factory.mktemp("ofrep")
    first = bundle_bytes(write_definitions(folder / "first"))
    changed = (folder / "first" / "banner.yaml").read_text().replace("traffic: 100", "traffic: 50")
    second = bundle_bytes(write_definitions(folder / "second", **{"banner.yaml": changed}))
    assert content_id(first) != content_id(second)
    return Bundles(first, second)


@dataclass
class Served:
    root: Path
    port: int

    def single(self, key: str, body: bytes | dict[str, Any] | None, **headers: str) -> Response:
        return post(self.port, SINGLE + key, body, **headers)

    def bulk(self, body: bytes | dict[str, Any] | None, **headers: str) -> Response:
        return post(self.port, BULK, body, **headers)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, bundles: Bundles) -> Iterator[Served]:
    """One server for the tests that leave its bundle alone (starting one per test
    costs a fifth of a second in shutting it down)."""
    root = tmp_path_factory.mktemp("generated")
    (root / "bundle.json").write_bytes(bundles.first)
    with serving_here(root) as (_serving, port):
        yield Served(root, port)


@pytest.fixture
def served(shared: Served, caplog: pytest.LogCaptureFixture) -> Served:
    caplog.set_level(logging.INFO, logger="expc.serve")
    return shared


@pytest.fixture
def fresh(tmp_path: Path, bundles: Bundles, caplog: pytest.LogCaptureFixture) -> Iterator[Served]:
    """A server of its own, for a test that changes the bundle."""
    caplog.set_level(logging.INFO, logger="expc.serve")
    (tmp_path / "bundle.json").write_bytes(bundles.first)
    with serving_here(tmp_path) as (_serving, port):
        yield Served(tmp_path, port)


def context(targeting_key: str | None = None, **attributes: Any) -> dict[str, Any]:
    if targeting_key is not None:
        attributes["targetingKey"] = targeting_key
    return {"context": attributes}


def first_user(evaluator: Evaluator, key: str, reason: str, **attributes: Any) -> str:
    """The first id `u-N` whose result for `key` has `reason` (found, not hard-coded)."""
    for number in range(10_000):
        user = {"user_id": f"u-{number}", **attributes}
        if evaluator.evaluate(user, key).reason == reason:
            return f"u-{number}"
    raise AssertionError(f"no user with reason {reason}")


def test_single_evaluations_answer_what_the_evaluator_answers(
    served: Served, bundles: Bundles
) -> None:
    evaluator = Evaluator(bundles.first)
    seen = set()
    for number in range(150):
        attributes = {"country": ["NO", "SE", "DE"][number % 3], "account_id": f"a-{number}"}
        user = {"user_id": f"u-{number}", **attributes}
        for key in evaluator.flag_keys:
            expected = evaluator.evaluate(user, key)
            answer = served.single(key, context(f"u-{number}", **attributes))
            assert answer.status == 200, answer.body
            document = answer.json()
            assert document["key"] == key
            assert document["variant"] == expected.variant
            assert document.get("value") == expected.variant  # absent when not enrolled
            assert document["metadata"]["expc.reason"] == expected.reason
            assert document["metadata"]["expc.content_id"] == content_id(bundles.first)
            seen.add(document["reason"])
    assert seen == {"SPLIT", "TARGETING_MATCH", "DEFAULT", "DISABLED"}  # every kind was met


def test_each_outcome_has_its_openfeature_reason(served: Served, bundles: Bundles) -> None:
    evaluator = Evaluator(bundles.first)
    bucketed = first_user(evaluator, "banner", "bucketed", country="NO")
    held_out = first_user(evaluator, "banner", "holdout:hold", country="NO")
    cases = [
        ("banner", context("qa-anna"), "TARGETING_MATCH", "blue", "override"),
        ("banner", context(bucketed, country="NO"), "SPLIT", None, "bucketed"),
        ("banner", context(bucketed, country="DE"), "DEFAULT", None, "targeting"),
        ("banner", context(held_out, country="NO"), "DEFAULT", None, "holdout:hold"),
        ("draft-idea", context("u-1"), "DISABLED", None, "not-running"),
        ("old-test", context("u-1"), "TARGETING_MATCH", "winner", "rollout"),
    ]
    for key, body, reason, variant, expc_reason in cases:
        document = served.single(key, body).json()
        assert document["reason"] == reason, (key, body, document)
        assert document["metadata"]["expc.reason"] == expc_reason
        if variant is not None:
            assert document["variant"] == document["value"] == variant
        if reason in ("DEFAULT", "DISABLED"):
            # Not enrolled: no value, so the caller's code default applies.
            assert "value" not in document and document["variant"] is None
    override = served.single("banner", context("qa-anna")).json()
    assert json.loads(override["metadata"]["expc.payload"]) == {"color": "blue", "size": 2}
    assert "expc.payload" not in served.single("old-test", context("u-1")).json()["metadata"]


def test_the_targeting_key_is_the_user_id_over_the_context(
    served: Served, bundles: Bundles
) -> None:
    evaluator = Evaluator(bundles.first)
    expected = [
        evaluator.evaluate({"user_id": f"k-{n}", "country": "NO"}, "banner").variant
        for n in range(60)
    ]
    assert len(set(expected)) == 3  # blue, control and held out (None) all occur
    for_keys = [
        served.single("banner", context(f"k-{n}", country="NO", user_id="ignored")).json()
        for n in range(60)
    ]
    assert [document["variant"] for document in for_keys] == expected
    # Other bucketing attributes come from the context, never from the targeting key.
    by_account = served.single("by-account", context("k-1", account_id="acme")).json()
    assert by_account["variant"] == evaluator.evaluate({"account_id": "acme"}, "by-account").variant
    lacking = served.single("by-account", context("k-1"))
    assert lacking.status == 400 and lacking.json()["errorCode"] == "INVALID_CONTEXT"
    assert "'account_id', which the context lacks" in lacking.json()["errorDetails"]


def test_the_targeting_key_can_stand_for_another_attribute(
    tmp_path: Path, bundles: Bundles
) -> None:
    evaluator = Evaluator(bundles.first)
    (tmp_path / "bundle.json").write_bytes(bundles.first)
    with serving_here(tmp_path, bucketing_attribute="account_id") as (_serving, port):
        variants = [
            post(port, SINGLE + "by-account", context(f"a-{n}")).json()["variant"]
            for n in range(30)
        ]
        assert variants == [
            evaluator.evaluate({"account_id": f"a-{n}"}, "by-account").variant for n in range(30)
        ]
        banner = post(port, SINGLE + "banner", context("a-1", country="NO"))
        assert banner.json()["errorCode"] == "INVALID_CONTEXT"
        assert (
            post(port, SINGLE + "banner", context("a-1", user_id="qa-anna")).json()["variant"]
            == "blue"
        )


def test_a_flag_that_needs_a_targeting_key_says_so(served: Served) -> None:
    for body in (context(country="NO"), context("", country="NO"), {}, None):
        answer = served.single("banner", body)
        assert answer.status == 400
        document = answer.json()
        assert set(document) == {"key", "errorCode", "errorDetails"}
        assert document["key"] == "banner"
        assert document["errorCode"] == "TARGETING_KEY_MISSING"
        assert "user_id" in document["errorDetails"]
    # Flags that need no bucketing value answer without one.
    assert served.single("draft-idea", None).json()["reason"] == "DISABLED"
    assert served.single("old-test", {}).json()["value"] == "winner"
    flags = {flag["key"]: flag for flag in served.bulk(context(country="NO")).json()["flags"]}
    assert flags["banner"]["errorCode"] == flags["hold"]["errorCode"] == "TARGETING_KEY_MISSING"
    assert flags["by-account"]["errorCode"] == "INVALID_CONTEXT"  # an account, not a key
    assert flags["draft-idea"]["reason"] == "DISABLED"
    assert flags["old-test"]["value"] == "winner"


BAD_BODIES = {
    "not JSON": (b"{not json", "PARSE_ERROR"),
    "not UTF-8": (b'{"context": {"targetingKey": "\xff"}}', "PARSE_ERROR"),
    "a list": (b"[]", "PARSE_ERROR"),
    "a string": (b'"u-1"', "PARSE_ERROR"),
    "NaN": (b'{"context": {"targetingKey": "u", "score": NaN}}', "PARSE_ERROR"),
    "nested too deep": (b"[" * 50_000, "PARSE_ERROR"),
    "a number of 5,000 digits": (b'{"context": {"n": 1' + b"0" * 5000 + b"}}", "PARSE_ERROR"),
    "context a list": (b'{"context": ["u-1"]}', "INVALID_CONTEXT"),
    "context a string": (b'{"context": "u-1"}', "INVALID_CONTEXT"),
    "targetingKey a number": (b'{"context": {"targetingKey": 42}}', "INVALID_CONTEXT"),
    "targetingKey an object": (b'{"context": {"targetingKey": {"id": 1}}}', "INVALID_CONTEXT"),
}


@pytest.mark.parametrize("body,code", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_get_openfeature_error_codes(served: Served, body: bytes, code: str) -> None:
    single = served.single("banner", body)
    assert single.status == 400 and single.headers["content-type"] == "application/json"
    assert single.json()["key"] == "banner" and single.json()["errorCode"] == code
    assert single.json()["errorDetails"]
    bulk = served.bulk(body)
    assert bulk.status == 400
    assert set(bulk.json()) == {"errorCode", "errorDetails"} and bulk.json()["errorCode"] == code


def test_odd_attribute_values_are_attributes_not_errors(served: Served) -> None:
    odd = context("u-1", country=["NO"], nested={"a": [1]}, big=1e308, text="\ud800\u202e")
    answer = served.single("banner", odd)
    assert answer.status == 200
    assert answer.json()["metadata"]["expc.reason"] == "targeting"  # a list is no country


def test_an_unknown_flag_is_flag_not_found(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    for path, key in [
        ("no-such-flag", "no-such-flag"),
        ("a%2Fb", "a/b"),
        ("banner/extra", "banner/extra"),
        ("caf%C3%A9", "caf\u00e9"),
    ]:
        answer = served.single(path, context("u-1"))
        assert answer.status == 404
        assert answer.json()["key"] == key and answer.json()["errorCode"] == "FLAG_NOT_FOUND"
        assert answer.body.isascii()
    # A key that decodes to control characters is no key at all.
    escape = served.single("%1b%5b2Jred", context("u-1"))
    assert escape.status == 400 and "control characters" in escape.json()["errorDetails"]
    lines = [record.getMessage() for record in caplog.records]
    assert all(line.isascii() and line.isprintable() for line in lines), lines
    assert '"POST /ofrep/v1/evaluate/flags/%1b%5b2Jred HTTP/1.1" 400' in lines[-1]


def test_bulk_answers_carry_an_etag_and_304_until_something_changes(
    fresh: Served, bundles: Bundles
) -> None:
    served = fresh
    body = context("u-7", country="NO")
    first = served.bulk(body)
    assert first.status == 200
    etag = first.headers["etag"]
    assert {flag["key"] for flag in first.json()["flags"]} == set(
        Evaluator(bundles.first).flag_keys
    )
    assert first.json()["metadata"]["expc.content_id"] == content_id(bundles.first)
    again = served.bulk(body, If_None_Match=etag)
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag
    assert served.bulk(body, If_None_Match=f'"other", W/{etag}').status == 304
    other_user = served.bulk(context("u-8", country="SE"), If_None_Match=etag)
    assert other_user.status == 200 and other_user.headers["etag"] != etag
    replace_atomically(served.root / "bundle.json", bundles.second)  # a new compile
    deadline = time.monotonic() + 5
    while (changed := served.bulk(body, If_None_Match=etag)).status == 304:
        assert time.monotonic() < deadline, "the new bundle was not picked up"
        time.sleep(0.05)
    assert changed.status == 200 and changed.headers["etag"] != etag
    assert changed.json()["metadata"]["expc.content_id"] == content_id(bundles.second)


def test_wrong_methods_and_paths_get_json_errors(served: Served) -> None:
    for method, path in [("GET", BULK), ("PUT", SINGLE + "banner"), ("DELETE", BULK)]:
        answer = post(served.port, path, None, method=method)
        assert answer.status == 405 and answer.headers["allow"] == "POST"
        assert "errorDetails" in answer.json()
    for path in [
        "/ofrep/v1/configuration",
        "/ofrep/v1/evaluate",
        "/ofrep/v2/evaluate/flags",
        "/ofrep",
    ]:
        answer = post(served.port, path, {})
        assert answer.status == 404 and "errorDetails" in answer.json()


def test_the_files_are_still_served_beside_ofrep(served: Served, bundles: Bundles) -> None:
    got = post(served.port, "/bundle.json", None, method="GET")
    assert got.status == 200 and got.body == bundles.first
    cached = post(
        served.port, "/bundle.json", None, method="GET", If_None_Match=got.headers["etag"]
    )
    assert cached.status == 304
    assert post(served.port, "/../bundle.json", None, method="GET").status == 404


def test_oversized_bodies_are_refused_without_being_read(served: Served) -> None:
    declared = (
        b"POST /ofrep/v1/evaluate/flags/banner HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 10000000\r\n\r\n"
    )
    began = time.monotonic()
    answer = exchange(served.port, declared + b"{")  # the server closes: no waiting for 10 MB
    assert status_of(answer) == 413 and time.monotonic() - began < 5
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["key"] == "banner"
    chunk = b"a" * 8192
    chunked = (
        b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunked += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 9 + b"0\r\n\r\n"
    assert status_of(exchange(served.port, chunked)) == 413
    # Just under the limit is an ordinary body.
    padded = b'{"context": {"targetingKey": "qa-anna"}}'
    padded += b" " * (ofrep.MAX_BODY - len(padded))
    assert served.single("banner", padded).json()["variant"] == "blue"


@pytest.fixture
def impatient(tmp_path: Path, bundles: Bundles, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(asgi, "HEAD_SECONDS", 0.5)
    monkeypatch.setattr(asgi, "BODY_SECONDS", 0.5)
    (tmp_path / "bundle.json").write_bytes(bundles.first)
    with serving_here(tmp_path) as (_serving, port):
        yield port


@pytest.mark.parametrize(
    "sent,status",
    [
        (b"", 408),  # connects and says nothing
        (b"POST /ofrep/v1/evaluate/flags/banner HTTP/1.1\r\nHo", 408),  # a head that stalls
        (
            b"POST /ofrep/v1/evaluate/flags/banner HTTP/1.1\r\nContent-Length: 99\r\n\r\n{",
            408,  # a body that stalls
        ),
    ],
    ids=["silent", "stalled head", "stalled body"],
)
def test_slow_clients_are_cut_off_and_others_are_served_meanwhile(
    impatient: int, sent: bytes, status: int
) -> None:
    with socket.create_connection(("127.0.0.1", impatient), timeout=5) as slow:
        slow.sendall(sent)
        # While it stalls, an ordinary request is answered at once.
        assert post(impatient, SINGLE + "old-test", {}).status == 200
        answer = slow.recv(65536)
        assert status_of(answer) == status
        assert slow.recv(65536) == b""  # and the connection is closed


def test_a_trickling_head_is_cut_off_even_if_each_byte_is_prompt(impatient: int) -> None:
    with socket.create_connection(("127.0.0.1", impatient), timeout=5) as slow:
        began = time.monotonic()
        answer = b""
        for byte in b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nX-Padding: " + b"a" * 100:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.02)
            if time.monotonic() - began > 3:
                break
        answer = slow.recv(65536)
    assert status_of(answer) == 408


def test_a_head_still_incomplete_after_64_kib_is_refused(served: Served) -> None:
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(100))
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as client:
        client.sendall(b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\n" + padding)
        assert status_of(client.recv(65536)) == 431


GARBAGE = {
    "Content-Length with Transfer-Encoding": (
        b"POST /ofrep/v1/evaluate/flags/banner HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /bundle.json HTTP/1.1\r\n\r\n"
    ),
    "two Content-Lengths": (
        b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n"
        b"\r\n{}"
    ),
    "bad chunk size": (
        b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"
    ),
    "unknown Transfer-Encoding": (
        b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nTransfer-Encoding: gzip, x\r\n\r\n{}"
    ),
    "bare line feeds": b"POST /ofrep/v1/evaluate/flags HTTP/1.1\nContent-Length: 2\n\n{}",
    "NUL in the path": b"POST /ofrep/v1/evaluate/flags/ban\x00ner HTTP/1.1\r\n\r\n",
    "terminal escape in the path": b"GET /\x1b[2J\x1b[31mred HTTP/1.1\r\n\r\n",
    "folded header": b"GET /bundle.json HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
    "space in a header name": b"GET /bundle.json HTTP/1.1\r\nHo st: x\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
}


@pytest.mark.parametrize("request_bytes", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_gets_400_one_escaped_log_line_and_no_traceback(
    served: Served,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    request_bytes: bytes,
) -> None:
    answer = exchange(served.port, request_bytes)
    assert status_of(answer) == 400
    assert answer.count(b"HTTP/1.1") == 1  # nothing smuggled behind it was answered
    assert served.single("old-test", {}).status == 200  # still serving
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines  # the garbage, and the request after it
    assert all(line.isascii() and line.isprintable() for line in lines), lines
    assert not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in capfd.readouterr().err


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    body = b'{"context": {"targetingKey": "qa-anna"}}'
    one = b"POST /ofrep/v1/evaluate/flags/banner HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    last = b"POST /ofrep/v1/evaluate/flags/old-test HTTP/1.1\r\nConnection: close\r\n\r\n"
    answer = exchange(served.port, one + body + one + body + last)
    assert answer.count(b"HTTP/1.1 200") == 3
    assert answer.index(b'"blue"') < answer.rindex(b'"blue"') < answer.index(b'"winner"')


def test_a_failure_inside_is_a_500_and_one_line_not_a_traceback(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_arguments: Any) -> ofrep.Answer:
        raise RuntimeError("a bug\nwith a second line")

    monkeypatch.setattr(ofrep, "evaluate_one", broken)
    answer = served.single("banner", context("u-1"))
    assert answer.status == 500 and set(answer.json()) == {"errorDetails"}
    assert served.bulk(context("u-1")).status == 200  # the server goes on
    failures = [r for r in caplog.records if "request failed" in r.getMessage()]
    assert len(failures) == 1 and not failures[0].exc_info
    assert "\\n" in failures[0].getMessage() and "\n" not in failures[0].getMessage()


def test_a_half_written_bundle_never_replaces_the_good_one(
    fresh: Served, bundles: Bundles, caplog: pytest.LogCaptureFixture
) -> None:
    served = fresh
    good = content_id(bundles.first)
    with (served.root / "bundle.json").open("wb") as writing:  # written in place, slowly
        writing.write(bundles.second[: len(bundles.second) // 2])
        writing.flush()
        time.sleep(0.6)  # the watcher looks several times meanwhile
        answer = served.single("banner", context("qa-anna"))
        assert answer.status == 200 and answer.json()["metadata"]["expc.content_id"] == good
        writing.write(bundles.second[len(bundles.second) // 2 :])
    deadline = time.monotonic() + 5
    while served.single("banner", context("qa-anna")).json()["metadata"]["expc.content_id"] == good:
        assert time.monotonic() < deadline, "the completed bundle was not picked up"
        time.sleep(0.05)
    refused = [r.getMessage() for r in caplog.records if "not loaded" in r.getMessage()]
    assert refused and all(f"still serving {good}" in line for line in refused)


def test_before_the_first_compile_ofrep_answers_503_then_serves(
    tmp_path: Path, bundles: Bundles
) -> None:
    with serving_here(tmp_path) as (serving, port):
        assert serving.content_id is None
        waiting = post(port, SINGLE + "banner", context("qa-anna"))
        assert waiting.status == 503 and waiting.headers["retry-after"] == "1"
        assert "expc compile" in waiting.json()["errorDetails"]
        replace_atomically(tmp_path / "bundle.json", bundles.first)
        deadline = time.monotonic() + 5
        while (answer := post(port, SINGLE + "banner", context("qa-anna"))).status == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answer.json()["variant"] == "blue"


def test_a_bad_bundle_at_start_is_a_usage_error(tmp_path: Path, bundles: Bundles) -> None:
    altered = json.loads(bundles.first)
    altered["flags"][0]["serving"] = not altered["flags"][0]["serving"]
    (tmp_path / "bundle.json").write_text(json.dumps(altered))
    with pytest.raises(UsageError, match="content id mismatch"):
        open_serving(tmp_path, "127.0.0.1", 0)


def for_environment(bundle: bytes, environment: str) -> bytes:
    """`bundle` as compiled for `environment` (the name is outside the content id)."""
    document = json.loads(bundle)
    document["release"]["environment"] = environment
    return json.dumps(document).encode()


@pytest.fixture
def environments(tmp_path: Path, bundles: Bundles) -> Path:
    for name, bundle in (("staging", bundles.second), ("production", bundles.first)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bundle.json").write_bytes(for_environment(bundle, name))
    (tmp_path / "schema").mkdir()  # a folder without a bundle is no environment
    return tmp_path


def test_with_environments_env_chooses_the_bundle(environments: Path, bundles: Bundles) -> None:
    with serving_here(environments, environment="staging") as (serving, port):
        assert serving.url.endswith("/staging/bundle.json")
        document = post(port, SINGLE + "banner", context("qa-anna")).json()
        assert document["metadata"]["expc.content_id"] == content_id(bundles.second)
        assert document["metadata"]["expc.environment"] == "staging"
        bulk = post(port, BULK, context("qa-anna")).json()
        assert bulk["metadata"] == {
            "expc.content_id": content_id(bundles.second),
            "expc.environment": "staging",
        }
        # The files of every environment are served.
        production = post(port, "/production/bundle.json", None, method="GET")
        assert production.body == for_environment(bundles.first, "production")


def test_a_bundle_of_another_environment_is_never_served_as_this_one(
    environments: Path, bundles: Bundles, caplog: pytest.LogCaptureFixture
) -> None:
    staging = (environments / "staging" / "bundle.json").read_bytes()
    production = environments / "production" / "bundle.json"
    good = production.read_bytes()
    production.write_bytes(staging)  # copied by hand into the wrong folder
    with pytest.raises(UsageError, match=r"for the environment 'staging', not .*'production'"):
        open_serving(environments, "127.0.0.1", 0, environment="production")
    production.write_bytes(good)
    with serving_here(environments, environment="production") as (_serving, port):
        replace_atomically(production, staging)
        time.sleep(0.6)  # the watcher looks several times meanwhile
        answer = post(port, SINGLE + "banner", context("qa-anna")).json()
        assert answer["metadata"]["expc.content_id"] == content_id(bundles.first)
        assert answer["metadata"]["expc.environment"] == "production"
    refused = [r.getMessage() for r in caplog.records if "not loaded" in r.getMessage()]
    assert refused and all("'staging', not the environment 'production'" in m for m in refused)


@pytest.mark.parametrize(
    "environment,message",
    [
        (None, r"holds a bundle per environment \(production, staging\): choose one with --env"),
        ("prod", "--env prod: no such environment in .*; choose one of: production, staging"),
        ("schema", "no such environment"),
        ("../production", "no such environment"),
    ],
)
def test_a_missing_or_unknown_env_is_a_usage_error_naming_them(
    environments: Path, environment: str | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        open_serving(environments, "127.0.0.1", 0, environment=environment)


def test_a_definitions_folder_is_never_served(tmp_path: Path) -> None:
    """Definitions hold the values private attributes keep out of bundles."""
    definitions = write_definitions(tmp_path / "definitions")
    (definitions / "project.yaml").write_text("kind: project\nkey: project\n")
    with pytest.raises(UsageError, match=r"holds definitions .*serve the folder"):
        open_serving(definitions, "127.0.0.1", 0)


def test_env_without_environments_is_a_usage_error(tmp_path: Path, bundles: Bundles) -> None:
    (tmp_path / "bundle.json").write_bytes(bundles.first)
    with pytest.raises(UsageError, match=r"has no environments.*leave out --env"):
        open_serving(tmp_path, "127.0.0.1", 0, environment="production")


def test_private_attributes_need_nothing_of_ofrep_and_reach_no_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A project that keeps user ids private (DESIGN §12): the bundle holds digests, the
    evaluator hashes the targeting key, and OFREP answers as for any other bundle."""
    caplog.set_level(logging.INFO, logger="expc.serve")
    private = (
        "kind: project\nkey: project\nbucketing: {by: user_id}\nprivate_attributes: [user_id]\n"
    )
    bundle = bundle_bytes(write_definitions(tmp_path / "definitions", **{"project.yaml": private}))
    assert b"qa-anna" not in bundle
    evaluator = Evaluator(bundle)
    root = tmp_path / "generated"
    root.mkdir()
    (root / "bundle.json").write_bytes(bundle)
    with serving_here(root) as (_serving, port):
        tester = post(port, SINGLE + "banner", context("qa-anna")).json()
        assert tester["variant"] == "blue" and tester["reason"] == "TARGETING_MATCH"
        for number in range(40):
            user = {"user_id": f"u-{number}", "country": "NO"}
            answer = post(port, SINGLE + "banner", context(f"u-{number}", country="NO")).json()
            assert answer["variant"] == evaluator.evaluate(user, "banner").variant
        post(port, SINGLE + "no-such-flag", context("qa-anna", email="anna@example.com"))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "qa-anna" not in logged and "anna@example.com" not in logged
