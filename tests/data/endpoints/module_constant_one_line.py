import asyncio
import logging

from flask import Flask, jsonify

from scripts.common import logs

ENDPOINTS = ["GET /health"]
logger = logging.getLogger(__name__)
app = Flask(__name__)
logs.setup()


def make_response(status, result=None, error=None):
    return {"status": status, "result": result, "error": error and repr(error)}


def run_async(coro):
    return asyncio.run(coro)


def get_test_mode():
    return True


@app.route("/")
def index():
    return jsonify(service="x", endpoints=ENDPOINTS)


@app.route("/health")
def health():
    return "ok"
# trailing comment at the end of the file
