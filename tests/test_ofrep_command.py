"""`expc serve` as a command, as an application and its operator meet it: the Python
OpenFeature SDK's OFREP provider against it, the bearer token when it listens beyond
loopback, hot swapping under load without a failed request, and the files alone (with
a hint) when the `serve` extra is not installed."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import expc
from ofrep_support import (
    bundle_bytes,
    content_id,
    hiding_the_extra,
    post,
    replace_atomically,
    serving_command,
    write_definitions,
)
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider.no_op_provider import NoOpProvider

from expc.sdk import Evaluator

TOKEN = "b5d0c7c5e0f34f0e9a1c2d3e4f5a6b7c"
OPENFEATURE_REASONS = {
    "override": Reason.TARGETING_MATCH,
    "rollout": Reason.TARGETING_MATCH,
    "bucketed": Reason.SPLIT,
    "not-running": Reason.DISABLED,
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("command")
    root = folder / "generated"
    root.mkdir()
    (root / "bundle.json").write_bytes(bundle_bytes(write_definitions(folder / "definitions")))
    return root


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def openfeature_client(base: str, token: str | None = None) -> Iterator[OpenFeatureClient]:
    """A client of the OpenFeature API bound to an OFREP provider for `base`, under a
    domain of its own (the API is global)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    provider = OFREPProvider(base, headers_factory=(lambda: headers) if headers else None)
    api.set_provider(provider, domain="expc-ofrep-test")
    try:
        yield api.get_client(domain="expc-ofrep-test")
    finally:
        api.set_provider(NoOpProvider(), domain="expc-ofrep-test")


def test_the_openfeature_ofrep_provider_gets_what_the_evaluator_decides(generated: Path) -> None:
    evaluator = Evaluator((generated / "bundle.json").read_bytes())
    with serving_command(str(generated)) as served:
        assert served.banner[1].startswith(f"OFREP at {served.base}: evaluating")
        for client in openfeature_client(served.base):
            reasons: Counter[str] = Counter()
            for number in range(60):
                country = ["NO", "SE", "DE"][number % 3]
                user = {"user_id": f"u-{number}", "account_id": f"a-{number}", "country": country}
                ask = EvaluationContext(
                    f"u-{number}", {"country": country, "account_id": f"a-{number}"}
                )
                for key in evaluator.flag_keys:
                    expected = evaluator.evaluate(user, key)
                    details = client.get_string_details(key, "code-default", ask)
                    assert details.error_code is None, details
                    assert details.value == (expected.variant or "code-default")
                    assert details.variant == expected.variant
                    assert details.reason == OPENFEATURE_REASONS.get(
                        expected.reason, Reason.DEFAULT
                    )
                    assert details.flag_metadata["expc.reason"] == expected.reason
                    reasons[details.reason] += 1
            assert set(reasons) == {"SPLIT", "TARGETING_MATCH", "DEFAULT", "DISABLED"}

            tester = client.get_string_details("banner", "control", EvaluationContext("qa-anna"))
            assert tester.value == "blue" and tester.reason == Reason.TARGETING_MATCH
            assert json.loads(str(tester.flag_metadata["expc.payload"])) == {
                "color": "blue",
                "size": 2,
            }
            # Not enrolled: whatever type is asked, the caller's default, and no error.
            draft = client.get_boolean_details("draft-idea", True, EvaluationContext("u-1"))
            assert draft.value is True and draft.error_code is None
            assert draft.reason == Reason.DISABLED

            unknown = client.get_string_details("no-such-flag", "x", EvaluationContext("u-1"))
            assert unknown.value == "x" and unknown.error_code == ErrorCode.FLAG_NOT_FOUND
            keyless = client.get_string_details("banner", "x", EvaluationContext(None, {}))
            assert keyless.error_code == ErrorCode.TARGETING_KEY_MISSING
            assert "targetingKey" in str(keyless.error_message)
            typed = client.get_boolean_details("banner", False, EvaluationContext("qa-anna"))
            assert typed.value is False and typed.error_code == ErrorCode.TYPE_MISMATCH


def test_beyond_loopback_a_token_is_required_to_start(generated: Path) -> None:
    refused = expc(generated, "serve", ".", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    assert "--host '0.0.0.0' is not a loopback address" in refused.stderr
    assert "--token-file PATH" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "cannot read it"),
        ("", "a token is one line of 16 to 4,096 characters"),
        ("s3cr3t", "a token is one line of 16 to 4,096 characters"),
        ("t0ken w1th sp4ces 1nside", "a token is one line of 16 to 4,096 characters"),
        ("l1ne-0ne-is-long-en0ugh\nl1ne-tw0", "a token is one line"),
    ],
    ids=["missing", "empty", "short", "spaces", "two lines"],
)
def test_an_unusable_token_file_is_a_usage_error_that_does_not_show_it(
    generated: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    result = expc(tmp_path, "serve", str(generated), "--port", "0", "--token-file", str(path))
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    for word in (content or "").split():
        assert word not in result.stderr


def test_bound_beyond_loopback_every_request_needs_the_token(
    generated: Path, token_file: Path
) -> None:
    arguments = (str(generated), "--host", "0.0.0.0", "--token-file", str(token_file))
    with serving_command(*arguments) as served:
        single = "/ofrep/v1/evaluate/flags/banner"
        body = {"context": {"targetingKey": "qa-anna"}}
        missing = post(served.port, single, body)
        assert missing.status == 401 and "errorDetails" in missing.json()
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = post(served.port, single, body, Authorization=f"Bearer {TOKEN[:-1]}x")
        assert wrong.status == 401
        longer = post(served.port, single, body, Authorization=f"Bearer {TOKEN}{TOKEN}")
        assert longer.status == 401
        assert post(served.port, single, body, Authorization=f"Bearer {TOKEN}").status == 200
        assert post(served.port, single, body, Authorization=f"bearer  {TOKEN} ").status == 200
        assert post(served.port, single, body, X_API_Key=TOKEN).status == 200
        assert post(served.port, "/ofrep/v1/evaluate/flags", body).status == 401
        assert post(served.port, "/bundle.json", None, method="GET").status == 401
        assert post(served.port, "/nothing", None, method="GET").status == 401  # no probing
        files = post(served.port, "/bundle.json", None, method="GET", X_API_Key=TOKEN)
        assert files.status == 200
        for client in openfeature_client(served.base):
            refused = client.get_string_details("banner", "x", EvaluationContext("qa-anna"))
            assert refused.value == "x" and refused.error_code == ErrorCode.GENERAL
        for client in openfeature_client(served.base, TOKEN):
            allowed = client.get_string_details("banner", "x", EvaluationContext("qa-anna"))
            assert allowed.value == "blue"
        log = served.stop()
    assert "not loopback" in log and TOKEN not in log
    assert log.count(" 401 ") == 7


def test_a_token_given_on_loopback_is_required_too(generated: Path, token_file: Path) -> None:
    token_file.chmod(0o644)
    with serving_command(str(generated), "--token-file", str(token_file)) as served:
        assert post(served.port, "/bundle.json", None, method="GET").status == 401
        assert post(served.port, "/bundle.json", None, method="GET", X_API_Key=TOKEN).status == 200
        log = served.stop()
    assert "can be read by other users" in log  # the operator is told to chmod 600 it


def test_hot_swap_under_load_without_a_failed_request(tmp_path: Path) -> None:
    root = tmp_path / "generated"
    root.mkdir()
    first = bundle_bytes(write_definitions(tmp_path / "first"))
    changed = (tmp_path / "first" / "banner.yaml").read_text().replace("100", "60")
    second = bundle_bytes(write_definitions(tmp_path / "second", **{"banner.yaml": changed}))
    good = {content_id(first), content_id(second)}
    replace_atomically(root / "bundle.json", first)
    statuses: Counter[int] = Counter()
    served_ids: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(port: int, number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"context": {"targetingKey": "qa-anna"}})
        path = "/ofrep/v1/evaluate/flags" + ("" if number % 3 == 0 else "/banner")
        while not stop.is_set():
            try:
                connection.request("POST", path, body=body)
                answer = connection.getresponse()
                document = json.loads(answer.read())
            except Exception as problem:  # any failure at all is what this test looks for
                with lock:
                    failures.append(repr(problem))
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            with lock:
                statuses[answer.status] += 1
                served_ids.append(document["metadata"]["expc.content_id"])

    def wait_for(identifier: str) -> None:
        deadline = time.monotonic() + 5
        while not served_ids or served_ids[-1] != identifier:
            assert time.monotonic() < deadline, f"{identifier} was never served"
            time.sleep(0.02)

    with serving_command(str(root)) as served:
        threads = [threading.Thread(target=client, args=(served.port, n)) for n in range(8)]
        for thread in threads:
            thread.start()
        try:
            for _round in range(3):
                time.sleep(0.3)
                replace_atomically(root / "bundle.json", second)  # a compile
                wait_for(content_id(second))
                (root / "bundle.json").write_bytes(second[:-200])  # a broken write in place
                time.sleep(0.5)
                replace_atomically(root / "bundle.json", first)
                wait_for(content_id(first))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        log = served.stop()
    assert failures == [] and set(statuses) == {200}
    assert sum(statuses.values()) > 1000  # it was under load
    assert set(served_ids) == good  # the broken one never answered
    assert log.count("not loaded") == 3 and "Traceback" not in log


@pytest.fixture
def without_the_extra(tmp_path: Path) -> dict[str, str]:
    return hiding_the_extra(tmp_path / "shim")


def test_without_the_extra_the_files_are_served_and_expc_says_how_to_get_ofrep(
    generated: Path, without_the_extra: dict[str, str]
) -> None:
    with serving_command(str(generated), env=without_the_extra) as served:
        assert served.banner[1] == (
            "OFREP is off: uvicorn is not installed; pip install 'expc[serve]'\n"
        )
        files = post(served.port, "/bundle.json", None, method="GET")
        assert files.status == 200 and files.body == (generated / "bundle.json").read_bytes()
        # An OFREP caller is told why, in OFREP's shape, and its provider passes it on.
        bulk = post(served.port, "/ofrep/v1/evaluate/flags", {})
        assert bulk.status == 501 and bulk.headers["content-type"] == "application/json"
        assert "pip install 'expc[serve]'" in bulk.json()["errorDetails"]
        assert post(served.port, "/bundle.json", {}).status == 501  # files are GET and HEAD
        for client in openfeature_client(served.base):
            off = client.get_string_details("banner", "x", EvaluationContext("qa-anna"))
            assert off.value == "x" and off.error_code == ErrorCode.GENERAL
            assert "expc[serve]" in str(off.error_message)


def test_without_the_extra_the_token_rule_still_holds(
    generated: Path, token_file: Path, without_the_extra: dict[str, str]
) -> None:
    refused = expc(generated, "serve", ".", "--host", "0.0.0.0", env=without_the_extra)
    assert refused.returncode == 2 and "--token-file" in refused.stderr
    arguments = (str(generated), "--host", "0.0.0.0", "--token-file", str(token_file))
    with serving_command(*arguments, env=without_the_extra) as served:
        assert post(served.port, "/bundle.json", None, method="GET").status == 401
        answer = post(
            served.port, "/bundle.json", None, method="GET", Authorization=f"Bearer {TOKEN}"
        )
        assert answer.status == 200


def test_environments_need_env_and_the_error_names_them(generated: Path, tmp_path: Path) -> None:
    root = tmp_path / "generated"
    for name in ("staging", "production"):
        (root / name).mkdir(parents=True)
        document = json.loads((generated / "bundle.json").read_bytes())
        document["release"]["environment"] = name  # outside the content id
        (root / name / "bundle.json").write_text(json.dumps(document))
    missing = expc(tmp_path, "serve", str(root), "--port", "0")
    assert missing.returncode == 2
    assert "choose one with --env NAME" in missing.stderr
    assert "(production, staging)" in missing.stderr
    unknown = expc(tmp_path, "serve", str(root), "--port", "0", "--env", "prod")
    assert unknown.returncode == 2
    assert "--env prod: no such environment" in unknown.stderr
    with serving_command(str(root), "--env", "production") as served:
        assert "/production/bundle.json" in served.banner[0]
        assert "production/bundle.json" in served.banner[1]
