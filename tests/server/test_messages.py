"""Typed OSC requests: one per contract command, decoded by exact address; patterns refused."""

from __future__ import annotations

import pytest

from dreamsampler.client import OscClient
from dreamsampler.server import messages as m
from dreamsampler.server.contract import COMMANDS, ContractError
from dreamsampler.server.delivery import GenerationParams
from tests.conftest import RunningServer


def test_every_command_has_a_typed_request() -> None:
    assert set(m.TYPES) == set(COMMANDS)


def test_decode_gives_typed_fields_and_generation_params() -> None:
    gen = m.decode("/gen", ["warm", "pad", "seed", 3.0, "steps", 4, "id", 9, "bars", 2])
    assert gen == m.Gen(prompt="warm pad", seed=3, num_inference_steps=4, job_id=9, bars=2)
    assert gen.params() == GenerationParams(prompt="warm pad", seed=3, num_inference_steps=4,
                                            bars=2)
    transfer = m.decode("/transfer", ["in.wav", "a", "b", "strength", 0.3])
    assert isinstance(transfer, m.Transfer)
    assert transfer.params() == GenerationParams(prompt="a b", input_path="in.wav", strength=0.3)
    assert m.decode("/param/negative", []) == m.Param("negative", "negative_prompt", "")
    assert m.decode("/param/steps", [8.0]) == m.Param("steps", "num_inference_steps", 8)
    assert m.decode("/jam", ["ON", "beat, drone"]) == m.Jam(True, ("beat", "drone"))
    assert m.decode("/play", [4]) == m.Play(4, None)
    with pytest.raises(ContractError, match="state must be 'on' or 'off'"):
        m.decode("/jam", ["maybe"])
    with pytest.raises(ContractError, match="missing"):
        m.decode("/cancel", [])


@pytest.mark.parametrize("address", ["/g?n", "/gen*", "/[ab]", "/{gen,status}",
                                     "/" + "*" * 40 + "!"])
def test_pattern_addresses_are_refused(address: str) -> None:
    assert m.is_pattern(address)
    with pytest.raises(m.PatternAddressError, match="pattern addresses are not supported"):
        m.decode(address, [])


def test_server_answers_pattern_and_unknown_addresses_at_once(server: RunningServer) -> None:
    """A pattern that would make a regex matcher backtrack for minutes is refused at once."""
    evil = "/" + "*" * 60 + "!"
    with OscClient("127.0.0.1", server.port) as c:
        reply = c.request(evil, timeout=10)[-1]  # no answer within 10 s raises
        assert (reply.address, *reply.args) == ("/fail", evil, "pattern addresses are not "
                                                "supported")
        reply = c.request("/g?n", "x", timeout=5)[-1]
        assert reply.args == ("/g?n", "pattern addresses are not supported")
        reply = c.request("/nope", timeout=5)[-1]
        assert reply.args == ("/nope", "unknown command /nope")
        assert c.request("/status", timeout=5)[-1].address == "/status.reply"
