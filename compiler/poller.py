"""Keep an evaluator's bundle current from a URL (standard library only).

    evaluator = Evaluator.load("bundle.json")          # or the first fetch below
    poller = BundlePoller("https://example.github.io/config/bundle.json", evaluator)
    poller.start()                                     # a daemon thread; poller.stop()

Each poll sends the last ETag as If-None-Match; a 304 costs nothing. A new bundle is
verified (schema version and content id, `parse_bundle`) before `Evaluator.swap`
replaces the current one. Any failure (network, HTTP status, bad JSON, wrong content
id) logs one line and keeps serving the last good bundle; the wait before the next
poll doubles after each failure, up to `max_interval`, and returns to `interval`
after a success.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from typing import Any

from compiler.evaluate import BundleError, Evaluator

log = logging.getLogger("expc.poller")


class BundlePoller:
    def __init__(
        self,
        url: str,
        evaluator: Evaluator | None = None,
        interval: float = 30.0,
        max_interval: float = 600.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.evaluator = evaluator
        self.interval = interval
        self.max_interval = max_interval
        self.timeout = timeout
        self.etag: str | None = None
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def next_wait(self) -> float:
        """Seconds until the next poll: doubled for each failure in a row, capped."""
        return float(min(self.interval * 2**self.failures, self.max_interval))

    def poll_once(self) -> bool:
        """Fetch once; True when a new bundle was swapped in. Never raises."""
        request = urllib.request.Request(self.url)
        if self.etag is not None:
            request.add_header("If-None-Match", self.etag)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as error:
            if error.code == 304:
                self.failures = 0
                return False
            return self._failed(f"HTTP {error.code}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            return self._failed(str(getattr(error, "reason", error)))
        try:
            if self.evaluator is None:
                self.evaluator = Evaluator(body)
            else:
                self.evaluator.swap(body)
        except BundleError as error:
            return self._failed(str(error))
        self.etag = etag
        self.failures = 0
        log.info("expc bundle updated from %s (%s)", self.url, self.evaluator.content_id)
        return True

    def _failed(self, why: Any) -> bool:
        self.failures += 1
        kept = self.evaluator.content_id if self.evaluator else "none yet"
        log.warning(
            "expc bundle poll of %s failed: %s; keeping %s; next try in %.0f s",
            self.url,
            why,
            kept,
            self.next_wait,
        )
        return False

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.poll_once()
                self._stop.wait(self.next_wait)

        self._thread = threading.Thread(target=loop, name="expc-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)
