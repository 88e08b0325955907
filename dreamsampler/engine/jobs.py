"""The async job interface between the server and an engine: submit → events → one result.

The server sees only :class:`Engine` (a Protocol). :class:`LocalEngine` runs the model in this
process on one worker thread, so the asyncio loop keeps answering while a generation runs; a remote
engine (e.g. Ray Serve replicas) can implement the same protocol without the server changing.

Every job yields, in order: :class:`JobStarted`, any number of :class:`JobProgress`, then exactly
one terminal event, :class:`JobFinished` or :class:`JobFailed` (``cancelled=True`` when cancelled).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dreamsampler.engine.audio_io import AudioFileError
from dreamsampler.engine.concepts import ConceptError, ConceptInfo, ConceptManager
from dreamsampler.engine.families import ModelFamily, load_model
from dreamsampler.engine.request import GenerationRequest, GenerationResult
from dreamsampler.engine.sampler import Cancelled, sample

log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueFull(RuntimeError):
    """The engine's queue holds its maximum number of waiting jobs."""


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
    job_id: int
    result: GenerationResult


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    message: str
    cancelled: bool = False


JobEvent = JobStarted | JobProgress | JobFinished | JobFailed
TerminalEvent = JobFinished | JobFailed


class Job:
    """A submitted job; iterate :meth:`events` or await :meth:`wait` from the event loop."""

    def __init__(self, job_id: int, request: GenerationRequest) -> None:
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
    #: times the engine replaced its failed model process (:mod:`~dreamsampler.engine.supervised`)
    restarts: int = 0


class Engine(Protocol):
    """What the server needs from an engine, local or remote."""

    async def start(self) -> None:
        """Load the model; raises ``ModelLoadError`` when it cannot."""

    async def close(self) -> None:
        """Cancel running work and release the model."""

    def submit(self, request: GenerationRequest, job_id: int) -> tuple[Job, int]:
        """Queue a job; returns it with its queue position (0 = next to run).

        Raises:
            QueueFull: too many jobs waiting.
        """
        ...

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when no such job is pending."""
        ...

    def status(self) -> EngineStatus: ...

    async def run_exclusive(self, fn: Callable[[ModelFamily], T]) -> T:
        """Run ``fn(model)`` between jobs, never during one (loading a concept, say)."""
        ...

    async def load_concept(self, name: str) -> ConceptInfo:
        """Load a concept from the concepts folder between jobs.

        Raises:
            ConceptError: invalid, missing, already loaded or for another base model.
        """
        ...

    async def unload_concept(self, name: str) -> None:
        """Unload a concept between jobs.

        Raises:
            ConceptNotLoadedError: it is not loaded.
        """
        ...

    def list_concepts(self) -> list[ConceptInfo]:
        """The loaded concepts (a snapshot; never waits for the running job)."""
        ...


class LocalEngine:
    """Runs jobs on this process's model in one worker thread, one job at a time.

    Args:
        model_id: repo id, local folder or tiny name (see :func:`load_model`).
        device: ``auto``, ``cpu``, ``cuda`` …
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        queue_size: jobs that may wait; more raise :class:`QueueFull`.
        model: an already loaded model (then ``model_id``/``device``/``dtype`` are not used).
        concepts_dir: folder of trained concepts (:mod:`dreamsampler.engine.concepts`);
            ``None``: concept commands fail.
    """

    def __init__(
        self,
        model_id: str = "tiny",
        device: str = "auto",
        dtype: str = "float32",
        queue_size: int = 16,
        model: ModelFamily | None = None,
        concepts_dir: Path | None = None,
    ) -> None:
        self.model_id = model_id
        self.concepts_dir = Path(concepts_dir) if concepts_dir is not None else None
        self.concepts: ConceptManager | None = None
        self._concept_list: tuple[ConceptInfo, ...] = ()
        self._device = device
        self._dtype = dtype
        self.queue_size = queue_size
        self.model = model
        self._pending: deque[Job] = deque()
        self._calls: deque[tuple[Callable[[ModelFamily], Any], Future[Any]]] = deque()
        self._running: Job | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.model is None:
            self.model = await asyncio.to_thread(
                load_model, self.model_id, self._device, self._dtype
            )
        if self.concepts_dir is not None:
            self.concepts = ConceptManager(self.model, self.concepts_dir)
        self._thread = threading.Thread(target=self._work, name="dreamsampler-engine", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        with self._wake:
            self._closing = True
            for job in self._pending:
                self._emit(job, JobFailed(job.id, "server shutting down", cancelled=True))
            self._pending.clear()
            if self._running is not None:
                self._running.cancel_requested.set()
            self._wake.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def submit(self, request: GenerationRequest, job_id: int) -> tuple[Job, int]:
        job = Job(job_id, request)
        with self._wake:
            if self._closing:
                raise QueueFull("engine is shutting down")
            if len(self._pending) >= self.queue_size:
                raise QueueFull(f"queue full ({self.queue_size} jobs waiting)")
            position = len(self._pending) + (1 if self._running is not None else 0)
            self._pending.append(job)
            self._wake.notify()
        return job, position

    def cancel(self, job_id: int) -> bool:
        with self._wake:
            if self._running is not None and self._running.id == job_id:
                self._running.cancel_requested.set()
                return True
            for job in self._pending:
                if job.id == job_id:
                    self._pending.remove(job)
                    self._emit(job, JobFailed(job_id, "cancelled", cancelled=True))
                    return True
        return False

    def status(self) -> EngineStatus:
        model = self.model
        with self._wake:
            queued = len(self._pending)
            running = self._running.id if self._running is not None else None
        return EngineStatus(
            model_id=self.model_id,
            family=model.name if model else "",
            sample_rate=model.sample_rate if model else 0,
            device=str(model.device) if model else "",
            queued=queued,
            running=running,
        )

    async def run_exclusive(self, fn: Callable[[ModelFamily], T]) -> T:
        future: Future[T] = Future()
        with self._wake:
            if self._closing:
                raise RuntimeError("engine is shutting down")
            self._calls.append((fn, future))
            self._wake.notify()
        return await asyncio.wrap_future(future)

    def _manager(self) -> ConceptManager:
        if self.concepts is None:
            raise ConceptError("concepts_dir", "no concepts folder is configured")
        return self.concepts

    async def load_concept(self, name: str) -> ConceptInfo:
        def load(model: ModelFamily) -> ConceptInfo:
            manager = self._manager()
            try:
                return manager.load(name)
            finally:
                self._concept_list = tuple(manager.loaded())

        return await self.run_exclusive(load)

    async def unload_concept(self, name: str) -> None:
        def unload(model: ModelFamily) -> None:
            manager = self._manager()
            try:
                manager.unload(name)
            finally:
                self._concept_list = tuple(manager.loaded())

        await self.run_exclusive(unload)

    def list_concepts(self) -> list[ConceptInfo]:
        return list(self._concept_list)

    # -- worker thread -------------------------------------------------------------------------

    def _emit(self, job: Job, event: JobEvent) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(job._push, event)

    def _work(self) -> None:
        while True:
            with self._wake:
                while not (self._closing or self._pending or self._calls):
                    self._wake.wait()
                if self._closing:
                    return
                if self._calls:
                    fn, future = self._calls.popleft()
                    job = None
                else:
                    job = self._pending.popleft()
                    self._running = job
            if job is None:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(self.model))  # type: ignore[arg-type]
                    except BaseException as exc:
                        future.set_exception(exc)
                continue
            terminal = self._run(job)
            with self._wake:
                self._running = None
            self._emit(job, terminal)

    def _run(self, job: Job) -> TerminalEvent:
        """Run one job, emitting start and progress; return its terminal event (not yet sent)."""
        assert self.model is not None
        self._emit(job, JobStarted(job.id))
        try:
            result = sample(
                self.model,
                job.request,
                on_step=lambda step, total: self._emit(job, JobProgress(job.id, step, total)),
                should_cancel=job.cancel_requested.is_set,
            )
        except Cancelled:
            return JobFailed(job.id, "cancelled", cancelled=True)
        except (AudioFileError, ConceptError) as exc:
            return JobFailed(job.id, str(exc))
        except BaseException as exc:  # not only Exception: the worker thread must survive
            log.error("job %d failed", job.id, exc_info=True)
            return JobFailed(job.id, f"{type(exc).__name__}: {exc}")
        return JobFinished(job.id, result)
