"""The runtime SDK: what an application imports to evaluate bundles.

    from expc.sdk import Evaluator, BundlePoller, Exposures, JsonLinesSink

The OpenFeature provider is `expc.sdk.openfeature.ExpcProvider` (it needs
openfeature-sdk), the numpy batch path `expc.sdk.batch.assign` (it needs numpy).

Everything below `expc.sdk` imports only the standard library and mmh3 (numpy for the
optional batch path), never the compiler: a test enforces it. The names above are
loaded on first use, so the compiler's own use of `expc.sdk.bucketing` does not pull
in the HTTP client of the poller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expc.sdk.evaluate import BundleError, Evaluator, Result
    from expc.sdk.exposures import ExposureCounters, Exposures
    from expc.sdk.poller import BundlePoller, PollerState
    from expc.sdk.sinks import JsonLinesSink

__all__ = [
    "BundleError",
    "BundlePoller",
    "Evaluator",
    "ExposureCounters",
    "Exposures",
    "JsonLinesSink",
    "PollerState",
    "Result",
]

_HOMES = {
    "BundleError": "expc.sdk.evaluate",
    "Evaluator": "expc.sdk.evaluate",
    "Result": "expc.sdk.evaluate",
    "BundlePoller": "expc.sdk.poller",
    "PollerState": "expc.sdk.poller",
    "Exposures": "expc.sdk.exposures",
    "ExposureCounters": "expc.sdk.exposures",
    "JsonLinesSink": "expc.sdk.sinks",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _HOMES:
        raise AttributeError(f"module 'expc.sdk' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
