"""``python -m dreamsampler.clients [--check] [--root DIR]``: regenerate (or check) the patches."""

from __future__ import annotations

import sys

from dreamsampler.cli import main

if __name__ == "__main__":
    sys.exit(main(["patches", *sys.argv[1:]]))
