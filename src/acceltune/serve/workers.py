"""Several server processes on one port (``--processes N``): the parent binds the socket, forks N servers
that accept from it (the kernel shares the connections out), and stops them all with SIGTERM on SIGTERM or
Ctrl-C, each draining as a single server does. Why: one process answers every request on one event loop,
under the GIL, whatever the cores; a cheap model (the recommender) leaves that loop the bottleneck.

Fork, not spawn: the app factory is a closure over what the command built, and the parent has loaded no
model and started no thread by then (every model loads in the worker's lifespan). A process that fails
(its model does not load, or it dies) stops the others: the error is raised in the parent as one line.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from multiprocessing.connection import wait

from acceltune.errors import UserError
from acceltune.serve.metrics import MULTIPROCESS_VARIABLE
from acceltune.serve.server import BACKLOG, serve_app

log = logging.getLogger("acceltune.serve")


def serve_processes(make_app, settings, *, access_log: bool = False) -> int:
    """Run ``settings.processes`` servers of ``make_app`` until SIGTERM or Ctrl-C; 0 once all have drained."""
    sock = _listen(settings.host, settings.port)
    metrics_dir = tempfile.mkdtemp(prefix="acceltune-metrics-")
    context = multiprocessing.get_context("fork")
    errors = context.SimpleQueue()
    loaded = context.Array("b", settings.processes, lock=False)  # one flag per process, in shared memory
    processes = [context.Process(target=_worker, name=f"acceltune-serve-{i}",
                                 args=(make_app, settings, access_log, sock, metrics_dir, errors, SharedReadiness(loaded, i), os.getpid()))
                 for i in range(settings.processes)]
    stopping = False

    def stop(signum=None, frame=None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            for p in processes:
                if p.pid is not None and p.exitcode is None:
                    os.kill(p.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    failure = None
    try:
        for p in processes:
            p.start()
        host, port = sock.getsockname()[:2]
        log.info("%d server processes on http://%s:%d (pids %s)", len(processes), host, port,
                 ", ".join(str(p.pid) for p in processes))
        running = {p.sentinel: p for p in processes}
        while running:
            for sentinel in wait(list(running)):
                p = running.pop(sentinel)
                p.join()
                _forget(p.pid, metrics_dir)
                if p.exitcode != 0 and failure is None:
                    failure = (errors.get() if not errors.empty() else
                               f"server process {p.pid} {_how(p.exitcode)} (see the log above; if it ran out of "
                               "memory, each process holds its own model: serve with fewer --processes)")
                if not stopping:
                    if failure is None:
                        failure = f"server process {p.pid} stopped on its own (exit code 0)"
                    log.error("%s; stopping the others", failure)
                    stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failure is not None:
        raise UserError(failure)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror} (is the port in use? choose another with --port)") from None


class SharedReadiness:
    """Whether every process has loaded its models: /readyz in any of them says 200 only then, so a load
    balancer never sends a request to a process still loading."""

    def __init__(self, flags, index: int):
        self.flags, self.index = flags, index

    def loaded(self) -> None:
        self.flags[self.index] = 1

    def all_loaded(self) -> bool:
        return all(self.flags)


def _worker(make_app, settings, access_log: bool, sock: socket.socket, metrics_dir: str, errors,
            readiness: SharedReadiness, parent: int) -> None:
    # The parent's handlers were inherited. SIGTERM is uvicorn's while it runs (a drain); before, or once it has
    # drained (uvicorn re-raises the signal it caught), it exits 0. Ctrl-C is the parent's to forward.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _stop_with_parent(parent)
    os.environ[MULTIPROCESS_VARIABLE] = metrics_dir
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # chosen when the parent imported it, before the variable was set
    try:
        serve_app(make_app, settings, access_log=access_log, sockets=[sock], peers=readiness)
    except UserError as e:
        errors.put(str(e))
        sys.exit(2)


def _stop_with_parent(parent: int) -> None:
    """SIGTERM (a drain) when the parent dies, even by SIGKILL, so that no orphan keeps the port (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the call
        sys.exit(0)


def _forget(pid: int, metrics_dir: str) -> None:
    """A stopped process's live gauges leave the sums; its counters stay (what it served still counts)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)


def _how(exitcode: int) -> str:
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"
