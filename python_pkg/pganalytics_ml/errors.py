"""Errors that reach the SQL caller with a SQLSTATE, a message and a hint."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

INVALID_PARAMETER = "22023"
NULL_VALUE = "22004"
NO_DATA_FOUND = "P0002"
PREREQUISITE_STATE = "55000"
INSUFFICIENT_PRIVILEGE = "42501"
READ_ONLY_TRANSACTION = "25006"
INVALID_TRANSACTION_TERMINATION = "2D000"
FEATURE_NOT_SUPPORTED = "0A000"


class PgmlError(Exception):
    """An error meant for the caller of a SQL function."""

    def __init__(self, message: str, *, sqlstate: str, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.hint = hint
        self.detail = detail


def invalid(message: str, hint: str | None = None, detail: str | None = None) -> PgmlError:
    return PgmlError(message, sqlstate=INVALID_PARAMETER, hint=hint, detail=detail)


def null_argument(name: str, hint: str | None = None) -> PgmlError:
    return PgmlError(f"{name} must not be NULL", sqlstate=NULL_VALUE, hint=hint)


def not_found(message: str, hint: str | None = None) -> PgmlError:
    return PgmlError(message, sqlstate=NO_DATA_FOUND, hint=hint)


def shown(value: Any, limit: int = 40) -> str:
    """``value`` as an error message quotes it: long text cut short, huge numbers in exponent form."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = repr(value)
        if len(text) <= 24:
            return text
        try:
            return f"{float(value):.6g}"
        except OverflowError:
            return f"{text[:6]}... ({len(text)} digits)"
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _reportable(plpy: Any) -> type:
    """A plpy.Error subclass that PL/Python reports as "pganalytics_ml: <message>".

    PL/Python prefixes an error's message with its exception type; plpy.error() would read
    "plpy.Error: ...". This type names the extension instead, and still carries SQLSTATE and hint.
    """
    cls = _reportable_types.get(id(plpy.Error))
    if cls is None:
        cls = type("pganalytics_ml", (plpy.Error,), {"__module__": "builtins"})
        _reportable_types[id(plpy.Error)] = cls
    return cls


_reportable_types: dict[int, type] = {}


def sql_entry(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turns a PgmlError raised by ``func(plpy, ...)`` into a PostgreSQL error with its SQLSTATE."""

    @functools.wraps(func)
    def wrapper(plpy: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(plpy, *args, **kwargs)
        except PgmlError as caught:
            err = caught
        except Exception as caught:
            if not _for_the_caller(plpy, caught):
                raise
            err = _from_spi_error(caught)
        # Raised outside the except block, so the report carries no chained Python traceback.
        raise as_postgres_error(plpy, err)

    return wrapper


# SQLSTATEs of errors that the extension's SQL helpers raise for the caller to act on. They pass on with
# their own message, hint and detail, instead of PL/Python's "spiexceptions.InvalidParameterValue: ...".
_CALLER_SQLSTATES = ("22", "P0", "55", "25", "42501")


def _for_the_caller(plpy: Any, exc: Exception) -> bool:
    spi_error = getattr(plpy, "SPIError", None)
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return spi_error is not None and isinstance(exc, spi_error) and sqlstate.startswith(_CALLER_SQLSTATES)


def _from_spi_error(exc: Exception) -> PgmlError:
    # spidata is (sqlerrcode, detail, hint, query, position, ...), as PL/Python sets it.
    spidata = getattr(exc, "spidata", None) or (None, None, None)
    message = exc.args[0] if exc.args else str(exc)
    return PgmlError(str(message), sqlstate=exc.sqlstate, hint=spidata[2], detail=spidata[1])


def as_postgres_error(plpy: Any, err: PgmlError) -> Exception:
    exc = _reportable(plpy)(err.message)
    exc.sqlstate = err.sqlstate
    if err.hint is not None:
        exc.hint = err.hint
    if err.detail is not None:
        exc.detail = err.detail
    return exc
