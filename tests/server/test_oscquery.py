"""OSCQuery discovery against the real server: the tree, HOST_INFO, live values, bad requests,
the serve flags and (on loopback) the zeroconf advertisement."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from dreamsampler.client import OscClient
from dreamsampler.server.contract import COMMANDS, PARAMS, REPLIES
from dreamsampler.server.oscquery import find
from tests.conftest import RunningServer, make_config, run_server


def _get(server: RunningServer, target: str) -> tuple[int, Any]:
    assert server.app.oscquery is not None
    url = f"http://127.0.0.1:{server.app.oscquery.port}{target}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _raw(server: RunningServer, request: bytes) -> bytes:
    assert server.app.oscquery is not None
    with socket.create_connection(("127.0.0.1", server.app.oscquery.port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_tree_lists_every_contract_address_with_its_types(server: RunningServer) -> None:
    status, tree = _get(server, "/")
    assert status == 200 and tree["FULL_PATH"] == "/"
    for address, message in COMMANDS.items():
        node = find(tree, address)
        assert node is not None, address
        assert node["FULL_PATH"] == address
        assert node.get("TYPE", "") == "".join(a.type for a in message.args), address
        assert len(node.get("RANGE", [])) == len(message.args)
        assert node["DESCRIPTION"].startswith(message.description)
        assert node["ACCESS"] == (3 if address.startswith("/param/") else 2)
    assert tree["CONTENTS"]["param"]["CONTENTS"]["strength"]["RANGE"] == [{"MIN": 0, "MAX": 1}]
    assert "CONTENTS" in tree["CONTENTS"]["param"] and "TYPE" not in tree["CONTENTS"]["param"]
    # a node is also served on its own
    status, node = _get(server, "/param/strength")
    assert status == 200 and node["TYPE"] == "f" and node["VALUE"] == [0.5]


def test_host_info(server: RunningServer) -> None:
    status, info = _get(server, "/?HOST_INFO")
    assert status == 200
    assert info["NAME"] == "dreamsampler" and info["OSC_TRANSPORT"] == "UDP"
    assert info["OSC_PORT"] == server.port and info["OSC_IP"] == "127.0.0.1"
    assert info["EXTENSIONS"]["VALUE"] is True and info["EXTENSIONS"]["LISTEN"] is False


def test_values_set_over_osc_are_visible(server: RunningServer, client: OscClient) -> None:
    assert _get(server, "/param/seed?VALUE") == (200, {"VALUE": [0]})
    client.request("/param/seed", 7)
    assert _get(server, "/param/seed?VALUE") == (200, {"VALUE": [7]})
    client.request("/param/prompt", "glassy", "pad")  # Max/Pd-style atoms
    assert _get(server, "/param/prompt?VALUE") == (200, {"VALUE": ["glassy pad"]})
    client.request("/param/guidance", 4.0)  # Pd-style float; guidance is a float anyway
    _, tree = _get(server, "/")
    values = {f"/param/{n}": find(tree, f"/param/{n}")["VALUE"][0] for n in PARAMS}
    assert values["/param/guidance"] == 4.0 and values["/param/seed"] == 7


def test_concept_lora_and_bars_params_are_readable(server: RunningServer,
                                                   client: OscClient) -> None:
    for name, tags in (("concept", "s"), ("lora_scale", "f"), ("bars", "i")):
        status, node = _get(server, f"/param/{name}")
        assert status == 200 and node["TYPE"] == tags and node["ACCESS"] == 3, node
    assert _get(server, "/param/bars")[1]["RANGE"] == [{"MIN": 0, "MAX": 256}]
    assert _get(server, "/param/lora_scale")[1]["RANGE"] == [{"MIN": -2, "MAX": 2}]
    assert _get(server, "/param/concept?VALUE") == (200, {"VALUE": [""]})
    assert _get(server, "/param/lora_scale?VALUE") == (200, {"VALUE": [1.0]})
    assert _get(server, "/param/bars?VALUE") == (200, {"VALUE": [0]})
    client.request("/param/bars", 4.0)  # Pd-style float
    client.request("/param/lora_scale", 0.5)
    assert client.request("/param/concept", "not-loaded")[-1].address == "/fail"
    assert _get(server, "/param/bars?VALUE") == (200, {"VALUE": [4]})
    assert _get(server, "/param/lora_scale?VALUE") == (200, {"VALUE": [0.5]})
    assert _get(server, "/param/concept?VALUE") == (200, {"VALUE": [""]}), "refused: unchanged"


def test_live_and_device_commands_are_listed(server: RunningServer) -> None:
    _, tree = _get(server, "/")
    expected = {"/play": "if", "/jam": "ss", "/tempo": "f", "/preset/trigger": "s",
                "/midi/learn": "s", "/stop": "", "/midi/ports": "", "/audio/devices": "",
                "/concept/list": "", "/concept/load": "s"}
    for address, tags in expected.items():
        node = find(tree, address)
        assert node is not None and node.get("TYPE", "") == tags, (address, node)
    assert find(tree, "/play")["RANGE"][1] == {"MIN": 0}


def test_bad_requests_get_http_errors_not_crashes(server: RunningServer) -> None:
    assert _get(server, "/nope")[0] == 404
    assert _get(server, "/param/nope?VALUE")[0] == 404
    assert _get(server, "/gen?VALUE") == (204, None), "a command has no value"
    assert _get(server, "/gen?COLOR")[0] == 400
    assert _raw(server, b"POST / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert _raw(server, b"\xff\xfe garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _raw(server, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n").startswith(
        b"HTTP/1.1 400")
    head = _raw(server, b"HEAD /param/seed HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    # half-open connection: closed by the server's timeout, meanwhile others are served
    with socket.create_connection(("127.0.0.1", server.app.oscquery.port), timeout=5) as idle:
        idle.sendall(b"GET / HT")
        assert _get(server, "/?HOST_INFO")[0] == 200
    with server.client() as c:
        assert c.request("/status", timeout=5)[-1].address == "/status.reply"


def test_status_reply_reports_discovery_and_output(server: RunningServer,
                                                   client: OscClient) -> None:
    reply = client.request("/status")[-1]
    names = [a.name for a in REPLIES["/status.reply"].args]
    fields = dict(zip(names, reply.args, strict=True))
    assert fields["device"] == "cpu" and fields["output_dir"] == str(server.output_dir)
    assert fields["output_writable"] == 1
    assert fields["oscquery_port"] == server.app.oscquery.port > 0


def test_serve_flags_map_to_config() -> None:
    from dreamsampler.cli import build_parser
    from dreamsampler.cli.common import config_from_args

    args = build_parser().parse_args(["serve", "--oscquery-port", "0", "--no-zeroconf"])
    config = config_from_args(args)
    assert (config.oscquery.port, config.oscquery.zeroconf, config.oscquery.enabled) == (
        0, False, True)
    config = config_from_args(build_parser().parse_args(["serve", "--no-oscquery"]))
    assert config.oscquery.enabled is False
    assert config_from_args(build_parser().parse_args(["serve"])).oscquery.port == 9002


def test_oscquery_can_be_disabled(tmp_path: Path) -> None:
    for server in run_server(make_config(tmp_path, **{"oscquery.enabled": False})):
        assert server.app.oscquery is None
        with server.client() as c:
            assert c.request("/status")[-1].args[-1] == 0


def test_busy_oscquery_port_fails_start_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"OSCQuery port {port}"):
            for _ in run_server(make_config(tmp_path, **{"oscquery.port": port})):
                pass


def test_zeroconf_advertises_both_services_on_loopback(tmp_path: Path) -> None:
    from zeroconf.asyncio import AsyncZeroconf

    config = make_config(tmp_path, **{"oscquery.zeroconf": True, "oscquery.name": "ds-test"})
    for server in run_server(config):
        oscquery = server.app.oscquery
        assert oscquery is not None
        register = oscquery._register_task  # await the registration, not a guess
        if register is not None:
            server.call(asyncio.wait({register}, timeout=15), timeout=20)
        assert oscquery.advertised, "mDNS registration did not complete on loopback"

        async def lookup() -> list[tuple[int, list[str]] | None]:
            zc = AsyncZeroconf(interfaces=["127.0.0.1"])
            found = []
            for kind in ("_oscjson._tcp.local.", "_osc._udp.local."):
                info = await zc.async_get_service_info(kind, f"ds-test.{kind}", timeout=3000)
                found.append(info and (info.port, info.parsed_addresses()))
            await zc.async_close()
            return found

        found = asyncio.run(lookup())
        assert found == [(oscquery.port, ["127.0.0.1"]), (server.port, ["127.0.0.1"])]
