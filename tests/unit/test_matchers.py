"""The conformance matcher vocabulary (tests/conformance/matchers.py): for every value
operator and every prediction-list assertion, one value that satisfies it and one that
does not."""

from __future__ import annotations

import pytest

from tests.conformance.matchers import (
    ABSENT,
    PREDICTION_ASSERTION_KEYS,
    VALUE_OPERATORS,
    MatchError,
    Scope,
    check,
    check_object,
    check_predictions,
    json_equal,
    resolve_label,
)

NAME_A = "PTRN|" + "a" * 40
NAME_B = "PTRN|" + "b" * 40
LABELS = {
    "p": NAME_A,
    "q": NAME_B,
    "seq": {"auto_learned_patterns": [NAME_A, NAME_B]},
    "events": [["a"], ["b"]],
}
SCOPE = Scope(LABELS)

# (operator, spec, a value that matches, a value that does not)
OPERATOR_CASES = [
    ("$eq", {"$eq": [1, {"a": 2}]}, [1.0, {"a": 2}], [1, {"a": 3}]),
    ("$ne", {"$ne": "x"}, "y", "x"),
    ("$approx", {"$approx": 0.5}, 0.5000001, 0.501),
    ("$approx+$tol", {"$approx": 0.5, "$tol": 0.1}, 0.59, 0.61),
    ("$gt", {"$gt": 1}, 1.5, 1),
    ("$gte", {"$gte": 1}, 1, 0.99),
    ("$lt", {"$lt": 1}, 0.5, 1),
    ("$lte", {"$lte": 1}, 1, 1.01),
    ("$range", {"$range": [0, 1]}, 1.0, 1.1),
    ("$type", {"$type": "number"}, 3, True),
    ("$type list", {"$type": ["string", "null"]}, None, 0),
    ("$len", {"$len": 2}, ["a", "b"], ["a"]),
    ("$min_len", {"$min_len": 2}, "abc", "a"),
    ("$max_len", {"$max_len": 1}, {"k": 1}, {"k": 1, "j": 2}),
    ("$contains", {"$contains": ["a"]}, [["a"], ["b"]], [["b"]]),
    ("$contains (string)", {"$contains": "ell"}, "hello", "help"),
    ("$contains (object key)", {"$contains": "k"}, {"k": 0}, {"j": 0}),
    ("$contains_all", {"$contains_all": ["a", "b"]}, ["b", "c", "a"], ["a", "c"]),
    ("$contains_any", {"$contains_any": ["a", "z"]}, ["z"], ["b"]),
    ("$not_contains", {"$not_contains": "a"}, ["b"], ["a", "b"]),
    ("$contains_none", {"$contains_none": ["a", "z"]}, ["b"], ["b", "z"]),
    ("$set_eq", {"$set_eq": ["a", "b"]}, ["b", "a", "b"], ["a", "b", "c"]),
    ("$subset_of", {"$subset_of": ["a", "b"]}, ["a", "a"], ["a", "c"]),
    ("$in", {"$in": ["", "x"]}, "", "y"),
    ("$prefix", {"$prefix": "PTRN|"}, NAME_A, "a" * 40),
    ("$regex", {"$regex": "PTRN\\|[0-9a-f]{40}"}, NAME_A, NAME_A + "0"),
    ("$flat", {"$flat": ["a", "b", "c"]}, [["a", "b"], ["c"]], [["a"], ["c", "b"]]),
    ("$each", {"$each": {"$prefix": "V"}}, ["V1", "V2"], ["V1", "X"]),
    ("$item", {"$item": [-1, "c"]}, ["a", "c"], ["c", "a"]),
    ("$count_where", {"$count_where": {"match": {"$prefix": "V"}, "min": 1, "max": 2}}, ["V", "a", "V"], ["V"] * 3),
    ("$ordered", {"$ordered": ["a", "c"]}, ["a", "b", "c"], ["c", "b", "a"]),
    ("$sorted", {"$sorted": "desc"}, [3, 2, 2, 1], [1, 2]),
    ("$has", {"$has": {"a": 1, "b": {"$exists": False}}}, {"a": 1, "c": 0}, {"a": 1, "b": 0}),
    ("$any_of", {"$any_of": [{"$len": 0}, {"$contains": "x"}]}, ["x", "y"], ["y"]),
    ("$not", {"$not": {"$contains": "x"}}, ["y"], ["x"]),
    ("$name_of", {"$name_of": "seq.auto_learned_patterns.0"}, "a" * 40, NAME_B),
    ("$not_name_of", {"$not_name_of": ["p", "q"]}, "PTRN|" + "c" * 40, "b" * 40),
    ("$same_as", {"$same_as": "events"}, [["a"], ["b"]], [["b"], ["a"]]),
    ("literal object", {}, {}, {"a": 1}),
    ("literal number", 0.1, 0.1 + 1e-12, 0.1 + 1e-6),
]


@pytest.mark.parametrize("name, spec, good, bad", OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_value_operator_accepts_a_match(name, spec, good, bad):
    check(good, spec, SCOPE)


@pytest.mark.parametrize("name, spec, good, bad", OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_value_operator_rejects_a_mismatch(name, spec, good, bad):
    with pytest.raises(MatchError):
        check(bad, spec, SCOPE)


def test_every_value_operator_is_exercised():
    tested = {op for _, spec, _, _ in OPERATOR_CASES if isinstance(spec, dict) for op in spec}
    tested |= {"$exists", "$eq_field", "$len_of_field"}  # tested below, inside objects
    assert set(VALUE_OPERATORS) | {"$tol"} <= tested


# --- operators that need an enclosing object ---------------------------------------


def test_exists_true_and_false():
    check_object({"a": 1}, {"a": {"$exists": True}, "b": {"$exists": False}})
    with pytest.raises(MatchError, match=r"\$\.b"):
        check_object({"a": 1, "b": 2}, {"b": {"$exists": False}})
    with pytest.raises(MatchError, match=r"\$\.a"):
        check_object({}, {"a": {"$exists": True}})


def test_eq_field_compares_with_a_sibling_within_1e_6():
    spec = {"bayesian_likelihood": {"$eq_field": "similarity"}}
    check_object({"similarity": 0.5, "bayesian_likelihood": 0.5000001}, spec)
    with pytest.raises(MatchError, match="similarity"):
        check_object({"similarity": 0.5, "bayesian_likelihood": 0.6}, spec)
    with pytest.raises(MatchError):
        check_object({"bayesian_likelihood": 0.5}, spec)


def test_len_of_field_compares_lengths_with_a_sibling():
    spec = {"missing": {"$len_of_field": "present"}}
    check_object({"present": [["a"], ["b"]], "missing": [[], ["c"]]}, spec)
    with pytest.raises(MatchError, match="present"):
        check_object({"present": [["a"], ["b"]], "missing": [[]]}, spec)


def test_any_of_may_allow_an_absent_field():
    spec = {"type": {"$any_of": [{"$exists": False}, {"$in": ["prototypical", "episodic"]}]}}
    check_object({}, spec)
    check_object({"type": "episodic"}, spec)
    with pytest.raises(MatchError):
        check_object({"type": "other"}, spec)


def test_object_level_any_of_is_an_or_across_fields():
    spec = {"$any_of": [{"exists": False}, {"expired": True}]}
    check_object({"exists": False, "expired": False}, spec)
    check_object({"exists": True, "expired": True}, spec)
    with pytest.raises(MatchError, match="none of the alternatives"):
        check_object({"exists": True, "expired": False}, spec)


def test_object_spec_needs_listed_fields_and_ignores_others():
    check_object({"a": 1, "extra": 2}, {"a": 1})
    with pytest.raises(MatchError, match=r"^\$\.b: field is missing"):
        check_object({"a": 1}, {"b": 1})


def test_a_missing_field_fails_every_operator_but_exists_and_any_of():
    with pytest.raises(MatchError, match="missing"):
        check(ABSENT, {"$not": 1})
    check(ABSENT, {"$exists": False})


# --- deep equality, paths, labels ----------------------------------------------------


def test_json_equal_rules():
    assert json_equal(1, 1.0 + 1e-10)
    assert not json_equal(1, True)
    assert not json_equal({"a": 1}, {"a": 1, "b": None})
    assert json_equal([["a"]], (("a",),))
    assert json_equal(float("nan"), float("nan"))


def test_failure_message_names_the_json_path():
    with pytest.raises(MatchError, match=r"^\$\.results\[2\]\.unique_id: expected 'x', got 'y'"):
        check(
            {"results": [{}, {}, {"unique_id": "y"}]},
            {"$has": {"results": {"$item": [2, {"$has": {"unique_id": "x"}}]}}},
        )


def test_resolve_label_follows_dotted_paths():
    assert resolve_label(LABELS, "seq.auto_learned_patterns.-1") == NAME_B
    with pytest.raises(MatchError, match="unknown label"):
        resolve_label(LABELS, "nope")
    with pytest.raises(MatchError, match="out of range"):
        resolve_label(LABELS, "seq.auto_learned_patterns.5")


def test_unknown_operator_is_an_error():
    with pytest.raises(MatchError, match=r"unknown operator \$nope"):
        check(1, {"$nope": 1})


# --- prediction-list assertions -------------------------------------------------------


def _pred(name, similarity, potential, frequency=1, **extra):
    return {"name": name, "similarity": similarity, "potential": potential, "frequency": frequency, **extra}


PREDS = [
    _pred("a" * 40, 0.9, 3.0, 2, matches=["x", "y"]),
    _pred("b" * 40, 0.5, 2.0, 1, matches=["x"]),
    _pred("c" * 40, 0.5, 1.0, 1, matches=[]),
]
SAVED = {
    **LABELS,
    "before": [dict(p) for p in PREDS],
    "shuffled": [dict(p) for p in reversed(PREDS)],
    "other": [dict(p, potential=0.0) for p in PREDS],
}
PRED_SCOPE = Scope(SAVED)

# (name, assertion that holds for PREDS, assertion that does not)
PREDICTION_CASES = [
    ("count", {"count": 3}, {"count": 2}),
    ("min_count", {"min_count": 3}, {"min_count": 4}),
    ("max_count", {"max_count": 3}, {"max_count": 2}),
    (
        "contains",
        {"contains": {"name": {"$name_of": "p"}, "frequency": 2}},
        {"contains": {"name": {"$name_of": "p"}, "frequency": 1}},
    ),
    ("not_contains", {"not_contains": {"similarity": {"$lt": 0.5}}}, {"not_contains": {"similarity": 0.5}}),
    ("all", {"all": {"similarity": {"$gte": 0.5}}}, {"all": {"similarity": {"$gt": 0.5}}}),
    ("first", {"first": {"name": {"$name_of": "p"}}}, {"first": {"name": {"$name_of": "q"}}}),
    ("at", {"at": [-1, {"potential": 1.0}]}, {"at": [3, {}]}),
    (
        "where/then",
        {"where": {"similarity": 0.5}, "then": {"name": {"$name_of": "q"}}},
        {"where": {"similarity": 0.5}, "then": {"potential": 1.0}},
    ),
    (
        "where/required",
        {"where": {"similarity": 0.1}, "then": {}, "required": False},
        {"where": {"similarity": 0.1}, "then": {}},
    ),
    (
        "count_where",
        {"count_where": {"match": {"matches": {"$contains": "x"}}, "count": 2}},
        {"count_where": {"match": {"matches": {"$contains": "x"}}, "max": 1}},
    ),
    ("sorted_by", {"sorted_by": "potential"}, {"sorted_by": "potential", "order": "asc"}),
    ("sorted_by ties", {"sorted_by": "similarity", "order": "desc"}, {"sorted_by": "similarity", "order": "asc"}),
    ("unique_field", {"unique_field": "name"}, {"unique_field": "similarity"}),
    ("sum", {"sum": {"field": "potential", "approx": 6.0}}, {"sum": {"field": "potential", "approx": 6.1}}),
    (
        "max_by",
        {"max_by": {"field": "similarity", "match": {"frequency": 2}}},
        {"max_by": {"field": "potential", "match": {"frequency": 1}}},
    ),
    ("same_as exact", {"same_as": {"ref": "before"}}, {"same_as": {"ref": "shuffled"}}),
    (
        "same_as by_name",
        {"same_as": {"ref": "shuffled", "order": "by_name"}},
        {"same_as": {"ref": "other", "order": "by_name"}},
    ),
    (
        "same_as fields",
        {"same_as": {"ref": "other", "fields": ["name", "similarity"]}},
        {"same_as": {"ref": "other", "fields": ["potential"]}},
    ),
    ("same_as no fields", {"same_as": {"ref": "other", "fields": []}}, {"same_as": {"ref": "events", "fields": []}}),
]


@pytest.mark.parametrize("name, good, bad", PREDICTION_CASES, ids=[c[0] for c in PREDICTION_CASES])
def test_prediction_assertion_holds(name, good, bad):
    check_predictions(PREDS, good, PRED_SCOPE)


@pytest.mark.parametrize("name, good, bad", PREDICTION_CASES, ids=[c[0] for c in PREDICTION_CASES])
def test_prediction_assertion_fails(name, good, bad):
    with pytest.raises(MatchError):
        check_predictions(PREDS, bad, PRED_SCOPE)


def test_every_prediction_assertion_is_exercised():
    tested = {key for _, good, bad in PREDICTION_CASES for key in (*good, *bad)}
    assert PREDICTION_ASSERTION_KEYS - {"comment"} <= tested


def test_first_and_max_by_fail_on_an_empty_list():
    with pytest.raises(MatchError, match="no predictions"):
        check_predictions([], {"first": {}})
    with pytest.raises(MatchError, match="no predictions"):
        check_predictions([], {"max_by": {"field": "potential", "match": {}}})
    check_predictions([], {"all": {"similarity": 2}, "count": 0})


def test_unknown_prediction_assertion_key_is_an_error():
    with pytest.raises(MatchError, match="unknown prediction assertion"):
        check_predictions(PREDS, {"firts": {}})


def test_prediction_failure_names_the_element():
    with pytest.raises(MatchError, match=r"^\$\[1\]\.similarity"):
        check_predictions(PREDS, {"all": {"similarity": {"$gt": 0.6}}})
