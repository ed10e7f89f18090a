"""The geometry of the overview's bar chart, drawn as SVG on the server: it reads without
JavaScript, and the template only places what is computed here."""

from __future__ import annotations

WIDTH, HEIGHT = 640, 220
LEFT, BOTTOM, TOP = 72, 36, 12  # room for the amount axis, the date axis and the max label
GAP = 2  # between bars


def bar_chart(days: list[tuple[str, int]]) -> dict:
    """Bars for `(date, cents)` points, scaled so the largest reaches the top; a day
    without sales is a bar of height zero. Labels: the first, middle and last dates and the
    largest amount."""
    plot_width, plot_height = WIDTH - LEFT, HEIGHT - BOTTOM - TOP
    largest = max((cents for _, cents in days), default=0)
    slot = plot_width / max(len(days), 1)
    baseline = HEIGHT - BOTTOM
    bars = []
    for index, (day, cents) in enumerate(days):
        height = round(plot_height * cents / largest, 1) if largest > 0 else 0
        bars.append({"day": day, "cents": cents, "x": round(LEFT + index * slot, 1),
                     "y": round(baseline - height, 1), "width": round(slot - GAP, 1),
                     "height": height})
    labelled = sorted({0, len(days) // 2, len(days) - 1}) if days else []
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "baseline": baseline,
            "bars": bars, "largest_cents": largest,
            "date_labels": [{"day": bars[i]["day"], "x": round(bars[i]["x"] + slot / 2, 1)}
                            for i in labelled]}
