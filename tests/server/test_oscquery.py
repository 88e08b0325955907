"""OSCQuery discovery against the real server: the tree, HOST_INFO, live values, bad requests,
the serve flags and (on loopback) the zeroconf advertisement."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pythonosc.osc_message import OscMessage

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


#: state other than /param/* that OSCQuery serves as a live VALUE
READABLE = ("/tempo", "/jam")


def test_tree_lists_every_contract_address_with_its_types(server: RunningServer) -> None:
    status, tree = _get(server, "/")
    assert status == 200 and tree["FULL_PATH"] == "/"
    for address, message in COMMANDS.items():
        node = find(tree, address)
        assert node is not None, address
        assert node["FULL_PATH"] == address
        # every node is typed: a command without arguments as "N" (the proposal's method with no
        # value), so that hosts can bind it as a button
        assert node["TYPE"] == ("".join(a.type for a in message.args) or "N"), address
        assert len(node.get("RANGE", [])) == len(message.args)
        assert node["DESCRIPTION"].startswith(message.description)
        readable = address.startswith("/param/") or address in READABLE
        expected_access = 3 if readable else 2 if message.args else 0
        assert node["ACCESS"] == expected_access, address
        # readable nodes have a VALUE that their TYPE describes; others none (?VALUE: 204)
        if readable:
            python_types = {"i": int, "f": float, "s": str}
            assert [type(v) for v in node["VALUE"]] == [python_types[a.type]
                                                        for a in message.args], address
        else:
            assert "VALUE" not in node, address
        if message.args:  # UNIT from the contract, one per argument
            assert node["UNIT"] == [a.unit for a in message.args], address
        else:
            assert "RANGE" not in node and "UNIT" not in node, address
    assert tree["CONTENTS"]["param"]["CONTENTS"]["strength"]["RANGE"] == [{"MIN": 0, "MAX": 1}]
    assert "CONTENTS" in tree["CONTENTS"]["param"] and "TYPE" not in tree["CONTENTS"]["param"]
    # a node is also served on its own
    status, node = _get(server, "/param/strength")
    assert status == 200 and node["TYPE"] == "f" and node["VALUE"] == [0.5]


def test_ranges_follow_the_spec_and_the_server_limits(server: RunningServer) -> None:
    """RANGE: null when unbounded, MAX where the server enforces one, VALS for choices."""
    from dreamsampler.config import SCHEDULERS

    _, tree = _get(server, "/")
    limits = server.app.config.limits
    assert find(tree, "/gen")["RANGE"] == [None] and "VALUE" not in find(tree, "/gen")
    assert "option keys: " in find(tree, "/gen")["DESCRIPTION"], "the options are named"
    assert find(tree, "/param/prompt")["RANGE"] == [None]
    assert find(tree, "/param/steps")["RANGE"] == [{"MIN": 1, "MAX": limits.max_steps}]
    assert find(tree, "/param/duration")["RANGE"] == [{"MIN": 0.01,
                                                       "MAX": limits.max_duration}]
    assert find(tree, "/param/guidance")["RANGE"] == [{"MIN": 0, "MAX": 50}]
    assert find(tree, "/param/scheduler")["RANGE"] == [{"VALS": list(SCHEDULERS)}]
    assert find(tree, "/jam")["RANGE"] == [{"VALS": ["on", "off"]}, None]
    assert find(tree, "/jam")["VALUE"] == ["off", ""], "live state: jam is off"
    assert "VALUE" not in find(tree, "/cancel") and find(tree, "/tempo")["TYPE"] == "f"
    tempo = COMMANDS["/tempo"].args[0]
    assert find(tree, "/tempo")["RANGE"] == [{"MIN": tempo.minimum, "MAX": tempo.maximum}]
    assert (tempo.minimum, tempo.maximum) == (20, 999), "what the server enforces"
    assert find(tree, "/tempo")["UNIT"] == ["BPM"]
    # the limits are what the server enforces: one step more is refused over OSC
    with server.client() as c:
        reply = c.request("/gen", "x", "steps", limits.max_steps + 1)[-1]
        assert reply.address == "/fail" and "exceeds the limit" in reply.args[1], reply
        assert c.request("/param/guidance", 1e30)[-1].address == "/fail"
        assert c.request("/param/guidance", 50.0)[-1].address == "/done"


def test_python_oscquery_client_reads_the_tree(server: RunningServer) -> None:
    """An independent OSCQuery client (python-oscquery 0.4.0) parses the readable nodes, the
    commands without arguments and HOST_INFO. Its parser refuses a method node with ACCESS != 0
    and no VALUE, which the proposal gives a write-only command (?VALUE answers 204), so it
    cannot read the whole tree: that is python-oscquery's deviation; the plain HTTP checks above
    cover the write-only nodes."""
    pytest.importorskip("pythonoscquery")
    from pythonoscquery.osc_query_client import OSCQueryClient
    from pythonoscquery.shared.osc_access import OSCAccess
    from pythonoscquery.shared.osc_path_node import python_type_list_to_osc_type
    from zeroconf import ServiceInfo

    assert server.app.oscquery is not None
    info = ServiceInfo("_oscjson._tcp.local.", "dreamsampler._oscjson._tcp.local.",
                       port=server.app.oscquery.port, parsed_addresses=["127.0.0.1"])
    client = OSCQueryClient(info)
    params = client.query_node("/param")
    assert params is not None
    parsed = {node.full_path: node for node in params}
    for address in READABLE:
        node = client.query_node(address)
        assert node is not None
        parsed[address] = node
    for address, message in COMMANDS.items():
        tags = "".join(a.type for a in message.args)
        if not tags:
            node = client.query_node(address)
            assert node is not None and node.access is OSCAccess.NO_VALUE, address
            continue
        if address not in parsed:
            continue  # write-only: see the docstring
        node = parsed[address]
        assert python_type_list_to_osc_type(node.type or []) == tags, address
        assert node.access is OSCAccess.READWRITE_VALUE, address
    assert parsed["/param/seed"].value == [0] and parsed["/tempo"].value == [120.0]
    host = client.get_host_info()
    assert host is not None
    assert (host.osc_ip, host.osc_port, host.osc_transport) == ("127.0.0.1", server.port, "UDP")


def test_host_info(server: RunningServer) -> None:
    status, info = _get(server, "/?HOST_INFO")
    assert status == 200
    assert info["NAME"] == "dreamsampler" and info["OSC_TRANSPORT"] == "UDP"
    assert info["OSC_PORT"] == server.port and info["OSC_IP"] == "127.0.0.1"
    assert info["EXTENSIONS"]["VALUE"] is True and info["EXTENSIONS"]["LISTEN"] is True


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
                "/midi/learn": "s", "/stop": "N", "/midi/ports": "N", "/audio/devices": "N",
                "/concept/list": "N", "/concept/load": "s", "/trigger": "N", "/status": "N",
                "/version": "N"}
    for address, tags in expected.items():
        node = find(tree, address)
        assert node is not None and node.get("TYPE", "") == tags, (address, node)
    assert find(tree, "/play")["RANGE"][1] == {"MIN": 0}


def test_bad_requests_get_http_errors_not_crashes(server: RunningServer) -> None:
    assert _get(server, "/nope")[0] == 404
    assert _get(server, "/param/nope?VALUE")[0] == 404
    assert _get(server, "/status?VALUE") == (204, None), "a command without arguments"
    assert _get(server, "/gen?COLOR")[0] == 400, "not an attribute of the proposal"
    # 204 where the proposal says so: VALUE of a write-only node, attributes not served
    assert _get(server, "/gen?VALUE") == (204, None)
    assert _get(server, "/cancel?VALUE") == (204, None)
    for attribute in ("TAGS", "CLIPMODE", "CRITICAL", "EXTENDED_TYPE"):
        assert _get(server, f"/param/seed?{attribute}") == (204, None), attribute
    assert _get(server, "/param/duration?UNIT") == (200, {"UNIT": ["s"]})
    assert _get(server, "/stop?TYPE") == (200, {"TYPE": "N"})
    assert _raw(server, b"POST / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    # a request that is not HTTP: closed without an answer (websockets' parser), no crash
    assert _raw(server, b"\xff\xfe garbage\r\n\r\n") == b""
    assert _raw(server, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000 + b"\r\n").startswith(
        b"HTTP/1.1 431")  # Request Header Fields Too Large
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
            from dreamsampler.server.contract import REPLIES

            names = [a.name for a in REPLIES["/status.reply"].args]
            assert c.request("/status")[-1].args[names.index("oscquery_port")] == 0


def test_busy_oscquery_port_falls_back_to_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for server in run_server(make_config(tmp_path, **{"oscquery.port": port})):
            oscquery = server.app.oscquery
            assert oscquery is not None and oscquery.fallback_from == port
            assert oscquery.port not in (0, port)
            assert _get(server, "/?HOST_INFO")[1]["OSC_PORT"] == server.port
            with server.client() as c:  # /status reports the port actually served
                assert c.request("/status")[-1].args[11] == oscquery.port


def test_busy_osc_port_names_the_port_and_the_option(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"OSC port {port} on 127.0.0.1 .UDP. is already in use"
                                          r".*--port N, or --port 0"):
            for _ in run_server(make_config(tmp_path, **{"osc.port": port})):
                pass


def test_no_mdns_advertisement_on_loopback(tmp_path: Path) -> None:
    """OSC on 127.0.0.1 cannot be reached from another machine: advertising it would mislead."""
    config = make_config(tmp_path, **{"oscquery.zeroconf": True})
    for server in run_server(config):
        oscquery = server.app.oscquery
        assert oscquery is not None and not oscquery.advertised
        assert oscquery._register_task is None and oscquery._zeroconf is None
        assert oscquery.advertise_skipped is not None and "127.0.0.1" in oscquery.advertise_skipped


class _RecordingZeroconf:
    """Stands in for ``zeroconf.asyncio.AsyncZeroconf``: records the services registered
    instead of multicasting them (mDNS goes to 224.0.0.251, and test traffic here may only go to
    loopback)."""

    made: ClassVar[list[_RecordingZeroconf]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.services: list[Any] = []
        self.closed = False
        _RecordingZeroconf.made.append(self)

    async def async_register_service(self, info: Any, allow_name_change: bool = False) -> None:
        self.services.append(info)

    async def async_unregister_all_services(self) -> None:
        pass

    async def async_close(self) -> None:
        self.closed = True


def test_all_interfaces_advertise_the_host_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """OSC bound to 0.0.0.0: HOST_INFO and the mDNS services name an address of this machine a
    client can send to, never 0.0.0.0, and zeroconf listens on every interface.

    Nothing binds 0.0.0.0 and no mDNS packet is sent (test traffic here may only go to
    loopback): OSCQuery's HTTP side is served on 127.0.0.1 and told that OSC is on 0.0.0.0 (the
    OSC socket itself is not part of this), and zeroconf's sender is a recording stand-in
    (:class:`_RecordingZeroconf`); the services are zeroconf's own ``ServiceInfo`` objects."""
    import zeroconf.asyncio

    from dreamsampler.server.oscquery import OscQueryServer

    monkeypatch.setattr(zeroconf.asyncio, "AsyncZeroconf", _RecordingZeroconf)
    _RecordingZeroconf.made.clear()
    name = f"ds-test-{os.getpid()}"

    async def run() -> tuple[dict[str, Any], int, OscQueryServer]:
        oscquery = OscQueryServer(dict, "0.0.0.0", 40123, host="127.0.0.1", port=0, name=name,
                                  zeroconf=True)
        await oscquery.start()
        try:
            assert oscquery._register_task is not None  # await the registration, not a guess
            await asyncio.wait_for(oscquery._register_task, timeout=15)
            url = f"http://127.0.0.1:{oscquery.port}/?HOST_INFO"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
            return json.loads(body), oscquery.port, oscquery
        finally:
            await oscquery.close()

    info, http_port, oscquery = asyncio.run(run())
    address = info["OSC_IP"]
    assert address != "0.0.0.0" and info["OSC_PORT"] == 40123
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))  # succeeds only for an address of this machine (nothing is sent)
    assert oscquery.advertised
    (zc,) = _RecordingZeroconf.made
    assert "interfaces" not in zc.kwargs, "all interfaces: zeroconf on every interface"
    assert zc.closed, "closed with the server"
    registered = {i.type: (i.name, i.port, i.parsed_addresses()) for i in zc.services}
    assert registered == {
        "_oscjson._tcp.local.": (f"{name}._oscjson._tcp.local.", http_port, [address]),
        "_osc._udp.local.": (f"{name}._osc._udp.local.", 40123, [address]),
    }


def test_idle_connections_cannot_take_osc_down(tmp_path: Path) -> None:
    """Issue 12 item 2: idle TCP connections to the OSCQuery port under a low open-file limit
    (soft = hard = 256, so the server cannot raise it) used to exhaust the descriptors; accept
    failed, logging that error raised, and OSC died. Now at most MAX_CONNECTIONS are held."""
    import resource
    import signal
    import subprocess
    import sys

    from dreamsampler.server.oscquery import MAX_CONNECTIONS

    limit = 256
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        osc_port, http_port = u.getsockname()[1], t.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dreamsampler", "serve", "--model", "tiny", "--device", "cpu",
         "--port", str(osc_port), "--oscquery-port", str(http_port), "--no-zeroconf",
         "--output-dir", str(tmp_path / "out"), "--presets-dir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
    )
    idle: list[socket.socket] = []
    try:
        with OscClient("127.0.0.1", osc_port) as c:
            deadline = time.monotonic() + 90
            while c.receive(0.5) is None:
                assert proc.poll() is None and time.monotonic() < deadline
                c.send("/version")
            for _ in range(limit + 150):  # bounded: more than the server has descriptors
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect(("127.0.0.1", http_port))
                    s.sendall(b"GET / HT")  # a request that never ends
                    idle.append(s)
                except OSError:
                    s.close()
            assert len(idle) > MAX_CONNECTIONS
            assert c.request("/status", timeout=10)[-1].address == "/status.reply"
            assert c.request("/version", timeout=10)[-1].address == "/version.reply"
        for s in idle:
            s.close()
        idle.clear()
        # OSCQuery serves again once the server has seen the idle connections close (503 "too
        # many connections" until then)
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/?HOST_INFO",
                                            timeout=10) as response:
                    assert json.loads(response.read())["OSC_PORT"] == osc_port
                    break
            except urllib.error.HTTPError as exc:
                assert exc.code == 503 and time.monotonic() < deadline
                time.sleep(0.2)
        assert proc.poll() is None
    finally:
        for s in idle:
            s.close()
        proc.send_signal(signal.SIGINT)
        try:
            output = proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output


def test_one_address_holding_slow_connections_cannot_starve_another(
        server: RunningServer) -> None:
    """Issue 22: 40 one-byte connections (refreshed within the request timeout) from one host
    made every other client's GET a 503. The other host here is 127.0.0.2 (all of 127/8 is
    loopback on Linux), so the test stays on this machine."""
    from dreamsampler.server.oscquery import MAX_CONNECTIONS, MAX_PER_ADDRESS

    port = server.app.oscquery.port
    held: list[socket.socket] = []
    try:
        for _ in range(MAX_CONNECTIONS + 8):  # bounded
            s = socket.socket()
            s.settimeout(5)
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", port))
            s.sendall(b"G")  # a request that never ends
            held.append(s)
        refused = 0
        for s in held[MAX_PER_ADDRESS:MAX_PER_ADDRESS + 4]:  # beyond its share: 503 at once
            refused += b" 503 " in s.recv(4096)
        assert refused == 4
        status, body = _get(server, "/?HOST_INFO")
        assert status == 200 and body["OSC_PORT"] == server.port
    finally:
        for s in held:
            s.close()


def test_tempo_value_is_live(server: RunningServer, client: OscClient) -> None:
    assert _get(server, "/tempo?VALUE") == (200, {"VALUE": [120.0]})
    assert client.request("/tempo", 140.0)[-1].address == "/done"
    assert _get(server, "/tempo?VALUE") == (200, {"VALUE": [140.0]})


def _listen(server: RunningServer, path: str, change: Any,
            timeout: float = 10.0) -> list[OscMessage]:
    """A plain ``websockets`` client: LISTEN to ``path``, run ``change()``, return the binary
    OSC messages received until the first one for ``path`` (then IGNORE it)."""
    from websockets.sync.client import connect

    oscquery = server.app.oscquery
    assert oscquery is not None
    received: list[OscMessage] = []
    with connect(f"ws://127.0.0.1:{oscquery.port}/", open_timeout=timeout) as ws:
        server.call(_clear(oscquery.listened))
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": path}))
        server.call(asyncio.wait_for(oscquery.listened.wait(), timeout))  # LISTEN handled
        change()
        while True:
            frame = ws.recv(timeout=timeout)
            assert isinstance(frame, bytes), frame  # value updates are binary OSC
            received.append(OscMessage(frame))
            if received[-1].address == path:
                ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": path}))
                return received


def test_listen_streams_a_seed_change_made_over_midi(tmp_path: Path) -> None:
    """LISTEN over a WebSocket on the OSCQuery port: a /param/seed change made by the MIDI edge
    (a real mido control change through a CC mapped to seed) arrives as a binary OSC message."""
    for server in run_server(make_config(tmp_path)):
        seed = PARAMS["seed"]
        received = _listen(server, "/param/seed", functools.partial(_turn_the_knob, server))
        update = received[-1]
        assert update.address == "/param/seed" and len(update.params) == 1
        value = update.params[0]
        assert isinstance(value, int) and value == server.app.service.session.seed != 0
        assert seed.type == "i"
        assert _get(server, "/param/seed?VALUE") == (200, {"VALUE": [value]})



def _turn_the_knob(server: RunningServer) -> None:
    """A real mido control change through the MIDI edge, with CC 7 mapped to seed (handled on
    the loop thread, as MIDI input is)."""
    import mido

    from dreamsampler.server.midi_map import CCMapping, MidiMap, MidiMapper

    async def send() -> None:
        midi = server.app.midi
        midi.mapper = MidiMapper(MidiMap(ccs=[CCMapping(cc=7, param="seed", min=0, max=127)]))
        midi.handle_midi("test", mido.Message("control_change", channel=0, control=7, value=64))

    server.call(send())


async def _clear(event: asyncio.Event) -> None:
    event.clear()


def test_listen_streams_tempo_set_over_osc_typed_as_the_contract(server: RunningServer,
                                                                 client: OscClient) -> None:
    received = _listen(server, "/tempo", functools.partial(client.request, "/tempo", 133.0))
    assert received[-1].address == "/tempo" and received[-1].params == [133.0]
    assert OscMessage(received[-1].dgram).dgram[8:12] == b",f\x00\x00", "a float, as in TYPE"
