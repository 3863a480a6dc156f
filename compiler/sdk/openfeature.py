"""An OpenFeature provider for expc bundles (`pip install expc[openfeature]`).

    from openfeature import api
    from expc.sdk import BundlePoller
    from expc.sdk.openfeature import ExpcProvider

    poller = BundlePoller(URL, cache_file="bundle.json", exposures=sink)
    api.set_provider(ExpcProvider(poller))           # or ExpcProvider(evaluator)
    client = api.get_client()
    client.get_string_value("checkout-one-page", "control",
                            EvaluationContext(targeting_key="u-42", attributes={...}))

The targeting key is the user's bucketing value: it is set as the attribute
`bucketing_attribute` ("user_id" unless told otherwise) over the context's attributes.

`string` resolution gives the name of the user's variant, so that every experiment
reads as text; `boolean`, `integer`, `float` and `object` give the variant's payload,
which must be true or false, an integer, an integer (payloads hold no fractions), an
object or a list; anything else (no payload, another type) is TYPE_MISMATCH and the
default. A user who gets no variant gets the default.
Reasons: `bucketed` is SPLIT; `override` and `rollout` TARGETING_MATCH; `not-running`
DISABLED; every other expc reason that leaves the user out (targeting, traffic, a
holdout, a group, a prerequisite, unallocated) DEFAULT. Errors, with the default: an
unknown flag is FLAG_NOT_FOUND; a flag that needs a bucketing value the context lacks
(expc's `no-bucketing-value`) is TARGETING_KEY_MISSING when its attribute is the one
the targeting key fills, INVALID_CONTEXT when it is another. expc's own reason, the
bundle's content id and its environment are in the flag metadata (`expc.reason`,
`expc.content_id`, `expc.environment`). `expc serve`'s OFREP answers map the same way.

Status follows the poller (`BundlePoller.state`): READY while its last poll succeeded;
STALE while polls fail, while the bundle comes from the cache file, or when it is
older than `max_age`; ERROR while there is no bundle at all. A new bundle is
PROVIDER_CONFIGURATION_CHANGED. Evaluations record exposures as the evaluator does.

Only this module imports openfeature-sdk, and nothing else in expc imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata, ProviderStatus

from expc.sdk.evaluate import Evaluator, Result
from expc.sdk.exposures import Exposures, Sink
from expc.sdk.poller import BundlePoller, PollerState

# expc reasons that are not DEFAULT; the rest (why a user got no variant) are.
_REASONS = {
    "bucketed": Reason.SPLIT,
    "override": Reason.TARGETING_MATCH,
    "rollout": Reason.TARGETING_MATCH,
    "not-running": Reason.DISABLED,
}


class ExpcProvider(AbstractProvider):
    """Resolves OpenFeature flags with an expc `Evaluator`, or the one a `BundlePoller`
    keeps current."""

    def __init__(
        self,
        source: Evaluator | BundlePoller,
        *,
        bucketing_attribute: str = "user_id",
        max_age: float | None = None,
        exposures: Exposures | Sink | None = None,
    ) -> None:
        """`exposures` (an `Exposures` or a sink) is attached to `source` when given;
        `max_age` is the bundle age in seconds past which the provider is STALE."""
        super().__init__()
        self.source = source
        self.bucketing_attribute = bucketing_attribute
        self.max_age = max_age
        if exposures is not None:
            source.attach_exposures(exposures)
        self._status: ProviderStatus | None = None
        self._content_id: str | None = None
        self._lock = threading.Lock()  # _status and _content_id, between the poller and us
        self._attributes: tuple[str, dict[str, str]] | None = None  # content id, key -> by

    def get_metadata(self) -> Metadata:
        return Metadata(name="expc")

    # --- lifecycle ------------------------------------------------------------------

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """With a poller: fetch now when it has no bundle yet, follow its state, and
        keep it polling. Raises ProviderNotReadyError (status ERROR) when there is no
        bundle at all; the first bundle that arrives later makes it READY."""
        if not isinstance(self.source, BundlePoller):
            self._content_id = self.source.content_id
            return
        poller = self.source
        polled = poller.evaluator is None
        if polled:
            poller.poll_once()
        state = poller.state
        poller.subscribe(self._follow)
        poller.start(first_wait=poller.next_wait if polled else 0.0)
        with self._lock:
            self._content_id = state.content_id
            self._status = ProviderStatus.ERROR if state.content_id is None else None
        if state.content_id is None:
            raise ProviderNotReadyError(f"no expc bundle yet: {state.last_error}")
        with self._lock:
            # What the SDK makes of a return from here; `_follow` reports any other.
            self._status = ProviderStatus.READY
        if self._status_of(state) is not ProviderStatus.READY:
            # Stale already (from the cache file, or polls failing): said once the SDK
            # has marked the provider READY, which it does when this returns.
            timer = threading.Timer(0.1, lambda: self._follow(poller.state))
            timer.daemon = True
            timer.start()

    def shutdown(self) -> None:
        """Stop polling and deliver the exposures still queued."""
        self.source.close()

    def _follow(self, state: PollerState) -> None:
        """A poll happened: tell OpenFeature when the status or the bundle changed."""
        status = self._status_of(state)
        with self._lock:
            changed_status = status is not self._status
            changed_bundle = self._content_id is not None and state.content_id != self._content_id
            self._status, self._content_id = status, state.content_id
        details = ProviderEventDetails(
            message=_why(state), metadata={"expc.content_id": state.content_id or ""}
        )
        if changed_bundle and state.content_id is not None:
            evaluator = self._evaluator()
            details.flags_changed = evaluator.flag_keys if evaluator is not None else None
            self.emit_provider_configuration_changed(details)
        if not changed_status:
            return
        if status is ProviderStatus.READY:
            self.emit_provider_ready(details)
        elif status is ProviderStatus.STALE:
            self.emit_provider_stale(details)
        else:
            details.error_code = ErrorCode.PROVIDER_NOT_READY
            self.emit_provider_error(details)

    def _status_of(self, state: PollerState) -> ProviderStatus:
        if state.content_id is None:
            return ProviderStatus.ERROR
        too_old = self.max_age is not None and state.age is not None and state.age > self.max_age
        if state.consecutive_failures or state.source == "file" or too_old:
            return ProviderStatus.STALE
        return ProviderStatus.READY

    # --- resolution -----------------------------------------------------------------

    def _evaluator(self) -> Evaluator | None:
        if isinstance(self.source, BundlePoller):
            return self.source.evaluator
        return self.source

    def _resolve(
        self, flag_key: str, default: Any, context: EvaluationContext | None, wanted: str
    ) -> FlagResolutionDetails[Any]:
        evaluator = self._evaluator()
        if evaluator is None:
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.PROVIDER_NOT_READY,
                error_message="no expc bundle yet",
                reason=Reason.ERROR,
            )
        try:
            result = evaluator.evaluate(self._user(context), flag_key)
        except KeyError:
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f"no flag {flag_key!r} in expc bundle {evaluator.content_id}",
                reason=Reason.ERROR,
            )
        metadata = _metadata(result, evaluator)
        if result.reason == "no-bucketing-value":
            attribute = self._bucketing_attribute_of(evaluator, flag_key)
            missing_key = attribute == self.bucketing_attribute
            return FlagResolutionDetails(
                default,
                error_code=(
                    ErrorCode.TARGETING_KEY_MISSING if missing_key else ErrorCode.INVALID_CONTEXT
                ),
                error_message=(
                    f"flag {flag_key!r} assigns users by {attribute!r}, which the context lacks"
                    + (" (the targeting key)" if missing_key else "")
                ),
                reason=Reason.ERROR,
                flag_metadata=metadata,
            )
        if result.variant is None:
            return FlagResolutionDetails(
                default, reason=_REASONS.get(result.reason, Reason.DEFAULT), flag_metadata=metadata
            )
        value = result.variant if wanted == "string" else result.payload
        typed = _typed(value, wanted)
        if typed is _MISMATCH:
            return FlagResolutionDetails(
                default,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=(
                    f"the payload of variant {result.variant!r} of {flag_key!r} is "
                    f"{_kind(value)}, not {wanted}"
                ),
                reason=Reason.ERROR,
                variant=result.variant,
                flag_metadata=metadata,
            )
        return FlagResolutionDetails(
            typed,
            reason=_REASONS.get(result.reason, Reason.DEFAULT),
            variant=result.variant,
            flag_metadata=metadata,
        )

    def _bucketing_attribute_of(self, evaluator: Evaluator, flag_key: str) -> str:
        """The attribute `flag_key` buckets by, from a table made once per bundle."""
        table = self._attributes
        if table is None or table[0] != evaluator.content_id:
            flags = {flag.key: flag.by for flag in evaluator.prepared_flags}
            table = self._attributes = (evaluator.content_id, flags)
        return table[1][flag_key]

    def _user(self, context: EvaluationContext | None) -> dict[str, Any]:
        if context is None:
            return {}
        user = dict(context.attributes)
        if context.targeting_key:
            user[self.bucketing_attribute] = context.targeting_key
        return user

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")


_MISMATCH = object()


def _typed(value: Any, wanted: str) -> Any:
    """`value` as the type asked for, or `_MISMATCH`. Booleans are not integers here."""
    if wanted == "string":
        return value if type(value) is str else _MISMATCH
    if wanted == "boolean":
        return value if type(value) is bool else _MISMATCH
    if wanted == "integer":
        return value if type(value) is int else _MISMATCH
    if wanted == "float":
        return float(value) if type(value) is int else _MISMATCH
    return value if type(value) in (dict, list) else _MISMATCH


def _kind(value: Any) -> str:
    names = {str: "text", bool: "a boolean", int: "an integer", dict: "an object", list: "a list"}
    return "no payload" if value is None else names.get(type(value), type(value).__name__)


def _metadata(result: Result, evaluator: Evaluator) -> dict[str, bool | int | float | str]:
    metadata: dict[str, bool | int | float | str] = {
        "expc.reason": result.reason,
        "expc.content_id": evaluator.content_id,
    }
    if evaluator.environment is not None:
        metadata["expc.environment"] = evaluator.environment
    return metadata


def _why(state: PollerState) -> str:
    if state.content_id is None:
        return f"no expc bundle: {state.last_error or 'not polled yet'}"
    if state.consecutive_failures:
        return f"serving {state.content_id}; the last poll failed: {state.last_error}"
    if state.source == "file":
        return f"serving {state.content_id} from the cache file until the source answers"
    return f"serving {state.content_id}"
