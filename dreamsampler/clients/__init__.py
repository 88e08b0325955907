"""Client patches for Max, Max for Live and Pure Data, generated from the OSC contract.

:func:`generate` writes ``max_patches/dreamsampler.maxpat``, ``max_patches/dreamsampler.amxd``
(one file: the device's script is embedded in it) and ``pd_patches/dreamsampler.pd``
under a root folder (the repository by default); ``dreamsampler
patches`` and ``python -m dreamsampler.clients`` call it. Controls come from :mod:`.spec`; entries
the contract does not have yet are skipped with a warning.
"""

from __future__ import annotations

from pathlib import Path

from dreamsampler.clients import maxpat, pd
from dreamsampler.clients.spec import ResolvedSpec, resolve

#: the generated files, relative to the root folder
FILES = ("max_patches/dreamsampler.maxpat", "max_patches/dreamsampler.amxd",
         "pd_patches/dreamsampler.pd")


def render_all(spec: ResolvedSpec | None = None) -> dict[str, bytes]:
    """Every client file's content, keyed by its path relative to the root."""
    spec = spec or resolve()
    texts = {
        FILES[0]: maxpat.maxpat_text(spec).encode("utf-8"),
        FILES[1]: maxpat.amxd_bytes(spec),
        FILES[2]: pd.render(spec).encode("utf-8"),
    }
    return texts


def generate(root: Path, spec: ResolvedSpec | None = None) -> list[Path]:
    """Write the client files under ``root``; returns their paths."""
    written = []
    for relative, data in render_all(spec).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def stale(root: Path, spec: ResolvedSpec | None = None) -> list[str]:
    """Paths under ``root`` whose content differs from a fresh generation (or that are missing)."""
    out = []
    for relative, data in render_all(spec).items():
        path = root / relative
        if not path.is_file() or path.read_bytes() != data:
            out.append(relative)
    return out


def repository_root() -> Path:
    """The folder holding the checked-in patches (the source checkout)."""
    return Path(__file__).resolve().parents[2]
