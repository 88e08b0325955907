"""Evaluation report: every metric with the n it rests on, its warning or its error.

``report.json`` holds one object per metric under its key (``clap_a``, ``clap_t``,
``sim_aa_90``, ``sim_aa_95``, ``fad``, ``bpm``, ``key``, ``lufs``, ``bpm_delta``, ``key_match``,
``lufs_delta``, plus optional extras such as ``fad_inf``, ``ref_bpm``, ``latent_l2``), each
``{"value": ..., "n": ..., "warning": ..., "error": ..., "detail": {...}}``, and a ``meta``
object (concept, time, files). A metric that could not run keeps ``value: null`` and says why
in ``error``; the others are still filled in.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

__all__ = [
    "CORE_METRICS",
    "METRIC_INFO",
    "EvalReport",
    "MetricEntry",
    "ReportMeta",
    "plot_metric_bars",
    "plot_reconstruction_editability",
    "print_comparison",
]

#: Metric keys every report carries (with a value or an error).
CORE_METRICS: tuple[str, ...] = (
    "clap_a",
    "clap_t",
    "sim_aa_90",
    "sim_aa_95",
    "fad",
    "bpm",
    "key",
    "lufs",
    "bpm_delta",
    "key_match",
    "lufs_delta",
)

#: Short descriptions and units, used by the table printer and the CSV.
METRIC_INFO: dict[str, str] = {
    "clap_a": "CLAP-A: mean cosine generated vs training audio (reconstruction)",
    "clap_t": "CLAP-T: mean cosine generated audio vs its prompt (editability)",
    "sim_aa_90": "SIM-AA@0.90: share of clips with a training clip at cosine > 0.90",
    "sim_aa_95": "SIM-AA@0.95: share of clips with a training clip at cosine > 0.95",
    "fad": "FAD on CLAP embeddings, training vs generated",
    "fad_inf": "FAD∞: FAD extrapolated to n → ∞",
    "bpm": "median tempo of generated clips (BPM)",
    "key": "most common key of generated clips",
    "lufs": "mean integrated loudness of generated clips (LUFS)",
    "bpm_delta": "mean |BPM - reference BPM| (BPM)",
    "key_match": "share of generated clips in the reference key",
    "lufs_delta": "mean LUFS generated - reference (LU)",
    "ref_bpm": "median tempo of training clips (BPM)",
    "ref_key": "most common key of training clips",
    "ref_lufs": "mean integrated loudness of training clips (LUFS)",
    "latent_cosine": "mean pairwise cosine of generated latents (variation)",
    "latent_l2": "mean pairwise L2 distance of generated latents (variation)",
}


class MetricEntry(BaseModel):
    """One metric.

    Attributes:
        value: the number (or label, for ``key``), ``None`` when it could not be computed.
        n: the number of clips (or clip pairs, see ``detail``) it rests on.
        warning: why the value should be read with care (e.g. small n), or ``None``.
        error: why it could not be computed, or ``None``.
        detail: extra numbers (per-prompt values, fit parameters, ...).
    """

    value: float | str | None = None
    n: int = 0
    warning: str | None = None
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when a value is present."""
        return self.value is not None and self.error is None


class ReportMeta(BaseModel):
    """Context of a report: what was evaluated, when, from which files."""

    concept: str = "concept"
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    n_generated: int = 0
    n_reference: int = 0
    generated_files: list[str] = Field(default_factory=list)
    reference_files: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    info: dict[str, Any] = Field(default_factory=dict)


class EvalReport(BaseModel):
    """All metrics of one evaluation run (one concept).

    Build it with :meth:`set` / :meth:`fail`; every key in :data:`CORE_METRICS` is present from
    the start with ``error="not computed"`` until set.
    """

    meta: ReportMeta = Field(default_factory=ReportMeta)
    metrics: dict[str, MetricEntry] = Field(
        default_factory=lambda: {k: MetricEntry(error="not computed") for k in CORE_METRICS}
    )

    @property
    def concept(self) -> str:
        """The concept's name."""
        return self.meta.concept

    def set(
        self,
        key: str,
        value: float | str,
        n: int,
        warning: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> MetricEntry:
        """Record a computed metric (floats are stored as Python floats).

        A non-finite number is recorded as an error instead (JSON has no NaN).
        """
        v: float | str = value if isinstance(value, str) else float(value)
        if isinstance(v, float) and not math.isfinite(v):
            return self.fail(key, f"non-finite value {v}", n)
        entry = MetricEntry(value=v, n=int(n), warning=warning, detail=dict(detail or {}))
        self.metrics[key] = entry
        return entry

    def fail(self, key: str, error: str, n: int = 0) -> MetricEntry:
        """Record a metric that could not be computed, with the reason."""
        entry = MetricEntry(value=None, n=int(n), error=error)
        self.metrics[key] = entry
        return entry

    def value(self, key: str) -> float | str | None:
        """The metric's value, or ``None`` when absent or failed."""
        entry = self.metrics.get(key)
        return entry.value if entry is not None else None

    # ---- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The ``report.json`` object: metric keys at the top level, plus ``meta``."""
        out: dict[str, Any] = {k: e.model_dump() for k, e in self.metrics.items()}
        out["meta"] = self.meta.model_dump()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalReport:
        """Inverse of :meth:`to_dict`."""
        metrics = {k: MetricEntry.model_validate(v) for k, v in data.items() if k != "meta"}
        return cls(meta=ReportMeta.model_validate(data.get("meta", {})), metrics=metrics)

    def write_json(self, path: str | Path) -> Path:
        """Write ``report.json`` (UTF-8, indented)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        return p

    @classmethod
    def read_json(cls, path: str | Path) -> EvalReport:
        """Read a ``report.json`` written by :meth:`write_json`."""
        return cls.from_dict(json.loads(Path(path).read_text("utf-8")))

    def write_csv(self, path: str | Path) -> Path:
        """Write ``report.csv``: one row per metric (concept, metric, value, n, warning, error)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["concept", "metric", "value", "n", "warning", "error"])
            for key, e in self.metrics.items():
                w.writerow([self.concept, key, e.value, e.n, e.warning or "", e.error or ""])
        return p

    def write(self, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
        """Write ``report.json``, ``report.csv`` and (optionally) PNG plots into ``out_dir``.

        Returns:
            Name → path of every file written.
        """
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        files = {
            "json": self.write_json(d / "report.json"),
            "csv": self.write_csv(d / "report.csv"),
        }
        if plots:
            reports = {self.concept: self}
            files["scatter"] = plot_reconstruction_editability(reports, d / "clap_a_vs_clap_t.png")
            files["bars"] = plot_metric_bars(reports, d / "metrics.png")
        return files

    # ---- display ---------------------------------------------------------------------------

    def table(self) -> Table:
        """A rich table of all metrics."""
        t = Table(title=f"Evaluation: {self.concept}")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("n", justify="right")
        t.add_column("notes")
        for key, e in self.metrics.items():
            note = (
                f"[red]{e.error}[/red]"
                if e.error
                else (f"[yellow]{e.warning}[/yellow]" if e.warning else "")
            )
            t.add_row(key, _fmt(e.value), str(e.n), note)
        return t

    def print_table(self, console: Console | None = None) -> None:
        """Print :meth:`table` (to ``console`` or a new rich console)."""
        (console or Console()).print(self.table())


def _fmt(value: float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:.4g}"


def print_comparison(
    reports: Mapping[str, EvalReport],
    console: Console | None = None,
    metrics: Sequence[str] = CORE_METRICS,
) -> Table:
    """Print (and return) a rich table with one column per concept."""
    t = Table(title="Evaluation: comparison")
    t.add_column("metric")
    for name in reports:
        t.add_column(name, justify="right")
    for key in metrics:
        cells = []
        for r in reports.values():
            e = r.metrics.get(key)
            cells.append("—" if e is None or e.value is None else f"{_fmt(e.value)} (n={e.n})")
        t.add_row(key, *cells)
    (console or Console()).print(t)
    return t


# ---- plots (Agg canvas, no pyplot global state) --------------------------------------------


def _save(fig: Figure, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(p, dpi=120, bbox_inches="tight")
    return p


def plot_reconstruction_editability(reports: Mapping[str, EvalReport], path: str | Path) -> Path:
    """Scatter of CLAP-A (x, reconstruction) against CLAP-T (y, editability), one point per concept.

    Concepts lacking either value are listed in the title instead of plotted.

    Args:
        reports: concept name → report.
        path: PNG file to write.

    Returns:
        The PNG path.
    """
    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot(1, 1, 1)
    missing = []
    for name, r in reports.items():
        a, t = r.value("clap_a"), r.value("clap_t")
        if isinstance(a, float) and isinstance(t, float):
            ax.scatter([a], [t], s=40)
            ax.annotate(name, (a, t), textcoords="offset points", xytext=(4, 4), fontsize=8)
        else:
            missing.append(name)
    ax.set_xlabel("CLAP-A (reconstruction)")
    ax.set_ylabel("CLAP-T (editability)")
    title = "Reconstruction vs editability"
    if missing:
        title += f"\n(no CLAP values: {', '.join(missing)})"
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_metric_bars(
    reports: Mapping[str, EvalReport],
    path: str | Path,
    metrics: Sequence[str] = (
        "clap_a",
        "clap_t",
        "sim_aa_90",
        "sim_aa_95",
        "fad",
        "bpm_delta",
        "key_match",
        "lufs_delta",
    ),
) -> Path:
    """One bar panel per numeric metric, one bar per concept (missing values are left out).

    Args:
        reports: concept name → report.
        path: PNG file to write.
        metrics: metric keys to plot.

    Returns:
        The PNG path.
    """
    names = list(reports)
    cols = min(4, max(1, len(metrics)))
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    for i, key in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, i + 1)
        vals = [reports[n].value(key) for n in names]
        points = [(j, v) for j, v in enumerate(vals) if isinstance(v, float)]
        ax.bar([j for j, _ in points], [v for _, v in points], color="tab:blue")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.set_title(key, fontsize=9)
        ax.axhline(0.0, color="black", linewidth=0.5)
    fig.tight_layout()
    return _save(fig, path)
