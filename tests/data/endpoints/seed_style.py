# Hand-written in the seed's style: single quotes, traceback printing, comments everywhere.
import asyncio
import logging
import os
import traceback  # noqa: F401  (kept by the user)

from flask import Flask, jsonify, request  # request is already imported here

from scripts.common import logs

logs.setup()
logger = logging.getLogger(__name__)
app = Flask(__name__)


def get_test_mode():
    return os.environ.get('TEST_MODE') == '1'


def make_response(status, result=None, error=None):
    return {'status': status, 'result': result, 'error': str(error) if error else None}


def run_async(coro):
    return asyncio.run(coro)


@app.route('/')
def index():
    # Every job route must be listed here.
    endpoints = [
        '/health',
        '/run-legacy',  # the old nightly job
    ]
    return jsonify({'endpoints': endpoints})


@app.route('/health')
def health():
    return jsonify({'status': 'ok'})


@app.route('/run-legacy', methods=['POST'])
def run_legacy():
    try:
        logger.info('=== legacy 시작 ===')
        from scripts.batch.legacy import do_something

        data = request.get_json(silent=True) or {}
        result = do_something(dry_run=data.get('dry_run', False))
        return jsonify(make_response('success', result=result))
    except Exception as e:
        logger.error('legacy 실패: %s', e)
        return jsonify(make_response('error', error=e)), 500


if __name__ == '__main__':
    app.run(port=8080)
