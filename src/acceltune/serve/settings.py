"""Server settings: one frozen object built from the `acceltune serve` flags (or by tests and applications).

The flags are generated from the fields (acceltune.config.add_dataclass_arguments): the help is the
field's ``metadata["help"]``; comments say why a default is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from acceltune.errors import UserError


def _f(default, help: str = "", *, repr: bool = True, **metadata):
    return field(default=default, repr=repr, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path
    backend: str = _f("auto", "inference backend; auto follows the directory's format", choices=("auto", "torch", "onnx", "tensorrt"))
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    host: str = _f("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = _f(8080)
    max_batch_size: int = _f(64, "inputs per model batch (requests are never split)")
    # None: 128 on CPU (short calls from length-sorted inputs served best under load), 8192 on GPU.
    max_batch_tokens: int | None = _f(None, "padded tokens per backend call (a batch is cut into calls, longest inputs "
                                            "first); default 128 on CPU, 8192 on GPU")
    # 1: one batch at a time over every core (ONNX Runtime's intra-op threads). N > 1: N batches at once, each with
    # cores / N threads, so a thread starved by the busy event loop holds back only its own batch: on 2 cores a
    # shorter tail and more requests/s than 1 worker (docs/benchmarks.md), hence 2 wherever there are 2 cores.
    batch_workers: int | None = _f(None, "batches run at once per model, each with cores / N inference threads "
                                         "(default: 2 with 2 or more usable cores, else 1)")
    # One event loop parses and answers every request (one core's worth, under the GIL); N processes share the
    # port and each loads its own copy of the model (memory x N). Only servers whose state is in the database.
    processes: int = _f(1, "server processes sharing the port, each with its own copy of the model, its cores / N "
                           "inference threads, and one /metrics for all (docs/serving.md)")
    max_wait_ms: float = _f(2.0, "how long the oldest queued input waits for more before its batch runs")
    # The time bound is the one that adapts to the hardware (see serve/batcher.py); the count bounds memory.
    max_queue: int = _f(4096, "inputs waiting for a batch, all requests together; more gets 429 + Retry-After at once")
    max_queue_wait_ms: float = _f(1000.0, "also refuse (429) beyond what the server drains in this time at the fastest "
                                          "rate it has measured")
    request_timeout_s: float = _f(10.0, "answer 504 if a request waits longer")
    max_inputs: int = _f(256, "inputs per request (413 beyond)")
    max_payload_bytes: int = _f(1_000_000, "request body size (413 beyond)")
    api_keys: tuple[str, ...] = _f((), repr=False)
    """Accepted Bearer tokens; empty: no authentication (the flag is --api-key-file)."""
    # Measured: rejection p99 132 -> 16 ms at 4x the sustainable rate, and +7% requests/s.
    inference_nice: int = _f(10, "lower the inference threads' priority by N (Linux, 0-19; 0 keeps it) so the event loop "
                                 "answers and refuses requests promptly under load")
    graceful_shutdown_s: float | None = _f(None)
    """How long SIGTERM waits for accepted requests (default: request timeout + 5 s); no flag."""
    threads: int | None = _f(None)
    """Inference threads on the CPU, per batch worker, as given (ACCELTUNE_THREADS; no flag); None: the usable
    cores shared out between the workers of every process (`inference_threads`)."""

    def __post_init__(self):
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        checks = [
            (self.max_batch_size >= 1, "--max-batch-size must be >= 1"),
            (self.max_batch_tokens is None or self.max_batch_tokens >= 1, "--max-batch-tokens must be >= 1"),
            (self.batch_workers is None or self.batch_workers >= 1, "--batch-workers must be >= 1"),
            (self.processes >= 1, "--processes must be >= 1"),
            (self.max_wait_ms >= 0, "--max-wait-ms must be >= 0"),
            (self.max_queue >= 1, "--max-queue must be >= 1"),
            (self.max_queue_wait_ms > 0, "--max-queue-wait-ms must be > 0"),
            (self.request_timeout_s > 0, "--request-timeout-s must be > 0"),
            (self.max_inputs >= 1, "--max-inputs must be >= 1"),
            (self.max_payload_bytes >= 64, "--max-payload-bytes must be >= 64"),
            (1 <= self.port <= 65535 or self.port == 0, "--port must be 0..65535"),
            (0 <= self.inference_nice <= 19, "--inference-nice must be 0..19"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.max_inputs > self.max_queue:
            raise UserError(f"--max-inputs ({self.max_inputs}) must not exceed --max-queue ({self.max_queue}): "
                            "a request that large could never be queued; raise --max-queue or lower --max-inputs")

    @property
    def workers(self) -> int:
        """Batch workers per model: ``batch_workers``, or 2 where there are 2 or more usable cores."""
        if self.batch_workers is not None:
            return self.batch_workers
        from acceltune.cpu import usable_cpu_count

        return 2 if usable_cpu_count() >= 2 else 1

    @property
    def inference_threads(self) -> int | None:
        """Inference threads per batch worker: ``threads``, else the usable cores // (workers x processes) when
        that is more than one run, else None (the backend takes every usable core)."""
        runs = self.workers * self.processes
        if self.threads is not None or runs == 1:
            return self.threads
        from acceltune.cpu import usable_cpu_count

        return max(1, usable_cpu_count() // runs)

    def one_process(self, reason: str) -> "ServeSettings":
        """These settings for an app whose state lives in its process (``reason`` says why); ``--processes`` N > 1
        is refused with a line saying how to proceed."""
        if self.processes > 1:
            raise UserError(f"--processes {self.processes}: {reason}; serve it with --processes 1")
        return self

    def in_order(self, reason: str) -> "ServeSettings":
        """These settings for an app whose work must be taken in order (``reason`` says why): one process and one
        batch worker; more, when asked for, is refused with a line saying how to proceed. (A batch function whose
        order-dependent part is a `Staged` finish needs only `one_process`.)"""
        from dataclasses import replace

        self.one_process(reason)
        if self.batch_workers is not None and self.batch_workers > 1:
            raise UserError(f"--batch-workers {self.batch_workers}: {reason}; serve it with --batch-workers 1")
        return replace(self, batch_workers=1)

    @property
    def shutdown_timeout_s(self) -> float:
        return self.graceful_shutdown_s if self.graceful_shutdown_s is not None else self.request_timeout_s + 5.0


#: Fields without a generated flag: the positional MODEL_DIR, keys read from --api-key-file, and settings
#: only an application (or test) sets.
NOT_FLAGS = ("model_dir", "api_keys", "graceful_shutdown_s", "threads")


def read_api_keys(path: str | Path) -> tuple[str, ...]:
    """One key per line; blank lines and lines starting with '#' are ignored (several keys allow rotation)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--api-key-file {path}: no such file")
    keys = tuple(line.strip() for line in p.read_text().splitlines() if line.strip() and not line.strip().startswith("#"))
    if not keys:
        raise UserError(f"--api-key-file {path} holds no key: write one key per line")
    if any(any(c.isspace() for c in k) for k in keys):
        raise UserError(f"--api-key-file {path}: keys must not contain spaces")
    return keys

