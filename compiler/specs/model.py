"""A spec file, typed (DESIGN §11): frozen pydantic models, unknown fields refused.

Only the shape is checked here. Whether a flag, a variant, a reason or an environment
exists depends on the definitions, and is checked against each environment's bundle
(`resolve`); `${name}` is replaced by `expand`, so fields that may hold one are text.
Errors of the types raised here (`not_a_percent`, `matrix_value`, `empty_spec`) get
codes of their own (`load`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from expc.reading.model import Strict

# `25%`, `47.5%`, `0.25%`: a percent sign, so that 0.25 and 25 cannot be confused.
_PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,6})?) ?%")
_MATRIX_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
# The most cases one matrix may expand to: more is a loop, not a spec.
MAX_EXPANDED = 1_000


def _percent(value: Any) -> Decimal:
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value.strip())
        if match is not None and Decimal(match[1]) <= 100:
            return Decimal(match[1])
    shown = f"{value!r}" if not isinstance(value, Decimal) else str(value)
    raise PydanticCustomError(
        "not_a_percent",
        "must be a percent from 0% to 100% with the percent sign, e.g. 25% or 47.5%; got {shown}",
        {"shown": shown[:60]},
    )


Percent = Annotated[Decimal, PlainValidator(_percent)]


def _matrix_value(value: Any) -> Any:
    if value is None or isinstance(value, str | int | bool | Decimal):
        return value
    raise PydanticCustomError(
        "matrix_value",
        "a matrix value is text, a number, true, false or null, not a {kind}",
        {"kind": "list" if isinstance(value, list) else "mapping"},
    )


MatrixValue = Annotated[Any, PlainValidator(_matrix_value)]


def _distinct_experiments(names: list[str]) -> list[str]:
    # A user is always "in two" of [a, a]: the list would fail for a reason no one meant.
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"names {', '.join(repeated)} twice; list each experiment once")
    return names


MatrixName = Annotated[str, Field(pattern=_MATRIX_NAME)]
Matrix = Annotated[
    dict[MatrixName, Annotated[list[MatrixValue], Field(min_length=1)]], Field(min_length=1)
]
Name = Annotated[str, Field(min_length=1, max_length=200)]


def _environments(value: Any) -> Any:
    # `environment: production`, or a list where the same expectations hold in several.
    if isinstance(value, str):
        return [value]
    return value


def _expectation(value: Any) -> Any:
    # `flag: treatment` is `flag: {variant: treatment}`; `flag: null`, not enrolled.
    if value is None or isinstance(value, str):
        return {"variant": value}
    return value


class Expectation(Strict):
    """What one flag gives the case's user; a field not given is not checked, and
    `variant: null` means not enrolled."""

    variant: str | None = None
    reason: Name | None = None
    payload: Any = None

    @model_validator(mode="after")
    def _something_expected(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("expects nothing; give variant, reason or payload")
        return self


class Case(Strict):
    description: str | None = None
    user: dict[str, Any] = Field(default_factory=dict)
    matrix: Matrix | None = None
    at: dict[Name, Percent] = Field(default_factory=dict)
    expect: Annotated[
        dict[Name, Annotated[Expectation, BeforeValidator(_expectation)]], Field(min_length=1)
    ]


class ShareCheck(Strict):
    """`{flag, enrolled: P%}` or `{flag, variant, share: P%}`: a share of all users,
    measured by simulation before targeting."""

    flag: Name
    enrolled: Percent | None = None
    variant: Name | None = None
    share: Percent | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        enrolled_form = self.enrolled is not None and self.variant is None and self.share is None
        variant_form = self.enrolled is None and self.variant is not None and self.share is not None
        if not (enrolled_form or variant_form):
            raise ValueError(
                "give either 'enrolled: P%' (the share of all users enrolled) or "
                "'variant: NAME' with 'share: P%' (that variant's share of all users)"
            )
        return self


class Spec(Strict):
    description: str | None = None
    environment: Annotated[
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | None,
        BeforeValidator(_environments),
    ] = None
    cases: list[Case] = Field(default_factory=list)
    shares: list[ShareCheck] = Field(default_factory=list)
    exclusive: list[
        Annotated[list[Name], Field(min_length=2), AfterValidator(_distinct_experiments)]
    ] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_check(self) -> Self:
        if not (self.cases or self.shares or self.exclusive):
            raise PydanticCustomError(
                "empty_spec",
                "this spec checks nothing; add 'cases', 'shares' or 'exclusive'",
            )
        return self
