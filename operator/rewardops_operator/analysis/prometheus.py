"""Prometheus provider: one instant query (GET /api/v1/query), every returned value a number.

Auth is by Secret reference only: the driver resolves the reference and passes the header.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from urllib.parse import urlencode

from rewardops_operator.analysis.http import ProviderError, get
from rewardops_operator.api.models import PrometheusAuth, PrometheusCheckSpec
from rewardops_operator.core.observations import CheckMeasurement

#: (Secret name, key) -> value; raises LookupError when the Secret or key is missing.
SecretReader = Callable[[str, str], str]


def auth_headers(auth: PrometheusAuth | None, secret: SecretReader) -> dict[str, str]:
    if auth is None:
        return {}
    try:
        if auth.bearer_token is not None:
            ref = auth.bearer_token
            return {"Authorization": f"Bearer {secret(ref.name, ref.key).strip()}"}
        if auth.basic is not None:
            basic = auth.basic
            user = secret(basic.secret_name, basic.username_key)
            password = secret(basic.secret_name, basic.password_key)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
    except LookupError as error:
        raise ProviderError(f"credentials: {error}") from None
    return {}


def query(name: str, spec: PrometheusCheckSpec, secret: SecretReader) -> CheckMeasurement:
    try:
        headers = auth_headers(spec.auth, secret)
        url = f"{spec.address.rstrip('/')}/api/v1/query?{urlencode({'query': spec.query})}"
        values = parse_response(get(url, headers))
    except ProviderError as error:
        return CheckMeasurement(name, error=str(error))
    if not values:
        return CheckMeasurement(name, detail="the query returned no series (no traffic yet?)")
    finite = tuple(value for value in values if not math.isnan(value))
    detail = f"{len(values)} series" if len(values) > 1 else ""
    if not finite:
        return CheckMeasurement(name, detail="the query returned NaN (0/0: no traffic?)")
    return CheckMeasurement(name, finite, detail=detail)


def parse_response(body: bytes) -> list[float]:
    """The sample values of an instant-query answer (vector or scalar)."""
    try:
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise ProviderError(f"query failed: {answer.get('error', answer)}")
        data = answer["data"]
        kind = data["resultType"]
        if kind == "scalar":
            return [float(data["result"][1])]
        if kind == "vector":
            return [float(series["value"][1]) for series in data["result"]]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise ProviderError(f"not a Prometheus query answer: {error!r}") from None
    raise ProviderError(f"the query returned a {kind}; it must return a vector or a scalar")
