"""gunicorn settings for Cloud Run: bind 0.0.0.0:$PORT, one process, threads, no worker timeout."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Cloud Run enforces the request timeout; a gunicorn worker timeout would only kill long jobs.
timeout = 0
graceful_timeout = 10
errorlog = "-"
loglevel = "info"
