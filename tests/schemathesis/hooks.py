"""Data-generation hooks for the schemathesis run (`scripts/schemathesis.sh`).

Each hook makes a generated request follow a rule of the API that JSON Schema cannot say, as any
correct client does. None of them turns an invalid request into a valid one or the other way
round, and none hides a response from the checks. They are deterministic (the same case gives
the same request), as Hypothesis needs to replay a failure.
"""

import datetime
import hashlib
import re

import schemathesis
from hypothesis.internal import lambda_sources

_describe = lambda_sources._lambda_description


def _describe_or_not(f, *args, **kwargs):
    """Python 3.11 before 3.11.8 (Debian 12 has 3.11.2) can fail `ast.parse` with "SystemError:
    AST constructor recursion depth mismatch" when it runs deep in a recursion, which is where
    Hypothesis parses a module to describe one of its lambdas in a strategy's repr: the run then
    ends in a runtime error that says nothing about the API. The description is only for
    display, so such a lambda is described as unknown instead."""
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


lambda_sources._lambda_description = _describe_or_not

IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
NON_NEGATIVE = re.compile(r"[0-9]+")


@schemathesis.hook
def map_case(context, case):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    # An Idempotency-Key names one request: reused with another body it is refused with 422
    # (draft-ietf-httpapi-idempotency-key-header). A client makes one key per request: here the
    # key gets a digest of the request, so it stays valid and one body keeps one key.
    if isinstance(key, str) and IDEMPOTENCY_KEY.fullmatch(key):
        digest = hashlib.sha256(repr((case.method, case.path, case.path_parameters, case.body)).encode()).hexdigest()
        headers["Idempotency-Key"] = f"{key[:190]}-{digest[:32]}"
    # `min_position` asks to wait for a write: one the log has not reached is answered 503 after
    # the wait, by design (tested in tests/app.rs). Generated positions are writes that never
    # happened, so they ask for what is there: position 0.
    query = case.query or {}
    position = query.get("min_position")
    if (isinstance(position, int) and not isinstance(position, bool) and position >= 0) or (
        isinstance(position, str) and NON_NEGATIVE.fullmatch(position)
    ):
        query["min_position"] = 0
    # A contact recorded after the fact was received in the past; a date in the future is
    # refused (422), which JSON Schema cannot say of a date-time.
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("received_at"), str):
        try:
            at = datetime.datetime.fromisoformat(body["received_at"].replace("Z", "+00:00"))
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None and at > datetime.datetime.now(datetime.timezone.utc):
            body["received_at"] = "2026-01-05T09:30:00+00:00"
    return case
