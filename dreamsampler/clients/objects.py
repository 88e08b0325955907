"""Inlet and outlet counts of the Max and Pd objects the generators use.

The generators check every connection against these tables as they build a patch, and the tests
check the written files against them again. The Pd table was measured on Pd 0.53 (connections
beyond these counts fail to load: ``connection failed``); the Max table is from the Max 8/9
reference pages and is only checked here, since Max does not run on these machines. An object not
in a table is an error: add it here (with its counts) before a generator may use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Counts = tuple[int, int]


def _args(text: str) -> list[str]:
    return text.split()[1:]


def _n(text: str, minimum: int = 1) -> int:
    return max(len(_args(text)), minimum)


# -- Max -------------------------------------------------------------------------------------------

#: maxclass of UI boxes → (inlets, outlets)
MAX_UI: dict[str, Counts] = {
    "message": (2, 1),
    "comment": (1, 0),
    "textedit": (1, 4),
    "textbutton": (1, 3),
    "button": (1, 1),
    "toggle": (1, 1),
    "number": (1, 2),
    "flonum": (1, 2),
    "slider": (1, 1),
    "umenu": (1, 3),
    "dropfile": (1, 2),
    "waveform~": (5, 6),
    "live.text": (1, 2),
    "live.numbox": (1, 2),
    "live.dial": (1, 2),
    "live.menu": (1, 3),
    "live.drop": (1, 2),
    "ezdac~": (2, 0),
}


def _max_route(text: str) -> Counts:
    return 2, _n(text) + 1


def _max_gate(text: str) -> Counts:
    args = _args(text)
    return 2, int(args[0]) if args else 1


#: first word of a ``newobj`` box → (inlets, outlets), possibly depending on the arguments
MAX_OBJECTS: dict[str, Counts | Callable[[str], Counts]] = {
    "udpsend": (1, 0),
    "udpreceive": (1, 1),
    "loadbang": (1, 1),
    "loadmess": (1, 1),
    "deferlow": (1, 1),
    "defer": (1, 1),
    "route": _max_route,
    "t": lambda text: (1, _n(text)),
    "trigger": lambda text: (1, _n(text)),
    "pak": lambda text: (_n(text, 2), 1),
    "pack": lambda text: (_n(text, 2), 1),
    "unpack": lambda text: (1, _n(text, 2)),
    "prepend": (1, 1),
    "append": (1, 1),
    "zl": (2, 2),
    "gate": _max_gate,
    "random": (2, 1),
    "==": (2, 1),
    "*": (2, 1),
    # one argument: a right inlet sets it; more: none
    "sel": lambda text: (2, 2) if len(_args(text)) <= 1 else (1, _n(text) + 1),
    "conformpath": (1, 2),
    "buffer~": (1, 2),
    # [play~ buffer N]: N signal outlets plus a bang at the end
    "play~": lambda text: (1, (int(_args(text)[1]) if len(_args(text)) > 1 else 1) + 1),
    "dac~": (2, 0),
    "plugin~": (1, 2),
    "plugout~": (2, 2),
    "print": (1, 0),
    "live.thisdevice": (1, 3),
    "live.path": (1, 3),
    "live.object": (2, 1),
    "live.observer": (2, 2),
    "tosymbol": (1, 1),
    # with parameter_enable: the stored value out of the left outlet (bindto, dump: the others)
    "pattr": (1, 3),
    # counts declared by the script (dreamsampler-clip.js: inlets = 1, outlets = 1)
    "js": (1, 1),
    # [v8 <outlets> <inlets>] with embedded code (Max 9 reference: two ints = outlets, inlets)
    "v8": lambda text: (int(_args(text)[1]), int(_args(text)[0])),
    "metro": (2, 1),
    # [selector~ N initial]: a control inlet plus N signal inlets
    "selector~": lambda text: (int(_args(text)[0]) + 1, 1),
    "delay": (2, 1),
    # [record~ buffer N]: N signal inlets plus start and end points; one sync outlet
    "record~": lambda text: (int(_args(text)[1]) + 2 if len(_args(text)) > 1 else 3, 1),
}


def max_counts(maxclass: str, text: str = "") -> Counts:
    """(inlets, outlets) of a Max box.

    Raises:
        KeyError: the object is not in the tables.
    """
    if maxclass != "newobj":
        return MAX_UI[maxclass]
    entry = MAX_OBJECTS[text.split()[0]]
    return entry(text) if callable(entry) else entry


# -- Pure Data -------------------------------------------------------------------------------------


def _pd_route(text: str) -> Counts:
    # one argument: a right inlet sets it; more: none
    return (2 if len(_args(text)) == 1 else 1), _n(text) + 1


def _pd_send(text: str) -> Counts:
    return (1 if _args(text) else 2), 0


def _pd_list(text: str) -> Counts:
    args = _args(text)
    kind = args[0] if args else "append"
    return {"append": (2, 1), "prepend": (2, 1), "trim": (1, 1), "split": (2, 3),
            "length": (1, 1), "fromsymbol": (1, 1), "tosymbol": (1, 1),
            "store": (2, 3)}[kind]


def _pd_expr(text: str) -> Counts:
    """``[expr]`` has one inlet per highest ``$f``/``$i``/``$s`` index."""
    indices = [int(n) for n in re.findall(r"\$[fis](\d+)", text)]
    return max(indices, default=1), 1


def _pd_file(text: str) -> Counts:
    args = _args(text)
    return {"handle": (1, 2), "stat": (1, 2)}[args[0] if args else "handle"]


#: first word of a Pd object box → (inlets, outlets) (measured on Pd 0.53)
PD_OBJECTS: dict[str, Counts | Callable[[str], Counts]] = {
    "netsend": (1, 2),
    "netreceive": (1, 1),
    "oscformat": (1, 1),
    "oscparse": (1, 1),
    "route": _pd_route,
    "list": _pd_list,
    "pack": lambda text: (_n(text, 2), 1),
    "unpack": lambda text: (1, _n(text, 2)),
    "t": lambda text: (1, _n(text)),
    "f": (2, 1),
    "i": (2, 1),
    "random": (2, 1),
    "spigot": (2, 1),
    "moses": (2, 2),
    "==": (2, 1),
    "sel": lambda text: (2, 2) if len(_args(text)) <= 1 else (1, _n(text) + 1),
    "print": (1, 0),
    "loadbang": (0, 1),
    "s": _pd_send,
    "r": lambda text: (0 if _args(text) else 1, 1),
    "soundfiler": (1, 2),
    "openpanel": (1, 1),
    "expr": _pd_expr,
    "vline~": (3, 1),
    "*~": (2, 1),
    "tabread4~": (2, 1),
    "dac~": (2, 0),
    "symbol": (2, 1),
    "delay": (2, 1),
    "key": (0, 1),
    "change": (1, 1),
    "realtime": (2, 1),
    "file": _pd_file,
    "env~": (1, 1),
    "inlet": (0, 1),
    "outlet": (1, 0),
}

#: Pd GUI boxes (``#X obj x y <class> ...``) have an inlet unless they have a receive name and an
#: outlet unless they have a send name; this maps the class to the index of those two fields
#: (counted from the class name).
PD_IEMGUI_NAMES: dict[str, tuple[int, int]] = {
    "bng": (6, 5),
    "tgl": (4, 3),
    "hsl": (8, 7),
}


def pd_object_counts(text: str) -> Counts:
    """(inlets, outlets) of a Pd object box from its text (``"pack 0 f f"``).

    Raises:
        KeyError: the object is not in the table.
    """
    words = text.split()
    if words[0] in PD_IEMGUI_NAMES:
        receive_at, send_at = PD_IEMGUI_NAMES[words[0]]
        named = [len(words) > i and words[i] not in ("empty", "-") for i in (receive_at, send_at)]
        return (0 if named[0] else 1), (0 if named[1] else 1)
    entry = PD_OBJECTS[words[0]]
    return entry(text) if callable(entry) else entry


def pd_atom_counts(receive: str, send: str) -> Counts:
    """A gatom (float, symbol or list box) loses its inlet with a receive name, its outlet with a
    send name."""
    return (0 if receive not in ("", "-") else 1), (0 if send not in ("", "-") else 1)
