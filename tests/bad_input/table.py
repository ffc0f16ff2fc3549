"""The table driver of the bad-input tests.

A table maps each argument of one entry point to the bad values it must
refuse. `numeric(kind)` and the other helpers give the standard list for a
kind of argument: the wrong type, a boolean, `None`, zero, negative, `inf`,
`nan` and a huge value, minus those the argument legitimately accepts.
`check_table(entry, table)` calls the entry point with each bad value and
fails listing every one that did not raise a `ValueError` or `TypeError`
whose message names the argument; `assert_rejects` does the same for one
call (used for layer inputs, where the name is the layer's).
"""

import math
import re

import pytest

INF = math.inf
NAN = math.nan
HUGE_INT = 2**40  # beyond int32 tensor dimensions
HUGE_FLOAT = 1e39  # beyond float32's range

# Per kind: name -> value. Zero and negatives are left out where valid.
_NUMERIC = {
    "positive_int": {
        "string": "8", "float": 2.5, "bool": True, "none": None, "zero": 0,
        "negative": -1, "inf": INF, "nan": NAN, "huge": HUGE_INT,
    },
    "non_negative_int": {
        "string": "8", "float": 2.5, "bool": True, "none": None,
        "negative": -1, "inf": INF, "nan": NAN, "huge": HUGE_INT,
    },
    "positive_float": {
        "string": "0.5", "bool": True, "none": None, "zero": 0,
        "negative": -1.0, "inf": INF, "nan": NAN, "huge": HUGE_FLOAT,
    },
    "non_negative_float": {
        "string": "0.5", "bool": True, "none": None, "negative": -1.0,
        "inf": INF, "nan": NAN, "huge": HUGE_FLOAT,
    },
    # [0, 1]
    "unit_interval": {
        "string": "0.5", "bool": True, "none": None, "negative": -0.1,
        "above_one": 1.5, "inf": INF, "nan": NAN, "huge": HUGE_FLOAT,
    },
    # [0, 1)
    "fraction": {
        "string": "0.5", "bool": True, "none": None, "negative": -0.1,
        "one": 1.0, "inf": INF, "nan": NAN, "huge": HUGE_FLOAT,
    },
}


def numeric(kind, allow_none=False, extra=None, drop=()):
    """The standard bad values of a numeric argument of `kind`."""
    values = dict(_NUMERIC[kind])
    if allow_none:
        values.pop("none")
    for key in drop:
        values.pop(key)
    values.update(extra or {})
    return values


def boolean():
    """Bad values of a boolean flag: truthy strings, ints, None."""
    return {
        "string_false": "False", "string_no": "no", "int_one": 1,
        "int_zero": 0, "none": None, "float": 1.0,
    }


def identifier(kind):
    """Bad Keras object identifiers (initializer, regularizer, ...)."""
    return {"unknown_name": f"no_such_{kind}", "int": 5, "bool": True}


def name_argument():
    """Bad values of a `name=` argument (None is valid)."""
    return {"int": 5, "bool": True, "empty": ""}


def check_table(entry, table, **fixed):
    """Calls `entry(**fixed, argument=value)` for every bad value of
    `table`; fails listing every value that was not refused with a
    ValueError/TypeError naming its argument. One test per entry point
    (not per value: each pytest test pays for a fresh Keras session)."""
    problems = []
    for argument, values in table.items():
        for label, value in values.items():
            problem = _rejection_problem(
                entry, argument, **{**fixed, argument: value}
            )
            if problem:
                problems.append(f"{argument}={value!r} ({label}): {problem}")
    assert not problems, (
        f"{getattr(entry, '__name__', entry)} accepted or garbled "
        f"{len(problems)} bad input(s):\n" + "\n".join(problems)
    )


def _rejection_problem(fn, name, /, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except (ValueError, TypeError) as error:
        if not re.search(re.escape(name), str(error)):
            return (
                f"the {type(error).__name__} does not name {name!r}: "
                f"{error}"
            )
        return None
    except Exception as error:  # noqa: BLE001 - reported, not swallowed
        return f"raised {type(error).__name__} instead: {error}"
    return "no error"


def count(*tables):
    """The number of bad values in `tables` (for the docs' count)."""
    return sum(len(v) for table in tables for v in table.values())


def assert_rejects(fn, name, /, *args, **kwargs):
    """`fn(*args, **kwargs)` raises ValueError/TypeError naming `name`."""
    with pytest.raises((ValueError, TypeError)) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert re.search(re.escape(name), message), (
        f"the {type(info.value).__name__} does not name {name!r}: {message}"
    )
    return info.value
