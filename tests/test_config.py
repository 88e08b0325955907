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
        load_config(None, {"engine.kind": "ray"})
