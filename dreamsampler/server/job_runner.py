"""The job runner: queues typed jobs on the engine, forwards each job's events to its reply target
and the observers, hands each finished clip to :mod:`~dreamsampler.server.fanout` and ends every
job with exactly one :class:`~dreamsampler.server.delivery.Delivered` or
:class:`~dreamsampler.engine.jobs.JobFailed` — the service's queue-facing part.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dreamsampler.engine.jobs import Engine, Job, JobFailed, JobFinished
from dreamsampler.engine.request import RequestError
from dreamsampler.server import fanout
from dreamsampler.server.delivery import Delivered, Delivery, Listener, Submitted, Update
from dreamsampler.server.sinks import Sink

log = logging.getLogger(__name__)


@dataclass
class _Active:
    job: Delivery
    task: asyncio.Task[None] | None = None


class JobError(RuntimeError):
    """A job awaited with :meth:`JobRunner.run` failed; ``update`` is its :class:`JobFailed`."""

    def __init__(self, update: JobFailed) -> None:
        super().__init__(f"job {update.job_id}: {update.message}")
        self.update = update


class JobRunner:
    """Runs typed jobs on ``engine`` and delivers them to ``sinks()`` (looked up per job).

    Attributes:
        observers: listeners that hear every job's updates (the ``/notify`` clients).
        jobs_done, jobs_failed: jobs delivered / failed or cancelled since start.
    """

    def __init__(self, engine: Engine, sinks: Callable[[], Mapping[str, Sink]]) -> None:
        self.engine = engine
        self._sinks = sinks
        self.observers: list[Listener] = []
        self.jobs_done = 0
        self.jobs_failed = 0
        self._active: dict[int, _Active] = {}
        self._ids = itertools.count(1)
        self._closing: str | None = None

    async def close(self, reason: str, timeout: float) -> None:
        """Close the engine with ``reason`` (queued and running jobs fail with it) and wait at
        most ``timeout`` s for the deliveries under way."""
        self._closing = reason
        await self.engine.close(reason)
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:  # its finally answers the job with ``reason``
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)

    # -- jobs ----------------------------------------------------------------------------------

    def _new_id(self, requested: int | None) -> int:
        if requested is not None:
            if requested in self._active:
                raise RequestError(f"job id {requested} is in use")
            return requested
        job_id = next(self._ids)
        while job_id in self._active:
            job_id = next(self._ids)
        return job_id

    def submit(self, job: Delivery) -> Submitted:
        """Queue a typed job; its updates go to ``job.reply`` and the observers.

        Raises:
            RequestError: the job id is in use.
            SinkError: a named sink refuses up front (the output folder is not writable).
            QueueFull: the engine's queue is full.
        """
        for name in job.sinks:
            self._sinks()[name].check(job)
        job_id = self._new_id(job.job_id)
        engine_job, position = self.engine.submit(job.request, job_id)
        active = _Active(job)
        self._active[job_id] = active
        active.task = asyncio.create_task(self._pump(engine_job, active))
        return Submitted(job_id, position)

    async def run(self, job: Delivery) -> Delivered:
        """Submit ``job`` and wait for its delivery (jam mode); cancelling cancels the job.

        Raises:
            JobError: the job failed or was cancelled. And as :meth:`submit`.
        """
        done: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        inner = job.reply

        def on_update(update: Update) -> None:
            if inner is not None:
                inner(update)
            if done.done():
                return
            if isinstance(update, Delivered):
                done.set_result(update)
            elif isinstance(update, JobFailed):
                done.set_exception(JobError(update))

        submitted = self.submit(dataclasses.replace(job, reply=on_update))
        try:
            return await done
        except asyncio.CancelledError:
            self.cancel(submitted.job_id)
            raise

    def cancel(self, job_id: int) -> bool:
        """Cancel a queued or running job; False when there is no such job."""
        return job_id in self._active and self.engine.cancel(job_id)

    async def sync(self) -> None:
        """Wait until every job and concept operation accepted so far has ended and every clip
        of those jobs is delivered.

        Raises:
            EngineClosed: the engine closed first.
        """
        tasks = [a.task for a in self._active.values() if a.task is not None]
        await self.engine.barrier()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- delivering ----------------------------------------------------------------------------

    def _publish(self, job: Delivery, update: Update) -> None:
        for target in [job.reply, *self.observers]:
            if target is None:
                continue
            try:
                target(update)
            except Exception:
                log.exception("listener failed on %r", update)

    async def _pump(self, engine_job: Job, active: _Active) -> None:
        """Forward one job's events to its reply target and the observers; the job always ends
        with exactly one :class:`Delivered` or :class:`JobFailed` (an unexpected error in a sink
        or the engine's event stream, or a shutdown, becomes :class:`JobFailed`)."""
        ended = False

        def end(update: Update) -> None:
            nonlocal ended
            ended = True
            if isinstance(update, JobFailed):
                self.jobs_failed += 1
            else:
                self.jobs_done += 1
            self._publish(active.job, update)

        try:
            async for event in engine_job.events():
                if isinstance(event, JobFinished):
                    try:
                        end(await fanout.deliver(self._sinks(), event, active.job))
                    except Exception as exc:
                        log.exception("delivering job %d failed", event.job_id)
                        end(JobFailed(event.job_id,
                                      f"internal error: {type(exc).__name__}: {exc}"))
                elif isinstance(event, JobFailed):
                    if self._closing is not None and event.cancelled:
                        event = JobFailed(event.job_id, self._closing, cancelled=True)
                    end(event)
                else:
                    self._publish(active.job, event)
        except Exception as exc:
            log.exception("job %d: the engine's events failed", engine_job.id)
            if not ended:
                end(JobFailed(engine_job.id, f"internal error: {type(exc).__name__}: {exc}"))
        finally:
            if not ended:  # cancelled (shutdown) before its end arrived
                end(JobFailed(engine_job.id, self._closing or "server shutting down",
                              cancelled=True))
            self._active.pop(engine_job.id, None)
