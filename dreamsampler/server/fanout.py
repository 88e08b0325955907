"""Delivering one finished clip to its sinks: fit it to its bars, hand it to every named sink at the
same time, apply each sink's failure policy, report every sink's outcome.

Sinks are peers (:class:`~dreamsampler.server.sinks.Sink`): none goes first and none waits for
another (the device does not wait for the folder's fsync). The job fails (:class:`JobFailed`) when
a named sink that is :attr:`~dreamsampler.server.sinks.Sink.required` failed, or when every named
sink failed; otherwise it is :class:`~dreamsampler.server.delivery.Delivered` with each failed
optional sink's reason in ``sink_errors``. Only a delivered clip is offered to the sinks
(:meth:`Sink.offer`), so a failed job cannot be replayed with ``/play``.

Takes (``count > 1``, issue 21): every take is fitted; the first take goes to every named sink
as above, the further ones to the output folder only (``_take<k>`` in the name), at the same
time; a further take the folder cannot write fails the job. ``Delivered.paths`` lists every take's
WAV in take order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dreamsampler.engine.bars import fit_to_bars
from dreamsampler.engine.jobs import JobFailed, JobFinished
from dreamsampler.engine.request import GenerationResult
from dreamsampler.server.delivery import FOLDER, Clip, Delivered, Delivery, LoopSpec, stems_folder
from dreamsampler.server.sinks import Sink, SinkError

log = logging.getLogger(__name__)


def fit(result: GenerationResult, loop: LoopSpec | None
        ) -> tuple[GenerationResult, LoopSpec | None]:
    """Cut the clip to exactly ``loop.bars`` bars (downbeat at sample 0) and record the tempo
    (BPM) and bars; unchanged without a loop. With ``loop.conform`` the clip is conformed
    instead (:func:`dreamsampler.engine.conform.conform`: tempo, key, downbeat, bars, loop
    seam; issue 18) and the record gets ``conform`` (asked, estimates before and after, applied
    stretch and semitones, tools); the returned loop has the bars applied.

    Runs in a worker thread (:func:`deliver`): conform takes about a second per 10 s clip,
    mostly in the ``rubberband`` program and librosa, and must not hold the event loop; here it
    runs for every engine (local, supervised, Ray) alike.

    Raises:
        ValueError: the bars do not fit the clip (see
            :func:`~dreamsampler.engine.bars.fit_to_bars`), or it cannot be conformed
            (``ConformError``).
    """
    if loop is None:
        return result, None
    extra: dict[str, Any] = {}
    if loop.conform:
        from dreamsampler.engine.conform import conform

        audio, info = conform(result.audio, result.sample_rate, bpm=loop.bpm, key=loop.key,
                              bars=loop.bars or None, meter=loop.meter)
        loop = dataclasses.replace(loop, bars=info["applied"]["bars"])
        extra = {"conform": info, "key": info["applied"]["key"],
                 "meter": info["applied"]["meter"]}
    else:
        audio = fit_to_bars(result.audio, result.sample_rate, loop.bars, loop.bpm,
                            beats_per_bar=loop.beats_per_bar)
    record = {**result.record, "bpm": loop.bpm, "bars": loop.bars,
              "beats_per_bar": loop.beats_per_bar, **extra}
    stems = None if result.stems is None else {  # issue 19: the stems fit the same bars
        name: fit_to_bars(stem, result.sample_rate, loop.bars, loop.bpm,
                          beats_per_bar=loop.beats_per_bar)
        for name, stem in result.stems.items()}
    return dataclasses.replace(result, audio=audio, record=record, stems=stems), loop


async def _one(sink: Sink, clip: Clip) -> tuple[bool, Any]:
    """Deliver to one sink: ``(True, receipt)`` or ``(False, reason)``."""
    try:
        return True, await sink.deliver(clip)
    except (SinkError, ValueError) as exc:
        return False, str(exc)
    except Exception as exc:  # a sink's bug: report it, keep the traceback in the log
        log.exception("the %s sink failed on clip %d", sink.name, clip.job_id)
        return False, f"{sink.name} sink: internal error: {type(exc).__name__}: {exc}"


async def deliver(sinks: Mapping[str, Sink], event: JobFinished, job: Delivery
                  ) -> Delivered | JobFailed:
    """Fit ``event``'s clip to ``job.loop`` (off the event loop), deliver it to every sink in
    ``job.sinks`` concurrently, then offer it to every sink when the job succeeded.

    Returns:
        :class:`Delivered` (receipts of the sinks that took it, ``sink_errors`` of the optional
        ones that did not) or :class:`JobFailed` (the bars do not fit, a required sink failed, or
        every named sink failed; the message joins their reasons).
    """
    try:
        fitted = await asyncio.gather(*(asyncio.to_thread(fit, r, job.loop)
                                        for r in event.results))
    except ValueError as exc:  # TempoError and ConformError are ValueErrors
        return JobFailed(event.job_id, str(exc))
    result, loop = fitted[0]
    job = dataclasses.replace(job, loop=loop)
    several = len(fitted) > 1
    clip = Clip(event.job_id, result, job, take=1 if several else 0)
    named = [sinks[name] for name in job.sinks]
    more = ([Clip(event.job_id, r, dataclasses.replace(job, loop=lp), take=k)
             for k, (r, lp) in enumerate(fitted[1:], start=2)]
            if FOLDER in job.sinks else [])
    outcomes, extra = await asyncio.gather(
        asyncio.gather(*(_one(sink, clip) for sink in named)),
        asyncio.gather(*(_one(sinks[FOLDER], c) for c in more)))
    receipts = {s.name: value for s, (ok, value) in zip(named, outcomes, strict=True) if ok}
    errors = {s.name: value for s, (ok, value) in zip(named, outcomes, strict=True) if not ok}
    fatal = [s.name for s in named if s.name in errors and (s.required or not receipts)]
    if fatal:
        return JobFailed(event.job_id, "; ".join(errors[name] for name in fatal))
    lost = [str(value) for ok, value in extra if not ok]
    if lost:  # a further take the folder could not write
        return JobFailed(event.job_id, "; ".join(lost))
    for name, message in errors.items():
        log.warning("clip %d is not on the %s: %s", event.job_id, name, message)
    for sink in sinks.values():
        try:
            sink.offer(clip)
        except Exception:
            log.exception("the %s sink failed to take clip %d", sink.name, event.job_id)
    paths = ((receipts[FOLDER], *(value for _, value in extra)) if FOLDER in receipts
             else ())
    return Delivered(event.job_id, receipts, result.duration, result.audio,
                     result.sample_rate, job.loop, errors, _stems_dir(receipts, result, job),
                     paths=paths)


def _stems_dir(receipts: Mapping[str, Any], result: GenerationResult, job: Delivery
               ) -> Path | None:
    """The clip's stems folder (issue 19): next to the clip the folder sink wrote, when the job
    asked for stems; None otherwise and for ``/separate`` (its path is the stems folder)."""
    clip = receipts.get(FOLDER)
    if not isinstance(clip, Path) or result.stems is None or not getattr(job.request, "stems",
                                                                         0):
        return None
    return stems_folder(clip)
