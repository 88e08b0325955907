"""The OSC contract: every address the server accepts and every reply it sends, as data.

The server dispatches from :data:`COMMANDS`; the docs (``docs/osc.md``, :func:`markdown`), OSCQuery,
the patches' checks and the tests all read this module. Conventions follow SuperCollider's scsynth:
a command that does work answers ``/done <address> ...`` or ``/fail <address> <message> ...`` to the
sender (or to the reply port it registered with ``/notify``); notifications (``/progress``,
``/job.started``, ``/job.ended``) go to every client registered with ``/notify 1``.

Parsing is lenient the way Max and Pure Data need: integers may arrive as integral floats (Pd sends
every number as a float), and a prompt may arrive as several atoms (Max and Pd split unquoted text),
which are joined with spaces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TYPE_NAMES = {"i": "int", "f": "float", "s": "string"}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The range of an OSC ``i`` (int32) atom; integers beyond it are refused."""


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
            if isinstance(value, str):
                return value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return _atom_text(value)
            raise ContractError(f"{label}: expected a string, got {value!r}")
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
        if self.minimum is not None and value < self.minimum:
            raise ContractError(f"{label}: {value} is below the minimum {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ContractError(f"{label}: {value} is above the maximum {self.maximum:g}")
        return value


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
                known = ", ".join(o.name for o in self.options)
                raise ContractError(f"{self.address}: unknown option {key!r} (known: {known})")
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

    def _options_start(self, atoms: list[Any], start: int, first: bool = False) -> int:
        """Index where ``key value`` options begin after a multi-atom string (or the end).

        Candidates are atoms that are option keys (from ``start + 1``, or from ``start`` when
        ``first``: the string is optional); the first candidate whose options parse wins ("a seed
        pod seed 3" → prompt "a seed pod"). If none parses, the first candidate with atoms enough
        for its value is used so its error is reported.
        """
        keys = {o.name for o in self.options}
        candidates = [
            k for k in range(start if first else start + 1, len(atoms))
            if isinstance(atoms[k], str) and atoms[k] in keys
        ]
        for k in candidates:
            try:
                self._parse_options(atoms[k:])
            except ContractError:
                continue
            return k
        # a key too near the end to take its value is prompt text ("kick and bass seed")
        complete = [k for k in candidates if len(atoms) - k > self.option(atoms[k]).width]
        return complete[0] if complete else len(atoms)


# -- shared argument definitions -----------------------------------------------------------------

JOB_ID = Arg("job_id", "i", "job id: the server's, or the one given with the id option", 0)
SEED = Arg("seed", "i", "random seed; equal seeds and parameters give identical audio",
           0, 2**31 - 1)
STEPS = Arg("steps", "i", "num_inference_steps: denoising steps (limited by limits.max_steps)",
            1, 1000, field="num_inference_steps")
GUIDANCE = Arg("guidance", "f", "guidance scale (classifier-free guidance; <= 1 disables it)", 0,
               50, field="guidance_scale")
DURATION = Arg("duration", "f", "clip length in seconds (limited by limits.max_duration)", 0.01,
               600, unit="s")
STRENGTH = Arg("strength", "f", "style-transfer strength in [0, 1]: how far the input is noised "
               "(SDEdit); 0.4-0.6 balances source and prompt", 0, 1)
NEGATIVE = Arg("negative", "s", "negative prompt", field="negative_prompt")
SCHEDULER = Arg("scheduler", "s", "ddim, dpm++, pndm, euler, lms or heun")
NAME = Arg("name", "s", "file name stem for the clip (made safe); default <time>_<prompt>_<seed>")
CONCEPT = Arg("concept", "s", "a loaded DreamBooth or LoRA concept to use for this clip (an "
              "unloaded one fails; textual-inversion concepts need no option: write their "
              "<token> in the prompt)")
LORA_SCALE = Arg("lora_scale", "f", "weight of the LoRA concept's adapter (0 = base model, "
                 "1 = as trained)", -2, 2)
CONCEPT_NAME = Arg("name", "s", "concept name (a folder in concepts_dir)")
BARS = Arg("bars", "i", "clip length in whole bars at the session tempo (/tempo); the clip is "
           "cut to exactly that many bars, downbeat at sample 0, and written as a loop WAV "
           "(tempo and bars in the file name, acid/smpl chunks); 0 uses duration", 0, 256)

LORA = Arg("lora", "s", "a loaded LoRA concept to blend in, followed by its weight: "
           "'lora NAME WEIGHT' (weight -2..2: 0 = off, 1 = as trained); repeat the option to "
           "blend several (each name once; an unloaded one fails)", field="loras", repeat=True,
           more=(Arg("weight", "f", "the LoRA's adapter weight (0 = off, 1 = as trained)", -2,
                     2),))
JOB_ID_OPTION = Arg("id", "i", "client-chosen job id (must not be in use)", 0, 2**31 - 1,
                    field="job_id")
# -- issue 21: takes (count) -- one option; the merger ports it into the parameter schema --
COUNT = Arg("count", "i", "takes: one job makes count clips from seeds seed … seed+count-1 in "
            "one batched call; each is its own WAV (_take1…) and /done lists every path", 1, 8)
# -- end issue 21 --
GEN_OPTIONS = (SEED, STEPS, GUIDANCE, DURATION, NEGATIVE, SCHEDULER, JOB_ID_OPTION, NAME, CONCEPT,
               LORA_SCALE, BARS, LORA, COUNT)
UNIT = Arg("unit", "s", "unit of the times given: seconds (default) or bars (whole or "
           "fractional bars at the session tempo, /tempo)")
REGION_OPTIONS = (SEED, STEPS, GUIDANCE, NEGATIVE, SCHEDULER, JOB_ID_OPTION, NAME, CONCEPT,
                  LORA_SCALE, LORA, UNIT, COUNT)
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
                "a command succeeded; further arguments depend on the command"),
        Message("/fail", (Arg("command", "s", "the address that failed"),
                          Arg("message", "s", "what was wrong")),
                "a command failed; further arguments (e.g. the job id) depend on the command"),
        Message("/queued", (JOB_ID, Arg("position", "i", "jobs ahead of it (0 = next)", 0)),
                "a generation job was accepted"),
        Message("/progress", (JOB_ID, Arg("fraction", "f", "share of steps done", 0, 1)),
                "denoising progress (to /notify clients)"),
        Message("/job.started", (JOB_ID,), "a job began running (to /notify clients)"),
        Message("/job.ended", (JOB_ID, Arg("state", "s", "done, failed or cancelled"),
                               Arg("detail", "s", "the clip's path, or the failure message")),
                "a job ended (to /notify clients)"),
        Message("/preset.list", (Arg("names", "s", "one atom per preset, in bank order; none "
                                     "when no preset is loaded", required=False),),
                "reply to /preset/list"),
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
            Arg("family", "s", "model family (musicldm, audioldm)"),
        ), "reply to /version"),
    )
}

# -- session parameters (/param/<name>) ------------------------------------------------------------

PARAMS: dict[str, Arg] = {
    a.name: a
    for a in (
        Arg("prompt", "s", "prompt used by /trigger", rest=True),
        Arg("negative", "s", "negative prompt used by /trigger", rest=True, required=False,
            field="negative_prompt"),
        SEED,
        STRENGTH,
        STEPS,
        GUIDANCE,
        DURATION,
        SCHEDULER,
        Arg("input", "s", "input clip for /trigger; when set, /trigger style-transfers it "
            "(an empty string clears it)", rest=True, required=False, field="input_path"),
        Arg("concept", "s", "loaded DreamBooth/LoRA concept used by /trigger (no argument or an "
            "empty string clears it)", required=False),
        LORA_SCALE,
        BARS,
    )
}

# -- commands --------------------------------------------------------------------------------------

_GEN_REPLIES = ("/queued i:job_id i:position", "/done /gen i:job_id s:path...",
                "/fail /gen s:message i:job_id")

COMMANDS: dict[str, Message] = {
    m.address: m
    for m in (
        Message("/gen", (Arg("prompt", "s", "text prompt (several atoms are joined)", rest=True),),
                "generate a clip from text; the WAV lands in the output folder",
                GEN_OPTIONS, _GEN_REPLIES),
        Message("/transfer", (
            Arg("input", "s", "path of the input clip (inside an input folder)",
                field="input_path"),
            Arg("prompt", "s", "text prompt (several atoms are joined)", rest=True),
        ), "style-transfer an input clip toward the prompt (SDEdit at strength)",
            (*GEN_OPTIONS, STRENGTH),
            ("/queued i:job_id i:position", "/done /transfer i:job_id s:path...",
             "/fail /transfer s:message i:job_id")),
        Message("/continue", (
            INPUT,
            Arg("amount", "f", "how much new audio to add after the input's end, in unit "
                "(seconds or bars)", 0, 600),
            OPTIONAL_PROMPT,
        ), "continue a clip: the output is the input followed by amount of new audio in the "
            "prompt's direction (needs a model family that can inpaint: Stable Audio 3; "
            "others answer /fail)",
            REGION_OPTIONS,
            ("/queued i:job_id i:position", "/done /continue i:job_id s:path...",
             "/fail /continue s:message i:job_id")),
        Message("/inpaint", (
            INPUT,
            Arg("start", "f", "start of the region to regenerate, in unit (seconds or bars) "
                "from the input's start", 0, 600),
            Arg("end", "f", "end of the region (after start; may pass the input's end: the "
                "input is padded with silence up to it)", 0, 600),
            OPTIONAL_PROMPT,
        ), "repaint a region of a clip from the prompt, keeping the rest (needs a model family "
            "that can inpaint: Stable Audio 3; others answer /fail); the output is as long as "
            "the input, or up to end when end passes it",
            REGION_OPTIONS,
            ("/queued i:job_id i:position", "/done /inpaint i:job_id s:path...",
             "/fail /inpaint s:message i:job_id")),
        Message("/trigger", (), "generate from the session parameters (/param/...)",
                (), ("/queued i:job_id i:position", "/done /trigger i:job_id s:path...",
                     "/fail /trigger s:message i:job_id")),
        *(
            Message(f"/param/{p.name}", (p,), f"set the session's {p.name}: {p.description}",
                    (), (f"/done /param/{p.name} {p.signature}",))
            for p in PARAMS.values()
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
                "send from another port than they listen on); default: the sender's port",
                1, 65535, required=False),
        ), "register for /progress, /job.started, /job.ended and set the reply port",
            (), ("/done /notify i:on i:reply_port",)),
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
                (), ("/queued i:job_id i:position", "/done /preset/trigger i:job_id s:path...",
                     "/fail /preset/trigger s:message [i:job_id]")),
        Message("/preset/list", (), "ask for the loaded presets' names", (),
                ("/preset.list s:name...",)),
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
        Message("/tempo", (Arg("bpm", "f", "session tempo, > 20 and <= 999", unit="BPM"),),
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
    )
}


def direct_replies() -> dict[str, str]:
    """Command address → the reply address that answers it when that is not ``/done``
    (``/status`` → ``/status.reply``, ``/sync`` → ``/synced`` …)."""
    out: dict[str, str] = {}
    for cmd in COMMANDS.values():
        for reply in cmd.replies:
            head = reply.split()[0]
            if head not in ("/done", "/fail", "/queued"):
                out[cmd.address] = head
                break
    return out


def markdown() -> str:
    """The OSC reference as Markdown (``docs/osc.md`` is this text)."""
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
    for cmd in COMMANDS.values():
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
    return "\n".join(out)


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
