"""Two-space indentation, dict entries in index(), a parenthesized multi-line flask import."""
import asyncio
import logging

from flask import (
  Flask,
  jsonify,
)

from scripts.common import logs

logger = logging.getLogger("svc")
app = Flask(__name__)


def make_response(status, result=None, error=None):
  return {"status": status, "result": result, "error": None if error is None else str(error)}


def run_async(coro):
  return asyncio.run(coro)


def get_test_mode():
  return False


@app.get("/")
def index():
  return jsonify({
    "endpoints": [
      {"path": "/health", "method": "GET"},
    ]
  })


@app.get("/health")
def health():
  return jsonify(ok=True)
