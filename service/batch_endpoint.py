"""Batch endpoint: one POST route per job, called by Cloud Scheduler on Cloud Run.

Each route imports its job inside the function (lazy import) so that a cold start loads only
Flask; `opslib endpoint` adds routes here and registers them in index().
"""

import logging
import os
from datetime import UTC, datetime

from flask import Flask, jsonify

from scripts.common import logs, routing

logs.setup()
logger = logging.getLogger("batch_endpoint")
app = Flask(__name__)
app.url_rule_class = routing.rule_class()  # keeps cold starts flat as routes grow


def get_test_mode():
    """Jobs run against test resources when TEST_MODE is set (e.g. on a staging service)."""
    return os.environ.get("TEST_MODE", "").lower() in ("1", "true", "yes")


def make_response(status, result=None, error=None):
    """The JSON every route answers with; verify and monitoring read its counts."""
    return {
        "status": status,
        "result": result,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "timestamp": datetime.now(UTC).isoformat(),
    }


def run_async(coro):
    """Run a class-pattern job's async run() to completion inside a sync Flask route."""
    import asyncio  # lazy: asyncio costs ~20 ms of every cold start otherwise

    return asyncio.run(coro)


@app.route("/")
def index():
    endpoints = [
        "/health",
    ]
    return jsonify(
        {
            "service": os.environ.get("K_SERVICE", "batch-service"),
            "revision": os.environ.get("K_REVISION"),
            "endpoints": endpoints,
        }
    )


@app.route("/health")
def health():
    return jsonify({"status": "ok"})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
