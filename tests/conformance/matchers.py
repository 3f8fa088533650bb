"""The matcher vocabulary of the conformance vectors (conformance README §4 and §5.1).

Two entry points:

* :func:`check` applies a *value matcher* (a literal or an operator object such as
  ``{"$len": 3, "$each": {"$prefix": "PTRN|"}}``) to a value;
* :func:`check_predictions` applies one *prediction-list assertion* (``{"count": 2}``,
  ``{"where": ..., "then": ...}``) to a normalised prediction list.

:func:`check_object` is the partial object match ("object spec") shared by both.

Every failure raises :class:`MatchError`, an ``AssertionError`` whose message starts
with the JSON path of the offending value (``$.results[0].unique_id: ...``). The
predicates :func:`satisfies` and :func:`satisfies_object` return a bool instead.

Saved step results (``save_as`` labels) and the object that encloses the value being
checked (for ``$eq_field`` / ``$len_of_field``) travel in a :class:`Scope`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ABSENT",
    "LITERAL_TOL",
    "APPROX_TOL",
    "MatchError",
    "Scope",
    "bare_name",
    "json_equal",
    "is_operator_object",
    "resolve_label",
    "check",
    "satisfies",
    "check_object",
    "satisfies_object",
    "check_predictions",
    "VALUE_OPERATORS",
    "PREDICTION_ASSERTION_KEYS",
]

LITERAL_TOL = 1e-9
"""Absolute tolerance for numbers compared by deep equality."""

APPROX_TOL = 1e-6
"""Default tolerance of ``$approx`` (when ``$tol`` is absent), ``$eq_field`` and ``sum``."""

PTRN_PREFIX = "PTRN|"


class _Absent:
    """The value of a field that an object does not have."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


class MatchError(AssertionError):
    """A value does not satisfy its matcher. The message starts with the JSON path."""


@dataclass(frozen=True)
class Scope:
    """What a matcher can refer to besides the value itself.

    ``labels`` maps a ``save_as`` label to the normalised result it saved; ``enclosing``
    is the object whose field is being checked (``None`` at top level).
    """

    labels: Mapping[str, Any] = field(default_factory=dict)
    enclosing: Any = None

    def inside(self, obj: Any) -> Scope:
        return Scope(self.labels, obj)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _fail(path: str, message: str) -> MatchError:
    return MatchError(f"{path}: {message}")


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def bare_name(value: Any) -> Any:
    """A pattern name without its ``PTRN|`` prefix; other values are returned as they are."""
    if isinstance(value, str) and value.startswith(PTRN_PREFIX):
        return value[len(PTRN_PREFIX) :]
    return value


def json_equal(a: Any, b: Any, tol: float = LITERAL_TOL) -> bool:
    """Deep JSON equality: numbers within ``tol``; booleans are not numbers; arrays
    ordered (lists and tuples alike); objects with exactly the same keys; NaN equals NaN."""
    if _is_number(a) and _is_number(b):
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        if math.isinf(fa) or math.isinf(fb):
            return fa == fb
        return abs(fa - fb) <= tol
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y, tol) for x, y in zip(a, b, strict=False))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple, Mapping)) or isinstance(b, (list, tuple, Mapping)):
        return False
    return a == b


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def is_operator_object(spec: Any) -> bool:
    """True for a non-empty object whose keys all start with ``$``."""
    return isinstance(spec, Mapping) and len(spec) > 0 and all(isinstance(k, str) and k.startswith("$") for k in spec)


def resolve_label(labels: Mapping[str, Any], ref: str) -> Any:
    """Follow ``label.key.0.key`` into the saved results (negative list indexes allowed)."""
    if not isinstance(ref, str) or not ref:
        raise MatchError(f"label reference must be a non-empty string, got {ref!r}")
    head, *rest = ref.split(".")
    if head not in labels:
        raise MatchError(f"unknown label {head!r} in reference {ref!r} (known: {sorted(labels)})")
    value = labels[head]
    for part in rest:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and re.fullmatch(r"-?\d+", part):
            index = int(part)
            if not -len(value) <= index < len(value):
                raise MatchError(f"reference {ref!r}: index {index} out of range (length {len(value)})")
            value = value[index]
        else:
            raise MatchError(f"reference {ref!r}: no {part!r} in {_short(value, 120)}")
    return value


def _number(value: Any, path: str, op: str) -> float:
    if not _is_number(value):
        raise _fail(path, f"{op} needs a number, got {_short(value)}")
    return float(value)


def _length(value: Any, path: str, op: str) -> int:
    if not isinstance(value, (list, tuple, str, Mapping)):
        raise _fail(path, f"{op} needs an array, string or object, got {_short(value)}")
    return len(value)


def _array(value: Any, path: str, op: str) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise _fail(path, f"{op} needs an array, got {_short(value)}")
    return value


def _has_element(container: Any, item: Any) -> bool:
    """Array: an element equals item. String: item is a substring. Object: item is a key."""
    if isinstance(container, (list, tuple)):
        return any(json_equal(element, item) for element in container)
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    return False


def _counted(n: int, bounds: Mapping[str, Any], what: str, path: str) -> None:
    """Check ``count`` / ``min`` / ``max`` of a count_where argument."""
    unknown = set(bounds) - {"match", "count", "min", "max"}
    if unknown:
        raise _fail(path, f"count_where: unknown key(s) {sorted(unknown)}")
    if "count" in bounds and n != bounds["count"]:
        raise _fail(path, f"expected exactly {bounds['count']} {what}, found {n}")
    if "min" in bounds and n < bounds["min"]:
        raise _fail(path, f"expected at least {bounds['min']} {what}, found {n}")
    if "max" in bounds and n > bounds["max"]:
        raise _fail(path, f"expected at most {bounds['max']} {what}, found {n}")


# --------------------------------------------------------------------------------------
# Value matchers
# --------------------------------------------------------------------------------------


def check(actual: Any, spec: Any, scope: Scope | None = None, path: str = "$") -> None:
    """Raise :class:`MatchError` unless ``actual`` satisfies the value matcher ``spec``.

    A literal matches by :func:`json_equal`; an operator object requires every operator
    to hold. ``actual`` may be :data:`ABSENT` (a missing field): only ``$exists`` and
    ``$any_of`` can then be satisfied.
    """
    scope = scope if scope is not None else Scope()
    if not is_operator_object(spec):
        if actual is ABSENT:
            raise _fail(path, f"field is missing (expected {_short(spec)})")
        if not json_equal(actual, spec):
            raise _fail(path, f"expected {_short(spec)}, got {_short(actual)}")
        return
    for op, arg in spec.items():
        if op == "$tol":
            continue  # a modifier of $approx
        handler = VALUE_OPERATORS.get(op)
        if handler is None:
            raise _fail(path, f"unknown operator {op}")
        if actual is ABSENT and op not in ("$exists", "$any_of"):
            raise _fail(path, f"field is missing ({op} {_short(arg, 120)})")
        handler(actual, arg, spec, scope, path)


def satisfies(actual: Any, spec: Any, scope: Scope | None = None) -> bool:
    try:
        check(actual, spec, scope)
    except MatchError:
        return False
    return True


def _op_exists(actual, arg, spec, scope, path):
    present = actual is not ABSENT
    if present != bool(arg):
        raise _fail(path, "field is absent" if arg else f"field should be absent, got {_short(actual)}")


def _op_eq(actual, arg, spec, scope, path):
    if not json_equal(actual, arg):
        raise _fail(path, f"$eq: expected {_short(arg)}, got {_short(actual)}")


def _op_ne(actual, arg, spec, scope, path):
    if json_equal(actual, arg):
        raise _fail(path, f"$ne: expected anything but {_short(arg)}")


def _op_approx(actual, arg, spec, scope, path):
    tol = spec.get("$tol", APPROX_TOL)
    value = _number(actual, path, "$approx")
    if not abs(value - float(arg)) <= tol:
        raise _fail(path, f"$approx: expected {arg} ± {tol}, got {actual!r}")


def _comparison(name: str, holds: Callable[[float, float], bool]):
    def op(actual, arg, spec, scope, path):
        if not holds(_number(actual, path, name), arg):
            raise _fail(path, f"{name}: expected {name[1:]} {arg}, got {actual!r}")

    return op


def _op_range(actual, arg, spec, scope, path):
    lo, hi = arg
    value = _number(actual, path, "$range")
    if not lo - LITERAL_TOL <= value <= hi + LITERAL_TOL:
        raise _fail(path, f"$range: expected a value in [{lo}, {hi}], got {actual!r}")


def _op_type(actual, arg, spec, scope, path):
    allowed = arg if isinstance(arg, list) else [arg]
    if _json_type(actual) not in allowed:
        raise _fail(path, f"$type: expected {' or '.join(allowed)}, got {_json_type(actual)} {_short(actual, 120)}")


def _op_len(actual, arg, spec, scope, path):
    n = _length(actual, path, "$len")
    if n != arg:
        raise _fail(path, f"$len: expected length {arg}, got {n}: {_short(actual)}")


def _op_min_len(actual, arg, spec, scope, path):
    n = _length(actual, path, "$min_len")
    if n < arg:
        raise _fail(path, f"$min_len: expected length >= {arg}, got {n}: {_short(actual)}")


def _op_max_len(actual, arg, spec, scope, path):
    n = _length(actual, path, "$max_len")
    if n > arg:
        raise _fail(path, f"$max_len: expected length <= {arg}, got {n}: {_short(actual)}")


def _op_contains(actual, arg, spec, scope, path):
    if not _has_element(actual, arg):
        raise _fail(path, f"$contains: {_short(arg, 120)} not in {_short(actual)}")


def _op_contains_all(actual, arg, spec, scope, path):
    absent = [item for item in arg if not _has_element(actual, item)]
    if absent:
        raise _fail(path, f"$contains_all: {_short(absent, 120)} not in {_short(actual)}")


def _op_contains_any(actual, arg, spec, scope, path):
    if not any(_has_element(actual, item) for item in arg):
        raise _fail(path, f"$contains_any: none of {_short(arg, 120)} in {_short(actual)}")


def _op_not_contains(actual, arg, spec, scope, path):
    if _has_element(actual, arg):
        raise _fail(path, f"$not_contains: {_short(arg, 120)} found in {_short(actual)}")


def _op_contains_none(actual, arg, spec, scope, path):
    found = [item for item in arg if _has_element(actual, item)]
    if found:
        raise _fail(path, f"$contains_none: {_short(found, 120)} found in {_short(actual)}")


def _op_set_eq(actual, arg, spec, scope, path):
    values = _array(actual, path, "$set_eq")
    unexpected = [v for v in values if not _has_element(arg, v)]
    lacking = [v for v in arg if not _has_element(values, v)]
    if unexpected or lacking:
        raise _fail(
            path,
            f"$set_eq: expected the elements {_short(arg, 120)}, got {_short(values)}"
            f" (unexpected {_short(unexpected, 80)}, lacking {_short(lacking, 80)})",
        )


def _op_subset_of(actual, arg, spec, scope, path):
    values = _array(actual, path, "$subset_of")
    outside = [v for v in values if not _has_element(arg, v)]
    if outside:
        raise _fail(path, f"$subset_of: {_short(outside, 120)} not among {_short(arg, 120)}")


def _op_in(actual, arg, spec, scope, path):
    if not any(json_equal(actual, option) for option in arg):
        raise _fail(path, f"$in: {_short(actual)} is not one of {_short(arg)}")


def _op_prefix(actual, arg, spec, scope, path):
    if not (isinstance(actual, str) and actual.startswith(arg)):
        raise _fail(path, f"$prefix: expected a string starting with {arg!r}, got {_short(actual)}")


def _op_regex(actual, arg, spec, scope, path):
    if not (isinstance(actual, str) and re.fullmatch(arg, actual)):
        raise _fail(path, f"$regex: expected a string matching /{arg}/ in full, got {_short(actual)}")


def _op_flat(actual, arg, spec, scope, path):
    flattened: list[Any] = []
    for element in _array(actual, path, "$flat"):
        if isinstance(element, (list, tuple)):
            flattened.extend(element)
        else:
            flattened.append(element)
    check(flattened, arg, scope, f"{path}<flat>")


def _op_each(actual, arg, spec, scope, path):
    for i, element in enumerate(_array(actual, path, "$each")):
        check(element, arg, scope, f"{path}[{i}]")


def _op_item(actual, arg, spec, scope, path):
    index, sub = arg
    values = _array(actual, path, "$item")
    if not -len(values) <= index < len(values):
        raise _fail(path, f"$item: no element {index} in an array of length {len(values)}: {_short(values)}")
    check(values[index], sub, scope, f"{path}[{index}]")


def _op_count_where(actual, arg, spec, scope, path):
    values = _array(actual, path, "$count_where")
    n = sum(1 for element in values if satisfies(element, arg["match"], scope))
    _counted(n, arg, f"elements matching {_short(arg['match'], 120)}", path)


def _op_ordered(actual, arg, spec, scope, path):
    values = _array(actual, path, "$ordered")
    position = 0
    for wanted in arg:
        while position < len(values) and not json_equal(values[position], wanted):
            position += 1
        if position == len(values):
            raise _fail(path, f"$ordered: {_short(arg, 120)} is not a subsequence of {_short(values)}")
        position += 1


def _op_sorted(actual, arg, spec, scope, path):
    values = list(_array(actual, path, "$sorted"))
    if arg not in ("asc", "desc"):
        raise _fail(path, f"$sorted: order must be 'asc' or 'desc', got {arg!r}")
    if values != sorted(values, reverse=(arg == "desc")):
        raise _fail(path, f"$sorted: expected {arg}ending order, got {_short(values)}")


def _op_has(actual, arg, spec, scope, path):
    if not isinstance(actual, Mapping):
        raise _fail(path, f"$has: expected an object, got {_short(actual)}")
    check_object(actual, arg, scope, path)


def _op_any_of(actual, arg, spec, scope, path):
    if not any(satisfies(actual, alternative, scope) for alternative in arg):
        raise _fail(path, f"$any_of: {_short(actual)} matches none of {_short(arg)}")


def _op_not(actual, arg, spec, scope, path):
    if satisfies(actual, arg, scope):
        raise _fail(path, f"$not: {_short(actual)} should not match {_short(arg)}")


def _op_name_of(actual, arg, spec, scope, path):
    expected = resolve_label(scope.labels, arg)
    if not (isinstance(actual, str) and actual and bare_name(actual) == bare_name(expected)):
        raise _fail(path, f"$name_of: expected the pattern name saved as {arg!r} ({expected!r}), got {actual!r}")


def _op_not_name_of(actual, arg, spec, scope, path):
    for ref in arg if isinstance(arg, list) else [arg]:
        other = resolve_label(scope.labels, ref)
        if bare_name(actual) == bare_name(other):
            raise _fail(path, f"$not_name_of: {actual!r} is the name saved as {ref!r}")


def _op_same_as(actual, arg, spec, scope, path):
    expected = resolve_label(scope.labels, arg)
    if not json_equal(actual, expected):
        raise _fail(path, f"$same_as: expected the value saved as {arg!r} ({_short(expected)}), got {_short(actual)}")


def _sibling(scope: Scope, name: str) -> Any:
    enclosing = scope.enclosing
    if isinstance(enclosing, Mapping) and name in enclosing:
        return enclosing[name]
    return ABSENT


def _op_eq_field(actual, arg, spec, scope, path):
    other = _sibling(scope, arg)
    if other is ABSENT or not json_equal(actual, other, APPROX_TOL):
        raise _fail(path, f"$eq_field: expected the value of field {arg!r} ({_short(other)}), got {_short(actual)}")


def _op_len_of_field(actual, arg, spec, scope, path):
    other = _sibling(scope, arg)
    if other is ABSENT:
        raise _fail(path, f"$len_of_field: the enclosing object has no field {arg!r}")
    mine, theirs = _length(actual, path, "$len_of_field"), _length(other, path, "$len_of_field")
    if mine != theirs:
        raise _fail(
            path,
            f"$len_of_field: length {mine} differs from length {theirs} of field {arg!r} "
            f"({_short(actual, 120)} vs {_short(other, 120)})",
        )


VALUE_OPERATORS: dict[str, Callable[[Any, Any, Mapping[str, Any], Scope, str], None]] = {
    "$eq": _op_eq,
    "$ne": _op_ne,
    "$approx": _op_approx,
    "$gt": _comparison("$gt", lambda v, a: v > a),
    "$gte": _comparison("$gte", lambda v, a: v >= a),
    "$lt": _comparison("$lt", lambda v, a: v < a),
    "$lte": _comparison("$lte", lambda v, a: v <= a),
    "$range": _op_range,
    "$type": _op_type,
    "$exists": _op_exists,
    "$len": _op_len,
    "$min_len": _op_min_len,
    "$max_len": _op_max_len,
    "$contains": _op_contains,
    "$contains_all": _op_contains_all,
    "$contains_any": _op_contains_any,
    "$not_contains": _op_not_contains,
    "$contains_none": _op_contains_none,
    "$set_eq": _op_set_eq,
    "$subset_of": _op_subset_of,
    "$in": _op_in,
    "$prefix": _op_prefix,
    "$regex": _op_regex,
    "$flat": _op_flat,
    "$each": _op_each,
    "$item": _op_item,
    "$count_where": _op_count_where,
    "$ordered": _op_ordered,
    "$sorted": _op_sorted,
    "$has": _op_has,
    "$any_of": _op_any_of,
    "$not": _op_not,
    "$name_of": _op_name_of,
    "$not_name_of": _op_not_name_of,
    "$same_as": _op_same_as,
    "$eq_field": _op_eq_field,
    "$len_of_field": _op_len_of_field,
}
"""Every value operator of README §4 (``$tol`` is a modifier of ``$approx``)."""


# --------------------------------------------------------------------------------------
# Object specs
# --------------------------------------------------------------------------------------


def _may_be_absent(sub: Any) -> bool:
    return is_operator_object(sub) and ("$exists" in sub or "$any_of" in sub)


def check_object(obj: Any, spec: Mapping[str, Any], scope: Scope | None = None, path: str = "$") -> None:
    """Partial object match: each key of ``spec`` names a field whose value must satisfy
    the key's matcher. A field must exist unless its matcher is an operator object with
    ``$exists`` or ``$any_of`` (which then decide). The key ``"$any_of"`` holds a list of
    object specs of which at least one must match ``obj`` (an OR across fields)."""
    scope = scope if scope is not None else Scope()
    if not isinstance(obj, Mapping):
        raise _fail(path, f"expected an object, got {_short(obj)}")
    if not isinstance(spec, Mapping):
        raise _fail(path, f"object spec must be an object, got {_short(spec)}")
    inner = scope.inside(obj)
    for key, sub in spec.items():
        if key == "$any_of":
            if not any(satisfies_object(obj, alternative, scope) for alternative in sub):
                raise _fail(path, f"object matches none of the alternatives {_short(sub)}")
            continue
        field_path = f"{path}.{key}"
        if key not in obj:
            if not _may_be_absent(sub):
                raise _fail(field_path, f"field is missing (fields present: {sorted(obj)})")
            check(ABSENT, sub, inner, field_path)
            continue
        check(obj[key], sub, inner, field_path)


def satisfies_object(obj: Any, spec: Mapping[str, Any], scope: Scope | None = None) -> bool:
    try:
        check_object(obj, spec, scope)
    except MatchError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Prediction-list assertions (README §5.1)
# --------------------------------------------------------------------------------------

PREDICTION_ASSERTION_KEYS = frozenset(
    {
        "count",
        "min_count",
        "max_count",
        "contains",
        "not_contains",
        "all",
        "first",
        "at",
        "where",
        "then",
        "required",
        "count_where",
        "sorted_by",
        "order",
        "unique_field",
        "sum",
        "max_by",
        "same_as",
        "comment",
    }
)


def _summary(predictions: list, limit: int = 6) -> str:
    shown = (
        "name",
        "frequency",
        "similarity",
        "potential",
        "matches",
        "past",
        "present",
        "future",
        "missing",
        "extras",
    )
    brief = [{k: p[k] for k in shown if isinstance(p, Mapping) and k in p} for p in predictions[:limit]]
    more = f" ... ({len(predictions)} in all)" if len(predictions) > limit else ""
    return _short(brief, 1200) + more


def _numeric_field(prediction: Any, name: str, path: str, what: str) -> float:
    value = prediction.get(name, ABSENT) if isinstance(prediction, Mapping) else ABSENT
    if not _is_number(value):
        raise _fail(path, f"{what}: field {name!r} is not a number: {_short(value, 120)}")
    return float(value)


def check_predictions(
    predictions: Any, assertion: Mapping[str, Any], scope: Scope | None = None, path: str = "$"
) -> None:
    """Raise :class:`MatchError` unless ``predictions`` (a list of prediction objects)
    satisfies every key of ``assertion`` (README §5.1)."""
    scope = scope if scope is not None else Scope()
    if not isinstance(predictions, (list, tuple)):
        raise _fail(path, f"predictions must be a list, got {_short(predictions)}")
    if not isinstance(assertion, Mapping):
        raise _fail(path, f"a prediction assertion must be an object, got {_short(assertion)}")
    unknown = set(assertion) - PREDICTION_ASSERTION_KEYS
    if unknown:
        raise _fail(path, f"unknown prediction assertion key(s) {sorted(unknown)}")
    preds = list(predictions)
    n = len(preds)

    def element(i: int) -> str:
        return f"{path}[{i}]"

    if "count" in assertion and n != assertion["count"]:
        raise _fail(path, f"count: expected {assertion['count']} predictions, got {n}: {_summary(preds)}")
    if "min_count" in assertion and n < assertion["min_count"]:
        raise _fail(
            path, f"min_count: expected at least {assertion['min_count']} predictions, got {n}: {_summary(preds)}"
        )
    if "max_count" in assertion and n > assertion["max_count"]:
        raise _fail(
            path, f"max_count: expected at most {assertion['max_count']} predictions, got {n}: {_summary(preds)}"
        )

    if "contains" in assertion:
        spec = assertion["contains"]
        if not any(satisfies_object(p, spec, scope) for p in preds):
            raise _fail(path, f"contains: no prediction matches {_short(spec)}; predictions: {_summary(preds)}")

    if "not_contains" in assertion:
        spec = assertion["not_contains"]
        for i, p in enumerate(preds):
            if satisfies_object(p, spec, scope):
                raise _fail(element(i), f"not_contains: prediction matches {_short(spec)}: {_summary([p])}")

    if "all" in assertion:
        for i, p in enumerate(preds):
            check_object(p, assertion["all"], scope, element(i))

    if "first" in assertion:
        if not preds:
            raise _fail(path, "first: there are no predictions")
        check_object(preds[0], assertion["first"], scope, element(0))

    if "at" in assertion:
        index, spec = assertion["at"]
        if not -n <= index < n:
            raise _fail(path, f"at: no prediction {index} among {n}")
        check_object(preds[index], spec, scope, element(index))

    if "where" in assertion:
        selector = assertion["where"]
        chosen = next((i for i, p in enumerate(preds) if satisfies_object(p, selector, scope)), None)
        if chosen is None:
            if assertion.get("required", True):
                raise _fail(path, f"where: no prediction matches {_short(selector)}; predictions: {_summary(preds)}")
        else:
            check_object(preds[chosen], assertion.get("then", {}), scope, element(chosen))

    if "count_where" in assertion:
        bounds = assertion["count_where"]
        m = sum(1 for p in preds if satisfies_object(p, bounds["match"], scope))
        _counted(m, bounds, f"predictions matching {_short(bounds['match'], 200)}", path)

    if "sorted_by" in assertion:
        name = assertion["sorted_by"]
        order = assertion.get("order", "desc")
        if order not in ("asc", "desc"):
            raise _fail(path, f"sorted_by: order must be 'asc' or 'desc', got {order!r}")
        values = [_numeric_field(p, name, element(i), "sorted_by") for i, p in enumerate(preds)]
        for i in range(1, n):
            before, after = values[i - 1], values[i]
            out_of_order = after > before + LITERAL_TOL if order == "desc" else after < before - LITERAL_TOL
            if out_of_order:
                raise _fail(path, f"sorted_by {name} ({order}): predictions {i - 1} and {i} are out of order: {values}")

    if "unique_field" in assertion:
        name = assertion["unique_field"]
        seen: list[Any] = []
        for i, p in enumerate(preds):
            value = bare_name(p.get(name)) if isinstance(p, Mapping) else None
            if any(json_equal(value, earlier) for earlier in seen):
                raise _fail(element(i), f"unique_field {name}: value {_short(value, 120)} occurs more than once")
            seen.append(value)

    if "sum" in assertion:
        spec = assertion["sum"]
        total = 0.0
        for i, p in enumerate(preds):
            total += _numeric_field(p, spec["field"], element(i), "sum")
        tol = spec.get("tol", APPROX_TOL)
        if not abs(total - spec["approx"]) <= tol:
            raise _fail(path, f"sum of {spec['field']}: expected {spec['approx']} ± {tol}, got {total}")

    if "max_by" in assertion:
        spec = assertion["max_by"]
        if not preds:
            raise _fail(path, "max_by: there are no predictions")
        values = [_numeric_field(p, spec["field"], element(i), "max_by") for i, p in enumerate(preds)]
        best = max(values)
        top = [p for p, v in zip(preds, values, strict=False) if abs(v - best) <= LITERAL_TOL]
        if not any(satisfies_object(p, spec["match"], scope) for p in top):
            raise _fail(
                path,
                f"max_by {spec['field']}: no prediction with the maximum {best} matches "
                f"{_short(spec['match'])}: {_summary(top)}",
            )

    if "same_as" in assertion:
        _check_same_as(preds, assertion["same_as"], scope, path)


def _check_same_as(preds: list, spec: Mapping[str, Any], scope: Scope, path: str) -> None:
    """Element-wise comparison with a saved prediction list (``fields`` omitted: all
    fields; ``[]``: none, only the lengths)."""
    ref = spec["ref"]
    saved = resolve_label(scope.labels, ref)
    if not isinstance(saved, (list, tuple)):
        raise _fail(path, f"same_as: the value saved as {ref!r} is not a list: {_short(saved)}")
    mine, theirs = list(preds), list(saved)
    order = spec.get("order", "exact")
    if order == "by_name":

        def by_name(p: Any) -> str:
            return str(bare_name(p.get("name"))) if isinstance(p, Mapping) else ""

        mine.sort(key=by_name)
        theirs.sort(key=by_name)
    elif order != "exact":
        raise _fail(path, f"same_as: order must be 'exact' or 'by_name', got {order!r}")
    if len(mine) != len(theirs):
        raise _fail(path, f"same_as {ref}: {len(mine)} predictions, but {len(theirs)} were saved")
    fields = spec.get("fields")
    for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        names = fields if fields is not None else sorted(set(a) | set(b))
        for name in names:
            left, right = a.get(name, ABSENT), b.get(name, ABSENT)
            if left is ABSENT or right is ABSENT:
                if left is not right:
                    raise _fail(
                        f"{path}[{i}].{name}",
                        f"same_as {ref}: field present on one side only "
                        f"({_short(left, 120)} vs saved {_short(right, 120)})",
                    )
                continue
            if not json_equal(left, right):
                raise _fail(f"{path}[{i}].{name}", f"same_as {ref}: {_short(left, 200)} != saved {_short(right, 200)}")
