"""gunicorn settings for Cloud Run: bind 0.0.0.0:$PORT, one process, threads, no worker timeout."""

import os
from pathlib import Path

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Cloud Run enforces the request timeout; a gunicorn worker timeout would only kill long jobs.
timeout = 0
graceful_timeout = 10
errorlog = "-"
loglevel = "info"


def _json_logging() -> dict:
    """gunicorn's own lines (boot, workers, shutdown) as the service's JSON lines on stdout.

    Why: Cloud Logging files plain-text lines as DEFAULT-severity textPayload, so a worker that
    fails to boot would not show in `severity>=ERROR` queries. The formatter is
    imported by name when gunicorn configures logging (its cwd is then on sys.path); a folder
    without the service's scripts/ (the cold-start benchmark's bare Flask) keeps the default.
    """
    if not (Path(__file__).resolve().parent / "scripts" / "common" / "logs.py").is_file():
        return {}
    stdout = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    errors = {"level": "INFO", "handlers": ["stdout"], "propagate": False}
    # No access lines: Cloud Run writes its own request log (and they would carry query strings).
    access = {"level": "WARNING", "handlers": [], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "scripts.common.logs.JsonFormatter"}},
        "handlers": {"stdout": stdout},
        "root": {"level": "INFO", "handlers": ["stdout"]},
        "loggers": {"gunicorn.error": errors, "gunicorn.access": access},
    }


logconfig_dict = _json_logging()
