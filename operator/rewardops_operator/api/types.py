"""Small wire types of the API: decimal strings, durations and quantities.

Kubernetes API conventions keep floats out of spec (they do not round-trip), so fractions and
rates travel as decimal strings ("0.02", "2e-5") checked by a pattern in the CRD and parsed here.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
SIGNED_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
DURATION_PATTERN = r"^([0-9]+(s|m|h|d))+$"
_DURATION_PART = re.compile(r"([0-9]+)(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _check_fraction(value: str) -> str:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{value} is not between 0 and 1")
    return value


def _check_positive(value: str) -> str:
    if float(value) <= 0.0:
        raise ValueError(f"{value} must be greater than 0")
    return value


#: A non-negative decimal number written as a string.
Decimal = Annotated[str, Field(pattern=DECIMAL_PATTERN)]
#: A decimal number that may be negative (a live check's limit: a score shift, a difference).
SignedDecimal = Annotated[str, Field(pattern=SIGNED_DECIMAL_PATTERN)]
#: A decimal string between 0 and 1 inclusive.
Fraction = Annotated[Decimal, AfterValidator(_check_fraction)]
#: A decimal string greater than 0.
PositiveDecimal = Annotated[Decimal, AfterValidator(_check_positive)]
#: A duration such as "90m", "7d" or "1h30m".
Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]


def parse_duration(value: str) -> timedelta:
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))
    return timedelta(seconds=seconds)
