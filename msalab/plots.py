"""The few plots the labs draw (matplotlib)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib import ticker

from .load import LoadResult


def _log_scale(axis) -> None:
    """A log axis labelled 2, 5, 10 rather than 2x10^0: latencies span decades."""
    axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def bars(values: dict[str, float], title: str, unit: str = "MiB", ax=None):
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    bars_ = ax.bar(list(values), list(values.values()), color="#4c78a8")
    ax.bar_label(bars_, fmt="%.0f")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=20)
    ax.figure.tight_layout()
    return ax


# The first colours are the ones the labs' text refers to; more groups take evenly spaced
# shades of a colour map (blues to greens for answers, reds for failures), never running out.
_OK_COLOURS = ["#4c78a8", "#54a24b", "#f58518", "#b279a2", "#9d755d"]
_FAILED_COLOURS = ["#e45756", "#9e1b32", "#ff9da6"]


def _colours(count: int, first: list[str], colour_map: str, low: float, high: float) -> list:
    if count <= len(first):
        return first[:count]
    shades = plt.get_cmap(colour_map)
    return [shades(low + (high - low) * i / (count - 1)) for i in range(count)]


def timeline(result: LoadResult, title: str, events: dict[str, float] | None = None,
             color_by: str = "status", ax=None):
    """Each request as a dot: when it was sent, how long it took; failures in red."""
    ax = ax or plt.subplots(figsize=(8, 3.2))[1]
    groups: dict[str, list] = {}
    for s in result.samples:
        fine = 200 <= s.status < 300
        if color_by == "kind":
            key = f"{s.kind} {'ok' if fine else 'failed'}"
        else:
            key = "failed" if not fine else (s.upstream or "ok") if color_by == "upstream" else "ok"
        groups.setdefault(key, []).append(s)
    failed = sorted(key for key in groups if key.endswith("failed"))
    fine = sorted(key for key in groups if key not in failed)
    colour = dict(zip(fine, _colours(len(fine), _OK_COLOURS, "viridis", 0.1, 0.85)))
    colour |= dict(zip(failed, _colours(len(failed), _FAILED_COLOURS, "Reds", 0.45, 0.95)))
    for key, samples in sorted(groups.items()):
        ax.scatter([s.t for s in samples], [max(s.ms, 0.1) for s in samples], s=14 if key in failed else 8,
                   marker="x" if key in failed else "o", color=colour[key], label=f"{key} ({len(samples)})")
    _log_scale(ax.yaxis)
    for t in (events or {}).values():
        ax.axvline(t, color="grey", linestyle="--")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    # Beside the axes, not on them: with many groups a legend inside would hide dots and labels.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, borderaxespad=0)
    ax.figure.tight_layout()
    _label_events(ax, events or {})
    return ax


def _label_events(ax, events: dict[str, float]) -> None:
    """Each event's label at the top of its line, in axes coordinates so that it stays there
    whatever the y scale and limits. A label that would overlap an earlier one goes one row
    lower; one that would run past the right edge is written on the left of its line."""
    frame = ax.get_window_extent()
    placed = []
    for label, t in sorted(events.items(), key=lambda event: event[1]):
        text = ax.text(t, 0.98, f" {label} ", transform=ax.get_xaxis_transform(), va="top", fontsize=8,
                       bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5})
        if text.get_window_extent().x1 > frame.x1:
            text.set_horizontalalignment("right")
        row_height = text.get_window_extent().height / frame.height + 0.01
        while any(text.get_window_extent().overlaps(other) for other in placed) and text.get_position()[1] > 0.3:
            text.set_y(text.get_position()[1] - row_height)
        placed.append(text.get_window_extent())


def latency_cdf(series: dict[str, list[float]], title: str, ax=None):
    """Cumulative distribution of latencies: how many requests finished within x ms."""
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    for label, values in series.items():
        values = sorted(values)
        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
    _log_scale(ax.xaxis)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("share of requests")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.figure.tight_layout()
    return ax


def table(rows: list[dict], columns: list[str] | None = None):
    """Show rows as an HTML table in a notebook (plain text elsewhere)."""
    from html import escape

    from IPython.display import HTML

    columns = columns or (list(rows[0]) if rows else [])
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows)
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def waterfall(spans: list[dict], title: str, ax=None):
    """A trace as a waterfall: one bar per span (start, duration), labelled by service."""
    ax = ax or plt.subplots(figsize=(8, 0.45 * len(spans) + 1.2))[1]
    palette = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#9d755d"]
    colours = {service: palette[i % len(palette)] for i, service in enumerate(dict.fromkeys(s["service"] for s in spans))}
    for row, span in enumerate(spans):
        ax.barh(row, span["duration_ms"], left=span["start_ms"], color=colours[span["service"]])
        ax.text(span["start_ms"] + span["duration_ms"], row, f" {span['duration_ms']:.1f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(spans)), [f"{s['service']}: {s['operation']}" for s in spans], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds since the trace started")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax


def layers(samples, fault_window: tuple[float, float], title: str):
    """One incident in four layers on one time axis (msalab.incident.watch's samples), the
    fault's window shaded in each: node CPU, pod CPU, the gateway's rates, ready pods."""
    t = [s.t for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 7), sharex=True)
    for ax, series, label in [(axes[0], [s.node_cpu_m for s in samples], "node CPU (m)\nmetrics-server"),
                              (axes[1], [s.pod_cpu_m for s in samples], "catalog pod CPU (m)\ncAdvisor")]:
        ax.plot(t, series, marker=".")
        ax.set_ylabel(label, fontsize=8)
    axes[2].plot(t, [s.requests_per_s for s in samples], marker=".", label="requests/s")
    axes[2].plot(t, [s.errors_per_s for s in samples], marker=".", color="#e45756", label="errors/s")
    axes[2].set_ylabel("gateway\n/metrics", fontsize=8)
    axes[2].legend(fontsize=8)
    axes[3].step(t, [s.ready_pods for s in samples], where="post")
    axes[3].set_ylabel("ready catalog pods\nAPI", fontsize=8)
    axes[3].set_ylim(-0.2, max(s.ready_pods for s in samples) + 0.5)
    axes[3].set_xlabel("seconds")
    for ax in axes:
        ax.axvspan(*fault_window, color="#e45756", alpha=0.1)
    axes[0].set_title(title)
    fig.tight_layout()
    return axes


def success_per_second(runs: dict[str, list[tuple[float, float, int]]], fault_at_s: float, title: str):
    """For each run, per second of the load: the share of the calls sent that got a 200 (top)
    and the slowest of them (bottom), so both failures and waiting show."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.2), sharex=True)
    for colour, (name, samples) in zip(_OK_COLOURS, runs.items()):
        per_second: dict[int, list[tuple[float, int]]] = {}
        for sent, took, status in samples:
            per_second.setdefault(int(sent), []).append((took, status))
        seconds = sorted(per_second)
        top.plot(seconds, [100 * sum(s == 200 for _, s in per_second[x]) / len(per_second[x]) for x in seconds],
                 label=name, color=colour)
        bottom.plot(seconds, [max(t for t, _ in per_second[x]) for x in seconds], label=name, color=colour)
    for ax in (top, bottom):
        ax.axvline(fault_at_s, color="#e45756", linestyle="--", linewidth=1)
    top.annotate("one pod hangs", (fault_at_s, 5), xytext=(4, 0), textcoords="offset points", color="#e45756")
    top.set_ylabel("calls that succeeded, %")
    top.set_ylim(0, 105)
    top.set_title(title)
    top.legend(loc="lower right")
    bottom.set_ylabel("slowest call, s")
    bottom.set_xlabel("second of the load in which the call was sent")
    fig.tight_layout()
    return fig
