"""LogThrottle: a bounded number of one peer error's lines per window, the rest counted."""

from __future__ import annotations

from structlog.testing import capture_logs

from pbx_agent.pbx.throttle import LogThrottle


def test_the_burst_is_written_and_the_rest_counted_at_the_next_window() -> None:
    """3 per 10 s: lines 4-5 are counted; the next window's first line says so, then
    writes again."""
    throttle = LogThrottle("x_error", burst=3, window_s=10.0)
    with capture_logs() as logs:
        for i in range(5):
            throttle.warning(float(i), pbx="p", n=i)
        throttle.warning(12.0, pbx="p", n=5)
    assert [(e["event"], e.get("n"), e.get("count")) for e in logs] == [
        ("x_error", 0, None),
        ("x_error", 1, None),
        ("x_error", 2, None),
        ("log_lines_suppressed", None, 2),
        ("x_error", 5, None),
    ]
    assert logs[3]["suppressed_event"] == "x_error"


def test_flush_says_nothing_when_nothing_was_left_out() -> None:
    """No suppressed line, no summary."""
    throttle = LogThrottle("x_error", burst=3)
    with capture_logs() as logs:
        throttle.warning(0.0, n=1)
        throttle.flush()
    assert [e["event"] for e in logs] == ["x_error"]
