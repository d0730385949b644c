"""The front's HTTP/1.1 handling on the wire: framing, keep-alive, pipelining, errors, logs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_front_http_edge_cases():
    script = Path(__file__).with_name("front_edges.py")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILURES: []" in result.stdout
    assert result.stdout.count("ok   ") >= 30
