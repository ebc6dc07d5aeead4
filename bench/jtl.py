"""Results as JMeter writes them, and the summaries and reports made from them.

A JTL here is JMeter's CSV result file with the columns and formats of JMeter 5.6's default
``jmeter.save.saveservice`` settings (``COLUMNS``), so ``jmeter -g results.jtl -o report/``
turns it into JMeter's HTML dashboard. Each load process writes its own part; ``merge``
joins the parts ordered by timeStamp. ``summarize`` computes the per-label table (samples,
throughput, mean, median, p90, p95, p99, max, error %, bytes) and ``html_report`` writes a
self-contained page with throughput and latency over time beside the bare relay and the peer.
"""
from __future__ import annotations

import csv
import dataclasses
import heapq
import html
import io
import math
from pathlib import Path
from typing import Iterable, Iterator, Sequence

__all__ = ["COLUMNS", "Sample", "JtlWriter", "read_jtl", "merge", "Stats", "summarize", "summary_table",
           "timeline", "html_report"]

#: JMeter 5.6.3's CSV header with its default save settings, in its order
COLUMNS = ("timeStamp", "elapsed", "label", "responseCode", "responseMessage", "threadName", "dataType",
           "success", "failureMessage", "bytes", "sentBytes", "grpThreads", "allThreads", "URL", "Latency",
           "IdleTime", "Connect")


@dataclasses.dataclass(slots=True)
class Sample:
    """One row. ``elapsed_ms`` may be fractional in memory; the JTL holds whole ms, as JMeter's."""
    timestamp_ms: int
    elapsed_ms: float
    label: str
    success: bool
    bytes: int = 0
    sent_bytes: int = 0


class JtlWriter:
    """Appends JMeter CSV rows to a file. Not thread-safe; one per load process."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.file, lineterminator="\n")
        self.csv.writerow(COLUMNS)

    def write(self, timestamp_ms: int, elapsed_ms: float, label: str, code: str, message: str, thread: str,
              success: bool, failure: str, nbytes: int, sent: int, grp_threads: int, all_threads: int, url: str,
              connect_ms: float = 0.0) -> None:
        elapsed = int(round(elapsed_ms))
        # Latency is JMeter's time to first byte; a reply is one WebSocket frame, so the whole
        # elapsed time. IdleTime is 0: a sample here has no pause inside.
        self.csv.writerow((timestamp_ms, elapsed, label, code, message, thread, "bin",
                           "true" if success else "false", failure, nbytes, sent, grp_threads, all_threads,
                           url, elapsed, 0, int(round(connect_ms))))

    def close(self) -> None:
        self.file.close()


def _rows(path: Path) -> Iterator[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path}: not a JTL with JMeter's default CSV columns (header {header[:4]}...)")
        yield from reader


def read_jtl(path: Path) -> Iterator[Sample]:
    """The samples of a JTL (ours, or JMeter's with the default CSV columns)."""
    for row in _rows(path):
        yield Sample(int(row[0]), float(row[1]), row[2], row[7] == "true", int(row[9] or 0), int(row[10] or 0))


_GRP_THREADS, _ALL_THREADS = COLUMNS.index("grpThreads"), COLUMNS.index("allThreads")


def _thread_group(thread_name: str) -> str:
    """The thread group of a JMeter thread name, "<group> <group no>-<thread no>"."""
    return thread_name.rsplit(" ", 1)[0]


def merge(parts: Sequence[Path], out: Path) -> int:
    """Merge JTL parts (each sorted by timeStamp as written... nearly: a sample's row is
    written when it ends) into one file sorted by timeStamp; returns the number of rows.

    Each part is one load process's, and its grpThreads and allThreads count that process's
    active threads only. In the merged file they count the whole test's, as JMeter's do:
    at each row, the sum over the parts of what each last reported (for the row's thread
    group, and in all), so a process that has not written a row yet counts none."""
    count = 0
    streams = []
    for n, part in enumerate(parts):
        rows = sorted(_rows(part), key=lambda r: int(r[0]))
        streams.append([(n, row) for row in rows])
    group_threads: dict[str, dict[int, int]] = {}  # thread group -> part -> its last grpThreads
    all_threads: dict[int, int] = {}  # part -> its last allThreads
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for n, row in heapq.merge(*streams, key=lambda item: int(item[1][0])):
            group = group_threads.setdefault(_thread_group(row[5]), {})
            group[n] = int(row[_GRP_THREADS] or 0)
            all_threads[n] = int(row[_ALL_THREADS] or 0)
            row[_GRP_THREADS], row[_ALL_THREADS] = str(sum(group.values())), str(sum(all_threads.values()))
            writer.writerow(row)
            count += 1
    return count


@dataclasses.dataclass
class Stats:
    label: str
    samples: int
    errors: int
    seconds: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    bytes: int
    sent_bytes: int

    @property
    def throughput(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_pct(self) -> float:
        return self.errors / self.samples * 100 if self.samples else 0.0


def _pct(values: Sequence[float], q: float) -> float:
    # nearest rank, as JMeter's summary computes it
    if not values:
        return math.nan
    return values[max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))]


def summarize(samples: Iterable[Sample]) -> dict[str, Stats]:
    """Per label, plus "TOTAL": throughput is samples over the span from the first sample's
    start to the last one's end, as JMeter's summary report computes it."""
    by_label: dict[str, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    if by_label:
        by_label["TOTAL"] = [s for rows in list(by_label.values()) for s in rows]
    out: dict[str, Stats] = {}
    for label, rows in by_label.items():
        elapsed = sorted(s.elapsed_ms for s in rows)
        start = min(s.timestamp_ms for s in rows)
        end = max(s.timestamp_ms + s.elapsed_ms for s in rows)
        out[label] = Stats(label, len(rows), sum(1 for s in rows if not s.success), max(end - start, 1.0) / 1000,
                           sum(elapsed) / len(elapsed), _pct(elapsed, 0.5), _pct(elapsed, 0.9),
                           _pct(elapsed, 0.95), _pct(elapsed, 0.99), elapsed[-1],
                           sum(s.bytes for s in rows), sum(s.sent_bytes for s in rows))
    return out


def summary_table(stats: dict[str, Stats]) -> str:
    """The per-sampler summary as a text table (JMeter's Summary/Aggregate Report columns)."""
    head = (f"{'label':<20}{'samples':>10}{'per s':>10}{'mean ms':>9}{'median':>8}{'p90':>8}{'p95':>8}"
            f"{'p99':>8}{'max':>8}{'err %':>7}{'recv KB/s':>10}{'sent KB/s':>10}")
    lines = [head]
    for st in stats.values():
        lines.append(f"{st.label:<20}{st.samples:>10,}{st.throughput:>10,.0f}{st.mean_ms:>9.2f}{st.median_ms:>8.2f}"
                     f"{st.p90_ms:>8.2f}{st.p95_ms:>8.2f}{st.p99_ms:>8.2f}{st.max_ms:>8.1f}{st.error_pct:>7.2f}"
                     f"{st.bytes / st.seconds / 1024:>10,.0f}{st.sent_bytes / st.seconds / 1024:>10,.0f}")
    return "\n".join(lines)


def timeline(samples: Iterable[Sample], bucket_s: float = 1.0) -> dict[str, list[tuple[float, int, float, float]]]:
    """Per label: (second since the first sample, samples ended in it per s, median ms, p90 ms).

    A label's last bucket is cut short by the end of the run: its rate is counted over the
    part it covers (up to the label's last sample), and a last bucket covering less than
    half a bucket is left out, too short to be a rate; otherwise every line would end in a
    drop that did not happen."""
    rows = list(samples)
    if not rows:
        return {}
    t0 = min(s.timestamp_ms for s in rows)
    buckets: dict[str, dict[int, list[float]]] = {}
    ends: dict[str, float] = {}
    for s in rows:
        end = (s.timestamp_ms + s.elapsed_ms - t0) / 1000
        key = int(end / bucket_s)
        buckets.setdefault(s.label, {}).setdefault(key, []).append(s.elapsed_ms)
        ends[s.label] = max(ends.get(s.label, 0.0), end)
    out: dict[str, list[tuple[float, int, float, float]]] = {}
    for label, by in buckets.items():
        series = []
        last = max(by)
        for key in sorted(by):
            values = sorted(by[key])
            span = min(bucket_s, ends[label] - key * bucket_s) if key == last else bucket_s
            if span < bucket_s / 2 and len(by) > 1:
                continue
            series.append((key * bucket_s, int(len(values) / max(span, 1e-3)), _pct(values, 0.5), _pct(values, 0.9)))
        out[label] = series
    return out


# -- HTML -------------------------------------------------------------------------------------------

_COLORS = {"edgeim": "#1f77b4", "bare relay": "#7f7f7f", "ceiling": "#7f7f7f", "centrifugo": "#d62728",
           "centrifugo durable": "#ff7f0e"}


def _ticks(top: float, most: int = 6) -> tuple[list[float], int]:
    """Tick values from 0 to at least ``top`` at a round step (1, 2 or 5 times a power of
    ten), at most ``most`` + 1 of them, and the decimals that label them exactly."""
    raw = max(top, 1e-9) / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    count = math.ceil(top / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [round(step * i, decimals) for i in range(count + 1)], decimals


def _svg_chart(title: str, series: dict[str, list[tuple[float, float]]], unit: str,
               width: int = 640, height: int = 220) -> str:
    """A line chart as inline SVG (no script, no external file). Both axes start at 0 and
    end at their last tick, a round number at or above the largest value."""
    points = [p for s in series.values() for p in s]
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"
    xticks, xplaces = _ticks(max(x for x, _ in points) or 1.0)
    yticks, yplaces = _ticks(max((y for _, y in points if not math.isnan(y)), default=0.0) or 1.0, 4)
    xmax, ymax = xticks[-1], yticks[-1]
    left, bottom, top, right = 70, 34, 25, 130
    w, h = width - left - right, height - top - bottom

    def xy(x: float, y: float) -> str:
        return f"{left + x / xmax * w:.1f},{top + h - (0 if math.isnan(y) else y) / ymax * h:.1f}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
           f'<text x="{left}" y="15" font-size="13" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="#000"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="#000"/>']
    for y in yticks:
        py = top + h - h * y / ymax
        out.append(f'<text x="{left - 5}" y="{py + 4:.1f}" font-size="10" text-anchor="end">{y:,.{yplaces}f}</text>')
        out.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + w}" y2="{py:.1f}" stroke="#eee"/>')
    for x in xticks:  # time ticks: seconds since the run's first sample
        px = left + w * x / xmax
        out.append(f'<line x1="{px:.1f}" y1="{top + h}" x2="{px:.1f}" y2="{top + h + 4}" stroke="#000"/>')
        out.append(f'<text x="{px:.1f}" y="{top + h + 14}" font-size="10" text-anchor="middle">{x:,.{xplaces}f}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 3}" font-size="10" text-anchor="middle">seconds; {html.escape(unit)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = next((c for k, c in _COLORS.items() if name.startswith(k)), "#2ca02c")
        dash = ' stroke-dasharray="4,3"' if "p90" in name else ""
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} '
                   f'points="{" ".join(xy(x, y) for x, y in pts)}"/>')
        out.append(f'<text x="{left + w + 8}" y="{top + 12 + 14 * i}" font-size="11" fill="{color}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def html_report(path: Path, title: str, runs: dict[str, list[Sample]], comparison: str, notes: Sequence[str]) -> None:
    """Write one self-contained HTML page: per run (edgeim, bare relay, centrifugo) its summary
    table, then per label the throughput and latency over time of every run on one chart."""
    stats = {kind: summarize(rows) for kind, rows in runs.items()}
    lines = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
             "td:first-child{text-align:left}pre{background:#f8f8f8;padding:1em}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if comparison:  # a report of one JTL has nothing to set beside it
        lines += ["<h2>Side by side</h2>", f"<pre>{html.escape(comparison)}</pre>"]
    for note in notes:
        lines.append(f"<p>{html.escape(note)}</p>")
    cols = ["samples", "per s", "mean ms", "median", "p90", "p95", "p99", "max", "error %", "recv KB/s", "sent KB/s"]
    for kind, by_label in stats.items():
        lines.append(f"<h2>{html.escape(kind)}</h2><table><tr><th>label</th>"
                     + "".join(f"<th>{c}</th>" for c in cols) + "</tr>")
        for st in by_label.values():
            cells = [f"{st.samples:,}", f"{st.throughput:,.0f}", f"{st.mean_ms:.2f}", f"{st.median_ms:.2f}",
                     f"{st.p90_ms:.2f}", f"{st.p95_ms:.2f}", f"{st.p99_ms:.2f}", f"{st.max_ms:.1f}",
                     f"{st.error_pct:.2f}", f"{st.bytes / st.seconds / 1024:,.0f}",
                     f"{st.sent_bytes / st.seconds / 1024:,.0f}"]
            lines.append(f"<tr><td>{html.escape(st.label)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        lines.append("</table>")
    timelines = {kind: timeline(rows) for kind, rows in runs.items()}
    labels = sorted({label for t in timelines.values() for label in t})
    lines.append("<h2>Over time</h2>")
    for label in labels:
        rate = {kind: [(x, float(n)) for x, n, _, _ in t[label]] for kind, t in timelines.items() if label in t}
        latency: dict[str, list[tuple[float, float]]] = {}
        for kind, t in timelines.items():
            if label in t:
                latency[f"{kind} median"] = [(x, m) for x, _, m, _ in t[label]]
                latency[f"{kind} p90"] = [(x, p) for x, _, _, p in t[label]]
        lines.append(_svg_chart(f"{label}: throughput", rate, "samples per s"))
        lines.append(_svg_chart(f"{label}: latency", latency, "ms"))
    lines.append("</body></html>")
    path.write_text("\n".join(lines), encoding="utf-8")


def describe_columns() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(COLUMNS)
    return buf.getvalue()
