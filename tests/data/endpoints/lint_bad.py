import logging

import flask
from flask import Flask, jsonify, request
from flask import request as req

from scripts.batch.eager import run_eager
from scripts.batch.eagerjob import eagerjob

logger = logging.getLogger(__name__)
app = Flask(__name__)


def make_response(status, result=None, error=None):
    return {"status": status, "result": result, "error": error}


@app.route("/")
def index():
    endpoints = ["/health", "/run-eager", "/run-raw", "/run-nofallback", "/run-nocounts",
                 "/run-modimport", "/run-dictcall", "/run-orlater", "/run-flaskjson",
                 "/run-eagerjob", "/run-aliasjson"]
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


# Clean: a module import with an alias, a dict(...) result, `x = x or {}` on the next line.
@app.route("/run-modimport", methods=["POST"])
def run_modimport():
    import scripts.batch.raw as job

    data = request.get_json(silent=True) or {}
    return jsonify(make_response("success", result=job.raw(data)))


@app.route("/run-dictcall", methods=["POST"])
def run_dictcall():
    from scripts.batch.dictcall import dictcall as job_function

    data = request.get_json(silent=True) or {}
    return jsonify(make_response("success", result=job_function(**data)))


@app.route("/run-orlater", methods=["POST"])
def run_orlater():
    from scripts.batch.raw import raw

    data = request.get_json(silent=True)
    data = data or {}
    return jsonify(make_response("success", result=raw(data)))


# Findings: flask.request.json and req.json fail on an empty body; the job module is imported
# at module level (the lazy import inside is only the service's own scripts.common).
@app.route("/run-flaskjson", methods=["POST"])
def run_flaskjson():
    from scripts.batch.raw import raw

    return jsonify(make_response("success", result=raw(flask.request.json)))


@app.route("/run-eagerjob", methods=["POST"])
def run_eagerjob():
    from scripts.common.logs import job_run

    with job_run("eagerjob", logger):
        data = request.get_json(silent=True) or {}
        return jsonify(make_response("success", result=eagerjob(**data)))


@app.route("/run-aliasjson", methods=["POST"])
def run_aliasjson():
    from scripts.batch.raw import raw

    return jsonify(make_response("success", result=raw(req.json)))
