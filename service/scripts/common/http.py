"""The one retry policy for external HTTP calls from jobs (tenacity).

3 attempts, exponential backoff, and on 429/503 the server's `Retry-After` is honoured.
Cloud Run's egress IPs are shared, so rate limits (429) are common: retry politely, and give
up with the last error rather than wait longer than `max_wait` in one request.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A query string inside an error message (requests puts the full URL there).
_QUERY = re.compile(r"\?[^\s'\")]*")
_USERINFO = re.compile(r"//[^/\s@]+@")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; the defaults are the project's policy."""

    attempts: int = 3
    base_wait: float = 1.0
    max_wait: float = 30.0
    timeout: float = 10.0


DEFAULT_POLICY = RetryPolicy()


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), if any."""
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _response_of(exc: BaseException | None) -> requests.Response | None:
    return exc.response if isinstance(exc, requests.HTTPError) else None


def _retryable(policy: RetryPolicy):
    def check(exc: BaseException) -> bool:
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return True
        response = _response_of(exc)
        if response is None or response.status_code not in RETRY_STATUSES:
            return False
        wait = retry_after_seconds(response)
        return wait is None or wait <= policy.max_wait

    return check


class _WaitRetryAfter:
    """Exponential backoff, or the server's Retry-After when it asks for longer."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.backoff = wait_exponential(multiplier=policy.base_wait, max=policy.max_wait)

    def __call__(self, state: RetryCallState) -> float:
        backoff = self.backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_seconds(_response_of(exc))
        return max(backoff, asked) if asked is not None else backoff


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    response = _response_of(exc)
    log.warning(
        "HTTP call failed (%s), retry %d in %.1fs",
        response.status_code if response is not None else type(exc).__name__,
        state.attempt_number,
        state.next_action.sleep if state.next_action else 0.0,
        extra={
            "status": response.status_code if response is not None else None,
            "attempt": state.attempt_number,
            "wait_s": state.next_action.sleep if state.next_action else 0.0,
            "url": without_query(response.url) if response is not None else None,
        },
    )


def request(
    method: str,
    url: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    session: requests.Session | None = None,
    **kwargs: Any,
) -> requests.Response:
    """Send a request under the retry policy; raise the last error when it gives up."""
    http = session or requests
    kwargs.setdefault("timeout", policy.timeout)
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_WaitRetryAfter(policy),
        retry=retry_if_exception(_retryable(policy)),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                response = http.request(method, url, **kwargs)
                response.raise_for_status()
    except requests.RequestException as exc:
        raise _without_queries(exc) from None
    return response


def without_query(url: str) -> str:
    """A URL fit for logs: no query string, fragment or user:password (API keys live there)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _without_queries(exc: requests.RequestException) -> requests.RequestException:
    """The same error with query strings cut from its message, which routes return and log."""
    message = _USERINFO.sub("//", _QUERY.sub("", str(exc)))
    return type(exc)(message, response=exc.response, request=exc.request)


def get_json(url: str, **kwargs: Any) -> Any:
    """GET a JSON document under the retry policy."""
    return request("GET", url, **kwargs).json()
