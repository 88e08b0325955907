"""The session (the defaults a request falls back on) and how a request is built from
generation parameters: session defaults, limits, input folders, loaded concepts, bar length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
from collections.abc import Callable, Collection, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from dreamsampler import schema
from dreamsampler.config import Config
from dreamsampler.engine.audio_io import AudioFileError, probe_audio
from dreamsampler.engine.request import GenerationRequest, RequestError
from dreamsampler.engine.stems import SeparationRequest
from dreamsampler.server.clock import TempoClock, bars_to_seconds
from dreamsampler.server.delivery import GenerationParams, LoopSpec
from dreamsampler.server.notify import is_loopback


class SessionBase:
    """Methods of :data:`Session` (its fields are made from the schema)."""

    @classmethod
    def from_config(cls, config: Config) -> Any:
        """The session at start: ``defaults.<name>`` of the config where the schema takes it
        there, else the parameter's default."""
        return cls(**{f.name: getattr(config.defaults, f.name, f.default)
                      for f in dataclasses.fields(cls)})  # type: ignore[arg-type]

    def params(self) -> GenerationParams:
        """The session as generation parameters (every field set)."""
        return GenerationParams(**dataclasses.asdict(self))  # type: ignore[call-overload]


def session_type(params: Sequence[schema.Param] | None = None) -> type:
    """The ``Session`` dataclass for ``params`` (default: the schema's): a field per session
    parameter with its default."""
    made = dataclasses.make_dataclass(
        "Session", [(p.name, Any, dataclasses.field(default=p.default))
                    for p in schema.taken_by(schema.SESSION, params)],
        bases=(SessionBase,))
    made.__module__ = __name__
    return made


Session = session_type()
Session.__doc__ = """The session defaults used by ``/trigger`` and by requests that omit a value
(fields: the schema's :data:`~dreamsampler.schema.SESSION` parameters)."""


def resolve_seed(asked: int | None, session: Any, rng: random.Random | None = None) -> int:
    """The seed a request uses: ``asked``; without one the session seed when it is locked
    (``seed_lock``), else a fresh one; -1 (asked, or as the locked session seed) draws a fresh
    one from ``rng`` (default: the shared :mod:`random` generator), in 0..2**31-1."""
    if asked is None:
        asked = session.seed if session.seed_lock else schema.FRESH_SEED
    if int(asked) < 0:
        return (rng or random).randint(0, schema.SEED_MAX)
    return int(asked)


def max_input_bytes(config: Config) -> int:
    """``limits.max_input_mb`` in bytes."""
    return int(config.limits.max_input_mb * 2**20)


#: the address of the client whose request is being handled (set by the network edges with
#: :func:`request_origin`); ``None``: no network client (the input policy is the strict one)
REQUEST_ORIGIN: ContextVar[str | None] = ContextVar("request_origin", default=None)


@contextlib.contextmanager
def request_origin(host: str | None) -> Iterator[None]:
    """Handle the requests inside the block as coming from ``host`` (an IP address)."""
    token = REQUEST_ORIGIN.set(host)
    try:
        yield
    finally:
        REQUEST_ORIGIN.reset(token)


def may_read_anywhere(host: str | None) -> bool:
    """The input policy: may a client at ``host`` name any audio file the server can read?

    Yes for a client on this machine (a loopback address: ``127.0.0.0/8``, ``::1``, or
    ``::ffff:127.x.x.x``): it can read those files itself, and a DAW hands over files from
    anywhere (a sample library, a drop from the file browser). No for every other address and
    for no address at all: a network client may only name files in ``input_dirs`` (and, for
    /continue and /inpaint, the output folder), so it cannot make the server read (and render
    into the output folder) files it could not otherwise see. See docs/hardening.md.
    """
    return bool(host) and is_loopback(host)


def resolve_input(raw: str | Path, input_dirs: Sequence[Path],
                  max_bytes: int | None = None) -> Path:
    """Find an input clip and check it is audio, under the input policy
    (:func:`may_read_anywhere` of :data:`REQUEST_ORIGIN`).

    A relative path is looked up in each input folder in turn (the first that holds it wins).
    An absolute path must lie inside one of them, unless the request comes from a loopback
    client: then any readable audio file will do. Only the file's header is read.

    Raises:
        RequestError: outside the input folders (for a client that is not on this machine),
            missing, not audio, not a usable name, or larger than ``max_bytes``
            (``limits.max_input_mb``).
    """
    path = Path(raw).expanduser()
    roots = [Path(d).resolve() for d in input_dirs]
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    anywhere = path.is_absolute() and may_read_anywhere(REQUEST_ORIGIN.get())
    for candidate in candidates:
        resolved = candidate.resolve()
        if not anywhere and not any(resolved.is_relative_to(root) for root in roots):
            continue
        if len(candidates) > 1 and not _exists(resolved):
            continue  # look in the next folder
        try:
            probe_audio(resolved, max_bytes=max_bytes)
        except AudioFileError as exc:
            raise RequestError(f"input {exc}") from None
        except OSError as exc:  # e.g. a name longer than the file system allows
            raise RequestError(f"input {str(path)[:120]}: {exc.strerror or exc}") from None
        return resolved
    folders = ", ".join(str(r) for r in roots) or "(none configured)"
    if path.is_absolute():
        raise RequestError(f"input {path}: outside the input folders ({folders}); clients "
                           "on other machines may only name files in input_dirs")
    raise RequestError(f"input {path}: no such file in the input folders ({folders})")


def _exists(path: Path) -> bool:
    """``path.exists()``, False for a name the file system refuses (too long)."""
    try:
        return path.exists()
    except OSError:
        return False


def check_concept(name: str, loaded: Collection[str]) -> None:
    """Refuse a concept that is not loaded.

    Raises:
        RequestError: names the concept and the loaded ones.
    """
    if name not in loaded:
        shown = ", ".join(loaded) or "none"
        raise RequestError(f"concept {name!r} is not loaded (loaded: {shown}); "
                           f"send /concept/load {name}")


def build_request(params: GenerationParams, transfer: bool, session: Session, config: Config,
                  clock: TempoClock, loaded: Collection[str]
                  ) -> tuple[GenerationRequest, LoopSpec | None]:
    """The request for ``params`` over the ``session`` defaults, checked against the limits of
    ``config``, with its bar length at the ``clock``'s tempo (or None for seconds).

    Raises:
        RequestError: a value out of range or beyond the limits, a missing prompt or input, an
            input outside the input folders, a concept not in ``loaded``.
    """
    s = session
    limits = config.limits
    if params.continuation is not None or params.mask_start is not None:
        return _region_request(params, s, config, clock, loaded), None
    loop = loop_spec(params, s, clock)
    if loop is not None:
        seconds = bars_to_seconds(loop.bars, loop.bpm, loop.beats_per_bar)
        if seconds > limits.max_duration:
            raise RequestError(
                f"{loop.bars} bars at {loop.bpm:g} BPM last {seconds:.2f} s: more than the "
                f"limit of {limits.max_duration:g} s"
            )
        if loop.conform:  # room for a model that plays slower than bpm (conform speeds it up)
            seconds = min(seconds * CONFORM_MARGIN, float(limits.max_duration))
        # generate whole milliseconds at least as long as the bars; fit_to_bars cuts
        duration = math.ceil(seconds * 1000.0) / 1000.0
    else:
        duration = None if transfer and params.duration is None else float(
            _or(params.duration, s.duration))
    if duration is not None and duration > limits.max_duration:
        raise RequestError(
            f"duration {duration:g} s exceeds the limit of {limits.max_duration:g} s"
        )
    steps = _steps(params, s, config)
    prompt = _or(params.prompt, s.prompt)
    if not prompt or not str(prompt).strip():
        raise RequestError("missing prompt")
    if transfer:
        raw = _or(params.input_path, s.input_path)
        if not raw:
            raise RequestError("missing input")
        input_path: Path | None = resolve_input(raw, config.input_dirs, max_input_bytes(config))
        if duration is None and probe_audio(input_path) > limits.max_duration:
            duration = limits.max_duration  # else None: as long as the input (engine.sampler)
    else:
        input_path = None
    request = GenerationRequest(
        prompt=str(prompt),
        duration=duration,
        input_path=input_path,
        strength=float(_or(params.strength, s.strength)) if transfer else 1.0,
        bpm=loop.bpm if loop is not None and loop.conform else params.bpm,
        key=loop.key if loop is not None else _key(params, s),
        **_common(params, s, steps, loaded),
    )
    return request, loop


def _steps(params: GenerationParams, session: Session, config: Config) -> int:
    """``num_inference_steps`` of the request.

    Raises:
        RequestError: beyond ``limits.max_steps``.
    """
    steps = int(_or(params.num_inference_steps, session.num_inference_steps))
    if steps > config.limits.max_steps:
        raise RequestError(f"steps {steps} exceeds the limit of {config.limits.max_steps}")
    return steps


def _common(params: GenerationParams, session: Session, steps: int,
            loaded: Collection[str]) -> dict[str, Any]:
    """The request fields every kind of job takes from the message, else the session: negative
    prompt, seed, ``steps``, guidance scale, scheduler, LoRA scale, and ``concept`` and
    ``loras``, each checked to be loaded.

    Raises:
        RequestError: a concept or LoRA that is not loaded.
    """
    concept = str(_or(params.concept, session.concept) or "") or None
    if concept is not None:
        check_concept(concept, loaded)
    loras = tuple((str(n), float(w)) for n, w in (params.loras or ()))
    for name, _ in loras:
        check_concept(name, loaded)
    more = {  # further request fields of the schema: the message's value, else the session's
        p.name: _or(getattr(params, p.name, None), getattr(session, p.name, None))
        for p in schema.taken_by(schema.REQUEST) if p.name not in _BUILT
    }
    return {k: v for k, v in more.items() if v is not None} | {
        "negative_prompt": str(_or(params.negative_prompt, session.negative_prompt)),
        "seed": resolve_seed(params.seed, session),
        "num_inference_steps": steps,
        "guidance_scale": float(_or(params.guidance_scale, session.guidance_scale)),
        "scheduler": str(_or(params.scheduler, session.scheduler)),
        "lora_scale": float(_or(params.lora_scale, session.lora_scale)),
        "concept": concept,
        "loras": loras,
    }


_BUILT = frozenset({"prompt", "duration", "input_path", "strength", "negative_prompt", "seed",
                    "num_inference_steps", "guidance_scale", "scheduler", "lora_scale", "concept",
                    "loras", "bpm", "key", "side"})
"""Request fields :func:`build_request` works out itself (limits, inputs, seeds, concepts, the
tempo, key and side a loop or region job resolves)."""

UNITS = schema.UNITS


def _seconds(value: float, unit: str, clock: TempoClock) -> float:
    """``value`` in ``unit`` (seconds, or bars at the clock's tempo) as seconds."""
    if unit == "seconds":
        return float(value)
    return bars_to_seconds(value, clock.bpm, clock.beats_per_bar)


def _region_request(params: GenerationParams, s: Session, config: Config, clock: TempoClock,
                    loaded: Collection[str]) -> GenerationRequest:
    """The continuation or inpainting request for ``params``: the input is looked up in the
    input folders, then the output folder (clips the server made); times in ``params.unit``
    become seconds; the length follows the input (continuation: input + new audio; inpainting:
    the input, or up to ``mask_end`` when it passes the input's end).

    Raises:
        RequestError: unknown unit, missing prompt or input, an input outside those folders or
            not audio, a region out of range, a length beyond ``limits.max_duration``, a
            concept or LoRA not loaded.
    """
    limits = config.limits
    unit = (params.unit or "seconds").strip().lower()
    if unit not in UNITS:
        raise RequestError(f"unit must be seconds or bars, got {params.unit!r}")
    steps = _steps(params, s, config)
    prompt = _or(params.prompt, s.prompt)
    if not prompt or not str(prompt).strip():
        raise RequestError("missing prompt (give one, or set /param/prompt)")
    if not params.input_path:
        raise RequestError("missing input")
    input_path = resolve_input(params.input_path, [*config.input_dirs, config.output.dir],
                               max_input_bytes(config))
    input_seconds = probe_audio(input_path)
    region: dict[str, Any] = {}
    if params.bpm is not None:  # the tempo of unit bars and of the prompt's tags
        clock = TempoClock(validate_bpm_request(params.bpm), _meter(params, s, clock)[1])
    if params.continuation is not None:
        region["continuation"] = _seconds(params.continuation, unit, clock)
        if not region["continuation"] > 0:
            raise RequestError(f"continuation must be > 0, got {params.continuation:g} {unit}")
        side = (params.side or "after").strip().lower()
        if side not in schema.SIDES:
            raise RequestError(f"side must be one of {', '.join(schema.SIDES)}, got "
                               f"{params.side!r}")
        region["side"] = side
        duration = input_seconds + region["continuation"] * (2 if side == "both" else 1)
    else:
        if params.mask_end is None:
            raise RequestError("inpainting needs start and end")
        region["mask_start"] = _seconds(float(params.mask_start or 0.0), unit, clock)
        region["mask_end"] = _seconds(params.mask_end, unit, clock)
        if not region["mask_start"] < region["mask_end"]:
            raise RequestError(f"inpainting needs start < end, got {params.mask_start:g} and "
                               f"{params.mask_end:g} {unit}")
        duration = max(input_seconds, region["mask_end"])
    if duration > limits.max_duration:
        raise RequestError(f"the output would last {duration:.2f} s: more than the limit of "
                           f"{limits.max_duration:g} s")
    return GenerationRequest(prompt=str(prompt), duration=duration, input_path=input_path,
                             bpm=params.bpm, key=_key(params, s),
                             **_common(params, s, steps, loaded), **region)


CONFORM_MARGIN = 1.25
"""A conformed clip is generated this much longer than its bars (a model that plays up to 25 %
slower than ``bpm`` still fills them once sped up)."""


def validate_bpm_request(bpm: float) -> float:
    """``bpm`` if within the schema's range (20..999 BPM). Raises ``RequestError``."""
    try:
        return float(schema.by_name("bpm").check(bpm))
    except schema.ParamError as exc:
        raise RequestError(str(exc)) from None


def _key(params: GenerationParams, session: Session) -> str | None:
    """The key name asked for (message, else session), checked; None for none.

    Raises:
        RequestError: not a key name (see :func:`dreamsampler.engine.conform.parse_key`).
    """
    from dreamsampler.engine.conform import ConformError, parse_key

    text = _or(params.key, session.key)
    if text is None or not str(text).strip():
        return None
    try:
        return parse_key(str(text)).label
    except ConformError as exc:
        raise RequestError(str(exc)) from None


def _meter(params: GenerationParams, session: Session, clock: TempoClock
           ) -> tuple[tuple[int, int], int]:
    """``((N, D), quarter-note beats per bar)``: the message's meter, else the session's when
    set to other than 4/4, else the clock's beats per bar over 4.

    Raises:
        RequestError: not a meter (see :func:`dreamsampler.engine.conform.parse_meter`).
    """
    from dreamsampler.engine.conform import ConformError, beats_per_bar, parse_meter

    text = params.meter if params.meter is not None else session.meter
    try:
        meter = parse_meter(text) if text and str(text).strip() else (4, 4)
    except ConformError as exc:
        raise RequestError(str(exc)) from None
    if params.meter is None and meter == (4, 4):
        meter = (clock.beats_per_bar, 4)
    return meter, beats_per_bar(meter)


def loop_spec(params: GenerationParams, session: Session, clock: TempoClock) -> LoopSpec | None:
    """The bar length asked for at ``bpm`` or the session tempo (rounded to 0.01 BPM), or None.

    Conform (issue 18) is on when ``conform`` says 1, or, when it is unset, when ``bpm`` or a
    key is given; a conformed clip always has whole bars (without ``bars``: the bars nearest
    the duration, at least 1).

    Raises:
        RequestError: negative bars, a bad bpm, key or meter.
    """
    if params.bars is not None:
        bars = int(params.bars)
    elif params.duration is not None:
        bars = 0
    else:
        bars = session.bars
    if bars < 0:
        raise RequestError(f"bars must be >= 0, got {bars}")
    key = _key(params, session)
    meter, bpb = _meter(params, session, clock)
    bpm = validate_bpm_request(params.bpm) if params.bpm is not None else round(clock.bpm, 2)
    flag = params.conform if params.conform is not None else session.conform
    conform = bool(flag) if flag is not None else (params.bpm is not None or key is not None)
    if bars == 0 and conform:
        seconds = float(_or(params.duration, session.duration))
        bars = max(1, round(seconds / bars_to_seconds(1, bpm, bpb)))
    if bars == 0 and params.bpm is None:
        return None
    if bars == 0:  # bpm without conform: cut the duration to whole bars at that tempo
        seconds = float(_or(params.duration, session.duration))
        bars = max(1, round(seconds / bars_to_seconds(1, bpm, bpb)))
    return LoopSpec(bpm, bars, bpb, key=key if conform else None, conform=conform, meter=meter)


def conform_request(params: GenerationParams, config: Config, clock: TempoClock
                    ) -> tuple[GenerationRequest, LoopSpec]:
    """The no-model ``conform`` job for ``params.input_path`` (``/conform``): ``bpm`` (default
    the session tempo), ``key``, ``bars`` (default: the whole bars the clip holds) and
    ``meter``; the input is looked up like a region job's (input folders, then output).

    Raises:
        RequestError: missing input, input outside the folders or not audio, bad bpm, key,
            meter or bars.
    """
    if not params.input_path:
        raise RequestError("missing input")
    path = resolve_input(params.input_path, [*config.input_dirs, config.output.dir],
                         max_input_bytes(config))
    seconds = probe_audio(path)
    empty = Session()
    key = _key(params, empty)
    meter, bpb = _meter(params, empty, clock)
    bpm = validate_bpm_request(params.bpm) if params.bpm is not None else round(clock.bpm, 2)
    bars = int(params.bars or 0)
    if bars < 0:
        raise RequestError(f"bars must be >= 0, got {bars}")
    request = GenerationRequest(prompt="", duration=max(seconds, 1e-3), input_path=path,
                                process="conform", bpm=bpm, key=key)
    return request, LoopSpec(bpm, bars, bpb, key=key, conform=True, meter=meter)


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


class SessionParams:
    """The session part of the service: the :data:`Session` defaults, how they change
    (``/param/...``, MIDI CCs) and how a request is built over them.

    Args:
        config: limits, input folders and the starting defaults.
        clock: returns the session's tempo clock (bars become seconds at its tempo).
        loaded: returns the names of the loaded concepts.
    """

    def __init__(self, config: Config, clock: Callable[[], TempoClock],
                 loaded: Callable[[], list[str]]) -> None:
        self.config = config
        self.session: Any = Session.from_config(config)
        self._clock = clock
        self._loaded = loaded

    def clock(self) -> TempoClock:
        """The session's tempo clock."""
        return self._clock()

    def resolve_input(self, raw: str | Path) -> Path:
        """Find an input clip inside the configured input folders (:func:`resolve_input`).
        Raises ``RequestError``."""
        return resolve_input(raw, self.config.input_dirs, max_input_bytes(self.config))

    def set(self, name: str, value: Any) -> None:
        """Set one session default by its request field name; a seed >= 0 also locks the
        session seed, -1 unlocks it.

        Raises:
            RequestError: unknown parameter or invalid value (the session is left unchanged).
        """
        if name not in {f.name for f in dataclasses.fields(self.session)}:
            raise RequestError(f"unknown parameter {name!r}")
        if name == "input_path" and value:
            value = str(self.resolve_input(value))
        if name == "concept" and value:
            check_concept(str(value), self._loaded())
        if name == "bars" and (isinstance(value, bool) or int(value) != value or value < 0):
            raise RequestError(f"bars must be a whole number >= 0, got {value!r}")
        if name in ("key", "meter") and value and str(value).strip():  # issue 18: checked
            from dreamsampler.engine.conform import ConformError, parse_key, parse_meter

            try:  # even without a prompt, and normalised ("am" -> "A minor")
                value = (parse_key(str(value)).label if name == "key"
                         else "{}/{}".format(*parse_meter(str(value))))
            except ConformError as exc:
                raise RequestError(str(exc)) from None
        changes = {name: value}
        if name == "seed":  # a chosen seed is used (locked); -1 draws a fresh one per job
            changes["seed_lock"] = int(value >= 0)
        candidate = dataclasses.replace(self.session, **changes)
        if candidate.prompt:
            self.build(candidate.params(), transfer=False, session=candidate)
        self.session = candidate

    def separation(self, input_path: str, model: str | None = None) -> SeparationRequest:
        """The request of a ``/separate`` job (issue 19): the input is looked up in the input
        folders, then the output folder (clips the server made), and refused over
        ``limits.max_input_mb``; ``model`` (a Demucs name or folder) or the engine's.

        Raises:
            RequestError: a missing input, one outside those folders, not audio, or too large.
        """
        if not input_path:
            raise RequestError("missing input")
        path = resolve_input(input_path, [*self.config.input_dirs, self.config.output.dir],
                             max_input_bytes(self.config))
        return SeparationRequest(path, model=model or None)

    def trigger_params(self, seed_offset: int = 0) -> tuple[GenerationParams, bool]:
        """The session as one job's parameters and whether it is a transfer (an input is set):
        a locked seed advanced by ``seed_offset``, else a fresh seed per job."""
        s = self.session
        params = s.params()
        if not s.seed_lock or s.seed < 0:
            params = dataclasses.replace(params, seed=None)
        elif seed_offset:
            params = dataclasses.replace(params, seed=(s.seed + seed_offset) % 2**31)
        return params, bool(s.input_path)

    def build(self, params: GenerationParams, transfer: bool, session: Any = None
              ) -> tuple[GenerationRequest, LoopSpec | None]:
        """The request for ``params`` over ``session`` (default: the current one): see
        :func:`build_request`. Raises ``RequestError``."""
        return build_request(params, transfer, self.session if session is None else session,
                             self.config, self._clock(), self._loaded())
