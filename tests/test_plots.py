"""The labs' plots with more than the labs' usual few groups, on a log scale, and on an axes
that is not the current figure's: drawn for real with Agg, then measured."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from msalab import plots  # noqa: E402
from msalab.load import LoadResult, Sample  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def samples(upstreams: int = 1, kinds: int = 1, failures: bool = False) -> LoadResult:
    """Requests 0.1 s apart over 10 s, latencies 0.5 to 800 ms (three decades, as in the labs)."""
    found = []
    for i in range(100):
        status = 503 if failures and i % 7 == 0 else 200  # 7: failures of every kind
        found.append(Sample(t=i / 10, ms=0.5 + (i * 37) % 800, status=status, upstream=f"catalog/v{i % upstreams}",
                            error="", kind=f"kind-{i % kinds}"))
    return LoadResult(found, duration_s=10)


def dots_by_label(ax) -> dict[str, tuple]:
    return {c.get_label(): tuple(c.get_facecolor()[0]) for c in ax.collections}


def test_many_upstreams_each_get_a_colour_of_their_own():
    ax = plots.timeline(samples(upstreams=9, failures=True), "nine copies", color_by="upstream")
    colours = dots_by_label(ax)
    assert len(colours) == 10  # nine upstreams and the failures
    assert len(set(colours.values())) == 10


def test_many_failure_kinds_each_get_a_red_of_their_own():
    ax = plots.timeline(samples(kinds=6, failures=True), "six kinds", color_by="kind")
    colours = dots_by_label(ax)
    failed = {label: c for label, c in colours.items() if " failed " in label}
    assert len(colours) == 12 and len(failed) == 6
    assert len(set(colours.values())) == 12
    assert all(red > max(green, blue) for red, green, blue, _ in failed.values())


def label_boxes(ax) -> list:
    ax.figure.canvas.draw()
    return [text.get_window_extent() for text in ax.texts]


def test_event_labels_sit_at_the_top_of_the_log_axes_and_do_not_overlap():
    # Three events close together and one at the right edge, as a blue-green switch and its
    # rollback draw them.
    events = {"switch to green": 3.0, "rollback to blue": 3.4, "forward to green": 3.8, "blue stopped": 9.9}
    ax = plots.timeline(samples(upstreams=2), "events", events=events, color_by="upstream")
    assert ax.get_yscale() == "log"
    frame = ax.get_window_extent()
    boxes = label_boxes(ax)
    assert len(boxes) == 4
    for box in boxes:
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert frame.y1 - max(box.y1 for box in boxes) < 0.05 * frame.height  # the first row at the top
    for i, box in enumerate(boxes):
        assert not any(box.overlaps(other) for other in boxes[i + 1:])


def test_event_labels_stay_at_the_top_when_the_limits_change():
    ax = plots.timeline(samples(), "events", events={"crash": 5.0})
    ax.set_ylim(0.01, 1e5)
    frame, [box] = ax.get_window_extent(), label_boxes(ax)
    assert frame.y1 - box.y1 < 0.05 * frame.height


@pytest.mark.parametrize("draw", [
    lambda ax: plots.timeline(samples(), "t", ax=ax),
    lambda ax: plots.bars({"a": 1, "b": 2}, "b", ax=ax),
    lambda ax: plots.latency_cdf({"a": [1, 2, 3]}, "c", ax=ax),
    lambda ax: plots.waterfall([{"service": "s", "operation": "o", "start_ms": 0, "duration_ms": 3}], "w", ax=ax),
])
def test_layout_is_done_on_the_axes_own_figure_not_the_current_one(draw):
    mine, ax = plt.subplots(figsize=(8, 3.2))
    default_position = ax.get_position().bounds
    current, other_ax = plt.subplots()  # now the current figure
    other_position = other_ax.get_position().bounds
    draw(ax)
    assert ax.get_position().bounds != default_position  # laid out
    assert other_ax.get_position().bounds == other_position  # untouched
    assert plt.gcf() is current


def test_layers_draws_each_layer_on_one_time_axis_with_the_fault_shaded():
    from msalab.incident import LayerSample

    fault = (20, 35)
    rows = [LayerSample(t=t, node_cpu_m=1000 + t, pod_cpu_m=50, requests_per_s=20,
                        errors_per_s=10 if fault[0] <= t < fault[1] else 0, ready_pods=1) for t in range(3, 61, 3)]
    axes = plots.layers(rows, fault, "one incident")
    assert len(axes) == 4 and len({ax.get_shared_x_axes().get_siblings(axes[0])[0] for ax in axes}) == 1
    errors = axes[2].get_lines()[1]
    assert list(errors.get_xdata()) == [r.t for r in rows] and max(errors.get_ydata()) == 10
    for ax in axes:  # the fault's window, shaded in every layer
        (span,) = ax.patches
        x0, x1 = span.get_x(), span.get_x() + span.get_width()
        assert (x0, x1) == fault
    assert axes[3].get_ylim()[1] > 1  # the ready line is not drawn on the top edge
