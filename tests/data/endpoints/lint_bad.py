import logging

from flask import Flask, jsonify, request

from scripts.batch.eager import run_eager

logger = logging.getLogger(__name__)
app = Flask(__name__)


def make_response(status, result=None, error=None):
    return {"status": status, "result": result, "error": error}


@app.route("/")
def index():
    endpoints = ["/health", "/run-eager", "/run-raw", "/run-nofallback", "/run-nocounts"]
    return jsonify(endpoints=endpoints)


@app.route("/health")
def health():
    return jsonify(status="ok")


@app.route("/run-eager", methods=["POST"])
def run_eager_route():
    data = request.get_json(silent=True) or {}
    return jsonify(make_response("success", result=run_eager(**data)))


@app.route("/run-raw", methods=["POST"])
def run_raw():
    from scripts.batch.raw import raw

    return jsonify(make_response("success", result=raw(request.json)))


@app.route("/run-nofallback", methods=["POST"])
def run_nofallback():
    from scripts.batch.raw import raw

    data = request.get_json(silent=True)
    return jsonify(make_response("success", result=raw(data)))


@app.route("/run-nocounts", methods=["POST"])
def run_nocounts():
    from scripts.batch.nocounts import nocounts

    data = request.get_json(silent=True) or {}
    return jsonify(make_response("success", result=nocounts(**data)))


@app.route("/run-unlisted", methods=["POST"])
def run_unlisted():
    from scripts.batch.raw import raw

    data = request.get_json(silent=True) or {}
    return jsonify(make_response("success", result=raw(data)))


@app.route("/run-missing", methods=["POST"])
def run_missing():
    from scripts.batch.missing import missing

    data = request.get_json(force=True)
    return jsonify(make_response("success", result=missing(data)))
