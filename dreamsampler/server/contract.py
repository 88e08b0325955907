"""The OSC contract: every address the server accepts and every reply it sends, as data.

The server dispatches from :data:`COMMANDS`; the docs (``docs/osc.md``, :func:`markdown`), OSCQuery,
the patches' checks and the tests all read this module. Conventions follow SuperCollider's scsynth:
a command that does work answers ``/done <address> ...`` or ``/fail <address> <message> ...`` to the
sender (or to the reply port it registered with ``/notify``); notifications (``/progress``,
``/job.started``, ``/job.ended``) go to every client registered with ``/notify 1``.

Parsing is lenient the way Max and Pure Data need: integers may arrive as integral floats (Pd sends
every number as a float), and a prompt may arrive as several atoms (Max and Pd split unquoted text),
which are joined with spaces. Options are strict: where a multi-atom prompt ends and the
``key value`` options begin is decided by :meth:`Message._options_start` (the first numeric option
key, or a near miss of one, followed by a number begins them at the latest; an earlier key whose
options parse to the end begins them there), and from there every atom must be a known key with a
valid value, else ``/fail`` names the key, the value and what is allowed, with a did-you-mean.

The generation options and session parameters are derived from :mod:`dreamsampler.schema` (one
declaration per parameter; :func:`build_commands`); the changelog of deliberate changes is
:data:`CHANGELOG` (the end of docs/osc.md).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from dreamsampler import schema
from dreamsampler.engine.catalog import FAMILY_NAMES

TYPE_NAMES = {"i": "int", "f": "float", "s": "string"}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The range of an OSC ``i`` (int32) atom; integers beyond it are refused."""
NEAR_MISS = 0.8
"""difflib ratio at which a word followed by a number counts as a misspelt numeric option key
(``seedd 7``) rather than prompt text."""


class ContractError(ValueError):
    """A message does not match its contract entry; the message says what was expected."""


@dataclass(frozen=True)
class Arg:
    """One OSC argument (or one ``key value`` option).

    Attributes:
        name: argument name (for options: the key as sent).
        type: OSC type tag: ``i`` int32, ``f`` float32, ``s`` string.
        description: what it means, with units.
        minimum, maximum: inclusive range, when bounded.
        unit: ``s`` (seconds), ``Hz``, ``BPM``… or empty.
        required: whether it must be present (positional args only).
        rest: a string that takes every remaining atom (joined with spaces).
        field: the request field an option sets (defaults to ``name``).
        more: further atoms an option takes after its value (``lora s:name f:weight``): the
            option's value is then the tuple of all of them.
        repeat: the option may be given several times; its value is the tuple of every
            occurrence, in order.
        choices: the strings a string argument accepts (compared case-insensitively; empty:
            any), e.g. scheduler names (from the schema).
    """

    name: str
    type: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    unit: str = ""
    required: bool = True
    rest: bool = False
    field: str = ""
    more: tuple[Arg, ...] = ()
    repeat: bool = False
    choices: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.field or self.name

    @property
    def signature(self) -> str:
        return f"{self.type}:{self.name}"

    @property
    def width(self) -> int:
        """Atoms an option takes after its key."""
        return 1 + len(self.more)

    def coerce(self, value: Any, where: str) -> Any:
        """Convert one atom to this argument's type, checking the range.

        Raises:
            ContractError: wrong type or out of range; names ``where`` and the argument.
        """
        label = f"{where} {self.name}"
        if self.type == "s":
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = _atom_text(value)
            if not isinstance(value, str):
                raise ContractError(f"{label}: expected a string, got {value!r}")
            if self.choices and value.strip().lower() not in self.choices:
                near = difflib.get_close_matches(value.strip().lower(), self.choices, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise ContractError(f"{label}: {value!r} is not one of "
                                    f"{', '.join(self.choices)}{hint}")
            return value.strip().lower() if self.choices else value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ContractError(f"{label}: expected {TYPE_NAMES[self.type]}, got {value!r}")
        if not math.isfinite(value):
            raise ContractError(f"{label}: expected a finite number, got {value!r}")
        if self.type == "i":
            if value != int(value):
                raise ContractError(f"{label}: expected an integer, got {value!r}")
            value = int(value)
            if not INT32_MIN <= value <= INT32_MAX:  # /sync 1e38 could not even be echoed
                raise ContractError(f"{label}: {value:.6g} is beyond the int32 range")
        else:
            # OSC floats are float32: keep the shortest decimal that round-trips (0.3)
            value = float(str(np.float32(value))) if isinstance(value, float) else float(value)
        try:  # the range check every layer shares (dreamsampler.schema)
            return schema.check_number(label, value, self.type, self.minimum, self.maximum,
                                       unit=self.unit)
        except schema.ParamError as exc:
            raise ContractError(str(exc)) from None


def _atom_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Message:
    """An OSC message shape: address, positional args, ``key value`` options and documentation."""

    address: str
    args: tuple[Arg, ...] = ()
    description: str = ""
    options: tuple[Arg, ...] = ()
    replies: tuple[str, ...] = ()

    @property
    def signature(self) -> str:
        parts = [self.address, *(a.signature for a in self.args)]
        if self.options:
            parts.append("[s:key value]...")
        return " ".join(parts)

    def option(self, key: str) -> Arg | None:
        return next((o for o in self.options if o.name == key), None)

    def parse(self, atoms: Sequence[Any]) -> dict[str, Any]:
        """Turn received atoms into named, typed values.

        Returns:
            ``{arg.target: value}`` for positional args and options present.

        Raises:
            ContractError: missing or wrong-typed argument, unknown option key, value out of range.
        """
        atoms = list(atoms)
        values: dict[str, Any] = {}
        i = 0
        for arg in self.args:
            if arg.rest:
                end = self._options_start(atoms, i, first=not arg.required)
                text = " ".join(_atom_text(a) for a in atoms[i:end]).strip()
                if not text and arg.required:
                    raise ContractError(f"{self.address}: missing {arg.name}")
                if text:
                    values[arg.target] = text
                i = end
                continue
            if i >= len(atoms):
                if arg.required:
                    raise ContractError(f"{self.address}: missing {arg.signature}")
                continue
            values[arg.target] = arg.coerce(atoms[i], self.address)
            i += 1
        rest = atoms[i:]
        if rest and not self.options:
            raise ContractError(
                f"{self.address}: unexpected extra arguments {rest!r} (expects {self.signature})"
            )
        values.update(self._parse_options(rest))
        return values

    def _parse_options(self, rest: list[Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        i = 0
        while i < len(rest):
            key = rest[i]
            option = self.option(key) if isinstance(key, str) else None
            if option is None:
                raise ContractError(self._unknown(key, rest[i + 1:i + 2]))
            atoms = rest[i + 1:i + 1 + option.width]
            if len(atoms) < option.width:
                shape = " ".join(a.signature for a in (option, *option.more))
                raise ContractError(f"{self.address}: option {key} needs {shape}, got "
                                    f"{atoms!r}")
            value: Any = option.coerce(atoms[0], self.address)
            if option.more:
                value = (value, *(a.coerce(v, f"{self.address} {key}")
                                  for a, v in zip(option.more, atoms[1:], strict=True)))
            if option.repeat:
                value = (*values.get(option.target, ()), value)
            values[option.target] = value
            i += 1 + option.width
        return values

    def _unknown(self, key: Any, value: list[Any]) -> str:
        """``/fail`` text for an unknown option key: the key, its value, a did-you-mean and
        the known keys."""
        names = [o.name for o in self.options]
        near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        shown = f" (value {value[0]!r})" if value else ""
        return (f"{self.address}: unknown option {key!r}{shown}{hint} (known: "
                f"{', '.join(names)})")

    def _near_miss(self, atom: Any) -> Arg | None:
        """The numeric option ``atom`` nearly spells (``seedd`` → ``seed``), else None."""
        if not isinstance(atom, str) or len(atom) < 3 or not atom.isalpha():
            return None
        numeric = [o.name for o in self.options if o.type != "s"]
        near = difflib.get_close_matches(atom, numeric, n=1, cutoff=NEAR_MISS)
        return self.option(near[0]) if near else None

    def refuses_near_miss(self, atoms: Sequence[Any], k: int) -> bool:
        """Whether ``atoms[k]`` is a misspelt numeric option key followed by a number, which
        :meth:`parse` refuses with a did-you-mean (``seedd 7``)."""
        atom = atoms[k]
        return (not (isinstance(atom, str) and self.option(atom))
                and self._starts_options(list(atoms), k))

    def _starts_options(self, atoms: list[Any], k: int) -> bool:
        """Whether ``atoms[k]`` is a numeric option key, or a near miss of one, followed by a
        number: the options begin there at the latest (see the module docstring)."""
        atom = atoms[k]
        option = self.option(atom) if isinstance(atom, str) else None
        option = option or self._near_miss(atom)
        if option is None or option.type == "s" or k + 1 >= len(atoms):
            return False
        value = atoms[k + 1]
        return isinstance(value, int | float) and not isinstance(value, bool)

    def _options_start(self, atoms: list[Any], start: int, first: bool = False) -> int:
        """Index where ``key value`` options begin after a multi-atom string (or the end).

        Candidates are atoms that are option keys (from ``start + 1``, or from ``start`` when
        ``first``: the string is optional). The first numeric key (or near miss of one)
        followed by a number is where the options begin at the latest: an earlier candidate
        whose options parse wins ("a seed pod seed 3" → prompt "a seed pod"), else that one
        does, and its errors are reported ("warm guidance -3 steps 2", "warm seedd 7"). With
        no such key, the first candidate whose options parse wins, else the first with atoms
        enough for its value, so its error is reported ("warm steps two").
        """
        begin = start if first else start + 1
        keys = {o.name for o in self.options}
        strong = next((k for k in range(begin, len(atoms)) if self._starts_options(atoms, k)),
                      None)
        end = len(atoms) if strong is None else strong
        candidates = [
            k for k in range(begin, end)
            if isinstance(atoms[k], str) and atoms[k] in keys
        ]
        for k in candidates:
            try:
                self._parse_options(atoms[k:])
            except ContractError:
                continue
            return k
        if strong is not None:
            return strong
        # a key too near the end to take its value is prompt text ("kick and bass seed")
        complete = [k for k in candidates if len(atoms) - k > self.option(atoms[k]).width]
        return complete[0] if complete else len(atoms)


# -- arguments derived from the schema (dreamsampler/schema.py) ---------------------------------


def option_arg(param: schema.Param) -> Arg:
    """The ``key value`` option of a schema parameter."""
    return Arg(param.osc_key, param.type, param.description, param.minimum, param.maximum,
               param.unit, field=param.name, repeat=param.repeat, choices=param.choices,
               more=tuple(Arg(p.name, p.type, p.description, p.minimum, p.maximum)
                          for p in param.more))


def session_arg(param: schema.Param) -> Arg:
    """The argument of ``/param/<key>`` for a session parameter."""
    description = param.description
    if param.session_note:
        description = f"{description}; {param.session_note}"
    return Arg(param.osc_key, param.type, description, param.minimum, param.maximum,
               param.unit, required=not param.session_clears, rest=param.session_rest,
               field=param.name, choices=param.choices)


def options(address: str, params: Sequence[schema.Param] | None = None) -> tuple[Arg, ...]:
    """The options of a generation command, from the schema."""
    return tuple(option_arg(p) for p in schema.taken_by(address, params))


def session_params(params: Sequence[schema.Param] | None = None) -> dict[str, Arg]:
    """The session parameters (``/param/<key>``), from the schema."""
    return {p.osc_key: session_arg(p) for p in schema.taken_by(schema.SESSION, params)}


JOB_ID = Arg("job_id", "i", "job id: the server's, or the one given with the id option", 0)
CONCEPT_NAME = Arg("name", "s", "concept name (a folder in concepts_dir)")
GEN_OPTIONS = options(schema.GEN)
REGION_OPTIONS = options(schema.CONTINUE)
"""Options of /continue and /inpaint: the /gen options less duration and bars (the input sets
the length) plus ``unit``."""
INPUT = Arg("input", "s", "path of the input clip: inside an input folder, or a clip the server "
            "wrote to its output folder (relative paths are looked up in the input folders, then "
            "the output folder)", field="input_path")
OPTIONAL_PROMPT = Arg("prompt", "s", "text prompt (several atoms are joined); default: the "
                      "session prompt (/param/prompt)", rest=True, required=False)
PRESET_NAME = Arg("name", "s", "preset name (see /preset/list)", rest=True)

# -- replies ---------------------------------------------------------------------------------------

REPLIES: dict[str, Message] = {
    m.address: m
    for m in (
        Message("/done", (Arg("command", "s", "the address that succeeded"),),
                "a command succeeded; further arguments depend on the command. A job's /done "
                "(`/done <command> i:job_id s:path...`: one path per take, `count`; the paths "
                "are the leading atoms ending in .wav) is followed by the stems folder "
                "(`s:stems`) when the job asked for stems (`stems 1`), then by one "
                "`s:sink s:error` pair "
                "per optional sink (the audio device) that could not take the clip; a job whose "
                "required sink (the output folder) failed, or all of whose sinks failed, gets "
                "/fail instead"),
        Message("/fail", (Arg("command", "s", "the address that failed"),
                          Arg("message", "s", "what was wrong")),
                "a command failed; further arguments (e.g. the job id) depend on the command"),
        Message("/queued", (JOB_ID, Arg("position", "i", "jobs ahead of it (0 = next)", 0)),
                "a generation job was accepted"),
        Message("/progress", (JOB_ID, Arg("fraction", "f", "share of steps done", 0, 1)),
                "denoising progress (to /notify clients)"),
        Message("/job.started", (JOB_ID,), "a job began running (to /notify clients)"),
        Message("/notify.cookie", (Arg("cookie", "i", "send /notify 1 reply_port cookie to "
                                       "confirm the registration", 0, 16777215),),
                "sent before /done /notify to a registration that must be confirmed"),
        Message("/job.ended", (JOB_ID, Arg("state", "s", "done, failed or cancelled"),
                               Arg("detail", "s", "the clip's path, or the failure message")),
                "a job ended (to /notify clients)"),
        Message("/preset.list", (Arg("names", "s", "one atom per preset, in bank order; none "
                                     "when no preset is loaded", required=False),),
                "reply to /preset/list"),
        Message("/preset.page", (Arg("page", "i", "this page, from 0", 0),
                                 Arg("pages", "i", "pages in all (at least 1)", 1),
                                 Arg("names", "s", "up to 64 preset names, in bank order",
                                     required=False, rest=True)),
                "reply to /preset/list <page>"),
        Message("/midi.learned", (Arg("param", "s", "the parameter learned"),
                                  Arg("cc", "i", "controller number", 0, 127),
                                  Arg("channel", "i", "MIDI channel", 1, 16)),
                "MIDI learn bound a controller (to /notify clients)"),
        Message("/status.reply", (
            Arg("queued", "i", "jobs waiting", 0),
            Arg("running", "i", "id of the running job, -1 when idle", -1),
            Arg("jobs_done", "i", "clips delivered since start", 0),
            Arg("jobs_failed", "i", "jobs failed or cancelled since start", 0),
            Arg("clients", "i", "clients registered with /notify", 0),
            Arg("model", "s", "model id"),
            Arg("sample_rate", "i", "model sample rate", 0, unit="Hz"),
            Arg("uptime", "f", "seconds since start", 0, unit="s"),
            Arg("device", "s", "where the model runs (cpu, cuda:0, mps)"),
            Arg("output_dir", "s", "the folder that receives the clips"),
            Arg("output_writable", "i", "1 when clips can be written to output_dir, else 0",
                0, 1),
            Arg("oscquery_port", "i", "OSCQuery HTTP (TCP) port, 0 when off", 0, 65535),
            Arg("tempo", "f", "session tempo", 0, unit="BPM"),
            Arg("tempo_source", "s", "where the tempo comes from: internal, midi or link"),
            Arg("underruns", "i", "audio output underruns since start (0 without a device)", 0),
            Arg("unmapped_notes", "i", "MIDI note-ons that matched no mapping", 0),
            Arg("jam", "i", "1 while jam mode plays, else 0", 0, 1),
            Arg("engine_restarts", "i", "times the engine process was replaced after a crash, "
                "a wedge or a device error (engine.kind: process)", 0),
            Arg("engine_state", "s", "ready; restarting N (restart attempt N is loading the "
                "model); failed: REASON; retry N in S s (a restart failed: work fails at once "
                "until it is back); closed: REASON"),
        ), "reply to /status (positional; fields are only ever appended)"),
        Message("/synced", (Arg("id", "i", "the id given to /sync"),),
                "every command and job received before /sync has completed"),
        Message("/concept.list", (
            Arg("name", "s", "a loaded concept; one argument per concept, none when none is "
                "loaded", required=False, rest=True),
        ), "reply to /concept/list: the loaded concepts' names, in load order"),
        Message("/concept.available", (
            Arg("concepts", "s", "four atoms per valid concept folder in concepts_dir, sorted "
                "by name: name (s), method (s: ti, dreambooth or lora), family (s: the model "
                "family recorded at training, else the base model id), loaded (i: 1 loaded, "
                "0 not); none when there is none (broken folders are skipped and logged)",
                required=False, rest=True),
        ), "reply to /concept/available"),
        Message("/midi.ports", (
            Arg("port", "s", "one atom per configured MIDI input (live.midi_in / --midi-in), in "
                "configuration order: the name of the port it is connected to, 'virtual:NAME' "
                "for a virtual port the server created, or '<spec> (missing)' while no port "
                "matches the spec (the server retries every few seconds); none when no MIDI "
                "input is configured", required=False, rest=True),
        ), "reply to /midi/ports"),
        Message("/audio.devices", (
            Arg("device", "s", "one atom per audio output device, its name as PortAudio reports "
                "it (what live.audio_out / --audio-out matches), in PortAudio's order; a device "
                "may appear once per host API (ALSA, JACK…); none when PortAudio is missing or "
                "has no output device", required=False, rest=True),
        ), "reply to /audio/devices"),
        Message("/version.reply", (
            Arg("program", "s", "dreamsampler"),
            Arg("version", "s", "server version"),
            Arg("model", "s", "model id"),
            Arg("family", "s", f"model family ({', '.join(FAMILY_NAMES)})"),
        ), "reply to /version"),
    )
}

# -- session parameters (/param/<name>) ------------------------------------------------------------

PARAMS: dict[str, Arg] = session_params()
"""The session parameters by OSC key (``/param/<key>``)."""

# -- commands --------------------------------------------------------------------------------------

_GEN_REPLIES = ("/queued i:job_id i:position", "/done /gen i:job_id s:path... [s:stems]",
                "/fail /gen s:message i:job_id")



def build_commands(params: Sequence[schema.Param] | None = None) -> dict[str, Message]:
    """The commands, their generation options and session parameters taken from ``params``
    (default: the schema's :data:`~dreamsampler.schema.PARAMS`)."""
    return {m.address: m for m in _commands(params)}


def _commands(params: Sequence[schema.Param] | None) -> tuple[Message, ...]:
    return (
        Message("/gen", (Arg("prompt", "s", "text prompt (several atoms are joined)", rest=True),),
                "generate a clip from text; the WAV lands in the output folder",
                options(schema.GEN, params), _GEN_REPLIES),
        Message("/transfer", (
            Arg("input", "s", "path of the input clip (inside an input folder)",
                field="input_path"),
            Arg("prompt", "s", "text prompt (several atoms are joined)", rest=True),
        ), "style-transfer an input clip toward the prompt (SDEdit at strength)",
            options(schema.TRANSFER, params),
            ("/queued i:job_id i:position", "/done /transfer i:job_id s:path... [s:stems]",
             "/fail /transfer s:message i:job_id")),
        Message("/continue", (
            INPUT,
            Arg("amount", "f", "how much new audio to add after the input's end, in unit "
                "(seconds or bars)", 0, 600, field="continuation"),
            OPTIONAL_PROMPT,
        ), "continue a clip: the output is the input with amount of new audio after it (or "
            "before it, or both: side) in the prompt's direction; the input's own samples are "
            "kept (bit-exact outside a short crossfade). bpm and key go into the prompt as "
            "tags where the family was trained on them, and bpm sets the tempo of unit bars "
            "(needs a model family that can inpaint: Stable Audio 3; others answer /fail)",
            options(schema.CONTINUE, params),
            ("/queued i:job_id i:position", "/done /continue i:job_id s:path... [s:stems]",
             "/fail /continue s:message i:job_id")),
        Message("/inpaint", (
            INPUT,
            Arg("start", "f", "start of the region to regenerate, in unit (seconds or bars) "
                "from the input's start", 0, 600, field="mask_start"),
            Arg("end", "f", "end of the region (after start; may pass the input's end: the "
                "input is padded with silence up to it)", 0, 600, field="mask_end"),
            OPTIONAL_PROMPT,
        ), "repaint a region of a clip from the prompt, keeping the rest (needs a model family "
            "that can inpaint: Stable Audio 3; others answer /fail); the output is as long as "
            "the input, or up to end when end passes it",
            options(schema.INPAINT, params),
            ("/queued i:job_id i:position", "/done /inpaint i:job_id s:path... [s:stems]",
             "/fail /inpaint s:message i:job_id")),
        Message("/conform", (INPUT,), "conform a clip (a producer's loop or sample, no model): "
                "time-stretch it to bpm (default: the session tempo), pitch-shift it to key, "
                "start it on a downbeat, cut it to exactly bars bars (default: the whole bars "
                "it holds) and crossfade the loop seam (docs/conform.md)",
                options(schema.CONFORM, params),
                ("/queued i:job_id i:position", "/done /conform i:job_id s:path",
                 "/fail /conform s:message i:job_id")),
        Message("/trigger", (), "generate from the session parameters (/param/...)",
                (), ("/queued i:job_id i:position", "/done /trigger i:job_id s:path... [s:stems]",
                     "/fail /trigger s:message i:job_id")),
        *(
            Message(f"/param/{p.name}", (p,), f"set the session's {p.name}: {p.description}",
                    (), (f"/done /param/{p.name} {p.signature}",))
            for p in session_params(params).values()
        ),
        Message("/concept/load", (CONCEPT_NAME,),
                "load a trained concept from concepts_dir (in arrival order with jobs; /status "
                "keeps answering); TI tokens become usable in prompts, DreamBooth/LoRA concepts in "
                "the concept option. Loading a loaded concept changes nothing and succeeds: state "
                "is 'loaded' or 'already loaded'", (),
                ("/done /concept/load s:name s:method s:state",
                 "/fail /concept/load s:message s:name")),
        Message("/concept/unload", (CONCEPT_NAME,), "unload a loaded concept (in arrival order "
                "with jobs: a job queued before it still gets the concept)", (),
                ("/done /concept/unload s:name", "/fail /concept/unload s:message s:name")),
        Message("/concept/list", (), "ask which concepts are loaded", (),
                ("/concept.list s:name...",)),
        Message("/concept/available", (), "ask which concepts are on disk in concepts_dir "
                "(loaded or not) with their method and model family", (),
                ("/concept.available [s:name s:method s:family i:loaded]...",)),
        Message("/cancel", (JOB_ID,), "cancel a queued or running job",
                (), ("/done /cancel i:job_id", "/fail /cancel s:message i:job_id")),
        Message("/notify", (
            Arg("on", "i", "1 registers the sender for notifications, 0 unregisters", 0, 1),
            Arg("reply_port", "i", "UDP port to send replies to (Max's udpsend and Pd's netsend "
                "send from another port than they listen on); default or 0: the sender's port",
                0, 65535, required=False),
            Arg("cookie", "i", "the number of the last /notify.cookie, echoed to confirm the "
                "registration: notifications start only then (senders on loopback need none)",
                0, 16777215, required=False),
        ), "set the reply port and register for /progress, /job.started, /job.ended (a "
            "registration from the network starts once confirmed by echoing its cookie)",
            (), ("/notify.cookie i:cookie", "/done /notify i:on i:reply_port")),
        Message("/status", (), "ask for the server's state", (), ("/status.reply ...",)),
        Message("/sync", (Arg("id", "i", "any integer, echoed back"),),
                "reply once everything received before has completed (jobs included)",
                (), ("/synced i:id",)),
        Message("/version", (), "ask for the server's version and model", (),
                ("/version.reply s:program s:version s:model s:family",)),
        # -- live performance (see docs/live.md) --
        Message("/preset/trigger", (PRESET_NAME,),
                "generate from a preset (seed per its seed policy); the clip always lands in "
                "the output folder, and also plays on the audio device when the preset's "
                "sinks include 'device'",
                (), ("/queued i:job_id i:position",
                     "/done /preset/trigger i:job_id s:path... [s:stems]",
                     "/fail /preset/trigger s:message [i:job_id]")),
        Message("/preset/list", (Arg("page", "i", "page of 64 names, from 0; without it: "
                                     "every name that fits in one datagram", 0,
                                     required=False),),
                "ask for the loaded presets' names", (),
                ("/preset.list s:name...", "/preset.page i:page i:pages s:name...")),
        Message("/preset/save", (PRESET_NAME,),
                "save the session parameters (/param/...) as a preset YAML file in the presets "
                "folder (atomic; replaces a preset of that name)",
                (), ("/done /preset/save s:path", "/fail /preset/save s:message")),
        Message("/midi/learn", (Arg("param", "s", "parameter to bind: strength, guidance, steps, "
                                    "seed, duration, bars, lora_scale, tempo or volume"),),
                "arm MIDI learn: the next control change received is bound to param (default "
                "range and curve) and the map is saved. The /done comes when the CC arrives; "
                "/notify clients also get /midi.learned. Arming again replaces the request "
                "(the earlier one gets /fail)",
                (), ("/done /midi/learn s:param i:cc i:channel", "/fail /midi/learn s:message")),
        Message("/midi/ports", (), "ask which MIDI inputs the server has open (and which "
                "configured ones are missing)", (), ("/midi.ports s:port...",)),
        Message("/audio/devices", (), "ask which audio output devices the server can play to "
                "(for live.audio_out)", (), ("/audio.devices s:device...",)),
        Message("/tempo", (Arg("bpm", "f", "session tempo, > 20 and <= 999", 20, 999,
                               unit="BPM"),),
                "set the session tempo (bars, /play quantization, jam); with Link the tempo is "
                "proposed to the Link session; with MIDI clock the next clock ticks win",
                (), ("/done /tempo f:bpm", "/fail /tempo s:message")),
        Message("/play", (JOB_ID, Arg("quantum", "f", "start on the next multiple of this many "
                                       "beats; 0 = now; default live.play_quantum", 0,
                                       unit="beats", required=False)),
                "play a delivered clip (one of the last live.keep_results) on the audio device",
                (), ("/done /play i:job_id f:delay", "/fail /play s:message i:job_id")),
        Message("/stop", (), "fade out everything on the audio device and stop jam mode", (),
                ("/done /stop", "/fail /stop s:message")),
        Message("/jam", (Arg("state", "s", "on or off"),
                         Arg("presets", "s", "comma-separated preset names to cycle through; "
                             "default: the bank chosen by MIDI program change, else the session "
                             "parameters with the seed advancing", rest=True, required=False)),
                "jam mode: each clip loops on the audio device while the next is generated, "
                "then takes over on the next bar with a crossfade",
                (), ("/done /jam s:state", "/fail /jam s:message")),
        Message(schema.SEPARATE, (Arg("input", "s", "path of the clip to separate: inside an "
                                      "input folder, or a clip the server wrote to its output "
                                      "folder", field="input_path"),),
                "separate a clip into its sources with Demucs (issue 19: drums, bass, other, "
                "vocals; htdemucs_6s adds guitar and piano): the reply's path is a folder next "
                "to the clips holding <name>.<source>.wav for every source (same length as the "
                "input, at the output rate) and <name>.stems.json naming the model, its version "
                "and the input; written atomically",
                options(schema.SEPARATE, params),
                ("/queued i:job_id i:position", "/done /separate i:job_id s:path",
                 "/fail /separate s:message i:job_id")),
    )


COMMANDS: dict[str, Message] = build_commands()


class TypedReply:
    """Methods of a reply made into a dataclass by :func:`reply_type`."""

    address: ClassVar[str]

    def atoms(self) -> tuple[Any, ...]:
        """The reply's arguments, in contract order (what goes on the wire)."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))  # type: ignore[arg-type]

    @classmethod
    def from_atoms(cls, atoms: Sequence[Any]) -> Any:
        """The typed reply from received arguments: atoms a newer server appends are ignored,
        fields an older server lacks are None."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        return cls(**dict(zip(names, atoms, strict=False)))

    def labelled(self) -> str:
        """``address name=value ...`` for people (``dreamsampler send``)."""
        return " ".join([self.address, *(f"{f.name}={getattr(self, f.name)!r}"
                                         for f in dataclasses.fields(self))])  # type: ignore[arg-type]


def reply_type(name: str, message: Message) -> type:
    """A frozen dataclass with one field per argument of the reply ``message``, in order."""
    made = dataclasses.make_dataclass(
        name, [(a.name, Any, dataclasses.field(default=None)) for a in message.args],
        bases=(TypedReply,), frozen=True, namespace={"address": message.address})
    made.__module__ = __name__
    return made


StatusReply = reply_type("StatusReply", REPLIES["/status.reply"])
"""``/status.reply`` typed: built from its :data:`REPLIES` entry (fields only ever appended)."""
TYPED_REPLIES: dict[str, type] = {StatusReply.address: StatusReply}  # type: ignore[attr-defined]
"""Replies that ``dreamsampler send`` prints with labelled fields."""


def direct_replies() -> dict[str, str]:
    """Command address → the reply address that answers it when that is not ``/done``
    (``/status`` → ``/status.reply``, ``/sync`` → ``/synced`` …)."""
    out: dict[str, str] = {}
    for cmd in COMMANDS.values():
        for reply in cmd.replies:
            head = reply.split()[0]
            if head not in ("/done", "/fail", "/queued", "/notify.cookie"):  # not final
                out[cmd.address] = head
                break
    return out


def markdown(commands: dict[str, Message] | None = None) -> str:
    """The OSC reference as Markdown (``docs/osc.md`` is this text); ``commands`` defaults to
    :data:`COMMANDS`."""
    out = [
        "# OSC reference",
        "",
        "Generated from `dreamsampler/server/contract.py` (`python -m dreamsampler.server.contract`"
        " rewrites this file). Types: `i` int32, `f` float32, `s` string. Integers may be sent as"
        " floats; prompts may be sent as several atoms.",
        "",
        "## Commands",
        "",
    ]
    for cmd in (COMMANDS if commands is None else commands).values():
        out += [f"### `{cmd.signature}`", "", cmd.description, ""]
        for arg in cmd.args:
            out.append(f"- `{arg.signature}`: {arg.description}{_range(arg)}")
        if cmd.options:
            out.append("- options (`key value` pairs):")
            out += [f"  - {_option_shape(o)}: {o.description}{_range(o)}"
                    for o in cmd.options]
        if cmd.replies:
            out.append("- replies: " + ", ".join(f"`{r}`" for r in cmd.replies))
        out.append("")
    out += ["## Replies and notifications", ""]
    for rep in REPLIES.values():
        out += [f"### `{rep.signature}`", "", rep.description, ""]
        out += [f"- `{a.signature}`: {a.description}" for a in rep.args]
        out.append("")
    out += ["## Changelog", "", CHANGELOG.strip(), ""]
    return "\n".join(out)


CHANGELOG = """
Deliberate changes to addresses, arguments and replies, newest first.

### 0.4 (issue 21: takes)

- New option `count i` (1–8) on `/gen`, `/transfer`, `/continue`, `/inpaint` and presets
  (`count:`): one job makes `count` takes from seeds `seed … seed+count-1` in one batched call.
  Every take is its own WAV in the output folder (`_take1` … `_takeN` ends its name; the sidecar
  has `take` and `takes`); the other sinks (the audio device) get the first take.
- `/done <command> i:job_id s:path...` lists every take's path, in take order:
  `/done <command> i:job_id s:path1 … s:pathN [s:stems] [s:sink s:error]...`. The paths are the
  leading atoms after the job id that end in `.wav` (the server writes only WAVs); what follows is
  as before (the stems folder, then sink-error pairs). With `count 1` the reply is unchanged.
- `stems 1` with `count N` separates the first take only (its stems folder follows the paths);
  send the take you keep to `/separate` for its stems.
- Ray: `count` works there too: a replica runs every take of a job in one batched call.

### 0.4 (issue 22: reliability, round three)

- `/status.reply` appends `s:engine_state`: `ready`, `restarting N`, `failed: REASON; retry N in
  S s` (work fails at once with that reason until the engine is back) or `closed: REASON`.
- `/notify on [reply_port] [cookie]`: `reply_port` 0 means the sender's port; a registration from
  the network gets `/notify.cookie i:cookie` before its `/done /notify` and receives no stream
  until it sends `/notify 1 reply_port cookie` (loopback needs none). A full table evicts the
  least recently confirmed registration instead of refusing; `/progress` to registrants is
  coalesced (at most 21 per job).
- `/preset/list [page]`: with a page, the reply is `/preset.page i:page i:pages s:name...` (64 names
  a page); without, `/preset.list` holds the names that fit in one datagram.
- `/preset/save` is written off the event loop and fails once `limits.max_presets` presets are
  loaded. `/stop`, `/cancel`, `/status`, `/notify` and the other control messages no longer count
  against the pending-request limit (`busy`).

### 0.4 (issue 20: the Live device as producers use it, OSCQuery to the letter)

- `/tempo`'s `bpm` declares its range 20..999 (was enforced only by the clock): it is checked when
  the message is parsed, and OSCQuery serves it as `RANGE`. A range error names the unit ("bpm 5
  is below the minimum 20 BPM (allowed 20..999)").
- **Input policy.** A client on loopback (`127.0.0.0/8`, `::1`) may name any readable audio file
  by absolute path in `/transfer`, `/continue`, `/inpaint`, `/conform` and `/separate`; a
  client on another machine only files in `input_dirs` (and the output folder where it was
  allowed before), as before. `/transfer /etc/hostname ...` from loopback now answers "not a
  readable audio file" instead of "outside the input folders" (see docs/hardening.md).
- **OSCQuery.** Commands without arguments are typed `N`; `VALUE` of a write-only node and
  attributes the server does not serve (`TAGS`, `CLIPMODE`, ...) answer 204; `UNIT` per argument;
  `/tempo` and `/jam` are readable (`ACCESS` 3) with their live `VALUE`; `LISTEN`/`IGNORE` over a
  WebSocket on the same port stream value changes made by any edge as binary OSC
  (`HOST_INFO.EXTENSIONS.LISTEN` is true).

### 0.4 (issue 19: stems with Demucs)

- New command `/separate s:input [model s] [id i] [name s]`: splits a clip (an input, or a clip
  the server wrote) into its sources with Demucs; `/done /separate i:job_id s:path` names a
  folder holding `<name>.<source>.wav` per source and `<name>.stems.json`.
- New option `stems` (0/1) on `/gen`, `/transfer`, `/continue`, `/inpaint`, the session
  (`/param/stems`) and presets: the clip and its stems in one job. Its `/done` carries the
  stems folder right after the clip's path (`/done /gen i:job_id s:path s:stems`), before any
  `s:sink s:error` pairs.

### 0.4 (issue 18: loops that lock)

- New options `bpm`, `key`, `meter` on `/gen`, `/transfer` and `/continue`, and `conform` on
  `/gen` and `/transfer` (also preset keys; `key`, `meter` and `conform` are session parameters
  `/param/key`, `/param/meter`, `/param/conform`). Giving `bpm` or `key` conforms the clip: it is
  time-stretched to `bpm` (default: the session tempo), pitch-shifted to the nearest
  transposition of `key`, started on a downbeat, cut to exactly `bars` bars and loop-crossfaded;
  `conform 0` keeps the model's timing and only cuts to bars. Families trained on tempo/key
  caption tags (Stable Audio) get them appended to the prompt (docs/conform.md).
- New command **`/conform s:input [bpm f] [key s] [bars i] [meter s] [id i] [name s]`**: the same
  conform for any clip, no model; answers `/queued`, then `/done /conform i:job_id s:path` or
  `/fail /conform s:message i:job_id`.
- `/continue` gains `side after|before|both`; `/continue` and `/inpaint` now keep the input's own
  samples outside the new audio (a short crossfade joins them), where they used to return the
  model's re-synthesis. A family that cannot inpaint answers `/fail` at once (before `/queued`),
  where it used to fail after queuing.
- `bars` counts bars at `bpm` when it is given (else at the session tempo, as before).

### 0.3 (issue 17: one parameter schema, strict options, seeds)

- **Sinks are peers.** A job's `/done` appends `s:sink s:error` for each optional sink that
  failed (a preset whose device failed no longer answers a plain `/done`); all sinks take the
  clip at once, and `/play` finds only clips whose delivery succeeded.
- `/transfer` without `duration` (and without `bars`) is as long as its input, up to the model's
  limit and `limits.max_duration`, instead of the session's duration; Stable Audio keeps a stereo
  input stereo on every engine.
- Every generation option and session parameter is declared once in `dreamsampler/schema.py`;
  this reference, OSCQuery, the patches, presets and `config.yaml` are generated from it.
- **Strict options.** After a prompt given as several atoms, the options begin at the first
  numeric option key followed by a number (`seed 7`), or at a word that nearly spells one
  (`seedd 7`, difflib ratio >= 0.8); an earlier option key whose options parse to the end begins
  them instead (`a seed pod seed 3` → prompt "a seed pod", seed 3). From there on every atom must
  be a known key with a valid value: `/gen warm seedd 7`, `/gen warm guidance -3.0 steps 2` and
  `/gen warm steps two` answer `/fail` naming the key, the value and what is allowed (with a
  did-you-mean), where they used to become prompt text. Without such a numeric key, an option key
  followed by words is prompt text when a later option parses, as before
  (`a negative space vibe seed 3`). A prompt sent as one atom is never split.
- Options with a closed set of strings (`scheduler`, `unit`) are checked when the message is
  parsed (case-insensitively, with a did-you-mean: `scheduler eulr` → "did you mean 'euler'?");
  `/continue ... unit beats` now says "unit: 'beats' is not one of seconds, bars".
- **Seeds.** `seed -1` draws a fresh seed. A request without a seed draws a fresh seed unless the
  session seed is locked (new session parameter `/param/seed_lock 0|1`, config
  `defaults.seed_lock`); `/param/seed N` (N >= 0) sets and locks the session seed, `/param/seed -1`
  unlocks it. The seed used is in the sidecar record and the default file name. Was: the session
  seed (0) every time. Presets keep their seed policy.
- `/continue`'s `amount` and `/inpaint`'s `start`/`end` set the request fields `continuation`,
  `mask_start` and `mask_end` (same atoms; the typed messages' field names changed).
- `/preset/save` keeps every session field a preset takes (`concept`, `scheduler`, `lora_scale`,
  ...); a session whose seed is not locked is saved with `seed: random`.
- One range per parameter everywhere: preset `lora_scale` is −2..2 (was 0..2), preset `guidance`
  0..50 (was 0..30), config `defaults.duration` 0.01..600 s and `defaults.num_inference_steps`
  1..1000. New preset keys `scheduler` and `loras` (`[[name, weight], ...]`); new config keys
  `defaults.seed_lock` and `defaults.lora_scale`.
- `/status.reply`'s fields are typed (`dreamsampler.server.contract.StatusReply`, made from its
  REPLIES entry); `dreamsampler send` prints them labelled.
"""


def _option_shape(option: Arg) -> str:
    """```seed` (int)``, or ```lora` (string, float; repeatable)`` for a multi-atom option."""
    types = ", ".join(TYPE_NAMES[a.type] for a in (option, *option.more))
    return f"`{option.name}` ({types}{'; repeatable' if option.repeat else ''})"


def _range(arg: Arg) -> str:
    if arg.minimum is None and arg.maximum is None:
        return ""
    lo = "" if arg.minimum is None else _atom_text(float(arg.minimum))
    hi = "" if arg.maximum is None else _atom_text(float(arg.maximum))
    unit = f" {arg.unit}" if arg.unit else ""
    return f" (range {lo}..{hi}{unit})"


def write_docs(path: str = "docs/osc.md") -> None:
    """Rewrite the OSC reference file from this module."""
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(markdown() + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_docs()
