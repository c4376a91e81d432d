"""Bench rows and their three renderings: a rich table, `report.md` and `report.json`."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Row:
    """One comparison: `measured` against `reference`, `ratio` = measured / reference.

    `target` says in words which ratio (or absolute figure) counts as good, `met` whether this
    run reached it (None: no target, the row is informative)."""

    section: str
    metric: str
    measured: float
    unit: str
    reference: float
    reference_label: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    skipped: bool = False

    @property
    def ratio(self) -> float:
        if self.skipped or self.reference == 0:
            return math.nan
        return self.measured / self.reference

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = None if math.isnan(self.ratio) else round(self.ratio, 4)
        return data


@dataclass
class BenchReport:
    rows: list[Row]
    machine: dict[str, Any]
    sizes: dict[str, Any]
    started_at: str
    wall_s: float
    command: str
    details: dict[str, Any] = field(default_factory=dict)
    about: str = ""  # markdown between the heading and the table: what was measured, and how

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "wall_s": round(self.wall_s, 2),
            "command": self.command,
            "machine": self.machine,
            "sizes": self.sizes,
            "rows": [r.to_json() for r in self.rows],
            "details": self.details,
        }


def machine_info(database_label: str) -> dict[str, Any]:
    import dagster
    import polars

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "dagster": dagster.__version__,
        "polars": polars.__version__,
        "database": database_label,
    }


def fmt(value: float) -> str:
    """Compact, readable numbers: 12,345 / 123.4 / 1.23 / 0.0123."""
    if math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _status(row: Row) -> str:
    if row.skipped:
        return "skipped"
    if row.met is None:
        return "info"
    return "met" if row.met else "MISSED"


def render_table(report: BenchReport, console: Console | None = None) -> None:
    table = Table(title="swiftbolt bench (ratio = measured / reference)", show_lines=False)
    for name, justify in (
        ("#", "left"),
        ("metric", "left"),
        ("measured", "right"),
        ("reference", "right"),
        ("ratio", "right"),
        ("target", "left"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in report.rows:
        status = _status(row)
        style = {"met": "green", "MISSED": "bold red", "skipped": "yellow"}.get(status, "")
        table.add_row(
            row.section,
            row.metric,
            f"{fmt(row.measured)} {row.unit}" if not row.skipped else "-",
            f"{fmt(row.reference)} {row.reference_label}" if not row.skipped else "-",
            fmt(row.ratio),
            row.target,
            f"[{style}]{status}[/{style}]" if style else status,
        )
    (console or Console()).print(table)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: BenchReport, json_name: str = "report.json") -> str:
    lines = [
        "# SwiftBolt benchmark report",
        "",
        f"Generated {report.started_at} by `{report.command}` in {report.wall_s:.0f} s. "
        "Every figure below was measured in that one run; ratios are measured / reference, "
        "so they survive a noisy machine better than the absolute times.",
        "",
        *([report.about, ""] if report.about else []),
        "| # | metric | measured | reference | ratio | target | status |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in report.rows:
        measured = "-" if row.skipped else f"{fmt(row.measured)} {row.unit}"
        reference = "-" if row.skipped else f"{fmt(row.reference)} {row.reference_label}"
        lines.append(
            "| "
            + " | ".join(
                _md_cell(x)
                for x in (
                    row.section,
                    row.metric,
                    measured,
                    reference,
                    fmt(row.ratio),
                    row.target,
                    _status(row),
                )
            )
            + " |"
        )
    lines += ["", "## Notes per row", ""]
    for row in report.rows:
        if row.note:
            lines.append(f"- **{row.section} {_md_cell(row.metric)}**: {row.note}")
    lines += ["", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in report.machine.items()]
    lines += ["", "## Sizes", ""]
    lines += [f"- {key}: {value}" for key, value in report.sizes.items()]
    lines += [
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                      # = .venv/bin/swiftbolt bench",
        ".venv/bin/swiftbolt bench --quick --out /tmp/bench   # tiny sizes, seconds",
        ".venv/bin/swiftbolt bench --profile bench/profiles   # + pyinstrument profiles",
        ".venv/bin/swiftbolt bench --growth-rows 100000000    # row 8 only -> growth.md",
        ".venv/bin/swiftbolt bench --ui-symbols 500,5000      # UI page loads -> ui-scale.md",
        "```",
        "",
        "The bench starts its own embedded PostgreSQL under a temporary SWIFTBOLT_HOME (or, with "
        "DATABASE_URL set, creates and drops a scratch database on that server), an in-process "
        "emulator, and pins `SWIFTBOLT_NOW` (history start two years earlier). It never touches "
        "`.swiftbolt/` or the configured database's data.",
        "",
        f"Full figures (every timing, per-run numbers) are in `{json_name}`.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: BenchReport, out_dir: Path, stem: str = "report") -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md.write_text(render_markdown(report, js.name))
    js.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    return md, js


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def command_line() -> str:
    return " ".join(shlex.quote(Path(a).name if i == 0 else a) for i, a in enumerate(sys.argv))
