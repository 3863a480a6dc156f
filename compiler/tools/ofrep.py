"""OFREP, the OpenFeature Remote Evaluation Protocol, over an expc bundle: what a request
body means and what to answer. No HTTP here: `tools/asgi` routes, authenticates, reads
bodies and writes answers; this module turns a body into a status and a JSON document.

The mapping, in one place (docs/ofrep.md says why), as `expc.sdk.openfeature` maps:

- the targeting key is the value of one bucketing attribute (`user_id` unless
  `expc serve --bucketing-attribute` says otherwise), over the context's own;
- the value of an enrolled user is the variant key (a string); a variant's payload
  travels in the flag metadata as JSON text (`expc.payload`), since OFREP metadata
  holds only strings, numbers and booleans;
- a user who is not enrolled gets no value: OFREP's "use the code default" answer, with
  `variant` null and reason DISABLED (the experiment does not serve) or DEFAULT;
- expc's own reason is always in the metadata (`expc.reason`), with the bundle's
  `expc.content_id` (and `expc.environment`);
- a flag that needs a bucketing value the context lacks is an error (expc's
  `no-bucketing-value`): TARGETING_KEY_MISSING when the targeting key is what is
  missing, INVALID_CONTEXT when it is another attribute.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expc.sdk import Result
from expc.tools.bundle_watch import Loaded
from expc.tools.serve import matches

# A context is a handful of attributes; 64 KiB holds thousands. More is a mistake or an
# attack, answered 413 before the body is read.
MAX_BODY = 64 * 1024

# OpenFeature reasons (https://openfeature.dev/specification/types#resolution-reason).
SPLIT = "SPLIT"
TARGETING_MATCH = "TARGETING_MATCH"
DEFAULT = "DEFAULT"
DISABLED = "DISABLED"

# OpenFeature error codes, as OFREP answers them.
PARSE_ERROR = "PARSE_ERROR"
INVALID_CONTEXT = "INVALID_CONTEXT"
TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
GENERAL = "GENERAL"

# The expc reasons that decide an OpenFeature reason by themselves; every other reason
# (targeting, traffic, unallocated, holdout:, mutex:, prerequisite:) leaves the user out
# of the experiment, which is DEFAULT. Compared whole, never parsed.
NOT_RUNNING = "not-running"
BUCKETED = "bucketed"
NO_BUCKETING_VALUE = "no-bucketing-value"

_JSON = json.JSONEncoder(separators=(",", ":"))
_PAYLOAD = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


class BadRequestError(ValueError):
    """A request body OFREP refuses: answered 400 with `code` and the message."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code


@dataclass(frozen=True)
class Answer:
    """What to send: a status, a JSON body (None: none at all, as for 304) and an ETag."""

    status: int
    body: bytes | None
    etag: str | None = None


def encode(document: Any) -> bytes:
    """A JSON body: compact, ASCII (every other character escaped)."""
    return _JSON.encode(document).encode("ascii")


def error(status: int, code: str | None, details: str, key: str | None = None) -> Answer:
    """OFREP's error shapes: `{key, errorCode, errorDetails}` for a flag,
    `{errorCode, errorDetails}` for a bulk request, `{errorDetails}` for the rest."""
    document: dict[str, str] = {}
    if key is not None:
        document["key"] = key
    if code is not None:
        document["errorCode"] = code
    document["errorDetails"] = details
    return Answer(status, encode(document))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), "a number"
    )


def read_context(body: bytes) -> dict[str, Any]:
    """The evaluation context of a request body (`{"context": {...}}`); an empty body or
    a null context is an empty one. Raises BadRequestError."""
    if not body.strip():
        return {}
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as problem:  # UnicodeDecodeError is a ValueError
        detail = str(problem) if isinstance(problem, ValueError) else "nested too deeply"
        raise BadRequestError(PARSE_ERROR, f"the body is not JSON: {detail[:200]}") from None
    if type(document) is not dict:
        raise BadRequestError(
            PARSE_ERROR, f'the body is a JSON object {{"context": {{...}}}}, not {_kind(document)}'
        )
    context = document.get("context")
    if context is None:
        return {}
    if type(context) is not dict:
        raise BadRequestError(INVALID_CONTEXT, f"context is an object, not {_kind(context)}")
    targeting_key = context.get("targetingKey")
    if targeting_key is not None and type(targeting_key) is not str:
        raise BadRequestError(
            INVALID_CONTEXT, f"targetingKey is a string, not {_kind(targeting_key)}"
        )
    return context


def user_of(context: dict[str, Any], attribute: str) -> dict[str, Any]:
    """The user expc evaluates: the context's attributes, with the targeting key as the
    value of `attribute` (as the OpenFeature provider of `expc.sdk` does)."""
    targeting_key = context.get("targetingKey")
    if not targeting_key:
        return context
    user = dict(context)
    user[attribute] = targeting_key
    return user


def _lacks(value: Any) -> bool:
    return value is None or value == "" or type(value) in (list, dict)


def missing_value(key: str, user: dict[str, Any], attribute: str, loaded: Loaded) -> dict[str, str]:
    """Why `key` found no bucketing value, as an OFREP failure (the error path only)."""
    own = loaded.bucketing.get(key, attribute)
    if _lacks(user.get(own)):
        lacking, whose = [own], f"flag {key!r} assigns users by {own!r}"
    else:  # a holdout or group the flag depends on needs another attribute
        lacking = [name for name in loaded.attributes if _lacks(user.get(name))]
        whose = f"flag {key!r} depends on a holdout or group that assigns users by {lacking}"
    if attribute in lacking or not lacking:
        code, details = TARGETING_KEY_MISSING, f"{whose}: send a targetingKey"
    else:
        code, details = INVALID_CONTEXT, f"{whose}, which the context lacks"
    return {"key": key, "errorCode": code, "errorDetails": details}


def flag_document(
    key: str, result: Result, loaded: Loaded, user: dict[str, Any], attribute: str
) -> tuple[bool, dict[str, Any]]:
    """One flag's result as OFREP writes it; False with a failure document when the flag
    needed a bucketing value the context lacks."""
    variant = result.variant
    reason = result.reason
    metadata: dict[str, str] = {"expc.reason": reason, "expc.content_id": loaded.content_id}
    if loaded.environment is not None:
        metadata["expc.environment"] = loaded.environment
    if variant is None:
        if reason == NO_BUCKETING_VALUE:
            return False, missing_value(key, user, attribute, loaded)
        return True, {
            "key": key,
            "reason": DISABLED if reason == NOT_RUNNING else DEFAULT,
            "variant": None,
            "metadata": metadata,
        }
    payload = result.payload
    if payload is not None:
        metadata["expc.payload"] = _PAYLOAD.encode(payload)
    return True, {
        "key": key,
        "value": variant,
        "variant": variant,
        "reason": SPLIT if reason == BUCKETED else TARGETING_MATCH,
        "metadata": metadata,
    }


def evaluate_one(loaded: Loaded, key: str, body: bytes, attribute: str) -> Answer:
    """POST /ofrep/v1/evaluate/flags/{key}; the targeting key stands for `attribute`."""
    if key not in loaded.keys:
        return error(404, FLAG_NOT_FOUND, f"no flag {key!r} in bundle {loaded.content_id}", key)
    try:
        context = read_context(body)
    except BadRequestError as bad:
        return error(400, bad.code, str(bad), key)
    user = user_of(context, attribute)
    ok, document = flag_document(key, loaded.evaluator.evaluate(user, key), loaded, user, attribute)
    return Answer(200 if ok else 400, encode(document))


def evaluate_all(loaded: Loaded, body: bytes, if_none_match: str | None, attribute: str) -> Answer:
    """POST /ofrep/v1/evaluate/flags: every flag, with an ETag of the answer, so that a
    client polling with If-None-Match gets 304 until the bundle or its context changes."""
    try:
        context = read_context(body)
    except BadRequestError as bad:
        return error(400, bad.code, str(bad))
    user = user_of(context, attribute)
    results: Mapping[str, Result] = loaded.evaluator.evaluate(user)
    flags = [
        flag_document(key, result, loaded, user, attribute)[1] for key, result in results.items()
    ]
    metadata = {"expc.content_id": loaded.content_id}
    if loaded.environment is not None:
        metadata["expc.environment"] = loaded.environment
    body_out = encode({"flags": flags, "metadata": metadata})
    etag = '"' + hashlib.sha256(body_out).hexdigest()[:32] + '"'
    if matches(if_none_match, etag):
        return Answer(304, None, etag)
    return Answer(200, body_out, etag)
