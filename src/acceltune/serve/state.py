"""What every route shares: the settings, the metrics, the batchers and the server's lifecycle flags.

One ServeState per app (``app.state.serve``). Routers register their batchers here while the app starts
(acceltune.serve.lifespan.start_batcher); the load shedder and the routes find them by name.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Protocol

from acceltune.serve.batcher import Batcher
from acceltune.serve.metrics import Metrics
from acceltune.serve.settings import ServeSettings


class Peers(Protocol):
    """The other processes serving the same port (acceltune.serve.workers): ready only once all are."""

    def loaded(self) -> None: ...

    def all_loaded(self) -> bool: ...


@dataclass
class ServeState:
    settings: ServeSettings
    metrics: Metrics
    on_load_error: Callable[[BaseException], None] | None = None
    batchers: dict[str, Batcher] = field(default_factory=dict)
    #: POST paths whose requests go to a batcher (path -> batcher name): refused at the edge while it is full.
    batched_paths: dict[str, str] = field(default_factory=dict)
    loading: list[asyncio.Task] = field(default_factory=list, repr=False)
    started: bool = False
    draining: bool = False
    load_error: str | None = None
    peers: Peers | None = None

    @property
    def ready(self) -> bool:
        """Started, every model loaded (in every process, with several), none failed, not shutting down."""
        return (self.started and not self.draining and self.load_error is None
                and all(t.done() for t in self.loading) and (self.peers is None or self.peers.all_loaded()))

    def begin_drain(self) -> None:
        """Shutting down: /readyz turns 503 and the batchers run what they hold without waiting."""
        self.draining = True
        for batcher in self.batchers.values():
            batcher.hurry()

    def batcher_for(self, path: str) -> Batcher | None:
        name = self.batched_paths.get(path)
        return self.batchers.get(name) if name is not None else None
