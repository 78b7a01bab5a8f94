"""One small HTTP GET for the providers (stdlib only: the operator image stays slim)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping

#: Seconds one provider call may take; a slow provider is an unreachable one.
TIMEOUT = 10.0
#: Bytes of an error body worth quoting.
QUOTE = 200


class ProviderError(Exception):
    """The provider could not be asked or gave no usable answer (an inconclusive measurement)."""


def get(url: str, headers: Mapping[str, str] | None = None, timeout: float = TIMEOUT) -> bytes:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as error:
        raise ProviderError(f"{_safe(url)}: HTTP {error.code}: {_reason(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ProviderError(f"{_safe(url)}: {reason}") from None


def _reason(error: urllib.error.HTTPError) -> str:
    text = error.read()[:4096].decode(errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:QUOTE].strip() or str(error.reason)
    if isinstance(parsed, dict) and "error" in parsed:
        return str(parsed["error"])[:QUOTE]
    return text[:QUOTE]


def _safe(url: str) -> str:
    # Queries can be long; the address and path say where it failed.
    return url.split("?", 1)[0]
