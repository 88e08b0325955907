"""The async job interface between the server and an engine: submit → events → one result.

The server sees only :class:`Engine` (a Protocol). :class:`LocalEngine` runs the model in this
process on one worker thread, so the asyncio loop keeps answering while a generation runs; a remote
engine (e.g. Ray Serve replicas) can implement the same protocol without the server changing.

Every job yields, in order: :class:`JobStarted`, any number of :class:`JobProgress`, then exactly
one terminal event, :class:`JobFinished` or :class:`JobFailed` (``cancelled=True`` when cancelled).

Concept operations (load, unload) and barriers are engine *operations*: they carry only names, never
a closure, so a remote engine can carry them out too. Jobs and operations run in arrival order (one
FIFO): a job naming concept X queued before an unload of X still finds X loaded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dreamsampler.engine.audio_io import AudioFileError
from dreamsampler.engine.concepts import (
    ConceptError,
    ConceptInfo,
    ConceptManager,
    require_manager,
    scan_concepts,
)
from dreamsampler.engine.families import ModelFamily, ModelLoadError, load_model
from dreamsampler.engine.level import NonFiniteAudioError
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError
from dreamsampler.engine.sampler import Cancelled, batch_key
from dreamsampler.engine.stems import DEFAULT_MODEL, StemsError, StemsStage
from dreamsampler.engine.work import EngineRequest, run_batch

log = logging.getLogger(__name__)

REQUEST_FAULTS: tuple[type[Exception], ...] = (
    AudioFileError, ConceptError, NonFiniteAudioError, RequestError, StemsError)
"""Errors that are the request's own fault (a bad input file, an unloaded concept, audio that
came out non-finite, a request the family cannot serve, a stems model that cannot be loaded):
reported as their plain message."""


def failure_message(exc: BaseException, what: str, logger: logging.Logger = log) -> str:
    """How every engine (local, supervised process, Ray replica) reports a job's exception:
    a :data:`REQUEST_FAULTS` error as its plain message, with no traceback; anything else as
    ``"<Type>: <message>"``, its traceback logged to ``logger`` as "``what`` failed"."""
    if isinstance(exc, REQUEST_FAULTS):
        return str(exc)
    logger.error("%s failed", what, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


class QueueFull(RuntimeError):
    """The engine's queue holds its maximum number of waiting jobs."""


class EngineClosed(RuntimeError):
    """The engine closed before a pending operation ran; the message is the close reason."""


@dataclass(frozen=True)
class JobStarted:
    job_id: int


@dataclass(frozen=True)
class JobProgress:
    job_id: int
    step: int
    total: int

    @property
    def fraction(self) -> float:
        """Share of denoising steps done, in [0, 1]."""
        return self.step / self.total if self.total else 1.0


@dataclass(frozen=True)
class JobFinished:
    """A job's clips: ``result`` is its first take, ``takes`` the further ones (``count > 1``)."""

    job_id: int
    result: GenerationResult
    takes: tuple[GenerationResult, ...] = ()

    @property
    def results(self) -> tuple[GenerationResult, ...]:
        """Every take, in order."""
        return (self.result, *self.takes)


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    message: str
    cancelled: bool = False


JobEvent = JobStarted | JobProgress | JobFinished | JobFailed
TerminalEvent = JobFinished | JobFailed


class Job:
    """A submitted job; iterate :meth:`events` or await :meth:`wait` from the event loop."""

    def __init__(self, job_id: int, request: EngineRequest) -> None:
        self.id = job_id
        self.request = request
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._terminal: asyncio.Future[TerminalEvent] = asyncio.get_running_loop().create_future()
        self.cancel_requested = threading.Event()

    def _push(self, event: JobEvent) -> None:
        """Deliver an event (call on the event loop)."""
        self._events.put_nowait(event)
        if isinstance(event, JobFinished | JobFailed) and not self._terminal.done():
            self._terminal.set_result(event)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Yield events until (and including) the terminal one."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, JobFinished | JobFailed):
                return

    async def wait(self) -> TerminalEvent:
        """The terminal event, without consuming :meth:`events`."""
        return await asyncio.shield(self._terminal)

    @property
    def done(self) -> bool:
        return self._terminal.done()


@dataclass(frozen=True)
class EngineStatus:
    model_id: str
    family: str
    sample_rate: int
    device: str
    queued: int
    running: int | None
    #: engine-specific details for ``/status`` (a remote engine: replicas, their concepts and
    #: queue lengths); JSON-ready, empty for the local engine.
    extra: dict[str, Any] = field(default_factory=dict)
    #: times the engine replaced its failed model process (:mod:`~dreamsampler.engine.supervised`)
    restarts: int = 0
    #: ``ready``, ``restarting N`` or ``failed: REASON…`` (:mod:`~dreamsampler.engine.supervised`;
    #: always ``ready`` for an engine that does not supervise a process)
    state: str = "ready"


class Engine(Protocol):
    """What the server needs from an engine, local or remote (no closures cross it)."""

    async def start(self) -> None:
        """Load the model; raises ``ModelLoadError`` when it cannot."""

    async def close(self, reason: str = "server shutting down") -> None:
        """Fail every queued job and every pending operation or barrier with ``reason``, cancel
        the running job and release the model. No awaiter is left hanging."""

    def submit(self, request: EngineRequest, job_id: int) -> tuple[Job, int]:
        """Queue a job (a generation, or a separation: ``/separate``); returns it with its
        queue position (0 = next to run).

        Raises:
            QueueFull: too many jobs waiting, or the engine is closing.
        """
        ...

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when no such job is pending."""
        ...

    def status(self) -> EngineStatus: ...

    async def load_concept(self, name: str) -> ConceptInfo:
        """Load a concept from the concepts folder, in arrival order with jobs.

        Loading a concept that is already loaded changes nothing and returns it with
        ``already_loaded=True``.

        Raises:
            ConceptError: invalid, missing or for another base model.
            EngineClosed: the engine closed first.
        """
        ...

    async def unload_concept(self, name: str) -> None:
        """Unload a concept, in arrival order with jobs.

        Raises:
            ConceptNotLoadedError: it is not loaded.
            EngineClosed: the engine closed first.
        """
        ...

    def list_concepts(self) -> list[ConceptInfo]:
        """The loaded concepts in load order (a snapshot; never waits for the running job)."""
        ...

    async def available_concepts(self) -> list[ConceptInfo]:
        """The valid concepts on disk in the concepts folder, sorted by name, each with its
        ``loaded`` flag (broken folders are logged and skipped; never waits for a job)."""
        ...

    async def barrier(self) -> None:
        """Return once every job and operation submitted before it has ended (``/sync``).

        Raises:
            EngineClosed: the engine closed first.
        """
        ...


def preload_stems(stems: StemsStage) -> None:
    """Load the stems stage's model now (``stems.preload``).

    Raises:
        ModelLoadError: it cannot be loaded.
    """
    try:
        stems.load()
    except StemsError as exc:
        raise ModelLoadError(str(exc)) from None


@dataclass(eq=False)
class _Operation:
    """A concept operation or barrier waiting in the engine's FIFO (runs on the worker)."""

    kind: str  # "load", "unload" or "barrier"
    name: str
    future: Future[Any]


def _batchable(request: EngineRequest) -> bool:
    """A generation that may share a batched call (not a separation, not ``/conform``)."""
    return isinstance(request, GenerationRequest) and request.process is None


class LocalEngine:
    """Runs jobs on this process's model in one worker thread, one batch at a time.

    Jobs and operations wait in one FIFO and run in arrival order. Batching: when the worker
    takes the next job, the jobs queued right behind it with the same shape
    (:func:`~dreamsampler.engine.sampler.batch_key`: family-wide parameters, concept set,
    input, duration, steps, scheduler, guidance; prompts and seeds may differ) join it, up to
    ``max_batch`` takes in all, and run as one batched call
    (:func:`~dreamsampler.engine.sampler.sample_batch`). The worker never waits for a batch to
    fill (only jobs already queued join), and a job never overtakes an earlier job or
    operation, so replies keep arrival order and the first job of a batch waits at most for
    its batch-mates' share of one batched call. Cancelling a job of a running batch ends that
    job at the next step (its rows are computed and dropped); the others finish. A batch that
    fails is rerun job by job, so one job's fault fails only that job.

    Args:
        model_id: repo id, local folder or tiny name (see :func:`load_model`).
        device: ``auto``, ``cpu``, ``cuda`` …
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        queue_size: jobs that may wait; more raise :class:`QueueFull` (operations don't count).
        model: an already loaded model (then ``model_id``/``device``/``dtype`` are not used).
        concepts_dir: folder of trained concepts (:mod:`dreamsampler.engine.concepts`);
            ``None``: concept commands fail.
        max_batch: most takes (rows) one batched call runs; 1 turns batching across jobs off
            (a job's own ``count`` always runs as one batch).
        compile: ``torch.compile`` the denoiser when loading (:meth:`ModelFamily.compile`).
        stems_model: the stems stage's Demucs model (:mod:`dreamsampler.engine.stems`: a name,
            a folder or ``tiny``), loaded on the first job that needs it.
        stems_preload: load the stems model in :meth:`start` instead.
    """

    def __init__(
        self,
        model_id: str = "tiny",
        device: str = "auto",
        dtype: str = "float32",
        queue_size: int = 16,
        model: ModelFamily | None = None,
        concepts_dir: Path | None = None,
        max_batch: int = 8,
        compile: bool = False,
        stems_model: str = DEFAULT_MODEL,
        stems_preload: bool = False,
    ) -> None:
        self._compile = compile
        self.model_id = model_id
        self.max_batch = max_batch
        self.stems_preload = stems_preload
        self.stems = StemsStage(stems_model, device)
        self.concepts_dir = Path(concepts_dir) if concepts_dir is not None else None
        self.concepts: ConceptManager | None = None
        self._concept_list: tuple[ConceptInfo, ...] = ()
        self._device = device
        self._dtype = dtype
        self.queue_size = queue_size
        self.model = model
        self._queue: deque[Job | _Operation] = deque()
        self._running: list[Job] = []
        self._wake = threading.Condition()
        self._closing: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.model is None:
            self.model = await asyncio.to_thread(
                load_model, self.model_id, self._device, self._dtype, self._compile
            )
        if self.concepts_dir is not None:
            self.concepts = ConceptManager(self.model, self.concepts_dir)
        if self.stems_preload:
            await asyncio.to_thread(preload_stems, self.stems)
        self._thread = threading.Thread(target=self._work, name="dreamsampler-engine", daemon=True)
        self._thread.start()

    async def close(self, reason: str = "server shutting down") -> None:
        with self._wake:
            if self._closing is None:
                self._closing = reason
            for item in self._queue:
                if isinstance(item, Job):
                    self._emit(item, JobFailed(item.id, reason, cancelled=True))
                elif item.future.set_running_or_notify_cancel():
                    item.future.set_exception(EngineClosed(reason))
            self._queue.clear()
            for job in self._running:
                job.cancel_requested.set()
            self._wake.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _jobs_waiting(self) -> int:
        return sum(1 for item in self._queue if isinstance(item, Job))

    def submit(self, request: EngineRequest, job_id: int) -> tuple[Job, int]:
        job = Job(job_id, request)
        with self._wake:
            if self._closing is not None:
                raise QueueFull(f"engine is shutting down ({self._closing})")
            waiting = self._jobs_waiting()
            if waiting >= self.queue_size:
                raise QueueFull(f"queue full ({self.queue_size} jobs waiting)")
            position = waiting + (1 if self._running else 0)
            self._queue.append(job)
            self._wake.notify()
        return job, position

    def cancel(self, job_id: int) -> bool:
        with self._wake:
            for job in self._running:
                if job.id == job_id:
                    job.cancel_requested.set()
                    return True
            for item in self._queue:
                if isinstance(item, Job) and item.id == job_id:
                    self._queue.remove(item)
                    self._emit(item, JobFailed(job_id, "cancelled", cancelled=True))
                    return True
        return False

    def status(self) -> EngineStatus:
        model = self.model
        with self._wake:
            queued = self._jobs_waiting()
            running = self._running[0].id if self._running else None
        return EngineStatus(
            model_id=self.model_id,
            family=model.name if model else "",
            sample_rate=model.sample_rate if model else 0,
            device=str(model.device) if model else "",
            queued=queued,
            running=running,
        )

    async def _operate(self, kind: str, name: str = "") -> Any:
        """Queue an operation behind everything submitted so far and await its result."""
        future: Future[Any] = Future()
        with self._wake:
            if self._closing is not None:
                raise EngineClosed(self._closing)
            self._queue.append(_Operation(kind, name, future))
            self._wake.notify()
        return await asyncio.wrap_future(future)

    async def load_concept(self, name: str) -> ConceptInfo:
        return await self._operate("load", name)  # type: ignore[no-any-return]

    async def unload_concept(self, name: str) -> None:
        await self._operate("unload", name)

    async def barrier(self) -> None:
        await self._operate("barrier")

    def list_concepts(self) -> list[ConceptInfo]:
        return list(self._concept_list)

    async def available_concepts(self) -> list[ConceptInfo]:
        if self.concepts_dir is None:
            return []
        metas, errors = await asyncio.to_thread(scan_concepts, self.concepts_dir)
        for err in errors:
            log.warning("concept skipped: %s", err)
        loaded = {c.name for c in self._concept_list}
        return [ConceptInfo.from_meta(m, loaded=m.name in loaded) for m in metas]

    # -- worker thread -------------------------------------------------------------------------

    def _carry_out(self, op: _Operation) -> Any:
        """Run one operation on the worker thread (between jobs)."""
        if op.kind == "barrier":
            return None
        manager = require_manager(self.concepts)
        try:
            if op.kind == "load":
                return manager.ensure_loaded(op.name)
            manager.unload(op.name)
            return None
        finally:
            self._concept_list = tuple(manager.loaded())

    def _emit(self, job: Job, event: JobEvent) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(job._push, event)

    def _next_batch(self) -> list[Job]:
        """Pop the head job and the same-shape jobs right behind it (call under the lock)."""
        first = self._queue.popleft()
        assert isinstance(first, Job)
        if not _batchable(first.request):  # a separation or a no-model job runs alone
            return [first]
        batch, rows, key = [first], first.request.count, batch_key(first.request)
        while self._queue and isinstance(self._queue[0], Job):
            candidate = self._queue[0]
            if (not _batchable(candidate.request)
                    or rows + candidate.request.count > self.max_batch
                    or batch_key(candidate.request) != key):
                break
            batch.append(candidate)
            rows += candidate.request.count
            self._queue.popleft()
        return batch

    def _work(self) -> None:
        while True:
            with self._wake:
                while self._closing is None and not self._queue:
                    self._wake.wait()
                if self._closing is not None:
                    return
                if isinstance(self._queue[0], _Operation):
                    item: _Operation | None = self._queue.popleft()  # type: ignore[assignment]
                    batch: list[Job] = []
                else:
                    item, batch = None, self._next_batch()
                    self._running = batch
            if item is not None:
                if item.future.set_running_or_notify_cancel():
                    try:
                        item.future.set_result(self._carry_out(item))
                    except BaseException as exc:
                        item.future.set_exception(exc)
                continue
            terminals = self._run(batch)
            with self._wake:
                self._running = []
            for job, terminal in terminals:
                self._emit(job, terminal)

    def _run(self, jobs: list[Job], announce: bool = True) -> list[tuple[Job, TerminalEvent]]:
        """Run a batch of jobs, emitting starts (with ``announce``), progress and the ends of
        jobs cancelled on the way; return the other jobs' terminal events (not yet sent)."""
        assert self.model is not None
        for job in jobs if announce else ():
            self._emit(job, JobStarted(job.id))
        ended: set[int] = set()

        def drop_cancelled() -> bool:
            """End newly cancelled jobs now; True when every job of the batch has ended."""
            for job in jobs:
                if job.id not in ended and job.cancel_requested.is_set():
                    ended.add(job.id)
                    self._emit(job, JobFailed(job.id, "cancelled", cancelled=True))
            return len(ended) == len(jobs)

        def on_step(step: int, total: int) -> None:
            drop_cancelled()
            for job in jobs:
                if job.id not in ended:
                    self._emit(job, JobProgress(job.id, step, total))

        try:
            results = run_batch(self.model, self.stems, [job.request for job in jobs],
                                on_step=on_step, should_cancel=drop_cancelled)
        except Cancelled:
            return [(job, JobFailed(job.id, "cancelled", cancelled=True))
                    for job in jobs if job.id not in ended]
        except BaseException as exc:  # not only Exception: the worker thread must survive
            live = [job for job in jobs if job.id not in ended]
            if len(jobs) > 1 and isinstance(exc, Exception):
                log.warning("a batch of %d jobs failed (%s); running them one by one",
                            len(jobs), exc)
                return [end for job in live for end in self._run_alone(job)]
            return [(job, JobFailed(job.id, failure_message(exc, f"job {job.id}")))
                    for job in live]
        drop_cancelled()
        return [(job, JobFinished(job.id, takes[0], tuple(takes[1:])))
                for job, takes in zip(jobs, results, strict=True) if job.id not in ended]

    def _run_alone(self, job: Job) -> list[tuple[Job, TerminalEvent]]:
        """Rerun one job of a failed batch (its start was already sent)."""
        with self._wake:
            self._running = [job]
        return self._run([job], announce=False)
