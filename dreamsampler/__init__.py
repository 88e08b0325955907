"""dreamsampler: a live text-to-music and personalized style-transfer server for DAWs."""

__version__ = "0.1.0"
