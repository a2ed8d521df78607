"""The page's requests and answers: a body read up to a cap, its JSON, and the one-line error answer."""
from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import Request
from fastapi.responses import JSONResponse


def fail(status: int, message: str, field: Optional[str] = None) -> JSONResponse:
    """The page's error answer: {"error": one line, "field": the form field it is about, if any}."""
    return JSONResponse({"error": message, **({"field": field} if field else {})}, status_code=status)


def content_length(request: Request) -> Optional[int]:
    """The length the request says its body has, or None."""
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def capped_body(request: Request, cap: int) -> Optional[bytes]:
    """The request's body, or None once it is over `cap` bytes (read no further: a huge body never sits in memory)."""
    if (content_length(request) or 0) > cap:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            return None
    return bytes(body)


async def read_json(request: Request, cap: int, what: str, hint: str = "", empty: bytes = b"null") -> Any:
    """The request's JSON value (an empty body reads as `empty`), or the one-line answer why not: over `cap` bytes
    (413, `hint` after it), not JSON, or nested past the parser (400); `what` names the request in each."""
    raw = await capped_body(request, cap)
    if raw is None:
        return fail(413, f"{what}: the request is over {cap >> 10} KB{hint}")
    try:
        return json.loads(raw or empty)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return fail(400, f"{what}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})")
    except RecursionError:
        return fail(400, f"{what}: nested too deeply to be a {what}")
