"""The runtime SDK: what an application imports to evaluate bundles.

    from expc.sdk import Evaluator, BundlePoller

Everything below `expc.sdk` imports only the standard library and mmh3 (numpy for the
optional batch path), never the compiler: a test enforces it.
"""

from expc.sdk.evaluate import BundleError, Evaluator, Result
from expc.sdk.poller import BundlePoller, PollerState

__all__ = ["BundleError", "BundlePoller", "Evaluator", "PollerState", "Result"]
