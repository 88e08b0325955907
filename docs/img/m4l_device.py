"""Draw the Max for Live device's presentation view as Live shows it: docs/img/m4l-device.png.

Reads the generated ``max_patches/dreamsampler.amxd`` (not a hand-made mock-up): every presented
box is drawn at its ``presentation_rect`` inside the 169 px device strip, labelled with what the
device shows there (button text, initial parameter value, menu item, status text). Run it after
``dreamsampler patches``: ``python docs/img/m4l_device.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from dreamsampler.clients import FILES, maxpat, repository_root

FILL = {"live.text": "#b5b5b5", "live.numbox": "#3c3c3c", "live.menu": "#a0a0a0",
        "live.drop": "#d0d0d0", "textedit": "#f4f4f4", "message": "#e6e6e6",
        "waveform~": "#1f2a33", "slider": "#9a9a9a"}
INK = {"live.numbox": "#ffb100", "waveform~": "#8fd3ff"}


def _label(box: dict[str, Any]) -> str:
    kind = box["maxclass"]
    valueof = box.get("saved_attribute_attributes", {}).get("valueof", {})
    if kind == "live.numbox":
        value = valueof["parameter_initial"][0]
        return f"{value:g}" if valueof["parameter_type"] == 1 else f"{value:.2f}"
    if kind == "live.menu":
        return f"{valueof['parameter_enum'][0]}  \u25be"
    if kind == "live.drop":
        return box["legend"]
    if kind == "textedit":  # the prompt (two lines) or the server's host
        return maxpat.DEFAULT_PROMPT if box.get("lines") == 2 else maxpat.SERVER_HOST
    if kind == "waveform~":
        return "waveform of the last clip (buffer~ ---ds-clip)"
    if kind == "slider":
        return ""
    return str(box.get("text", ""))


def draw(out: Path) -> None:
    _, patcher = maxpat.read_amxd((repository_root() / FILES[1]).read_bytes())
    width = patcher["patcher"]["devicewidth"]
    height = maxpat.DEVICE_HEIGHT
    scale = 2
    fig = plt.figure(figsize=(width * scale / 100, height * scale / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.add_patch(Rectangle((0, 0), width, height, color="#c9c9c9"))
    for entry in patcher["patcher"]["boxes"]:
        box = entry["box"]
        if box.get("presentation") != 1:
            continue
        x, y, w, h = box["presentation_rect"]
        kind = box["maxclass"]
        if kind != "comment":
            ax.add_patch(Rectangle((x, y), w, h, facecolor=FILL.get(kind, "#bbbbbb"),
                                   edgecolor="#555555", linewidth=0.6))
        if kind == "slider":
            ax.add_patch(Rectangle((x, y), w * 0.4, h, color="#4a90d9"))
        ax.text(x + 3, y + h / 2, _label(box), va="center", ha="left", clip_on=True,
                fontsize=6.5 * scale / 2 * 1.4, color=INK.get(kind, "#111111"),
                fontweight="bold" if kind == "live.text" else "normal")
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    draw(Path(__file__).with_name("m4l-device.png"))
