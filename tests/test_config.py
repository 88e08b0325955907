"""config.yaml validation and command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamsampler.cli import build_parser
from dreamsampler.cli.common import config_from_args
from dreamsampler.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.model.id == "ucsd-reach/musicldm"
    assert config.osc.host == "127.0.0.1"
    assert config.output.dir == Path("~/Music/dreamsampler").expanduser()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("osc:\n  prot: 9000\n", "osc.prot: Extra inputs are not permitted"),
        ("osc:\n  port: 70000\n", "osc.port: Input should be less than or equal to 65535"),
        ("defaults:\n  strength: 2\n", "defaults.strength"),
        ("defaults:\n  scheduler: fast\n", "defaults.scheduler"),
        ("model: [1, 2]\n", "model: Input should be a valid dictionary"),
        ("defaults:\n  duration: 60\n", "exceeds limits.max_duration"),
        ("osc: {port: 1\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(Path("/nonexistent/config.yaml"))


def test_command_line_overrides(tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "serve", "--config", str(ROOT / "config.yaml"), "--model", "tiny", "--port", "9100",
        "--output-dir", str(tmp_path), "--input-dir", "/a", "--input-dir", "/b",
        "--steps", "8", "--set", "limits.queue_size=3", "--set", "osc.host=0.0.0.0",
    ])
    config = config_from_args(args)
    assert (config.model.id, config.osc.port, config.osc.host) == ("tiny", 9100, "0.0.0.0")
    assert config.output.dir == tmp_path and config.input_dirs == [Path("/a"), Path("/b")]
    assert config.defaults.num_inference_steps == 8 and config.limits.queue_size == 3


def test_bad_override_is_named() -> None:
    args = build_parser().parse_args(["serve", "--set", "limits.queue_size=many"])
    with pytest.raises(ConfigError, match=r"limits\.queue_size"):
        config_from_args(args)
    args = build_parser().parse_args(["serve", "--set", "nokey"])
    with pytest.raises(ConfigError, match=r"KEY\.PATH=VALUE"):
        config_from_args(args)


def test_live_options(tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "serve", "--midi-in", "Launchkey", "--midi-in", "virtual:ds", "--midi-map",
        str(tmp_path / "map.yaml"), "--audio-out", "system", "--tempo", "96", "--link",
        "--presets-dir", str(tmp_path), "--midi-backend", "rtmidi/UNIX_JACK",
    ])
    live = config_from_args(args).live
    assert live.midi_in == ["Launchkey", "virtual:ds"] and live.midi_map == tmp_path / "map.yaml"
    assert (live.audio_out, live.tempo, live.link) == ("system", 96.0, True)
    assert live.presets_dir == tmp_path and live.midi_backend == "rtmidi/UNIX_JACK"
    defaults = config_from_args(build_parser().parse_args(["serve"])).live
    assert (defaults.tempo, defaults.link, defaults.audio_out, defaults.midi_in) == (
        120.0, False, None, [])


@pytest.mark.parametrize("tempo", [0, 10000])
def test_bad_live_tempo(tempo: int) -> None:
    with pytest.raises(ConfigError, match=r"live\.tempo"):
        load_config(None, {"live.tempo": tempo})


def test_presets_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    from dreamsampler.cli import main

    assert main(["presets", "list", "--presets-dir", str(ROOT / "presets")]) == 0
    out = capsys.readouterr().out
    assert "drums:" in out and "lofi-drums-4bars  (4 bars" in out


def test_engine_kind_and_input_limit() -> None:
    config = load_config(ROOT / "config.yaml")
    assert (config.engine.kind, config.engine.watchdog_s) == ("local", 120.0)
    assert config.limits.max_input_mb == 256
    config = load_config(None, {"engine.kind": "process", "engine.watchdog_s": 5})
    assert (config.engine.kind, config.engine.watchdog_s) == ("process", 5.0)
    with pytest.raises(ConfigError, match=r"engine\.kind"):
        load_config(None, {"engine.kind": "cluster"})


def test_shipped_config_is_the_defaults() -> None:
    """One source of truth: config.yaml is generated from the pydantic models."""
    from dreamsampler.config import default_yaml

    assert (ROOT / "config.yaml").read_text(encoding="utf-8") == default_yaml(), (
        "config.yaml is stale: run python -m dreamsampler.config")
    shipped = load_config(ROOT / "config.yaml").model_dump()
    built_in = load_config(None).model_dump()
    # the one relative path resolves against the file's folder vs the user config folder
    assert shipped["live"].pop("presets_dir") == ROOT / "presets"
    built_in["live"].pop("presets_dir")
    assert shipped == built_in


def test_config_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dreamsampler.config import describe_source, find_config, user_config_dir

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert user_config_dir() == tmp_path / "xdg" / "dreamsampler"
    assert find_config(None) is None and "built-in defaults" in describe_source(None)
    user = user_config_dir() / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("osc:\n  port: 9100\nlive:\n  presets_dir: my-presets\n")
    assert find_config(None) == user
    args = build_parser().parse_args(["serve"])
    config = config_from_args(args)
    assert config.osc.port == 9100
    assert config.live.presets_dir == user.parent / "my-presets", "relative to the file"
    (work / "config.yaml").write_text("osc:\n  port: 9200\n")
    assert find_config(None) == work / "config.yaml"
    assert config_from_args(args).osc.port == 9200
    assert find_config(tmp_path / "x.yaml") == tmp_path / "x.yaml", "--config wins"
    # without a file, the default presets folder is in the user config folder, not the cwd
    (work / "config.yaml").unlink()
    user.unlink()
    assert config_from_args(args).live.presets_dir == user_config_dir() / "presets"
    # a relative path on the command line is relative to the working directory
    args = build_parser().parse_args(["serve", "--presets-dir", "here", "--output-dir", "out"])
    config = config_from_args(args)
    assert config.live.presets_dir == work / "here" and config.output.dir == work / "out"


def test_config_errors_are_messages(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_bytes(b"osc:\n  host: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 on line 2\)"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"override 'osc.port=\[': the value is not valid YAML"):
        config_from_args(build_parser().parse_args(["serve", "--set", "osc.port=["]))
    for key in ("output.dir", "live.presets_dir", "concepts_dir"):
        with pytest.raises(ConfigError, match=rf"{key}: Value error, an empty path"):
            config_from_args(build_parser().parse_args(["serve", "--set", f"{key}="]))
    with pytest.raises(ConfigError, match=r"defaults.guidance_scale"):
        load_config(None, {"defaults.guidance_scale": 1e30})


def test_serve_help_shows_defaults() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    text = " ".join(text.split()).replace("- ", "-")  # argparse may wrap after a hyphen
    for expected in ("OSC UDP port (default: 9000)", "(default: ucsd-reach/musicldm)",
                     "(default: auto)", "(default: ~/Music/dreamsampler)", "(default: 25)",
                     "(default: ddim)", "(default: 120.0)", "(default: off)",
                     "(default: float32)"):
        assert expected in text, expected


def test_config_command_writes_the_defaults(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from dreamsampler.cli import main
    from dreamsampler.config import default_yaml

    target = tmp_path / "c" / "config.yaml"
    assert main(["config", "--init", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == default_yaml()
    assert main(["config", "--init", str(target)]) == 1, "never overwrites without --force"
    assert main(["config", str(target)]) == 0
    assert capsys.readouterr().out.strip().endswith(str(target))


def test_engine_options() -> None:
    args = build_parser().parse_args([
        "serve", "--config", str(ROOT / "config.yaml"), "--engine", "ray", "--ray-address",
        "10.0.0.5:6379", "--replicas", "2", "--gpus-per-replica", "0.5",
        "--set", "engine.max_replicas=4",
    ])
    engine = config_from_args(args).engine
    assert (engine.kind, engine.ray_address, engine.replicas, engine.max_replicas,
            engine.gpus_per_replica) == ("ray", "10.0.0.5:6379", 2, 4, 0.5)
    assert load_config(ROOT / "config.yaml").engine.kind == "local"
    with pytest.raises(ConfigError, match="max_replicas 1 < replicas 2"):
        load_config(None, {"engine.replicas": 2, "engine.max_replicas": 1})


def test_engine_kind_picks_the_engine() -> None:
    """``engine.kind: ray`` builds a RayEngine with the settings (Ray itself starts later)."""
    from dreamsampler.engine.jobs import LocalEngine
    from dreamsampler.engine.ray_engine import RayEngine, RaySettings
    from dreamsampler.server.app import make_engine

    assert isinstance(make_engine(load_config(None, {"model.id": "tiny"})), LocalEngine)
    engine = make_engine(load_config(None, {
        "model.id": "tiny", "engine.kind": "ray", "engine.ray_address": "auto",
        "engine.replicas": 2, "engine.max_replicas": 3, "engine.gpus_per_replica": 0.5,
        "limits.queue_size": 5,
    }))
    assert isinstance(engine, RayEngine) and engine.queue_size == 5
    assert engine.settings == RaySettings(address="auto", min_replicas=2, max_replicas=3,
                                          gpus_per_replica=0.5)


def test_an_alias_bomb_or_huge_config_fails_fast(tmp_path: Path) -> None:
    """Issue 22: a nine-level alias bomb ran > 90 s and wrote 44.6 MB of error text."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than 100,000 YAML nodes") as info:
        load_config(bomb)
    assert len(str(info.value)) < 1000
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("osc: &x\n  allow: [*x]\n")
    with pytest.raises(ConfigError, match="recursive"):
        load_config(recursive)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(huge)
    ordinary = tmp_path / "ok.yaml"
    ordinary.write_text("defaults: &d {duration: 4.0}\nosc: {port: 9100}\n")
    config = load_config(ordinary)  # an ordinary anchor still loads
    assert (config.defaults.duration, config.osc.port) == (4.0, 9100)
