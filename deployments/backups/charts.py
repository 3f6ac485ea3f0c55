"""Server-rendered SVG line charts (no JavaScript, no inline style: classes come from portal.css)."""

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from portal.templatetags.portal_tags import filesize

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 600, 170, 70, 10, 22, 26


def _seconds(value):
    return f"{value:.1f} s"


FORMATS = {"bytes": filesize, "seconds": _seconds}


def line_chart(title, points, unit="bytes", css="chart-line"):
    """points: [(datetime, number)] oldest first. Returns safe SVG markup."""
    fmt = FORMATS[unit]
    points = [(t, float(v)) for t, v in points if t is not None and v is not None]
    label = escape(title)
    if not points:
        return mark_safe(  # noqa: S308  # nosec B308 B703: built from escaped parts only
            f'<svg class="backup-chart" viewBox="0 0 {W} 40" role="img" aria-label="{label}">'
            f'<text x="4" y="24" class="chart-empty">{label}: no data yet</text></svg>'
        )
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    top = max(v for _, v in points) or 1.0
    span = (t1 - t0) or 1.0

    def xy(t, v):
        x = PAD_L + (W - PAD_L - PAD_R) * ((t.timestamp() - t0) / span if len(points) > 1 else 0.5)
        y = PAD_T + (H - PAD_T - PAD_B) * (1 - v / top)
        return f"{x:.1f},{y:.1f}"

    coords = [xy(t, v) for t, v in points]
    dots = "".join(
        f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="2.5" class="chart-dot">'
        f"<title>{escape(t.strftime('%Y-%m-%d %H:%M'))}: {escape(fmt(v))}</title></circle>"
        for c, (t, v) in zip(coords, points, strict=True)
    )
    base_y = H - PAD_B
    return mark_safe(  # noqa: S308  # nosec B308 B703: built from escaped parts only
        f'<svg class="backup-chart" viewBox="0 0 {W} {H}" role="img" aria-label="{label}" data-points="{len(points)}">'
        f'<text x="4" y="14" class="chart-title">{label}</text>'
        f'<line x1="{PAD_L}" y1="{base_y}" x2="{W - PAD_R}" y2="{base_y}" class="chart-axis"/>'
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{base_y}" class="chart-axis"/>'
        f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" text-anchor="end" class="chart-label">{escape(fmt(top))}</text>'
        f'<text x="{PAD_L - 4}" y="{base_y}" text-anchor="end" class="chart-label">0</text>'
        f'<text x="{PAD_L}" y="{H - 8}" class="chart-label">{escape(points[0][0].strftime("%Y-%m-%d %H:%M"))}</text>'
        f'<text x="{W - PAD_R}" y="{H - 8}" text-anchor="end" class="chart-label">'
        f"{escape(points[-1][0].strftime('%Y-%m-%d %H:%M'))}</text>"
        f'<polyline points="{" ".join(coords)}" class="{escape(css)}"/>{dots}</svg>'
    )


def run_charts(runs):
    """The three charts of a schedule's successful runs (newest first in, oldest first drawn)."""
    ok = [r for r in reversed(runs) if r.state == "succeeded" and r.finished_at]
    for r in ok:
        r.finished_at = timezone.localtime(r.finished_at)
    return {
        "size": line_chart("Snapshot size", [(r.finished_at, r.snapshot_size) for r in ok], "bytes", "chart-line"),
        "bytes": line_chart(
            "Bytes transferred", [(r.finished_at, r.bytes_transferred) for r in ok], "bytes", "chart-line chart-alt"
        ),
        "duration": line_chart(
            "Duration", [(r.finished_at, r.duration) for r in ok], "seconds", "chart-line chart-third"
        ),
    }
