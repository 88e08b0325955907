"""Server configuration: ``config.yaml`` validated with pydantic, plus command-line overrides.

A wrong key or value stops start-up with a :class:`ConfigError` that names the key's dotted path and
what was expected, e.g. ``osc.port: Input should be less than or equal to 65535 (got 70000)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEDULERS = ("ddim", "dpm++", "pndm", "euler", "lms", "heun")


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names the key path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which diffusion model to load and where to run it."""

    id: str = Field(
        "ucsd-reach/musicldm",
        description="Hugging Face repo id or local directory; 'tiny' builds a random-weight test "
        "fixture offline (produces noise); 'tiny:audioldm' the AudioLDM-shaped one.",
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


class OscConfig(_Section):
    """OSC/UDP endpoint of the server."""

    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535, description="UDP port; 0 picks a free one")
    allow: list[str] = Field(
        default_factory=list,
        description="networks (CIDR, e.g. 192.168.1.0/24, or single addresses) whose datagrams "
        "are served; others are dropped. Empty: everyone who can reach the port (a warning is "
        "logged when host is not loopback). See docs/hardening.md",
    )
    max_clients: int = Field(64, ge=1, description="/notify registrations held at once")
    client_ttl: float = Field(3600.0, gt=0.0, description="seconds without a message from a "
                              "registered client before its /notify registration expires")

    @model_validator(mode="after")
    def _check_allow(self) -> OscConfig:
        import ipaddress

        for net in self.allow:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"allow: {exc}") from None
        return self


class OscQueryConfig(_Section):
    """OSCQuery discovery: an HTTP (TCP) endpoint describing the OSC namespace, plus mDNS."""

    enabled: bool = Field(True, description="serve OSCQuery JSON over HTTP")
    port: int = Field(9002, ge=0, le=65535, description="HTTP (TCP) port; 0 picks a free one")
    zeroconf: bool = Field(
        True, description="advertise _oscjson._tcp and _osc._udp over mDNS (zeroconf)"
    )
    name: str = Field("dreamsampler", min_length=1, description="service name shown to clients")


class OutputConfig(_Section):
    """The DAW folder that receives clips."""

    dir: Path = Path("~/Music/dreamsampler")
    subtype: Literal["PCM_24", "FLOAT", "PCM_16"] = Field(
        "PCM_24", description="WAV sample format: 24-bit PCM, 32-bit float or 16-bit PCM."
    )
    sample_rate: Annotated[int, Field(ge=8000, le=192000)] | Literal["native"] | None = Field(
        44100,
        description="Hz the WAV is written at (resampled with soxr, bar lengths exact at this "
        "rate); \"native\" (or null) keeps the model's sample rate (16000 for AudioLDM/MusicLDM).",
    )


class Defaults(_Section):
    """Session defaults for requests that do not name a value."""

    prompt: str = ""
    negative_prompt: str = ""
    num_inference_steps: int = Field(25, ge=1)
    guidance_scale: float = Field(2.5, ge=0.0)
    duration: float = Field(10.0, gt=0.0, description="seconds")
    strength: float = Field(0.5, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0)
    scheduler: Literal[SCHEDULERS] = "ddim"  # type: ignore[valid-type]


class Limits(_Section):
    """Bounds that protect a live session from requests it cannot serve in time."""

    max_duration: float = Field(30.0, gt=0.0, description="seconds")
    max_steps: int = Field(200, ge=1)
    queue_size: int = Field(16, ge=1, description="jobs waiting at most; more get /fail")


class LiveConfig(_Section):
    """Live performance: tempo, presets, MIDI input and mapping, audio output, Ableton Link."""

    tempo: float = Field(120.0, gt=20.0, le=999.0, description="session tempo, BPM")
    beats_per_bar: int = Field(4, ge=1, le=32, description="beats (quarter notes) per bar")
    presets_dir: Path = Field(Path("presets"), description="folder of preset YAML files")
    midi_in: list[str] = Field(
        default_factory=list,
        description="MIDI input ports: exact names, substrings, or 'virtual:NAME' to create one",
    )
    midi_backend: str | None = Field(
        None, description="mido backend, e.g. 'rtmidi/UNIX_JACK'; null = mido's default"
    )
    midi_map: Path | None = Field(
        None, description="MIDI map YAML; null uses <presets_dir>/midi_map.yaml (learned "
        "bindings are saved there)"
    )
    audio_out: str | None = Field(
        None, description="audio output device (name substring or index); null = no device sink"
    )
    link: bool = Field(False, description="follow Ableton Link (needs dreamsampler[link])")
    play_quantum: float = Field(
        4.0, ge=0.0, description="beats: /play and device presets start on this grid; 0 = now"
    )
    keep_results: int = Field(16, ge=1, le=1024, description="delivered clips kept for /play")


class Config(_Section):
    """The whole server configuration (``config.yaml``)."""

    model: ModelConfig = ModelConfig()
    osc: OscConfig = OscConfig()
    oscquery: OscQueryConfig = OscQueryConfig()
    output: OutputConfig = OutputConfig()
    input_dirs: list[Path] = Field(
        default_factory=lambda: [Path("~/Music")],
        description="folders /transfer may read input clips from",
    )
    concepts_dir: Path = Path("~/.local/share/dreamsampler/concepts")
    concepts_autoload: list[str] | Literal["*"] = Field(
        default_factory=list,
        description="concepts to load at start-up: a list of names (a bad one stops start-up) "
        "or '*' for every valid concept in concepts_dir (bad ones are logged and skipped)",
    )
    defaults: Defaults = Defaults()
    limits: Limits = Limits()
    live: LiveConfig = LiveConfig()

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> Config:
        if self.defaults.duration > self.limits.max_duration:
            raise ValueError(
                f"defaults.duration {self.defaults.duration} exceeds "
                f"limits.max_duration {self.limits.max_duration}"
            )
        if self.defaults.num_inference_steps > self.limits.max_steps:
            raise ValueError(
                f"defaults.num_inference_steps {self.defaults.num_inference_steps} exceeds "
                f"limits.max_steps {self.limits.max_steps}"
            )
        return self

    def expanded(self) -> Config:
        """A copy with ``~`` expanded in every path."""
        data = self.model_dump()
        data["output"]["dir"] = Path(data["output"]["dir"]).expanduser()
        data["input_dirs"] = [Path(p).expanduser() for p in data["input_dirs"]]
        data["concepts_dir"] = Path(data["concepts_dir"]).expanduser()
        live = data["live"]
        live["presets_dir"] = Path(live["presets_dir"]).expanduser()
        if live["midi_map"] is not None:
            live["midi_map"] = Path(live["midi_map"]).expanduser()
        return Config.model_validate(data)


def _format_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(root)"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {path}: {e['msg']}{shown}")
    return "\n".join(lines)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value`` (the value read as YAML) from the command line.

    Raises:
        ConfigError: the text has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. osc.port=9001")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(
    path: Path | None = None, overrides: dict[str, Any] | None = None
) -> Config:
    """Read and validate ``config.yaml``, then apply dotted-path overrides.

    Args:
        path: YAML file; ``None`` uses the built-in defaults.
        overrides: ``{"osc.port": 9001, "model.id": "tiny", ...}``; ``None`` values are skipped.

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown key or invalid value; the message
            names the file and every offending key path.
    """
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        data = loaded or {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, key, value)
            source = f"{source} (with overrides)" if "overrides" not in source else source
    try:
        return Config.model_validate(data).expanded()
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None
