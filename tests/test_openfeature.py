"""The OpenFeature provider, used as an application uses it: through openfeature-sdk's
client API (`api.get_client()`), with hooks, handlers and a poller behind it."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_poller import GOOD, GOOD_ID, OTHER, OTHER_ID, RawServer, _hang_up, ok, wait_until

from expc.sdk.bucketing import POINTS
from expc.sdk.evaluate import Evaluator, content_id_of
from expc.sdk.poller import BundlePoller

openfeature = pytest.importorskip("openfeature")
from openfeature import api  # noqa: E402
from openfeature.client import OpenFeatureClient  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402
from openfeature.event import EventDetails, ProviderEvent  # noqa: E402
from openfeature.exception import ErrorCode  # noqa: E402
from openfeature.flag_evaluation import FlagEvaluationDetails, Reason  # noqa: E402
from openfeature.hook import Hook, HookContext, HookHints  # noqa: E402
from openfeature.provider import ProviderStatus  # noqa: E402

from expc.sdk.openfeature import ExpcProvider  # noqa: E402

_NO_PAYLOAD = object()


def _flag(key: str, *variants: tuple[str, Any], **fields: Any) -> dict[str, Any]:
    cuts = [POINTS * i // len(variants) for i in range(len(variants) + 1)]
    listed = []
    for (name, payload), start, end in zip(variants, cuts, cuts[1:], strict=False):
        variant: dict[str, Any] = {"key": name, "range": [start, end]}
        if payload is not _NO_PAYLOAD:
            variant["payload"] = payload
        listed.append(variant)
    flag = {
        "key": key,
        "kind": "experiment",
        "state": "running",
        "serving": True,
        "bucketing": {"by": "user_id", "salt": key},
        "overrides": {"users": {}, "cohorts": []},
        "requires": [],
        "targeting": None,
        "rollout": None,
        "traffic": 100,
        "variants": listed,
    }
    flag.update(fields)
    return flag


def _bundle() -> dict[str, Any]:
    flags = [
        _flag("copy", ("control", _NO_PAYLOAD), ("treatment", _NO_PAYLOAD)),
        _flag(
            "dark-mode",
            ("off", False),
            ("on", True),
            overrides={"users": {"qa": "on"}, "cohorts": []},
        ),
        _flag("batch-size", ("small", 10), ("large", 100)),
        _flag("colour", ("blue", {"hex": "#00f"}), ("green", ["g", 1])),
        _flag("retired", ("a", _NO_PAYLOAD), ("b", _NO_PAYLOAD), serving=False),
        _flag(
            "only-pros",
            ("a", _NO_PAYLOAD),
            ("b", _NO_PAYLOAD),
            targeting={"attribute": "plan", "op": "is", "values": ["pro"]},
        ),
        _flag("launched", ("off", _NO_PAYLOAD), ("on", _NO_PAYLOAD), rollout="on"),
        _flag(
            "per-account",
            ("a", _NO_PAYLOAD),
            ("b", _NO_PAYLOAD),
            bucketing={"by": "account_id", "salt": "per-account"},
        ),
    ]
    bundle: dict[str, Any] = {"schema_version": "1.0", "flags": flags}
    bundle["release"] = {"content_id": content_id_of(bundle), "environment": "production"}
    return bundle


BUNDLE = _bundle()
_domains = itertools.count()


@pytest.fixture
def client_for() -> Iterator[Callable[..., OpenFeatureClient]]:
    """A client whose domain has `provider`, set as an application sets it."""

    def client(provider: ExpcProvider, wait: bool = True) -> OpenFeatureClient:
        domain = f"expc-test-{next(_domains)}"
        if wait:
            api.set_provider_and_wait(provider, domain)
        else:
            api.set_provider(provider, domain)
        return api.get_client(domain)

    yield client
    api.clear_providers()


def _user(key: str, **attributes: Any) -> EvaluationContext:
    return EvaluationContext(targeting_key=key, attributes=attributes)


def test_string_resolution_gives_the_variant_with_its_reason_and_expc_metadata(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    evaluator = Evaluator(BUNDLE)
    client = client_for(ExpcProvider(evaluator))
    for key in ("u-1", "u-2", "u-3", "u-4"):
        details = client.get_string_details("copy", "fallback", _user(key))
        expected = evaluator.evaluate({"user_id": key}, "copy")  # targeting key = user_id
        assert (details.value, details.variant, details.reason) == (
            expected.variant,
            expected.variant,
            Reason.SPLIT,
        )
        assert details.flag_metadata == {
            "expc.reason": "bucketed",
            "expc.content_id": BUNDLE["release"]["content_id"],
            "expc.environment": "production",
        }


def test_boolean_integer_float_and_object_resolution_give_the_payload(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    evaluator = Evaluator(BUNDLE)
    client = client_for(ExpcProvider(evaluator))
    for key in ("u-1", "u-2", "u-3", "u-4", "u-5"):
        user = {"user_id": key}
        on = evaluator.evaluate(user, "dark-mode").variant == "on"
        assert client.get_boolean_value("dark-mode", not on, _user(key)) is on
        size = 100 if evaluator.evaluate(user, "batch-size").variant == "large" else 10
        assert client.get_integer_value("batch-size", 0, _user(key)) == size
        assert client.get_float_value("batch-size", 0.5, _user(key)) == float(size)
        colour = client.get_object_value("colour", {}, _user(key))
        blue = evaluator.evaluate(user, "colour").variant == "blue"
        assert colour == ({"hex": "#00f"} if blue else ["g", 1])


def test_a_payload_of_another_type_is_a_type_mismatch_and_the_default(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    client = client_for(ExpcProvider(Evaluator(BUNDLE)))
    no_payload = client.get_boolean_details("copy", True, _user("u-1"))
    boolean = client.get_integer_details("dark-mode", 7, _user("u-1"))  # not an integer
    text = client.get_object_details("batch-size", {"d": 1}, _user("u-1"))
    for details, default in ((no_payload, True), (boolean, 7), (text, {"d": 1})):
        assert details.value == default
        assert (details.reason, details.error_code) == (Reason.ERROR, ErrorCode.TYPE_MISMATCH)
        assert details.error_message is not None and "payload" in details.error_message


def test_an_unknown_flag_is_flag_not_found(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    client = client_for(ExpcProvider(Evaluator(BUNDLE)))
    details = client.get_string_details("no-such-flag", "fallback", _user("u-1"))
    assert (details.value, details.reason, details.error_code) == (
        "fallback",
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )


def test_expc_reasons_map_to_openfeature_reasons(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    client = client_for(ExpcProvider(Evaluator(BUNDLE)))

    def resolved(flag: str, context: EvaluationContext) -> tuple[Any, ...]:
        details = client.get_string_details(flag, "fallback", context)
        return details.value, details.reason, details.flag_metadata["expc.reason"]

    assert resolved("dark-mode", _user("qa")) == ("on", Reason.TARGETING_MATCH, "override")
    assert resolved("launched", _user("u-1")) == ("on", Reason.TARGETING_MATCH, "rollout")
    assert resolved("retired", _user("u-1")) == ("fallback", Reason.DISABLED, "not-running")
    assert resolved("only-pros", _user("u-1")) == ("fallback", Reason.DEFAULT, "targeting")
    assert resolved("only-pros", _user("u-1", plan="pro"))[1] == Reason.SPLIT


def test_a_missing_bucketing_value_is_an_error_naming_what_is_missing(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    client = client_for(ExpcProvider(Evaluator(BUNDLE)))
    no_key = client.get_string_details("copy", "fallback", EvaluationContext())
    assert (no_key.value, no_key.reason, no_key.error_code) == (
        "fallback",
        Reason.ERROR,
        ErrorCode.TARGETING_KEY_MISSING,
    )
    assert no_key.flag_metadata["expc.reason"] == "no-bucketing-value"
    no_account = client.get_string_details("per-account", "fallback", _user("u-1"))
    assert (no_account.value, no_account.error_code) == ("fallback", ErrorCode.INVALID_CONTEXT)
    assert no_account.error_message is not None and "'account_id'" in no_account.error_message
    # A rollout needs no bucketing value: no error.
    assert client.get_string_value("launched", "fallback", EvaluationContext()) == "on"


def test_the_targeting_key_is_the_bucketing_value_of_the_attribute_chosen(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    evaluator = Evaluator(BUNDLE)
    accounts = client_for(ExpcProvider(evaluator, bucketing_attribute="account_id"))
    users = client_for(ExpcProvider(evaluator))
    for key in ("acct-1", "acct-2", "acct-3", "acct-4"):
        expected = evaluator.evaluate({"account_id": key}, "per-account").variant
        assert accounts.get_string_value("per-account", "x", _user(key)) == expected
        # By default the key is the user_id, over a user_id attribute in the context.
        assert users.get_string_value("per-account", "x", _user(key)) == "x"
        assert (
            users.get_string_value("copy", "x", _user(key, user_id="someone-else"))
            == evaluator.evaluate({"user_id": key}, "copy").variant
        )


class Recording(Hook):
    """Records each stage it sees; its `before` can add attributes to the context."""

    def __init__(self, adds: dict[str, Any] | None = None) -> None:
        self.adds = adds or {}
        self.stages: list[tuple[str, Any]] = []

    def before(self, hook_context: HookContext, hints: HookHints) -> EvaluationContext | None:
        self.stages.append(("before", hook_context.flag_key))
        return EvaluationContext(attributes=self.adds) if self.adds else None

    def after(
        self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints
    ) -> None:
        self.stages.append(("after", details.flag_metadata.get("expc.reason")))

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        self.stages.append(("error", type(exception).__name__))

    def finally_after(
        self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: HookHints
    ) -> None:
        self.stages.append(("finally", details.reason))


def test_hooks_run_and_a_before_hook_can_change_the_user(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    client = client_for(ExpcProvider(Evaluator(BUNDLE)))
    pro = Recording(adds={"plan": "pro"})
    client.add_hooks([pro])
    assert client.get_string_details("only-pros", "x", _user("u-1")).reason == Reason.SPLIT
    assert pro.stages == [("before", "only-pros"), ("after", "bucketed"), ("finally", "SPLIT")]
    watching = Recording()
    client.get_string_value("no-such-flag", "x", _user("u-1"))
    client.get_string_value("only-pros", "x", _user("u-1"))  # reaches `after` too
    api.add_hooks([watching])
    try:
        client.get_boolean_value("copy", False, _user("u-1"))  # a type mismatch
    finally:
        api.clear_hooks()
    assert watching.stages == [
        ("before", "copy"),
        ("error", "TypeMismatchError"),
        ("finally", Reason.ERROR),
    ]


def test_each_resolution_records_its_own_exposure_and_shutdown_delivers_them(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    events: list[dict[str, Any]] = []
    client = client_for(ExpcProvider(Evaluator(BUNDLE), exposures=events.extend))
    variant = client.get_string_value("copy", "x", _user("u-1"))
    client.get_string_value("copy", "x", _user("u-1"))  # the same: de-duplicated
    client.get_string_value("retired", "x", _user("u-1"))  # not running: no exposure
    api.shutdown()
    assert [(e["flag"], e["variant"], e["bucketing_value"]) for e in events] == [
        ("copy", variant, "u-1")
    ]
    assert events[0]["environment"] == "production"


class Statuses:
    """The provider events a client's handlers hear, with a way to wait for one."""

    def __init__(self, client: OpenFeatureClient) -> None:
        self.heard: list[tuple[ProviderEvent, EventDetails]] = []
        self._changed = threading.Condition()
        for event in ProviderEvent:
            client.add_handler(event, self._handler(event))

    def _handler(self, event: ProviderEvent) -> Callable[[EventDetails], None]:
        return lambda details: self._hear(event, details)

    def _hear(self, event: ProviderEvent, details: EventDetails) -> None:
        with self._changed:
            self.heard.append((event, details))
            self._changed.notify_all()

    def count(self, event: ProviderEvent) -> int:
        with self._changed:
            return sum(e is event for e, _ in self.heard)

    def wait_for(self, event: ProviderEvent, count: int = 1) -> EventDetails:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: sum(e is event for e, _ in self.heard) >= count, timeout=30
            )
        assert ok, f"no {event} among {[e for e, _ in self.heard]}"
        return [d for e, d in self.heard if e is event][count - 1]


def test_status_follows_the_poller_ready_stale_ready_and_a_new_bundle(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    server = RawServer(ok(GOOD))
    poller = BundlePoller(server.url, interval=0.02, max_interval=0.05, timeout=1)
    try:
        client = client_for(ExpcProvider(poller))
        statuses = Statuses(client)
        assert client.get_provider_status() is ProviderStatus.READY
        server.answer = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
        stale = statuses.wait_for(ProviderEvent.PROVIDER_STALE)
        assert client.get_provider_status() is ProviderStatus.STALE
        assert stale.message is not None and "HTTP 503 Busy" in stale.message
        # Stale still answers, from the last good bundle.
        assert client.get_string_details("checkout-one-page", "x", _user("qa-anna")).variant
        ready = statuses.count(ProviderEvent.PROVIDER_READY)
        server.answer = ok(OTHER)
        changed = statuses.wait_for(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)
        assert changed.flags_changed == ["new-search", "search-filters"]
        statuses.wait_for(ProviderEvent.PROVIDER_READY, ready + 1)
        assert client.get_provider_status() is ProviderStatus.READY
        assert poller.state.content_id == OTHER_ID
    finally:
        api.clear_providers()
        server.close()


def test_no_bundle_at_boot_is_error_until_the_first_one_arrives(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    server = RawServer(_hang_up)
    poller = BundlePoller(server.url, interval=0.02, max_interval=0.05, timeout=1)
    try:
        client = client_for(ExpcProvider(poller), wait=False)
        statuses = Statuses(client)
        error = statuses.wait_for(ProviderEvent.PROVIDER_ERROR)
        assert error.message is not None and "no expc bundle" in error.message
        assert client.get_provider_status() is ProviderStatus.ERROR
        details = client.get_string_details("checkout-one-page", "x", _user("qa-anna"))
        assert (details.value, details.error_code) == ("x", ErrorCode.PROVIDER_NOT_READY)
        ready = statuses.count(ProviderEvent.PROVIDER_READY)
        server.answer = ok(GOOD)
        statuses.wait_for(ProviderEvent.PROVIDER_READY, ready + 1)
        assert client.get_provider_status() is ProviderStatus.READY
        assert client.get_string_value("checkout-one-page", "x", _user("qa-anna")) == "one-page"
    finally:
        api.clear_providers()
        server.close()


def test_a_bundle_from_the_cache_file_at_boot_is_stale_until_the_source_answers(
    client_for: Callable[..., OpenFeatureClient], tmp_path: Path
) -> None:
    cache = tmp_path / "bundle.json"
    cache.write_bytes(GOOD)
    server = RawServer(_hang_up)
    poller = BundlePoller(server.url, interval=0.05, max_interval=0.1, timeout=1, cache_file=cache)
    try:
        client = client_for(ExpcProvider(poller))
        statuses = Statuses(client)
        statuses.wait_for(ProviderEvent.PROVIDER_STALE)
        assert client.get_provider_status() is ProviderStatus.STALE
        details = client.get_string_details("checkout-one-page", "x", _user("qa-anna"))
        assert (details.value, details.flag_metadata["expc.content_id"]) == ("one-page", GOOD_ID)
        ready = statuses.count(ProviderEvent.PROVIDER_READY)
        server.answer = ok(GOOD)
        statuses.wait_for(ProviderEvent.PROVIDER_READY, ready + 1)
        assert poller.state.source == "url"
    finally:
        api.clear_providers()
        server.close()


def test_a_bundle_older_than_max_age_is_stale(
    client_for: Callable[..., OpenFeatureClient],
) -> None:
    evaluator = Evaluator(json.loads(GOOD))
    server = RawServer(b"HTTP/1.1 304 Not Modified\r\n\r\n")
    poller = BundlePoller(server.url, evaluator, interval=0.05, timeout=1)
    try:
        client = client_for(ExpcProvider(poller, max_age=0.2))
        statuses = Statuses(client)
        server.answer = b"HTTP/1.1 500 Down\r\nContent-Length: 0\r\n\r\n"
        statuses.wait_for(ProviderEvent.PROVIDER_STALE)
        wait_until(lambda: (poller.state.age or 0) > 0.2, "an old bundle")
        assert client.get_provider_status() is ProviderStatus.STALE
    finally:
        api.clear_providers()
        server.close()
