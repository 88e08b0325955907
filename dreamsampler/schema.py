"""The request schema: every generation and delivery parameter, declared once.

Each :class:`Param` names a parameter by its request field (the standard term:
``num_inference_steps``, ``guidance_scale``, ``negative_prompt``…), gives its OSC key (``steps``,
``guidance``, ``negative``…), type, unit, range, default and help text, and says where it is
taken (:attr:`Param.takes`). Everything else is derived from :data:`PARAMS`:

* the OSC contract's options of ``/gen``, ``/transfer``, ``/continue``, ``/inpaint`` and the
  session parameters ``/param/<key>`` (:mod:`dreamsampler.server.contract`), hence docs/osc.md,
  OSCQuery and the Max/Pd patches;
* the typed messages (:mod:`dreamsampler.server.messages`), ``GenerationParams``
  (:mod:`dreamsampler.server.delivery`) and the ``Session`` (:mod:`dreamsampler.server.session`);
* the preset fields (:mod:`dreamsampler.server.presets`) and the config's ``defaults`` section
  (:mod:`dreamsampler.config`, hence config.yaml);
* the range checks of :class:`~dreamsampler.engine.request.GenerationRequest` (:func:`check`).

Adding an option is one entry here, e.g.::

    Param("bpm", "f", "tempo of the clip", minimum=20, maximum=999, unit="BPM",
          takes=GENERATE | {SESSION, PRESET}),

It then parses (validated) in the OSC messages named in ``takes``, is a ``GenerationParams`` and
message field, a session parameter ``/param/bpm`` (with ``SESSION``), a preset key (``PRESET``), a
``defaults.bpm`` config key (``CONFIG``, needs a ``default``), a number box of the Max/Pd patches
(``PATCH``) and, with ``REQUEST``, a checked field
of the engine's request (the engine reads it; add the dataclass field there too). A parameter that
is not a ``REQUEST`` field reaches the service in ``GenerationParams`` (delivery, conform, …).

Porting an option written the old way (fields added by hand to ``_Generate``,
``GenerationParams``, ``Session``, ``Preset``, ``Defaults`` and the contract's option tuples):
drop those hand edits and add one :class:`Param` here; code that reads ``params.bpm``,
``session.bpm`` or ``preset.bpm`` keeps working. A new command (``/conform``, ``/separate``) gets
an address constant here (``CONFORM = "/conform"``) named in the ``takes`` of its options, one
``Message`` entry in :func:`dreamsampler.server.contract._commands` with
``options(schema.CONFORM, params)``, a typed request in :mod:`dreamsampler.server.messages`
(``generate_type("Conform", COMMANDS["/conform"])`` when it generates, else a small dataclass)
and its handler in :mod:`dreamsampler.server.osc`.

Ranges: one per parameter, the same in OSC, presets, config and the engine request. ``lora_scale``
and LoRA weights are −2..2 everywhere (negative weights subtract a concept; presets used to stop at
0). ``seed`` is −1..2³¹−1: −1 asks for a fresh random seed (the request always carries the seed
used).

This module imports nothing from the package, so every layer may read it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# -- where a parameter is taken ----------------------------------------------------------------

GEN = "/gen"
TRANSFER = "/transfer"
CONTINUE = "/continue"
INPAINT = "/inpaint"
CONFORM = "/conform"
"""``/conform``: a no-model job (issue 18); it takes bpm, key, bars, meter, id and name."""
SEPARATE = "/separate"
"""Issue 19: split a clip into stems with Demucs (its options: ``model``, ``id``, ``name``)."""
SESSION = "session"
"""A session parameter: ``/param/<key>``, a ``Session`` field, ``/trigger`` and jam use it."""
PRESET = "preset"
"""A preset YAML key (:attr:`Param.preset_key`)."""
CONFIG = "config"
"""A ``defaults.<name>`` config key (the session starts from it)."""
REQUEST = "request"
"""A field of the engine's ``GenerationRequest``, range-checked by :func:`check`."""
DELIVERY = "delivery"
"""How the clip is delivered (job id, file name): on the message, not in ``GenerationParams``."""
PATCH = "patch"
"""A number box in the Max/Live and Pd patches (``dreamsampler patches``), sent as this option
with the generation commands that take it; labelled ``key`` (``key(unit)`` with a unit)."""

GENERATE = frozenset({GEN, TRANSFER, CONTINUE, INPAINT})
TEXT = frozenset({GEN, TRANSFER})
REGION = frozenset({CONTINUE, INPAINT})
EVERYWHERE = GENERATE | {SESSION, PRESET, CONFIG, REQUEST}

SEED_MAX = 2**31 - 1
"""Largest seed (seeds are 31-bit non-negative ints, safe for every RNG)."""
FRESH_SEED = -1
"""``seed -1``: draw a fresh random seed."""
SCHEDULER_NAMES = ("ddim", "dpm++", "pndm", "euler", "lms", "heun")
UNITS = ("seconds", "bars")
MAX_COUNT = 8
"""Most takes one request may ask for (``count``, issue 21)."""
SIDES = ("after", "before", "both")
"""Where ``/continue``'s new audio goes (issue 18)."""

_PY_TYPES: dict[str, type] = {"i": int, "f": float, "s": str}


class ParamError(ValueError):
    """A value is outside its parameter's type, range or choices; the message names both."""


@dataclass(frozen=True)
class Part:
    """A further atom of a multi-atom option (``lora NAME WEIGHT``: the weight)."""

    name: str
    type: str
    description: str
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Param:
    """One request or delivery parameter.

    Attributes:
        name: the request field (standard term), e.g. ``num_inference_steps``.
        type: OSC type tag: ``i`` int32, ``f`` float32, ``s`` string.
        description: what it means, with units.
        key: the OSC key (option key and ``/param/<key>``); default ``name``.
        minimum, maximum: inclusive range, when bounded.
        unit: ``s``, ``BPM``, ``Hz``… or empty.
        default: the session's starting value (``defaults.<name>`` in config when ``CONFIG``);
            None: no default (the request's absence means "not asked for").
        takes: where it is taken: OSC commands (:data:`GEN`…), :data:`SESSION`,
            :data:`PRESET`, :data:`CONFIG`, :data:`REQUEST`, :data:`DELIVERY`.
        choices: allowed strings (a closed set, e.g. scheduler names).
        preset_key: its key in preset YAML files; default ``key``.
        preset_default: the default of a preset that omits it; None: the session's value.
        session_note: appended to the description of ``/param/<key>``.
        session_rest: ``/param/<key>`` joins every atom (text).
        session_clears: ``/param/<key>`` may be sent without a value (clears it).
        more: further atoms after the value (``lora NAME WEIGHT``).
        repeat: the option may be given several times (its value is the tuple of all).
    """

    name: str
    type: str
    description: str
    key: str = ""
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""
    default: Any = None
    takes: frozenset[str] = frozenset()
    choices: tuple[str, ...] = ()
    preset_key: str = ""
    preset_default: Any = None
    session_note: str = ""
    session_rest: bool = False
    session_clears: bool = False
    more: tuple[Part, ...] = ()
    repeat: bool = False

    @property
    def osc_key(self) -> str:
        return self.key or self.name

    @property
    def yaml_key(self) -> str:
        return self.preset_key or self.osc_key

    def python_type(self) -> Any:
        """The Python type of a value (``tuple[tuple[str, float], ...]`` for ``lora``)."""
        one: Any = _PY_TYPES[self.type]
        if self.more:
            one = tuple[(one, *(_PY_TYPES[p.type] for p in self.more))]  # type: ignore[misc]
        return tuple[one, ...] if self.repeat else one

    def check(self, value: Any) -> Any:
        """``value`` if it has this parameter's type, range and choices.

        Raises:
            ParamError: names the parameter, the value and what is allowed.
        """
        if self.repeat or self.more:
            return value
        if self.type == "s":
            if not isinstance(value, str):
                raise ParamError(f"{self.name} must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ParamError(f"{self.name} must be one of {', '.join(self.choices)}, got "
                                 f"{value!r}")
            return value
        return check_number(self.name, value, self.type, self.minimum, self.maximum,
                            unit=self.unit)


def check_number(name: str, value: Any, type_: str, minimum: float | None,
                 maximum: float | None, unit: str = "") -> Any:
    """``value`` if it is a finite number of ``type_`` (``i``/``f``) within the range.

    ``unit`` (``BPM``, ``s``…) follows the bound in a range error ("below the minimum 20 BPM").

    Raises:
        ParamError: wrong type, not finite, or out of range (the message gives the range).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ParamError(f"{name} must be finite, got {value!r}")
    if type_ == "i" and value != int(value):
        raise ParamError(f"{name} must be an integer, got {value!r}")
    suffix = f" {unit}" if unit else ""
    if minimum is not None and value < minimum:
        raise ParamError(f"{name} {value:g} is below the minimum {minimum:g}{suffix}"
                         f"{_allowed(minimum, maximum)}")
    if maximum is not None and value > maximum:
        raise ParamError(f"{name} {value:g} is above the maximum {maximum:g}{suffix}"
                         f"{_allowed(minimum, maximum)}")
    return value


def _allowed(minimum: float | None, maximum: float | None) -> str:
    lo = "" if minimum is None else f"{minimum:g}"
    hi = "" if maximum is None else f"{maximum:g}"
    return f" (allowed {lo}..{hi})"


# -- the parameters ------------------------------------------------------------------------------

PARAMS: tuple[Param, ...] = (
    Param("prompt", "s", "text prompt (several atoms are joined)", default="",
          takes=frozenset({SESSION, PRESET, CONFIG}), session_rest=True,
          session_note="used by /trigger"),
    Param("negative_prompt", "s", "negative prompt: what to steer away from, e.g. 'low "
          "quality'", key="negative", default="", takes=EVERYWHERE, preset_key="negative_prompt",
          preset_default="", session_rest=True, session_clears=True,
          session_note="used by /trigger"),
    Param("seed", "i", "random seed; equal seeds and parameters give identical audio; -1 draws "
          "a fresh one. Without a seed a request draws a fresh one unless the session seed is "
          "locked (/param/seed_lock 1)", minimum=FRESH_SEED, maximum=SEED_MAX, default=0,
          takes=EVERYWHERE | {PATCH}, session_note="setting a seed >= 0 locks it, -1 unlocks it"),
    Param("seed_lock", "i", "1: requests without a seed use the session seed (/param/seed); "
          "0: they draw a fresh seed each time", minimum=0, maximum=1, default=0,
          takes=frozenset({SESSION, CONFIG})),
    Param("num_inference_steps", "i", "denoising steps (limited by limits.max_steps)",
          key="steps", minimum=1, maximum=1000, default=25, preset_default=25,
          takes=EVERYWHERE | {PATCH}),
    Param("guidance_scale", "f", "guidance scale (classifier-free guidance; <= 1 disables it)",
          key="guidance", minimum=0, maximum=50, default=2.5, preset_default=3.5,
          takes=EVERYWHERE | {PATCH}),
    Param("duration", "f", "clip length in seconds (limited by limits.max_duration)",
          minimum=0.01, maximum=600, unit="s", default=10.0, takes=TEXT | {SESSION, PRESET,
          CONFIG, REQUEST, PATCH}, preset_key="seconds"),
    Param("bars", "i", "clip length in whole bars at bpm (default: the session tempo, /tempo); "
          "the clip is cut (or conformed) to exactly that many bars, downbeat at sample 0, and "
          "written as a loop WAV (tempo and bars in the file name, acid/smpl chunks); 0 uses "
          "duration (/conform: the whole bars the clip holds)", minimum=0,
          maximum=256, default=0, takes=TEXT | {SESSION, PRESET, PATCH, CONFORM}),
    Param("scheduler", "s", "ddim, dpm++, pndm, euler, lms or heun", default="ddim",
          choices=SCHEDULER_NAMES, takes=EVERYWHERE),
    Param("strength", "f", "style-transfer strength in [0, 1]: how far the input is noised "
          "(SDEdit); 0.4-0.6 balances source and prompt", minimum=0, maximum=1, default=0.5,
          preset_default=1.0,
          takes=frozenset({TRANSFER, SESSION, PRESET, CONFIG, REQUEST, PATCH})),
    Param("input_path", "s", "input clip for /trigger; when set, /trigger style-transfers it "
          "(an empty string clears it)", key="input", default="",
          takes=frozenset({SESSION, PRESET}), preset_key="input_clip", session_rest=True,
          session_clears=True),
    Param("concept", "s", "a loaded DreamBooth or LoRA concept to use for this clip (an "
          "unloaded one fails; textual-inversion concepts need no option: write their <token> "
          "in the prompt)", default="", takes=EVERYWHERE - {CONFIG}, session_clears=True,
          session_note="used by /trigger (no argument or an empty string clears it)"),
    Param("lora_scale", "f", "weight of the LoRA concept's adapter (0 = base model, 1 = as "
          "trained, negative subtracts it)", minimum=-2, maximum=2, default=1.0,
          preset_default=1.0, takes=EVERYWHERE),
    Param("loras", "s", "a loaded LoRA concept to blend in, followed by its weight: "
          "'lora NAME WEIGHT' (weight -2..2: 0 = off, 1 = as trained); repeat the option to "
          "blend several (each name once; an unloaded one fails)", key="lora",
          takes=GENERATE | {PRESET, REQUEST}, preset_key="loras",
          more=(Part("weight", "f", "the LoRA's adapter weight (0 = off, 1 = as trained)", -2,
                     2),), repeat=True),
    Param("stems", "i", "1: also separate the clip into stems with the server's Demucs model "
          "(stems.model) in the same job; the /done reply then carries the stems folder after "
          "the clip's path; 0 (default): the clip only", minimum=0, maximum=1, default=0,
          takes=GENERATE | {SESSION, PRESET, REQUEST, PATCH}),  # issue 19: a box in the patches
    Param("count", "i", "takes: one job makes count clips from seeds seed … seed+count-1 (a fresh "
          "seed: its first) in one batched call; each is its own WAV (name _take1…) and /done "
          "lists every path", minimum=1, maximum=MAX_COUNT, preset_default=1,
          takes=GENERATE | {PRESET, REQUEST}),  # issue 21
    Param("stems_model", "s", "Demucs model for this separation: htdemucs, htdemucs_ft, "
          "htdemucs_6s, a local folder, or tiny (default: the server's stems.model)",
          key="model", takes=frozenset({SEPARATE})),  # issue 19
    Param("job_id", "i", "client-chosen job id (must not be in use)", key="id", minimum=0,
          maximum=SEED_MAX, takes=GENERATE | {CONFORM, SEPARATE, DELIVERY}),
    Param("name", "s", "file name stem for the clip (made safe); default "
          "<time>_<prompt>_<seed>; /conform: default <input>_conformed; /separate: of the stems "
          "folder and its files, default the input's name",
          takes=GENERATE | {CONFORM, SEPARATE, DELIVERY}),
    Param("unit", "s", "unit of the times given: seconds (default) or bars (whole or "
          "fractional bars at the session tempo, /tempo)", choices=UNITS, takes=REGION),
    # -- loops that lock (issue 18): tempo, key, meter, conform, extend side
    Param("bpm", "f", "tempo the clip is made and conformed to, in quarter-note BPM; default: "
          "the session tempo (/tempo, MIDI clock or Link). Giving bpm or key turns conform on "
          "and adds the tempo to the prompt for families trained on such tags "
          "(docs/conform.md); on /continue it sets the tempo of unit bars", minimum=20,
          maximum=999, unit="BPM", takes=TEXT | {CONTINUE, CONFORM, PRESET, REQUEST}),
    Param("key", "s", "key the clip is conformed to: a tonic A-G, optional # or b, and major "
          "or minor ('F# minor', 'Bb major', 'Am'); the clip is pitch-shifted to the nearest "
          "transposition (at most 6 semitones; a clip in the other mode goes to the relative "
          "key); turns conform on",
          takes=TEXT | {CONTINUE, CONFORM, SESSION, PRESET, REQUEST}, session_rest=True,
          session_clears=True, session_note="used by /trigger (an empty string clears it)"),
    Param("meter", "s", "time signature N/D of the bars (default 4/4; a bar must be a whole "
          "number of quarter notes: 3/4, 6/8, 12/8)", default="4/4",
          takes=TEXT | {CONTINUE, CONFORM, SESSION, PRESET}),
    Param("conform", "i", "1: time-stretch the clip to bpm, shift it to key, start it on a "
          "downbeat and loop-crossfade it (Rubber Band); 0: keep the model's own timing and "
          "only cut to bars; default: on when bpm or key is given", minimum=0, maximum=1,
          takes=TEXT | {SESSION, PRESET}, session_clears=True),
    Param("side", "s", "where the new audio goes: after (default), before or both (amount on "
          "each side); the input's own samples are kept outside the new region, joined with a "
          "short crossfade", choices=SIDES, takes=frozenset({CONTINUE, REQUEST})),
)
"""Every parameter, in the order the docs list them."""

REGION_FIELDS: tuple[tuple[str, str], ...] = (
    ("continuation", "f"), ("mask_start", "f"), ("mask_end", "f"))
"""Fields of ``GenerationParams`` set by the positional arguments of ``/continue`` (amount)
and ``/inpaint`` (start, end), in their ``unit``."""


def by_name(name: str, params: Iterable[Param] | None = None) -> Param:
    """The parameter called ``name`` (request field). Raises KeyError."""
    return next(p for p in (PARAMS if params is None else params) if p.name == name)


def taken_by(where: str, params: Iterable[Param] | None = None) -> tuple[Param, ...]:
    """The parameters taken by ``where`` (an address, :data:`SESSION`, :data:`PRESET`…)."""
    return tuple(p for p in (PARAMS if params is None else params) if where in p.takes)


def generation_fields(params: Iterable[Param] | None = None) -> tuple[Param, ...]:
    """The parameters an edge asks for (``GenerationParams`` fields): all but delivery ones."""
    return tuple(p for p in (PARAMS if params is None else params)
                 if DELIVERY not in p.takes and p.takes & (GENERATE | {SESSION, PRESET}))


def check(values: dict[str, Any], params: Iterable[Param] | None = None) -> None:
    """Check each value of ``values`` (request field → value) whose parameter is a
    :data:`REQUEST` field: its type, range and choices (the seed must be resolved: >= 0).

    Raises:
        ParamError: the first value out of its domain.
    """
    for p in taken_by(REQUEST, params):
        if p.name not in values or values[p.name] is None:
            continue
        p.check(values[p.name])
        if p.name == "seed" and values[p.name] < 0:
            raise ParamError(f"seed must be resolved to >= 0 before the request, got "
                             f"{values[p.name]}")
