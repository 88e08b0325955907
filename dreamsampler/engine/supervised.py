"""A supervised engine: the model and its sampling loop run in a child process that is restarted.

:class:`SupervisedEngine` implements the :class:`~dreamsampler.engine.jobs.Engine` protocol like
:class:`~dreamsampler.engine.jobs.LocalEngine`, but the model lives in a separate process (its
own interpreter, so the server's event loop never shares a GIL with the denoising loop). Jobs and
concept operations travel to it as messages in arrival order (one FIFO); its events (started,
one progress per denoising step, finished with the audio, failed) stream back over a pipe.

Supervision. The engine process is replaced by a fresh one, with the same model and the concepts
that were loaded, when it

- **crashes**: the process exits (a segfault, ``os._exit``, the OOM killer's SIGKILL);
- **wedges**: the operation in flight sends no event (start, step, end) for ``watchdog_s``
  seconds (a deadlocked kernel, a hung driver); the process is killed;
- **corrupts its device**: a CUDA/accelerator error (:func:`is_fatal_error`), or any
  ``BaseException`` that is not an ``Exception``, escapes the sampler; after those, the device
  state cannot be trusted, so the process exits instead of running the next job.

The operation in flight then ends with :class:`~dreamsampler.engine.jobs.JobFailed` (or
:class:`EngineUnavailable` for a concept operation) naming the reason; queued work waits for the
new process; :meth:`SupervisedEngine.status` counts the restarts. An ordinary exception in a job
(a bad input file, say) fails only that job, as in the local engine.

The supervisor never gives up. A replacement that fails too (killed while it loads, a reload OOM
while the dead process's memory is still being freed, a load that sends nothing for
``load_watchdog_s``) is retried after a capped exponential backoff (:func:`backoff_delay`); while
the engine waits or reloads after such a failure, queued and new work fails at once with the true
reason instead of waiting. The state is reported (:attr:`SupervisedEngine.state`, ``/status``):
``ready``, ``restarting N`` (attempt N loads), ``failed: REASON; retry N in S s`` (waiting out the
backoff). ``crash_loop`` consecutive failures are logged as a crash loop. The failure count starts
again once a process has done useful work or stayed up for ``stable_s``.

Processes start through the ``forkserver`` start method where the platform has it (the server
imports torch once; each engine process forks from it, so a restart costs only the model load),
else ``spawn``. Nothing is ever forked from the server process itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from dreamsampler.engine.concepts import (
    ConceptError,
    ConceptInfo,
    ConceptManager,
    ConceptNotLoadedError,
    require_manager,
)
from dreamsampler.engine.families import ModelLoadError, load_model
from dreamsampler.engine.jobs import (
    EngineClosed,
    EngineStatus,
    Job,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    QueueFull,
    failure_message,
)
from dreamsampler.engine.sampler import Cancelled
from dreamsampler.engine.stems import DEFAULT_MODEL, StemsError, StemsStage
from dreamsampler.engine.work import EngineRequest, run_takes

log = logging.getLogger(__name__)

#: Substrings of exception messages that mean the accelerator's state is lost (CUDA reports
#: these as ``RuntimeError`` before torch 2.8 and as ``torch.AcceleratorError`` after).
FATAL_MESSAGES = (
    "CUDA error",
    "CUBLAS_STATUS",
    "CUDNN_STATUS",
    "cuDNN error",
    "device-side assert",
    "illegal memory access",
    "unspecified launch failure",
    "NCCL error",
    "HIP error",
)
#: Exit code of an engine process that stopped itself after a fatal error.
FATAL_EXIT_CODE = 70
#: Least default time a replacement process gets to load its model, seconds.
MIN_LOAD_WATCHDOG_S = 30.0


class EngineUnavailable(EngineClosed):
    """The engine process failed (or could not restart) while an operation was pending."""


def backoff_delay(failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before restart attempt number ``failures`` (consecutive, from 1).

    The first restart after a healthy run is immediate; then ``base``, ``2 base``, ``4 base`` …
    up to ``cap``: ``min(cap, base * 2 ** (failures - 2))`` for ``failures >= 2``, else 0.
    """
    if failures <= 1:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 2, 62))


def is_fatal_error(exc: BaseException) -> bool:
    """Whether an exception leaves the engine process unfit for the next job.

    True for ``torch.AcceleratorError`` (torch >= 2.8), a ``RuntimeError`` whose message holds
    one of :data:`FATAL_MESSAGES` (``CUDA error: an illegal memory access…``; CUDA out-of-memory
    is *not* fatal), and any ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit`` raised inside the sampling loop).
    """
    if not isinstance(exc, Exception):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in FATAL_MESSAGES)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == FATAL_EXIT_CODE:
        return "stopped after a fatal error"
    return f"exit code {code}"


def _resolve(path: str | None) -> Callable[..., Any] | None:
    """``"package.module:function"`` → the function (``None`` stays ``None``)."""
    if not path:
        return None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ProcessSpec:
    """What an engine process loads; sent to each new process.

    Attributes:
        model_id, device, dtype: as for :func:`~dreamsampler.engine.families.load_model`.
        concepts_dir: folder of concepts; ``None`` disables concept operations.
        threads: torch intra-op threads in the engine process.
        restore: concepts to load after the model, in order (those loaded before a restart).
        step_hook: ``"module:function"`` called in the engine process as
            ``fn(step, total, request)`` after each denoising step. For fault-injection tests
            only (a step that blocks, exits or raises); ``None`` in production.
        model_factory: ``"module:function"`` returning the model, called in the engine process
            instead of ``load_model(model_id, device, dtype)`` (benchmarks with models built in
            code); ``None`` in production.
        stems_model, stems_preload: the stems stage (see
            :class:`~dreamsampler.engine.jobs.LocalEngine`).
    """

    model_id: str
    device: str
    dtype: str
    concepts_dir: Path | None
    threads: int
    restore: tuple[str, ...] = ()
    step_hook: str | None = None
    model_factory: str | None = None
    stems_model: str = DEFAULT_MODEL
    stems_preload: bool = False


@dataclass
class _Op:
    """One entry of the FIFO: a job, a concept operation or a barrier."""

    kind: str  # "job" | "load" | "unload" | "available" | "barrier"
    job: Job | None = None
    name: str = ""
    future: asyncio.Future[Any] | None = None


@dataclass
class _Process:
    """One engine process and the parent's ends of its pipes."""

    process: Any  # multiprocessing.Process of the chosen context
    commands: Connection
    generation: int
    reader: threading.Thread | None = None
    pending_start: asyncio.Future[None] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # import torch, diffusers and the model code once, in the fork server
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


class SupervisedEngine:
    """Runs jobs in a supervised child process, one at a time, restarting it when it fails.

    Args:
        model_id: repo id, local folder or tiny name (see :func:`load_model`).
        device: ``auto``, ``cpu``, ``cuda`` …
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        queue_size: jobs that may wait; more raise :class:`QueueFull`.
        concepts_dir: folder of trained concepts; ``None``: concept operations fail.
        watchdog_s: seconds the operation in flight may go without an event (start, denoising
            step, end) before the process counts as wedged and is replaced; ``None`` disables.
            Must exceed the slowest single step, prompt encoding and VAE + vocoder decode.
        threads: torch threads in the engine process (default: this process's).
        step_hook: fault injection for tests (see :class:`ProcessSpec`).
        model_factory: build the model in code (see :class:`ProcessSpec`).
        stems_model, stems_preload: the stems stage (see :class:`ProcessSpec`).
        load_watchdog_s: seconds a *replacement* process may take to load the model before it
            counts as wedged, is killed and retried (``None``: ``watchdog_s``, at least
            :data:`MIN_LOAD_WATCHDOG_S`; the first start is not watched: a cold download may take
            long, and the operator sees it).
        backoff_s, backoff_max_s: restart backoff (see :func:`backoff_delay`).
        crash_loop: consecutive failures that are reported as a crash loop.
        stable_s: seconds a ready process must stay up before its failure counts as a new
            first failure (its restart is then immediate again).

    Call its methods on the event loop that called :meth:`start`.
    """

    def __init__(
        self,
        model_id: str = "tiny",
        device: str = "auto",
        dtype: str = "float32",
        queue_size: int = 16,
        concepts_dir: Path | None = None,
        watchdog_s: float | None = 120.0,
        threads: int | None = None,
        step_hook: str | None = None,
        model_factory: str | None = None,
        stems_model: str = DEFAULT_MODEL,
        stems_preload: bool = False,
        load_watchdog_s: float | None = None,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        crash_loop: int = 3,
        stable_s: float = 60.0,
    ) -> None:
        self.model_id = model_id
        self.queue_size = queue_size
        self.watchdog_s = watchdog_s
        self.load_watchdog_s = load_watchdog_s if load_watchdog_s is not None else (
            None if watchdog_s is None else max(watchdog_s, MIN_LOAD_WATCHDOG_S))
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.crash_loop = crash_loop
        self.stable_s = stable_s
        self._spec = ProcessSpec(
            model_id=model_id,
            device=device,
            dtype=dtype,
            concepts_dir=Path(concepts_dir) if concepts_dir is not None else None,
            threads=threads if threads is not None else torch.get_num_threads(),
            step_hook=step_hook,
            model_factory=model_factory,
            stems_model=stems_model,
            stems_preload=stems_preload,
        )
        self._ctx = _context()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fifo: deque[_Op] = deque()
        self._inflight: _Op | None = None
        self._proc: _Process | None = None
        self._generation = 0
        self._idle = False
        self._closing = False
        self._closed_reason = ""
        self._watchdog: asyncio.TimerHandle | None = None
        self._concepts: tuple[ConceptInfo, ...] = ()
        self._info: dict[str, Any] = {}
        self.restarts = 0
        #: consecutive failures (crashes, wedges, failed reloads) since the last healthy process
        self.failures = 0
        #: ``starting``, ``ready``, ``restarting N``, ``failed: REASON; retry N in S s``,
        #: ``closed: REASON`` (see the module docstring)
        self.state = "starting"
        #: called with the new :attr:`state` on the event loop at each change
        self.on_state: list[Callable[[str], None]] = []
        self._degraded: str | None = None  # set while a restart failed: work fails fast
        self._retry: asyncio.TimerHandle | None = None
        self._load_watch: asyncio.TimerHandle | None = None
        self._ready_at = 0.0

    # -- the Engine protocol ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine process and wait until its model is loaded.

        Raises:
            ModelLoadError: the process cannot load the model (or exits while loading).
        """
        self._loop = asyncio.get_running_loop()
        started = self._spawn()
        await started

    @property
    def pid(self) -> int | None:
        """The engine process's id (``None`` before start and after close)."""
        return self._proc.process.pid if self._proc is not None else None

    async def close(self, reason: str = "server shutting down") -> None:
        """Fail every queued job, pending concept operation and barrier with ``reason``, end the
        running job with ``reason`` and stop the engine process (killed at once when it was
        running something, else after 5 s if it does not exit)."""
        if self._closing:
            return
        self._closing = True
        self._closed_reason = reason
        self._disarm()
        self._cancel_timers()
        self._set_state(f"closed: {reason}")
        while self._fifo:
            self._fail_op(self._fifo.popleft(), reason, cancelled=True)
        busy = self._inflight is not None
        if busy:
            op, self._inflight = self._inflight, None
            self._fail_op(op, reason, cancelled=True)  # type: ignore[arg-type]
        proc, self._proc = self._proc, None
        self._generation += 1
        if proc is None:
            return
        if proc.pending_start is not None and not proc.pending_start.done():
            proc.pending_start.set_exception(ModelLoadError(f"engine closed: {reason}"))
        if busy:  # its result is no longer wanted: do not wait for the step to end
            proc.process.kill()
        with contextlib.suppress(OSError):
            proc.commands.send(("exit",))
        await asyncio.to_thread(proc.process.join, 5.0)
        if proc.process.is_alive():
            proc.process.kill()
            await asyncio.to_thread(proc.process.join, 5.0)
        proc.commands.close()

    def submit(self, request: EngineRequest, job_id: int) -> tuple[Job, int]:
        """Queue a job; returns it with its queue position (0 = next to run).

        Raises:
            QueueFull: too many jobs waiting, the engine is closing, or it cannot restart.
        """
        if self._closing:
            raise QueueFull(self._closed_reason)
        if self._degraded is not None:
            raise QueueFull(f"engine unavailable: {self._degraded}")
        queued = sum(1 for op in self._fifo if op.kind == "job")
        if queued >= self.queue_size:
            raise QueueFull(f"queue full ({self.queue_size} jobs waiting)")
        job = Job(job_id, request)
        running = self._inflight is not None and self._inflight.kind == "job"
        self._fifo.append(_Op("job", job=job))
        self._dispatch()
        return job, queued + (1 if running else 0)

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued job at once, or the running one between two denoising steps."""
        op = self._inflight
        if op is not None and op.job is not None and op.job.id == job_id:
            self._send(("cancel", job_id))
            return True
        for queued in self._fifo:
            if queued.job is not None and queued.job.id == job_id:
                self._fifo.remove(queued)
                queued.job._push(JobFailed(job_id, "cancelled", cancelled=True))
                return True
        return False

    def status(self) -> EngineStatus:
        """Queue, running job and model, with the number of engine-process restarts."""
        op = self._inflight
        return EngineStatus(
            model_id=self.model_id,
            family=self._info.get("family", ""),
            sample_rate=self._info.get("sample_rate", 0),
            device=self._info.get("device", ""),
            queued=sum(1 for o in self._fifo if o.kind == "job"),
            running=op.job.id if op is not None and op.job is not None else None,
            restarts=self.restarts,
            state=self.state,
        )

    async def load_concept(self, name: str) -> ConceptInfo:
        """Load a concept in the engine process, after the work queued before it.

        Loading a concept that is already loaded changes nothing and returns it with
        ``already_loaded=True`` (as every engine: ``ConceptManager.ensure_loaded``).

        Raises:
            ConceptError: invalid, missing or for another base model.
            EngineClosed: the engine closed first (EngineUnavailable: its process failed).
        """
        return await self._operation("load", name)  # type: ignore[no-any-return]

    async def unload_concept(self, name: str) -> None:
        """Unload a concept, after the work queued before it.

        Raises:
            ConceptNotLoadedError: it is not loaded.
            EngineClosed: the engine closed first (EngineUnavailable: its process failed).
        """
        await self._operation("unload", name)

    def list_concepts(self) -> list[ConceptInfo]:
        """The loaded concepts (a snapshot; never waits)."""
        return list(self._concepts)

    async def available_concepts(self) -> list[ConceptInfo]:
        """Valid concepts in ``concepts_dir`` with their loaded flag (in queue order).

        Raises:
            ConceptError: no concepts folder is configured.
            EngineClosed: the engine closed first (EngineUnavailable: its process failed).
        """
        return await self._operation("available")  # type: ignore[no-any-return]

    async def barrier(self) -> None:
        """Resolve once everything submitted before it has ended (``/sync``).

        Raises:
            EngineClosed: the engine closed first.
        """
        await self._operation("barrier")

    # -- the FIFO --------------------------------------------------------------------------------

    async def _operation(self, kind: str, name: str = "") -> Any:
        if self._closing:
            raise EngineClosed(self._closed_reason)
        if self._degraded is not None:
            raise EngineUnavailable(f"engine unavailable: {self._degraded}")
        assert self._loop is not None, "start() the engine first"
        future: asyncio.Future[Any] = self._loop.create_future()
        self._fifo.append(_Op(kind, name=name, future=future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        """Send the next operation when the process is idle; resolve barriers at the head."""
        while self._inflight is None and self._fifo:
            op = self._fifo[0]
            if op.kind == "barrier":
                self._fifo.popleft()
                if op.future is not None and not op.future.done():
                    op.future.set_result(None)
                continue
            if not self._idle or self._proc is None:
                return
            self._fifo.popleft()
            self._inflight = op
            self._idle = False
            if op.kind == "job":
                assert op.job is not None
                message: tuple[Any, ...] = ("job", op.job.id, op.job.request)
            else:
                message = (op.kind, 0, op.name)
            self._arm()
            self._send(message)

    def _send(self, message: tuple[Any, ...]) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.commands.send(message)
        except OSError as exc:  # the process is gone; its reader reports the exit
            log.debug("engine process pipe closed: %s", exc)

    def _fail_op(self, op: _Op, message: str, cancelled: bool = False) -> None:
        """End ``op`` with ``message``: a closing engine (``cancelled``) raises
        :class:`EngineClosed`, a failed process :class:`EngineUnavailable`."""
        if op.job is not None:
            if not op.job.done:
                op.job._push(JobFailed(op.job.id, message, cancelled=cancelled))
        elif op.future is not None and not op.future.done():
            error = EngineClosed if cancelled else EngineUnavailable
            op.future.set_exception(error(message))

    # -- watchdog --------------------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        if self.watchdog_s is not None and self._inflight is not None and self._loop is not None:
            self._watchdog = self._loop.call_later(
                self.watchdog_s, self._wedged, self._generation
            )

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _wedged(self, generation: int) -> None:
        if generation == self._generation and self._inflight is not None:
            self._replace(f"engine wedged: no progress for {self.watchdog_s:g} s "
                          "(engine.watchdog_s)")

    # -- the engine process ----------------------------------------------------------------------

    def _spawn(self) -> asyncio.Future[None]:
        """Start a new engine process (restoring the loaded concepts); resolves when ready."""
        assert self._loop is not None
        self._generation += 1
        spec = ProcessSpec(**{**self._spec.__dict__,
                              "restore": tuple(c.name for c in self._concepts)})
        commands_r, commands_w = self._ctx.Pipe(duplex=False)
        events_r, events_w = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_engine_process, args=(spec, commands_r, events_w),
            name="dreamsampler-engine", daemon=True,
        )
        process.start()
        commands_r.close()
        events_w.close()
        proc = _Process(process, commands_w, self._generation)
        proc.pending_start = self._loop.create_future()
        proc.reader = threading.Thread(
            target=self._read, args=(events_r, proc), name="dreamsampler-engine-events",
            daemon=True,
        )
        self._proc = proc
        self._idle = False
        proc.reader.start()
        return proc.pending_start

    def _read(self, events: Connection, proc: _Process) -> None:
        """Reader thread: forward each message of one process to the event loop, then its exit."""
        assert self._loop is not None
        while True:
            try:
                message = events.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # an unpicklable message: report, keep reading
                message = ("garbled", f"{type(exc).__name__}: {exc}")
            try:
                self._loop.call_soon_threadsafe(self._on_message, proc.generation, message)
            except RuntimeError:  # the loop is closed
                events.close()
                return
        events.close()
        proc.process.join(10.0)
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(
                self._on_message, proc.generation, ("exit", proc.process.exitcode)
            )

    def _on_message(self, generation: int, message: tuple[Any, ...]) -> None:
        """Handle one message of the engine process (on the event loop)."""
        proc = self._proc
        if proc is None or generation != self._generation:
            return  # a replaced process
        kind = message[0]
        op = self._inflight
        if kind == "ready":
            _, proc.info, loaded, errors = message
            self._info = proc.info
            self._concepts = tuple(loaded)
            for error in errors:
                log.warning("concept not restored after the engine restart: %s", error)
            self._idle = True
            self._degraded = None
            self._cancel_load_watch()
            self._ready_at = self._loop.time() if self._loop is not None else 0.0
            if self.failures:
                log.warning("engine process ready again after %d failure(s)", self.failures)
            self._set_state("ready")
            if proc.pending_start is not None and not proc.pending_start.done():
                proc.pending_start.set_result(None)
            self._dispatch()
        elif kind == "load_error":
            self._start_failed(proc, message[1])
        elif kind in ("started", "progress"):
            if op is not None and op.job is not None and op.job.id == message[1]:
                self._arm()
                if kind == "started":
                    op.job._push(JobStarted(op.job.id))
                else:
                    op.job._push(JobProgress(op.job.id, message[2], message[3]))
        elif kind in ("finished", "failed"):
            if op is not None and op.job is not None and op.job.id == message[1]:
                self._end_inflight()
                if kind == "finished":
                    takes = message[2]  # every take of the job (count), in order
                    op.job._push(JobFinished(op.job.id, takes[0], tuple(takes[1:])))
                else:
                    op.job._push(JobFailed(op.job.id, message[2], cancelled=message[3]))
        elif kind == "reply":
            _, ok, value, loaded = message
            self._concepts = tuple(loaded)
            if op is not None and op.future is not None:
                self._end_inflight()
                if not op.future.done():
                    if ok:
                        op.future.set_result(value)
                    else:
                        op.future.set_exception(_rebuild_error(value))
        elif kind == "fatal":
            self._replace(f"engine device error ({message[1]})")
        elif kind == "garbled":
            self._replace(f"engine sent an unreadable message ({message[1]})")
        elif kind == "exit":
            if proc.pending_start is not None and not proc.pending_start.done():
                self._start_failed(proc, f"engine process {_describe_exit(message[1])} "
                                   "while loading the model")
            else:
                self._replace(f"engine crashed: process {_describe_exit(message[1])}")

    def _end_inflight(self) -> None:
        self._disarm()
        self.failures = 0  # the process did useful work: it is healthy
        self._inflight = None
        self._idle = True
        self._loop.call_soon(self._dispatch)  # type: ignore[union-attr]

    def _start_failed(self, proc: _Process, reason: str) -> None:
        self._generation += 1
        self._proc = None
        self._cancel_load_watch()
        proc.process.kill()
        proc.commands.close()
        if proc.pending_start is not None and not proc.pending_start.done():
            proc.pending_start.set_exception(ModelLoadError(reason))
        if not self._info or self._closing:
            return  # the first start failed: start() raises, nothing to supervise
        # a restart failed: retry after the backoff; meanwhile work fails fast with the reason
        self._failed(f"engine restart failed: {reason}")

    def _replace(self, reason: str) -> None:
        """Kill the engine process, fail the operation in flight with ``reason``, start anew."""
        proc = self._proc
        if proc is None or self._closing:
            return
        self._disarm()
        self._generation += 1
        self._proc = None
        self._idle = False
        if proc.process.is_alive():
            proc.process.kill()
        proc.commands.close()
        self.restarts += 1
        message = f"{reason}; the engine process was restarted"
        op, self._inflight = self._inflight, None
        if op is not None:
            self._fail_op(op, message)
            # the process loaded and took work: the operation is to blame, not a crash loop
            # (a job that crashes the engine fails itself; the next one need not wait)
            self.failures = 0
        self._failed(reason)

    def _failed(self, reason: str) -> None:
        """Count one failure (of a running or a loading process) and schedule the restart."""
        assert self._loop is not None
        now = self._loop.time()
        if self.failures and self._ready_at and now - self._ready_at >= self.stable_s:
            self.failures = 0  # the last process stayed up long enough: a fresh failure
        self._ready_at = 0.0
        self.failures += 1
        delay = backoff_delay(self.failures, self.backoff_s, self.backoff_max_s)
        if self.failures >= self.crash_loop:
            log.error("engine crash loop: %d failures in a row, the last: %s; retrying in %.3g s",
                      self.failures, reason, delay)
        else:
            log.error("%s; restarting the engine process (attempt %d, in %.3g s)", reason,
                      self.failures, delay)
        if self.failures >= 2:
            # a restart failed already: nothing queued can run soon; answer it now, truly
            self._degraded = (f"{reason} ({self.failures} failures in a row; "
                              f"retry {self.failures} in {delay:.3g} s)")
            while self._fifo:
                self._fail_op(self._fifo.popleft(), f"engine unavailable: {self._degraded}")
        self._cancel_timers()
        if delay > 0:
            self._set_state(f"failed: {reason}; retry {self.failures} in {delay:.3g} s")
            self._retry = self._loop.call_later(delay, self._restart)
        else:
            self._restart()

    def _restart(self) -> None:
        self._retry = None
        if self._closing:
            return
        restarted = self._spawn()
        restarted.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it
        if self.load_watchdog_s is not None and self._loop is not None:
            self._load_watch = self._loop.call_later(
                self.load_watchdog_s, self._load_wedged, self._generation, self.load_watchdog_s)
        self._set_state(f"restarting {self.failures}")  # observers see the new pid

    def _load_wedged(self, generation: int, timeout: float) -> None:
        self._load_watch = None
        proc = self._proc
        if proc is not None and generation == self._generation and not self._closing \
                and proc.pending_start is not None and not proc.pending_start.done():
            self._start_failed(proc, f"model not loaded after {timeout:g} s "
                               "(engine.watchdog_s)")

    def _cancel_load_watch(self) -> None:
        if self._load_watch is not None:
            self._load_watch.cancel()
            self._load_watch = None

    def _cancel_timers(self) -> None:
        self._cancel_load_watch()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        for callback in list(self.on_state):
            try:
                callback(state)
            except Exception:
                log.exception("engine state observer failed")


def _rebuild_error(value: tuple[str, str, str]) -> Exception:
    kind, path, reason = value
    if kind == "not_loaded":
        return ConceptNotLoadedError(path, reason)
    if kind == "concept":
        return ConceptError(path, reason)
    return EngineUnavailable(reason)


# -- the engine process ----------------------------------------------------------------------------


def _engine_process(spec: ProcessSpec, commands: Connection, events: Connection) -> None:
    """Entry point of an engine process: load the model, then serve operations until told to stop.

    Messages to the parent: ``("ready", info, loaded, errors)``, ``("load_error", reason)``,
    ``("started", id)``, ``("progress", id, step, total)``, ``("finished", id, takes)``,
    ``("failed", id, message, cancelled)``, ``("reply", ok, value, loaded)``,
    ``("fatal", reason)``.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the engine stops
    torch.set_num_threads(spec.threads)
    send = events.send
    try:
        factory = _resolve(spec.model_factory)
        model = factory() if factory else load_model(spec.model_id, spec.device, spec.dtype)
        manager = ConceptManager(model, spec.concepts_dir) if spec.concepts_dir else None
        errors: list[str] = []
        for name in spec.restore:
            try:
                assert manager is not None
                manager.load(name)
            except ConceptError as exc:
                errors.append(str(exc))
        hook = _resolve(spec.step_hook)
        stems = StemsStage(spec.stems_model, spec.device)
        if spec.stems_preload:
            stems.load()
    except BaseException as exc:
        send(("load_error", str(exc) if isinstance(exc, ModelLoadError | StemsError)
              else f"{type(exc).__name__}: {exc}"))
        return
    info = {"family": model.name, "sample_rate": model.sample_rate, "device": str(model.device)}
    send(("ready", info, manager.loaded() if manager else [], errors))

    inbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
    cancelled: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while True:
            try:
                message = commands.recv()
            except (EOFError, OSError):  # the parent is gone
                break
            if message[0] == "cancel":
                cancelled.add(message[1])
            elif message[0] == "exit":
                break
            else:
                inbox.put(message)
        stop.set()
        inbox.put(None)

    threading.Thread(target=read, name="engine-commands", daemon=True).start()

    def loaded() -> list[ConceptInfo]:
        return manager.loaded() if manager is not None else []

    while (message := inbox.get()) is not None:
        kind, job_id, payload = message
        if kind != "job":
            send(("reply", *_concept_operation(manager, kind, payload), loaded()))
            continue
        request: EngineRequest = payload
        send(("started", job_id))

        def on_step(step: int, total: int, job_id: int = job_id,
                    request: EngineRequest = request) -> None:
            send(("progress", job_id, step, total))
            if hook is not None:
                hook(step, total, request)

        def should_cancel(job_id: int = job_id) -> bool:
            return job_id in cancelled or stop.is_set()

        try:
            takes = run_takes(model, stems, request, on_step=on_step,
                                 should_cancel=should_cancel)
        except Cancelled:
            send(("failed", job_id, "cancelled", True))
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if is_fatal_error(exc):
                log.error("engine process stops after a fatal error in job %d", job_id,
                          exc_info=True)
                send(("fatal", reason))
                events.close()
                os._exit(FATAL_EXIT_CODE)
            send(("failed", job_id, failure_message(exc, f"job {job_id}"), False))
        else:
            send(("finished", job_id, takes))
        cancelled.discard(job_id)


def _concept_operation(
    manager: ConceptManager | None, kind: str, name: str
) -> tuple[bool, Any]:
    """Run one concept operation; ``(True, value)`` or ``(False, (kind, path, reason))``."""
    try:
        manager = require_manager(manager)
        if kind == "load":
            return True, manager.ensure_loaded(name)
        if kind == "unload":
            manager.unload(name)
            return True, None
        if kind == "available":
            return True, manager.available()
        raise ValueError(f"unknown operation {kind!r}")
    except ConceptNotLoadedError as exc:
        return False, ("not_loaded", exc.path, exc.reason)
    except ConceptError as exc:
        return False, ("concept", exc.path, exc.reason)
    except Exception as exc:
        log.error("concept operation %s %s failed", kind, name, exc_info=True)
        return False, ("other", "", f"{type(exc).__name__}: {exc}")
