"""One uvicorn server over an app, draining at the first shutdown signal: alone (acceltune.serve.runner) or
as one of several processes on one port (acceltune.serve.workers)."""

from __future__ import annotations

import signal

from acceltune.errors import UserError

#: Connections the kernel queues before the server accepts them (a burst of clients at start-up, or at 4x overload).
BACKLOG = 2048


def serve_app(make_app, settings, *, access_log: bool = False, sockets=None, peers=None) -> int:
    """One uvicorn server: on ``settings``' host and port, or on ``sockets`` bound already, as one of several
    processes (``peers``, see ServeState): Ctrl-C is then left to the parent, which stops all with SIGTERM."""
    import uvicorn

    load_error: list[BaseException] = []
    server = None

    def on_load_error(e: BaseException) -> None:
        load_error.append(e)
        if server is not None:
            server.should_exit = True

    app = make_app(on_load_error)
    app.state.serve.peers = peers
    config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on", access_log=access_log,
                            log_level="info", timeout_graceful_shutdown=settings.shutdown_timeout_s, backlog=BACKLOG)
    server = _server_class()(config, app, ignore_sigint=peers is not None)
    server.run(sockets=sockets)
    if load_error:
        e = load_error[0]
        if isinstance(e, UserError):
            raise e
        raise UserError(f"cannot load the model from {settings.model_dir}: {e.__class__.__name__}: {e}")
    if not server.started:
        raise UserError(f"the server did not start on {settings.host}:{settings.port} (see the log above; is the port in use?)")
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """Starts the drain the moment a shutdown signal arrives: /readyz turns 503 at once, and queued requests
        run without waiting out the batching window (uvicorn waits for them before the app's shutdown)."""

        def __init__(self, config, app, ignore_sigint: bool):
            super().__init__(config)
            self._app, self._ignore_sigint = app, ignore_sigint

        def handle_exit(self, sig, frame) -> None:
            if sig == signal.SIGINT and self._ignore_sigint:
                return
            self._app.state.serve.begin_drain()
            super().handle_exit(sig, frame)

    return Server
