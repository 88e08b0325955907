"""Server configuration: ``config.yaml`` validated with pydantic, plus command-line overrides.

A wrong key or value stops start-up with a :class:`ConfigError` that names the key's dotted path and
what was expected, e.g. ``osc.port: Input should be less than or equal to 65535 (got 70000)``.

Which file (:func:`find_config`): ``--config PATH``, else ``./config.yaml``, else
``config.yaml`` in the user config folder (platformdirs: ``~/.config/dreamsampler`` on Linux,
``~/Library/Application Support/dreamsampler`` on macOS), else the built-in defaults. A relative
path in a file is relative to that file's folder; without a file, to the user config folder (so
``live.presets_dir: presets`` never depends on the working directory); a relative path given on the
command line is relative to the working directory, as a shell user expects.

The models below are the single source of truth for defaults: the shipped ``config.yaml`` is
generated from them (:func:`default_yaml`; ``python -m dreamsampler.config`` rewrites it) and a
test checks that they agree.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from dreamsampler import schema
from dreamsampler.engine.catalog import tiny_choices

SCHEDULERS = schema.SCHEDULER_NAMES
APP_NAME = "dreamsampler"
CONFIG_NAME = "config.yaml"


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names the key path."""


def _non_empty_path(value: Any) -> Any:
    if isinstance(value, str | Path) and not str(value).strip():
        raise ValueError("an empty path is not allowed (it would mean the working directory)")
    return value


#: a path that may not be empty (``--set output.dir=`` used to write into the working directory)
FolderPath = Annotated[Path, BeforeValidator(_non_empty_path)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which diffusion model to load and where to run it."""

    id: str = Field(
        "ucsd-reach/musicldm",
        description="Hugging Face repo id or local directory; a tiny random-weight build "
        f"({tiny_choices()}) runs offline as a test fixture (it produces noise).",
    )
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="the denoiser's dtype: float32, float16 or bfloat16 (half "
        "precision pays on a GPU; on a CPU it runs, slower); text encoders, VAE and vocoder "
        "stay float32 (docs/performance.md)")


class StemsConfig(_Section):
    """The stems stage: source separation with Demucs (/separate, the stems option)."""

    model: str = Field(
        "htdemucs", description="Demucs model: a pretrained name (htdemucs, htdemucs_ft, "
        "htdemucs_6s; from the Hugging Face cache), a local folder of Demucs .th/.yaml files, "
        "NAME@FOLDER, or 'tiny' (random weights, for tests)")
    preload: bool = Field(False, description="load the stems model at start instead of on the "
                          "first job that needs it")


class EngineConfig(_Section):
    """Where the model runs: a worker thread, a supervised child process (docs/engine.md) or
    Ray Serve replicas (docs/ray.md)."""

    kind: Literal["local", "process", "ray"] = Field(
        "local", description="'local': a worker thread of the server process; 'process': a "
        "supervised child process, replaced after a crash, a wedge or a device error; 'ray': Ray "
        "Serve replicas (needs dreamsampler[ray])"
    )
    watchdog_s: float | None = Field(
        120.0, gt=0.0, description="process engine: seconds a job may go without a denoising "
        "step (or its start/end) before the engine process counts as wedged; null = never"
    )
    compile: bool = Field(
        False, description="local engine: torch.compile the denoiser (the first job of each "
        "new shape pays minutes of compilation; then faster steps on a GPU)"
    )
    max_batch: int = Field(
        8, ge=1, le=64, description="local engine: most takes one batched call runs; jobs "
        "queued right behind each other with the same shape (all but prompt, negative prompt, "
        "seed, count) join a batch up to this many takes, never waiting for more (1 = one job "
        "per call; a job's own count always runs as one batch). See docs/engine.md"
    )

    ray_address: str | None = Field(
        None, description="Ray cluster: 'auto' or HOST:PORT of its head; null starts a local "
        "Ray instance on 127.0.0.1"
    )
    replicas: int = Field(1, ge=1, description="model replicas (the minimum when autoscaling)")
    max_replicas: int | None = Field(
        None, ge=1, description="autoscale up to this many replicas on queue length; null = fixed"
    )
    gpus_per_replica: float = Field(0.0, ge=0.0, description="GPUs per replica (0.5 shares one)")
    cpus_per_replica: float = Field(1.0, ge=0.0, description="CPUs per replica")
    concepts_per_replica: int = Field(4, ge=1, description="concepts a replica keeps loaded (LRU)")

    @model_validator(mode="after")
    def _replica_range(self) -> EngineConfig:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas {self.max_replicas} < replicas {self.replicas}")
        return self


class OscConfig(_Section):
    """OSC/UDP endpoint of the server."""

    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 accepts control "
                      "surfaces on the network (and advertises the server over mDNS)")
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

    dir: FolderPath = Field(Path("~/Music/dreamsampler"),
                            description="the folder your DAW watches")
    subtype: Literal["PCM_24", "FLOAT", "PCM_16"] = Field(
        "PCM_24", description="WAV sample format: 24-bit PCM, 32-bit float or 16-bit PCM."
    )
    sample_rate: Annotated[int, Field(ge=8000, le=192000)] | Literal["native"] | None = Field(
        44100,
        description="Hz the WAV is written at (resampled with soxr, bar lengths exact at this "
        "rate); \"native\" (or null) keeps the model's sample rate (16000 for AudioLDM/MusicLDM).",
    )


def defaults_model(params: Sequence[schema.Param] | None = None) -> type[_Section]:
    """The ``defaults`` section for ``params`` (default: the schema's): one key per
    :data:`~dreamsampler.schema.CONFIG` parameter, typed, ranged and described there."""
    fields: dict[str, Any] = {}
    for p in schema.taken_by(schema.CONFIG, params):
        kind: Any = Literal[p.choices] if p.choices else p.python_type()
        fields[p.name] = (kind, Field(p.default, ge=p.minimum, le=p.maximum,
                                      description=p.description))
    model = create_model("Defaults", __base__=_Section, **fields)
    model.__doc__ = "Session defaults for requests that do not name a value."
    return model


Defaults = defaults_model()


class Limits(_Section):
    """Bounds that protect a live session from requests it cannot serve in time."""

    max_duration: float = Field(30.0, gt=0.0, le=600.0, description="seconds (at most 600)")
    max_steps: int = Field(200, ge=1, le=1000, description="at most 1000")
    queue_size: int = Field(16, ge=1, description="jobs waiting at most; more get /fail")
    max_input_mb: float = Field(
        256.0, gt=0.0, description="largest /transfer input file, MiB; larger ones get /fail"
    )
    max_presets: int = Field(
        1000, ge=1, description="presets /preset/save may bring the library to; more get /fail"
    )


class LiveConfig(_Section):
    """Live performance: tempo, presets, MIDI input and mapping, audio output, Ableton Link."""

    tempo: float = Field(120.0, gt=20.0, le=999.0, description="session tempo, BPM")
    beats_per_bar: int = Field(4, ge=1, le=32, description="beats (quarter notes) per bar")
    presets_dir: FolderPath = Field(
        Path("presets"), description="folder of preset YAML files and midi_map.yaml (relative: "
        "to the config file's folder, or to the user config folder when there is no file)"
    )
    midi_in: list[str] = Field(
        default_factory=list,
        description="MIDI input ports: exact names, substrings, or 'virtual:NAME' to create one",
    )
    midi_backend: str | None = Field(
        None, description="mido backend, e.g. 'rtmidi/UNIX_JACK'; null = mido's default"
    )
    midi_map: FolderPath | None = Field(
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
    stems: StemsConfig = StemsConfig()
    engine: EngineConfig = EngineConfig()
    osc: OscConfig = OscConfig()
    oscquery: OscQueryConfig = OscQueryConfig()
    output: OutputConfig = OutputConfig()
    input_dirs: list[FolderPath] = Field(
        default_factory=lambda: [Path("~/Music")],
        description="folders /transfer may read input clips from",
    )
    concepts_dir: FolderPath = Field(Path("~/.local/share/dreamsampler/concepts"),
                                     description="folder of trained concepts")
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

    def expanded(self, base: Path | None = None, cwd_keys: frozenset[str] = frozenset()) -> Config:
        """A copy with ``~`` expanded in every path, and relative paths made absolute.

        Args:
            base: folder relative paths are resolved against (the config file's folder, or the
                user config folder); ``None`` leaves them relative.
            cwd_keys: dotted keys (see :data:`PATH_KEYS`) that came from the command line: their
                relative paths are resolved against the working directory instead.
        """
        data = self.model_dump()

        def resolve(key: str, value: Any) -> Path:
            path = Path(value).expanduser()
            if path.is_absolute():
                return path
            if key in cwd_keys:
                return Path.cwd() / path
            return base / path if base is not None else path

        data["output"]["dir"] = resolve("output.dir", data["output"]["dir"])
        data["input_dirs"] = [resolve("input_dirs", p) for p in data["input_dirs"]]
        data["concepts_dir"] = resolve("concepts_dir", data["concepts_dir"])
        live = data["live"]
        live["presets_dir"] = resolve("live.presets_dir", live["presets_dir"])
        if live["midi_map"] is not None:
            live["midi_map"] = resolve("live.midi_map", live["midi_map"])
        return Config.model_validate(data)


#: the dotted keys that hold paths (resolved by :meth:`Config.expanded`)
PATH_KEYS = frozenset({"output.dir", "input_dirs", "concepts_dir", "live.presets_dir",
                       "live.midi_map"})


def user_config_dir() -> Path:
    """The user config folder (platformdirs), e.g. ``~/.config/dreamsampler`` on Linux."""
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME))


def find_config(explicit: Path | None = None) -> Path | None:
    """The config file in effect: ``explicit``, else ``./config.yaml``, else
    ``<user config folder>/config.yaml``, else ``None`` (built-in defaults)."""
    if explicit is not None:
        return explicit
    for candidate in (Path.cwd() / CONFIG_NAME, user_config_dir() / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def describe_source(path: Path | None) -> str:
    """For the start-up log: which file is in effect, or where one would be looked for."""
    if path is not None:
        return str(path.resolve())
    return (f"built-in defaults (no ./{CONFIG_NAME} or {user_config_dir() / CONFIG_NAME}; "
            "'dreamsampler config --init' writes one)")


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
        ConfigError: the text has no ``=``, an empty key, or a value that is not valid YAML.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. osc.port=9001")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({problem}); quote "
                          f"it, e.g. --set '{key.strip()}=\"...\"'") from None


MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read, bytes."""
MAX_CONFIG_NODES = 100_000
"""Most YAML nodes a config may expand to, aliases counted at each use (an alias bomb — anchors
that reference anchors — expands exponentially from a few lines)."""


def bounded_yaml(text: str, source: str, max_bytes: int = MAX_CONFIG_BYTES,
                 max_nodes: int = MAX_CONFIG_NODES) -> Any:
    """``yaml.safe_load`` of ``text``, refused before it is built when it is over ``max_bytes``
    or would expand to more than ``max_nodes`` nodes (the expanded size is counted on the
    composed graph, where an alias is one shared node, so the count itself stays cheap).

    Raises:
        ConfigError: too large, an alias bomb, a recursive alias, nested too deep, bad YAML.
    """
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ConfigError(f"{source}: larger than {max_bytes:,} bytes; not a config file")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def size(n: yaml.Node) -> int:
            key = id(n)
            if key in sizes:
                if sizes[key] < 0:
                    raise ConfigError(f"{source}: a recursive YAML alias")
                return sizes[key]
            sizes[key] = -1
            total = 1
            if isinstance(n, yaml.SequenceNode):
                total += sum(size(c) for c in n.value)
            elif isinstance(n, yaml.MappingNode):
                total += sum(size(k) + size(v) for k, v in n.value)
            if total > max_nodes:
                raise ConfigError(f"{source}: expands to more than {max_nodes:,} YAML nodes "
                                  "(aliases counted at each use); refused")
            sizes[key] = total
            return total

        size(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_cut(str(exc), 500)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deep") from None
    finally:
        loader.dispose()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_config(
    path: Path | None = None, overrides: dict[str, Any] | None = None
) -> Config:
    """Read and validate ``config.yaml``, then apply dotted-path overrides.

    Args:
        path: YAML file; ``None`` uses the built-in defaults (see :func:`find_config` for the
            search the command line does).
        overrides: ``{"osc.port": 9001, "model.id": "tiny", ...}``; ``None`` values are skipped.
            Relative paths among them are relative to the working directory.

    Raises:
        ConfigError: unreadable file, not UTF-8, YAML syntax error, unknown key or invalid value;
            the message names the file and every offending key path.
    """
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            line = exc.object[:exc.start].count(b"\n") + 1
            raise ConfigError(f"{source}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on "
                              f"line {line}); save the file as UTF-8") from None
        loaded = bounded_yaml(text, source)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        data = loaded or {}
    cwd_keys = set()
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, key, value)
            cwd_keys.add(key)
            source = f"{source} (with overrides)" if "overrides" not in source else source
    base = Path(path).resolve().parent if path is not None else user_config_dir()
    try:
        return Config.model_validate(data).expanded(base, frozenset(cwd_keys & PATH_KEYS))
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


# -- the shipped config.yaml, generated from the models above ------------------------------------

_HEADER = f"""\
# dreamsampler configuration: every key with its built-in default. Every key is optional (delete
# what you do not change); unknown keys stop start-up with their path. Looked for as --config PATH,
# else ./{CONFIG_NAME}, else {CONFIG_NAME} in the user config folder (~/.config/dreamsampler on
# Linux). Relative paths are relative to this file's folder. Every setting can be overridden on the
# command line: named options (--model, --port, ...) or --set KEY.PATH=VALUE.
# Generated from dreamsampler/config.py (python -m dreamsampler.config rewrites it)."""


def _yaml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list):
        value = [str(v) if isinstance(v, Path) else v for v in value]
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _render(model: type[BaseModel], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            # the docstring's first paragraph, whole (not cut after its first line)
            doc = " ".join((type(default).__doc__ or "").strip().split("\n\n")[0].split())
            out.append("")
            out += textwrap.wrap(doc, width=100 - indent, initial_indent=pad + "# ",
                                 subsequent_indent=pad + "# ")
            out.append(f"{pad}{name}:")
            _render(type(default), indent + 2, out)
            continue
        if indent == 0:
            out.append("")
        if field.description:
            out += textwrap.wrap(field.description, width=100 - indent, initial_indent=pad + "# ",
                                 subsequent_indent=pad + "# ")
        out.append(f"{pad}{name}: {_yaml_value(default)}")


def default_yaml() -> str:
    """``config.yaml`` with every key at its built-in default, commented from the field
    descriptions (the shipped file is this text)."""
    out = [_HEADER]
    _render(Config, 0, out)
    return "\n".join(out) + "\n"


def write_default_config(path: Path) -> None:
    """Write :func:`default_yaml` to ``path`` (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(default_yaml(), encoding="utf-8")


if __name__ == "__main__":
    write_default_config(Path(__file__).resolve().parents[1] / CONFIG_NAME)
