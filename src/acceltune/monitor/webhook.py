"""Alert delivery to a webhook, at least once: each stored alert is POSTed as JSON with an
``Idempotency-Key`` header (the alert's key) until an answer in 2xx, retried with exponential back-off;
only then is it marked delivered. Alerts left undelivered (the receiver down through every retry, or
the process stopped) are sent on the next notification or the next start. A receiver that dedups by the
key sees each alert once.

One background thread per process (``WebhookSender``): committing a batch never waits for the receiver.
"""

from __future__ import annotations

import logging
import threading

from acceltune.extras import require
from acceltune.monitor.settings import WebhookSettings
from acceltune.monitor.store import Store

log = logging.getLogger("acceltune.monitor")

_PERMANENT = frozenset(range(400, 500)) - {408, 425, 429}  # the receiver refuses this payload: retrying will not help


class WebhookSender:
    def __init__(self, store: Store, settings: WebhookSettings):
        self.store, self.settings = store, settings
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._httpx = require("httpx", "monitor")  # only a server or ingest with --webhook needs it
        self._client = self._httpx.Client(timeout=settings.webhook_timeout_s)

    def start(self) -> "WebhookSender":
        self._thread = threading.Thread(target=self._run, name="acceltune-monitor-webhook", daemon=True)
        self._thread.start()
        self._wake.set()  # alerts left over from an earlier run go first
        return self

    def notify(self) -> None:
        """New alerts were committed."""
        self._wake.set()

    def close(self) -> None:
        """Deliver what is pending (bounded by the retries), then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self._client.close()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.deliver_pending()
            if self._stop.is_set():
                return

    def deliver_pending(self) -> int:
        """Send every undelivered alert once through its retries; the number delivered."""
        delivered = 0
        for alert in self.store.undelivered_alerts():
            delivered += self._deliver(alert)
        return delivered

    def _deliver(self, alert: dict) -> bool:
        s = self.settings
        for attempt in range(s.webhook_retries + 1):
            if attempt:
                # Back-off between tries; a stop request does not cut it short (delivery is still owed).
                threading.Event().wait(s.webhook_backoff_s * 2 ** (attempt - 1))
            try:
                r = self._client.post(s.webhook, json=alert, headers={"Idempotency-Key": alert["key"]})
                ok, permanent, why = r.is_success, r.status_code in _PERMANENT, f"HTTP {r.status_code}"
            except self._httpx.HTTPError as e:
                ok, permanent, why = False, False, f"{e.__class__.__name__}: {e}"
            self.store.record_attempt(alert["id"], delivered=ok)
            if ok:
                return True
            log.warning("webhook %s: alert %s not delivered (%s), attempt %d of %d", s.webhook, alert["key"], why,
                        attempt + 1, s.webhook_retries + 1)
            if permanent:
                break
        return False
