"""The engine on Ray Serve: one front end (the OSC server), many model replicas.

:class:`RayEngine` implements the :class:`~dreamsampler.engine.jobs.Engine` protocol, so the
server runs unchanged on it. Each replica of the Serve deployment holds one model and runs the same
sampling loop as :class:`~dreamsampler.engine.jobs.LocalEngine` (:func:`~dreamsampler.engine.
work.run_takes`: every take of a job, ``count``, in one batched call), one batch at a time.

- Progress: a job is a streaming call (``handle.options(stream=True)``); the replica's method is an
  ``async def`` generator that runs the sampler in a thread and yields one message per denoising
  step. ``cancel()`` on the response cancels the replica's task; the replica then sets the
  sampler's cancel flag and waits for it to stop between two steps.
- Concepts: routed with ``@serve.multiplexed``. A request naming a concept (its ``concept`` or the
  placeholder token of a loaded textual-inversion concept) carries it as the multiplexed model id;
  Serve prefers a replica that has it loaded, and each replica keeps an LRU of
  ``concepts_per_replica`` concepts. A replica runs one batch at a time (a lock), and a batch
  holds one concept key, so two adapters never share a pipeline at once.
  ``load_concept`` loads the concept on one replica (which checks it) and makes it routable; every
  other replica loads it from ``concepts_dir`` on first use, so ``concepts_dir`` must be the same
  path on every node. One concept per request (``concept``, a one-entry ``loras`` blend, or a TI
  token): a multiplexed id names one concept.
- Batching (issue 21): ``@serve.batch`` on the replica (``RaySettings.max_batch`` jobs,
  ``batch_wait_s``; the replica takes that many requests at once). The jobs that queued together
  are split by :func:`_groups` with LocalEngine's rule (:func:`~dreamsampler.engine.sampler.
  batch_key`, the same concept key, at most :data:`MAX_BATCH_ROWS` takes) and each group runs as
  one :func:`~dreamsampler.engine.work.run_batch` call; every job keeps its own stream, progress
  and cancel (a cancelled job's rows are dropped; a batch whose jobs are all cancelled stops).
- What crosses the network: the request's parameters, the input clip's samples for style transfer
  (the front end reads the file), and the finished clip as a float32 array ``(channels, samples)``.
  No file paths: clips are written by the front end's sinks.
- Failure: a replica that dies mid-job fails that job (:class:`JobFailed` naming the replica and
  the error); Serve starts a new replica and later jobs go to live ones.

Needs the ``ray`` extra (``pip install "dreamsampler[ray]"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import sys
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamsampler.engine.audio_io import AudioFileError, read_audio, read_resampled
from dreamsampler.engine.concepts import (
    ConceptError,
    ConceptInfo,
    ConceptManager,
    ConceptNotLoadedError,
    check_name,
    require_manager,
    scan_concepts,
)
from dreamsampler.engine.families import ModelLoadError, load_model
from dreamsampler.engine.jobs import (
    EngineClosed,
    EngineStatus,
    Job,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    QueueFull,
    failure_message,
)
from dreamsampler.engine.request import GenerationRequest, GenerationResult, RequestError
from dreamsampler.engine.sampler import Cancelled, batch_key
from dreamsampler.engine.stems import DEFAULT_MODEL, SeparationRequest, StemsStage
from dreamsampler.engine.work import EngineRequest, run_batch

log = logging.getLogger(__name__)

RAY_MISSING = "the Ray engine needs Ray Serve: pip install 'dreamsampler[ray]'"


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide the Ray engine runs.

    Attributes:
        address: a running cluster (``auto`` or ``HOST:PORT`` of its head); ``None`` starts a
            local Ray instance bound to 127.0.0.1 (stopped again by :meth:`RayEngine.close`).
        min_replicas: replicas kept running.
        max_replicas: upper bound for autoscaling on queue length; ``None`` = ``min_replicas``
            (no autoscaling).
        gpus_per_replica: GPUs reserved per replica (fractions share a GPU, e.g. 0.25).
        cpus_per_replica: CPUs reserved per replica.
        concepts_per_replica: concepts a replica keeps loaded (LRU).
        app_name: the Serve application's name on the cluster.
        max_batch: most jobs a replica takes at once and batches (``@serve.batch``
            ``max_batch_size``; also its ``max_ongoing_requests``); 1 turns batching off.
        batch_wait_s: how long a replica's first queued job waits for batch-mates
            (``batch_wait_timeout_s``; the latency a lone job pays).
    """

    address: str | None = None
    min_replicas: int = 1
    max_replicas: int | None = None
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    concepts_per_replica: int = 4
    app_name: str = "dreamsampler"
    max_batch: int = 4
    batch_wait_s: float = 0.01

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ValueError(f"min_replicas must be >= 1, got {self.min_replicas}")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})"
            )
        if self.concepts_per_replica < 1:
            raise ValueError(f"concepts_per_replica must be >= 1, got {self.concepts_per_replica}")
        if self.max_batch < 1 or self.batch_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and batch_wait_s >= 0, got "
                             f"{self.max_batch}, {self.batch_wait_s}")


# -- replica side ----------------------------------------------------------------------------------


class _ConceptSlot:
    """What ``@serve.multiplexed`` caches for one concept on one replica.

    Serve calls ``__del__`` when it evicts the slot (LRU); the replica then unloads the concept
    from its model before its next use of the model (never during a generation).
    """

    def __init__(self, evicted: deque[_ConceptSlot], name: str, key: str) -> None:
        self.name = name
        self.key = key
        self._evicted = evicted
        self._gone = False

    def __del__(self) -> None:
        if not self._gone:
            self._gone = True
            self._evicted.append(self)


MAX_BATCH_ROWS = 8
"""Most takes (rows) one batched call on a replica runs (as :class:`LocalEngine`'s
``max_batch``)."""


@dataclass
class _Pending:
    """One job waiting on a replica for its batch: the request, its concept key (multiplexed
    id, ``""``: none), the messages for its stream, and its cancel flag."""

    request: EngineRequest
    key: str
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    stop: threading.Event = field(default_factory=threading.Event)


def _groups(items: list[_Pending], max_rows: int = MAX_BATCH_ROWS) -> list[list[_Pending]]:
    """Split the jobs that queued together into batches: generations of one shape
    (:func:`~dreamsampler.engine.sampler.batch_key`, which holds the concept and LoRA blend;
    the same multiplexed key) up to ``max_rows`` takes; a separation or ``/conform`` alone.
    Groups keep the order of their first job."""
    groups: list[list[_Pending]] = []
    keys: list[Any] = []
    for item in items:
        request = item.request
        if not (isinstance(request, GenerationRequest) and request.process is None):
            groups.append([item])
            keys.append(None)
            continue
        key = (batch_key(request), item.key)
        for group, other in zip(groups, keys, strict=True):
            if other == key and sum(i.request.count for i in group) + request.count <= max_rows:
                group.append(item)
                break
        else:
            groups.append([item])
            keys.append(key)
    return groups


class EngineReplica:
    """One model on one Ray worker (the body of the Serve deployment; see :func:`deployment`).

    Args:
        model_id, device, dtype: as for :func:`~dreamsampler.engine.families.load_model`.
        concepts_dir: folder of concepts (the same path on every node); ``None``: no concepts.
        stems_model, stems_preload: the replica's stems stage (see
            :class:`~dreamsampler.engine.jobs.LocalEngine`).
    """

    def __init__(
        self, model_id: str, device: str, dtype: str, concepts_dir: str | None,
        stems_model: str = DEFAULT_MODEL, stems_preload: bool = False,
    ) -> None:
        from ray import serve

        self.model = load_model(model_id, device, dtype)
        self.stems = StemsStage(stems_model, device)
        if stems_preload:
            self.stems.load()
        self.manager = (
            ConceptManager(self.model, Path(concepts_dir)) if concepts_dir is not None else None
        )
        self._lock = asyncio.Lock()
        self._evicted: deque[_ConceptSlot] = deque()
        self._owner: dict[str, str] = {}  # concept name → multiplexed key that loaded it
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.pid = os.getpid()

    def _identity(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "pid": self.pid,
            "concepts": list(self._owner),
        }

    async def info(self) -> dict[str, Any]:
        """Model facts for the front end's :meth:`RayEngine.status`."""
        return {
            "model_id": self.model.model_id,
            "family": self.model.name,
            "sample_rate": self.model.sample_rate,
            "device": str(self.model.device),
            **self._identity(),
        }

    # -- concepts (called with self._lock held) -------------------------------------------------

    def _drain_evictions(self) -> None:
        while self._evicted:
            slot = self._evicted.popleft()
            if self._owner.get(slot.name) == slot.key and self.manager is not None:
                del self._owner[slot.name]
                self.manager.unload(slot.name)

    async def _load_slot(self, key: str) -> _ConceptSlot:
        """The ``@serve.multiplexed`` loader: ``key`` is ``name@generation``."""
        name = key.rpartition("@")[0]
        manager = require_manager(self.manager)
        self._drain_evictions()
        if name in self._owner:  # an older generation (unloaded and reloaded since): replace it
            del self._owner[name]
            manager.unload(name)
        await asyncio.to_thread(manager.load, name)
        self._owner[name] = key
        return _ConceptSlot(self._evicted, name, key)

    async def _activate(self, key: str) -> tuple[str | None, bool]:
        """Make concept ``key`` (a multiplexed id, ``""``: none) loaded; returns (name, was
        cached)."""
        if not key:
            self._drain_evictions()
            return None, True
        name = key.rpartition("@")[0]
        cached = self._owner.get(name) == key
        # Serve's LRU evicts others (never the requested key), then calls _load_slot on a miss.
        await self.get_concept(key)  # type: ignore[attr-defined]
        self._drain_evictions()
        return name, cached

    async def load_concept(self) -> dict[str, Any]:
        """Load the request's concept here (checks it); the answer is JSON-ready."""
        from ray import serve

        async with self._lock:
            try:
                name, _ = await self._activate(serve.get_multiplexed_model_id())
            except ConceptError as exc:
                return {"error": str(exc), "path": exc.path, "reason": exc.reason}
            assert self.manager is not None and name is not None
            info = next(c for c in self.manager.loaded() if c.name == name)
            return {"concept": dataclasses.asdict(info), **self._identity()}

    # -- jobs ----------------------------------------------------------------------------------

    async def generate(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Run one job, streaming its messages (dicts with an ``event`` key).

        Args:
            payload: ``request`` (the :class:`GenerationRequest` fields, ``input_path`` None)
                and, for style transfer, ``input_audio``: float32 ``(channels, samples)`` at the
                model's sample rate (its channels kept: a stereo model keeps a stereo input);
                ``kind: "separate"``: the :class:`SeparationRequest` fields, with
                ``input_audio`` ``(channels, samples)`` at ``input_rate`` Hz.

        Yields:
            ``started`` (replica id, pid, its loaded concepts), ``progress`` (``step``,
            ``total``) after every denoising step, then ``finished`` (``audio`` float32
            ``(channels, samples)``, ``sample_rate`` in Hz, ``record``, ``stems``) or ``failed``
            (``message``, ``cancelled``). Cancelling the call (``response.cancel()``) stops the
            sampler between two steps.
        """
        from ray import serve

        key = serve.get_multiplexed_model_id()
        with contextlib.ExitStack() as stack:
            fields = dict(payload["request"])
            if payload.get("input_audio") is not None:  # before validation: a transfer
                rate = int(payload.get("input_rate") or self.model.sample_rate)
                fields["input_path"] = self._write_input(stack, payload["input_audio"], rate)
            kind = SeparationRequest if payload.get("kind") == "separate" else GenerationRequest
            try:
                request: EngineRequest = kind(**fields)
            except RequestError as exc:
                yield {"event": "failed", "message": str(exc), **self._identity()}
                return
            item = _Pending(request, key)
            batched = asyncio.ensure_future(self.run_batched(item))  # type: ignore[attr-defined]
            try:
                while True:
                    getter = asyncio.ensure_future(item.events.get())
                    await asyncio.wait({getter, batched}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        if item.events.empty():
                            batched.result()  # the batch's own error, if any
                            yield {"event": "failed", "message": "the batch ended without "
                                   "this job's result", **self._identity()}
                            return
                        continue
                    message = getter.result()
                    yield message
                    if message["event"] in ("finished", "failed"):
                        return
            except (asyncio.CancelledError, GeneratorExit):
                item.stop.set()  # the caller cancelled: its rows stop (or are dropped)
                with contextlib.suppress(BaseException):
                    await asyncio.shield(batched)
                raise

    async def _run_batch(self, items: list[_Pending]) -> list[None]:
        """The ``@serve.batch`` body: the jobs that queued together, run as batches of one shape
        (:func:`_groups`) one after another; each job's messages go to its own queue."""
        async with self._lock:
            for group in _groups(items):
                await self._run_group(group)
        return [None] * len(items)

    async def _run_group(self, group: list[_Pending]) -> None:
        live = [item for item in group if not item.stop.is_set()]
        for item in group:
            if item.stop.is_set():
                item.events.put_nowait({"event": "failed", "message": "cancelled",
                                        "cancelled": True})
        if not live:
            return
        try:
            concept, cached = await self._activate(live[0].key)
        except ConceptError as exc:
            for item in live:
                item.events.put_nowait({"event": "failed", "message": str(exc),
                                        **self._identity()})
            return
        for item in live:
            item.events.put_nowait({"event": "started", "concept": concept, "cached": cached,
                                    "batch": len(live), **self._identity()})
        loop = asyncio.get_running_loop()

        def on_step(done: int, total: int) -> None:
            for item in live:
                loop.call_soon_threadsafe(item.events.put_nowait,
                                          {"event": "progress", "step": done, "total": total})

        def should_cancel() -> bool:
            return all(item.stop.is_set() for item in live)

        try:
            grouped = await asyncio.to_thread(
                run_batch, self.model, self.stems, [item.request for item in live],
                on_step=on_step, should_cancel=should_cancel)
        except Cancelled:
            for item in live:
                item.events.put_nowait({"event": "failed", "message": "cancelled",
                                        "cancelled": True})
            return
        except Exception as exc:
            message = failure_message(exc, f"replica {self.replica}: a job", log)
            for item in live:
                item.events.put_nowait({"event": "failed", "message": message,
                                        **self._identity()})
            return
        for item, (result, *more) in zip(live, grouped, strict=True):
            if item.stop.is_set():  # cancelled while its batch-mates ran: its rows are dropped
                item.events.put_nowait({"event": "failed", "message": "cancelled",
                                        "cancelled": True})
                continue
            item.events.put_nowait({
                "event": "finished",
                "audio": result.audio,
                "sample_rate": result.sample_rate,
                "record": {**result.record, "replica": self.replica, "batch": len(live)},
                "stems": result.stems,
                # the further takes (count > 1), in order (run_takes: never stems)
                "takes": [{"audio": take.audio, "sample_rate": take.sample_rate,
                           "record": {**take.record, "replica": self.replica,
                                      "batch": len(live)}} for take in more],
                **self._identity(),
            })

    def _write_input(self, stack: contextlib.ExitStack, audio: np.ndarray, rate: int) -> Path:
        import soundfile as sf

        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ds-ray-")))
        path = folder / "input.wav"
        sf.write(path, np.asarray(audio, dtype=np.float32).T, rate, subtype="FLOAT")
        return path


def deployment(model_id: str, device: str, dtype: str, concepts_dir: Path | None,
               settings: RaySettings, stems_model: str = DEFAULT_MODEL,
               stems_preload: bool = False) -> Any:
    """The bound Serve application: :class:`EngineReplica` as a deployment of ``settings``."""
    from ray import serve

    class Replica(EngineReplica):
        @serve.multiplexed(max_num_models_per_replica=settings.concepts_per_replica)
        async def get_concept(self, key: str) -> _ConceptSlot:
            return await self._load_slot(key)

        @serve.batch(max_batch_size=settings.max_batch,
                     batch_wait_timeout_s=settings.batch_wait_s)
        async def run_batched(self, items: list[_Pending]) -> list[None]:
            return await self._run_batch(items)

    scale: dict[str, Any] = {"num_replicas": settings.min_replicas}
    if settings.max_replicas is not None and settings.max_replicas > settings.min_replicas:
        scale = {"autoscaling_config": {
            "min_replicas": settings.min_replicas,
            "max_replicas": settings.max_replicas,
            "target_ongoing_requests": 1,
            "metrics_interval_s": 1.0,
            "look_back_period_s": 5.0,
            "upscale_delay_s": 2.0,
            "downscale_delay_s": 60.0,
        }}
    options = serve.deployment(
        name="EngineReplica",
        max_ongoing_requests=settings.max_batch,
        ray_actor_options={"num_cpus": settings.cpus_per_replica,
                           "num_gpus": settings.gpus_per_replica},
        health_check_period_s=2.0,
        **scale,
    )
    return options(Replica).bind(
        model_id, device, dtype, str(concepts_dir) if concepts_dir is not None else None,
        stems_model, stems_preload,
    )


# -- front end -------------------------------------------------------------------------------------


@dataclass
class _Entry:
    job: Job
    concept: str | None
    task: asyncio.Task[None] | None = None
    response: Any = None
    started: bool = False
    replica: str | None = None
    cancelled: bool = False


@dataclass
class _ReplicaView:
    pid: int
    concepts: list[str] = field(default_factory=list)
    running: int | None = None
    jobs_done: int = 0
    last_error: str | None = None
    alive: bool = True


class RayEngine:
    """The :class:`~dreamsampler.engine.jobs.Engine` protocol over a Ray Serve deployment.

    Args:
        model_id, device, dtype: the model every replica loads (see
            :func:`~dreamsampler.engine.families.load_model`); ``device`` is resolved on the
            replica (``auto`` picks its GPU when it has one).
        queue_size: jobs that may wait for a replica; more raise :class:`QueueFull`.
        concepts_dir: folder of concepts, the same path on the front end and every node.
        settings: cluster address, replicas, GPUs (:class:`RaySettings`).
    """

    def __init__(
        self,
        model_id: str = "tiny",
        device: str = "auto",
        dtype: str = "float32",
        queue_size: int = 16,
        concepts_dir: Path | None = None,
        settings: RaySettings | None = None,
        stems_model: str = DEFAULT_MODEL,
        stems_preload: bool = False,
    ) -> None:
        self.model_id = model_id
        self.stems_model = stems_model
        self.stems_preload = stems_preload
        self._device = device
        self._dtype = dtype
        self.queue_size = queue_size
        self.concepts_dir = Path(concepts_dir) if concepts_dir is not None else None
        self.settings = settings or RaySettings()
        self._handle: Any = None
        self._info: dict[str, Any] = {}
        self._entries: dict[int, _Entry] = {}
        self._concepts: dict[str, ConceptInfo] = {}  # loaded (routable), in load order
        self._loading: dict[str, asyncio.Future[ConceptInfo]] = {}
        self._generation: dict[str, int] = {}
        self._ops: set[asyncio.Task[Any]] = set()
        self._replicas: dict[str, _ReplicaView] = {}
        self._closing: str | None = None
        self._closed = asyncio.Event()
        self._started_ray = False  # this engine started a local Ray instance
        self._owns_connection = False  # this engine called ray.init

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to (or start) Ray, deploy the replicas and wait until they serve.

        Raises:
            ModelLoadError: Ray is not installed, or the deployment did not come up (a replica
                could not load the model).
        """
        try:
            await asyncio.to_thread(self._deploy)
            self._info = await self._handle.info.remote()
        except ModelLoadError:
            raise
        except Exception as exc:
            await asyncio.to_thread(self._teardown)
            raise ModelLoadError(f"Ray engine ({self.model_id}): {exc}") from exc
        self._note_replica(self._info)
        log.info("ray engine ready: app %s, %s", self.settings.app_name, self._replica_summary())

    def _deploy(self) -> None:
        if self.settings.address is None:
            # A local instance stays on 127.0.0.1: Ray binds the routable address unless
            # clusters are "disabled" (its Windows/macOS default), read when ray is imported.
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            constants = sys.modules.get("ray._private.ray_constants")
            if constants is not None:  # ray was imported before: its constant is already read
                constants.ENABLE_RAY_CLUSTER = False
        try:
            import ray
            from ray import serve
        except ImportError as exc:
            raise ModelLoadError(RAY_MISSING) from exc
        if not ray.is_initialized():
            if self.settings.address is None:
                s = self.settings
                replicas = s.max_replicas or s.min_replicas
                ray.init(
                    include_dashboard=False,
                    num_cpus=max(os.cpu_count() or 1, int(replicas * s.cpus_per_replica + 0.999)),
                    log_to_driver=False,
                    namespace="dreamsampler",
                )
                self._started_ray = True
                node_ip = ray.util.get_node_ip_address()
                if node_ip != "127.0.0.1":
                    log.warning("local Ray instance bound %s, not 127.0.0.1", node_ip)
            else:
                ray.init(address=self.settings.address, log_to_driver=False,
                         namespace="dreamsampler")
            self._owns_connection = True
        serve.start(proxy_location="Disabled")
        app = deployment(self.model_id, self._device, self._dtype, self.concepts_dir,
                         self.settings, self.stems_model, self.stems_preload)
        self._handle = serve.run(app, name=self.settings.app_name, route_prefix=None)

    def _teardown(self) -> None:
        try:
            import ray
            from ray import serve
        except ImportError:
            return
        if not ray.is_initialized():
            return
        with contextlib.suppress(Exception):
            if self._started_ray:
                serve.shutdown()
            else:
                serve.delete(self.settings.app_name)
        if self._owns_connection:
            ray.shutdown()  # a connection made by someone else (a bench, a notebook) stays

    async def close(self, reason: str = "server shutting down") -> None:
        """Fail queued jobs and pending operations with ``reason``, cancel running jobs, then
        delete the deployment (and stop Ray when this engine started it)."""
        if self._closing is None:
            self._closing = reason
            self._closed.set()
            entries = list(self._entries.values())
            for entry in entries:
                if entry.response is not None:
                    entry.response.cancel()
                if entry.task is not None:
                    entry.task.cancel()
            for op in list(self._ops):
                op.cancel()
            await asyncio.gather(*(e.task for e in entries if e.task is not None), *self._ops,
                                 return_exceptions=True)
            for entry in entries:  # a task cancelled before it began never ended its job
                if not entry.job.done:
                    entry.job._push(JobFailed(entry.job.id, reason, cancelled=True))
            self._entries.clear()
        await asyncio.to_thread(self._teardown)

    # -- jobs ----------------------------------------------------------------------------------

    def submit(self, request: EngineRequest, job_id: int) -> tuple[Job, int]:
        if self._closing is not None:
            raise QueueFull(f"engine is shutting down ({self._closing})")
        waiting = sum(1 for e in self._entries.values() if not e.started)
        if waiting >= self.queue_size:
            raise QueueFull(f"queue full ({self.queue_size} jobs waiting)")
        job = Job(job_id, request)
        try:
            concept = self._route(request)
        except ConceptError as exc:
            job._push(JobFailed(job_id, str(exc)))
            return job, 0
        running = len(self._entries) - waiting
        free = max(0, self.settings.min_replicas - running)
        entry = _Entry(job, concept)
        self._entries[job_id] = entry
        entry.task = asyncio.create_task(self._run(entry), name=f"ray-job-{job_id}")
        return job, max(0, waiting - free)

    def _route(self, request: EngineRequest) -> str | None:
        """The one concept a request needs (its multiplexed key), checked in arrival order."""
        if isinstance(request, SeparationRequest):
            return None
        names = []
        if request.concept is not None:
            names.append(request.concept)
        names += [name for name, _ in request.loras]  # a blend of one LoRA routes as its concept
        for name, info in self._concepts.items():
            if info.method == "ti" and name != request.concept and (
                re.search(re.escape(info.placeholder_token), request.prompt)
                or re.search(re.escape(info.placeholder_token), request.negative_prompt)
            ):
                names.append(name)
        if not names:
            return None
        if len(names) > 1:
            raise ConceptError(", ".join(names),
                               "the Ray engine serves one concept per request (concept, loras "
                               "and TI tokens together)")
        name = names[0]
        if name not in self._concepts and name not in self._loading:
            loaded = ", ".join(self._concepts) or "none loaded"
            raise ConceptNotLoadedError(
                f"concept {name!r}",
                f"not loaded ({loaded}); load it with /concept/load {name}",
            )
        return f"{name}@{self._generation[name]}"

    async def _run(self, entry: _Entry) -> None:
        job = entry.job
        terminal: JobEvent | None = None
        try:
            payload: dict[str, Any] = {"request": dataclasses.asdict(job.request)}
            payload["request"]["input_path"] = None
            if isinstance(job.request, SeparationRequest):
                payload["kind"] = "separate"
                try:
                    audio, rate = await asyncio.to_thread(read_audio, job.request.input_path)
                except AudioFileError as exc:
                    terminal = JobFailed(job.id, str(exc))
                    return
                payload.update(input_audio=audio, input_rate=rate)
            elif job.request.input_path is not None:
                try:
                    payload["input_audio"] = await asyncio.to_thread(
                        read_resampled, job.request.input_path, int(self._info["sample_rate"])
                    )
                except AudioFileError as exc:
                    terminal = JobFailed(job.id, str(exc))
                    return
            handle = self._handle.options(stream=True, multiplexed_model_id=entry.concept or "")
            entry.response = handle.generate.remote(payload)
            if entry.cancelled:
                entry.response.cancel()
            async for message in entry.response:
                terminal = self._on_message(entry, message)
                if terminal is not None:
                    break
            if terminal is None:
                terminal = JobFailed(job.id, "the replica ended the job without a result")
        except asyncio.CancelledError:
            if entry.response is not None:
                entry.response.cancel()
            terminal = JobFailed(job.id, self._closing or "cancelled", cancelled=True)
        except Exception as exc:
            terminal = self._failure(entry, exc)
        finally:
            if terminal is None:
                terminal = JobFailed(job.id, "job ended unexpectedly")
            if entry.replica in self._replicas:
                view = self._replicas[entry.replica]
                if view.running == job.id:
                    view.running = None
            self._entries.pop(job.id, None)
            job._push(terminal)

    def _on_message(self, entry: _Entry, message: dict[str, Any]) -> JobEvent | None:
        """Turn one replica message into events; returns the terminal event, if this was it."""
        job = entry.job
        kind = message["event"]
        if "replica" in message:
            view = self._note_replica(message)
            entry.replica = message["replica"]
            if kind == "started":
                view.running = job.id
            elif kind in ("finished", "failed"):
                view.jobs_done += 1
        if kind == "started":
            entry.started = True
            job._push(JobStarted(job.id))
        elif kind == "progress":
            job._push(JobProgress(job.id, message["step"], message["total"]))
        elif kind == "finished":
            record = message["record"]
            if isinstance(job.request, SeparationRequest):  # the replica read a copy
                record["input"] = str(job.request.input_path)
            elif job.request.input_path is not None:  # the replica read a copy of its samples
                record["input_path"] = str(job.request.input_path)
            stems = message.get("stems")
            takes = [GenerationResult(
                audio=np.asarray(take["audio"], dtype=np.float32),
                sample_rate=int(take["sample_rate"]),
                record=take["record"],
            ) for take in message.get("takes", ())]
            if isinstance(job.request, GenerationRequest) and job.request.input_path is not None:
                for take in takes:
                    take.record["input_path"] = str(job.request.input_path)
            return JobFinished(job.id, GenerationResult(
                audio=np.asarray(message["audio"], dtype=np.float32),
                sample_rate=int(message["sample_rate"]),
                record=record,
                stems=None if stems is None else
                {k: np.asarray(v, dtype=np.float32) for k, v in stems.items()},
            ), tuple(takes))
        elif kind == "failed":
            return JobFailed(job.id, message["message"], cancelled=message.get("cancelled", False))
        return None

    def _failure(self, entry: _Entry, exc: Exception) -> JobFailed:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import RequestCancelledError

        if isinstance(exc, RequestCancelledError):
            return JobFailed(entry.job.id, self._closing or "cancelled", cancelled=True)
        where = f"replica {entry.replica}" if entry.replica else "the Ray engine"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"{where} failed: {type(exc).__name__}: {first_line}"
        log.warning("job %d: %s", entry.job.id, message)
        if entry.replica in self._replicas:
            view = self._replicas[entry.replica]
            view.last_error = message
            view.alive = not isinstance(exc, RayActorError)
        return JobFailed(entry.job.id, message)

    def cancel(self, job_id: int) -> bool:
        entry = self._entries.get(job_id)
        if entry is None or entry.cancelled:
            return False
        entry.cancelled = True
        if entry.response is not None:
            entry.response.cancel()  # stops the replica between two steps
        return True

    # -- concepts ------------------------------------------------------------------------------

    async def _operation(self, coro: Any) -> Any:
        """Await ``coro`` (a coroutine or future); :class:`EngineClosed` when the engine closes
        first."""
        if self._closing is not None:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise EngineClosed(self._closing)
        task = asyncio.ensure_future(coro)
        self._ops.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if self._closing is not None and task.cancelled():
                raise EngineClosed(self._closing) from None
            raise
        finally:
            self._ops.discard(task)

    async def load_concept(self, name: str) -> ConceptInfo:
        """Load a concept on one replica (which checks it) and route requests naming it.

        Jobs submitted after this call may name the concept at once (arrival order). Loading a
        loaded concept changes nothing and returns it with ``already_loaded=True``.

        Raises:
            ConceptError: invalid, missing or for another base model.
            EngineClosed: the engine closed first.
        """
        check_name(name)
        if self.concepts_dir is None:
            raise ConceptError("concepts_dir", "no concepts folder is configured")
        if name in self._loading:  # the same load is under way: its answer, once it comes
            info = await self._operation(asyncio.shield(self._loading[name]))
            return dataclasses.replace(info, already_loaded=True)
        if name in self._concepts:
            return dataclasses.replace(self._concepts[name], already_loaded=True)
        loading = asyncio.get_running_loop().create_future()
        self._loading[name] = loading
        try:
            info = await self._load(name)
        except asyncio.CancelledError:
            loading.cancel()
            raise
        except Exception as exc:
            loading.set_exception(exc)
            loading.exception()  # retrieved: a failed load nobody else awaited is not an error
            raise
        else:
            loading.set_result(info)
            return info
        finally:
            del self._loading[name]

    async def _load(self, name: str) -> ConceptInfo:
        self._generation[name] = self._generation.get(name, 0) + 1
        key = f"{name}@{self._generation[name]}"

        async def call() -> dict[str, Any]:
            return await self._handle.options(multiplexed_model_id=key).load_concept.remote()

        answer = await self._operation(call())
        if "error" in answer:
            raise ConceptError(answer["path"], answer["reason"])
        self._note_replica(answer)
        info = ConceptInfo(**answer["concept"])
        self._concepts[name] = info
        return info

    async def unload_concept(self, name: str) -> None:
        """Stop routing requests to a concept; replicas drop it as their LRU evicts it.

        Raises:
            ConceptNotLoadedError: it is not loaded.
        """
        if name in self._loading:  # arrival order: the load before this unload comes first
            with contextlib.suppress(ConceptError):
                await self._operation(asyncio.shield(self._loading[name]))
        if name not in self._concepts:
            loaded = ", ".join(self._concepts)
            raise ConceptNotLoadedError(
                f"concept {name!r}", f"not loaded{f' (loaded: {loaded})' if loaded else ''}"
            )
        del self._concepts[name]

    def list_concepts(self) -> list[ConceptInfo]:
        return list(self._concepts.values())

    async def available_concepts(self) -> list[ConceptInfo]:
        """Valid concepts in ``concepts_dir`` (read on the front end), with the loaded flag."""
        if self.concepts_dir is None:
            return []
        metas, errors = await asyncio.to_thread(scan_concepts, self.concepts_dir)
        for err in errors:
            log.warning("concept skipped: %s", err)
        return [ConceptInfo.from_meta(m, loaded=m.name in self._concepts) for m in metas]

    async def barrier(self) -> None:
        """Resolve once every job and operation submitted before it has ended.

        Raises:
            EngineClosed: the engine closed first.
        """
        pending = [e.task for e in self._entries.values() if e.task is not None]
        pending += list(self._ops)
        if not pending:
            return

        async def wait() -> None:
            await asyncio.wait(pending)

        await self._operation(wait())

    # -- status --------------------------------------------------------------------------------

    def _note_replica(self, message: dict[str, Any]) -> _ReplicaView:
        view = self._replicas.setdefault(message["replica"], _ReplicaView(message["pid"]))
        view.pid = message["pid"]
        view.concepts = [c.rpartition("@")[0] or c for c in message.get("concepts", [])]
        return view

    def _replica_summary(self) -> str:
        """``ray:<device> x<replicas> [<id> <concepts> <job or idle>; …]`` for ``/status``."""
        n = self.settings.min_replicas
        m = self.settings.max_replicas
        count = f"{n}-{m}" if m and m > n else f"{n}"
        parts = []
        for rid, view in self._replicas.items():
            if view.alive:
                job = f"job {view.running}" if view.running is not None else "idle"
                parts.append(f"{rid} {','.join(view.concepts) or '-'} {job}")
        listed = f" [{'; '.join(parts)}]" if parts else ""
        return f"ray:{self._info.get('device', '?')} x{count}{listed}"

    def status(self) -> EngineStatus:
        waiting = [e.job.id for e in self._entries.values() if not e.started]
        running = [e.job.id for e in self._entries.values() if e.started]
        return EngineStatus(
            model_id=self.model_id,
            family=self._info.get("family", ""),
            sample_rate=int(self._info.get("sample_rate", 0)),
            device=self._replica_summary(),
            queued=len(waiting),
            running=running[0] if running else None,
            extra={
                "engine": "ray",
                "app": self.settings.app_name,
                "address": self.settings.address or "local",
                "running": running,
                "queued": waiting,
                "replicas": {rid: dataclasses.asdict(v) for rid, v in self._replicas.items()},
            },
        )
