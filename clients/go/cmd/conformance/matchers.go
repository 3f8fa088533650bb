package main

// The matcher vocabulary of the conformance vectors (tests/conformance README §4
// and §5.1), ported from tests/conformance/matchers.py, which stays the
// executable definition: when the two disagree, matchers.py is right.
//
// Values are what encoding/json decodes into `any`: nil, bool, float64, string,
// []any and map[string]any. Step results are built from the same types, so a
// vector's literal and a normalised result compare with one deep equality.

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

const (
	literalTol = 1e-9 // numbers compared by deep equality
	approxTol  = 1e-6 // default of $approx, and $eq_field and sum
	ptrnPrefix = "PTRN|"
)

// absent is the value of a field that an object does not have.
type absentT struct{}

var absent = absentT{}

// matchError is a failed expectation; its message starts with the JSON path.
type matchError struct{ msg string }

func (e *matchError) Error() string { return e.msg }

func fail(path, format string, args ...any) error {
	return &matchError{path + ": " + fmt.Sprintf(format, args...)}
}

// scope carries the saved step results and the object enclosing the value being
// checked (for $eq_field and $len_of_field).
type scope struct {
	labels    map[string]any
	enclosing any
}

func (s scope) inside(obj any) scope { return scope{s.labels, obj} }

func short(v any) string {
	if v == absent {
		return "<absent>"
	}
	b, err := json.Marshal(v)
	text := string(b)
	if err != nil {
		text = fmt.Sprintf("%v", v)
	}
	if len(text) > 300 {
		text = text[:297] + "..."
	}
	return text
}

func isNumber(v any) bool { _, ok := v.(float64); return ok }

func bareName(v any) any {
	if s, ok := v.(string); ok && strings.HasPrefix(s, ptrnPrefix) {
		return s[len(ptrnPrefix):]
	}
	return v
}

func jsonEqualTol(a, b any, tol float64) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return false
		}
		if math.IsNaN(x) || math.IsNaN(y) {
			return math.IsNaN(x) && math.IsNaN(y)
		}
		if math.IsInf(x, 0) || math.IsInf(y, 0) {
			return x == y
		}
		return math.Abs(x-y) <= tol
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case nil:
		return b == nil
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqualTol(x[i], y[i], tol) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqualTol(v, w, tol) {
				return false
			}
		}
		return true
	}
	return false
}

func jsonEqual(a, b any) bool { return jsonEqualTol(a, b, literalTol) }

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func isOperatorObject(spec any) bool {
	m, ok := spec.(map[string]any)
	if !ok || len(m) == 0 {
		return false
	}
	for k := range m {
		if !strings.HasPrefix(k, "$") {
			return false
		}
	}
	return true
}

// sortedKeys gives a map's keys in a fixed order, so that failures are reproducible.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var indexRe = regexp.MustCompile(`^-?\d+$`)

// resolveLabel follows `label.key.0.key` into the saved results.
func resolveLabel(labels map[string]any, ref any) (any, error) {
	r, ok := ref.(string)
	if !ok || r == "" {
		return nil, &matchError{fmt.Sprintf("label reference must be a non-empty string, got %s", short(ref))}
	}
	parts := strings.Split(r, ".")
	value, ok := labels[parts[0]]
	if !ok {
		return nil, &matchError{fmt.Sprintf("unknown label %q in reference %q", parts[0], r)}
	}
	for _, part := range parts[1:] {
		if m, ok := value.(map[string]any); ok {
			if v, ok := m[part]; ok {
				value = v
				continue
			}
		}
		if l, ok := value.([]any); ok && indexRe.MatchString(part) {
			i, _ := strconv.Atoi(part)
			if i < -len(l) || i >= len(l) {
				return nil, &matchError{fmt.Sprintf("reference %q: index %d out of range (length %d)", r, i, len(l))}
			}
			if i < 0 {
				i += len(l)
			}
			value = l[i]
			continue
		}
		return nil, &matchError{fmt.Sprintf("reference %q: no %q in %s", r, part, short(value))}
	}
	return value, nil
}

func number(v any, path, op string) (float64, error) {
	f, ok := v.(float64)
	if !ok {
		return 0, fail(path, "%s needs a number, got %s", op, short(v))
	}
	return f, nil
}

func length(v any, path, op string) (int, error) {
	switch x := v.(type) {
	case []any:
		return len(x), nil
	case string:
		return len([]rune(x)), nil
	case map[string]any:
		return len(x), nil
	}
	return 0, fail(path, "%s needs an array, string or object, got %s", op, short(v))
}

func array(v any, path, op string) ([]any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fail(path, "%s needs an array, got %s", op, short(v))
	}
	return l, nil
}

// hasElement: array, an element equals item; string, item is a substring;
// object, item is a key.
func hasElement(container, item any) bool {
	switch c := container.(type) {
	case []any:
		for _, e := range c {
			if jsonEqual(e, item) {
				return true
			}
		}
	case string:
		s, ok := item.(string)
		return ok && strings.Contains(c, s)
	case map[string]any:
		s, ok := item.(string)
		if ok {
			_, has := c[s]
			return has
		}
	}
	return false
}

func toInt(v any) (int, bool) {
	f, ok := v.(float64)
	return int(f), ok
}

func counted(n int, bounds map[string]any, what, path string) error {
	for k := range bounds {
		if k != "match" && k != "count" && k != "min" && k != "max" {
			return fail(path, "count_where: unknown key %q", k)
		}
	}
	if c, ok := toInt(bounds["count"]); ok && n != c {
		return fail(path, "expected exactly %d %s, found %d", c, what, n)
	}
	if c, ok := toInt(bounds["min"]); ok && n < c {
		return fail(path, "expected at least %d %s, found %d", c, what, n)
	}
	if c, ok := toInt(bounds["max"]); ok && n > c {
		return fail(path, "expected at most %d %s, found %d", c, what, n)
	}
	return nil
}

// check returns an error unless actual satisfies the value matcher spec.
func check(actual, spec any, sc scope, path string) error {
	if !isOperatorObject(spec) {
		if actual == absent {
			return fail(path, "field is missing (expected %s)", short(spec))
		}
		if !jsonEqual(actual, spec) {
			return fail(path, "expected %s, got %s", short(spec), short(actual))
		}
		return nil
	}
	ops := spec.(map[string]any)
	for _, op := range sortedKeys(ops) {
		if op == "$tol" {
			continue // a modifier of $approx
		}
		handler, ok := valueOperators[op]
		if !ok {
			return fail(path, "unknown operator %s", op)
		}
		if actual == absent && op != "$exists" && op != "$any_of" {
			return fail(path, "field is missing (%s %s)", op, short(ops[op]))
		}
		if err := handler(actual, ops[op], ops, sc, path); err != nil {
			return err
		}
	}
	return nil
}

func satisfies(actual, spec any, sc scope) bool { return check(actual, spec, sc, "$") == nil }

type operator func(actual, arg any, spec map[string]any, sc scope, path string) error

func comparison(name string, holds func(v, a float64) bool) operator {
	return func(actual, arg any, _ map[string]any, _ scope, path string) error {
		v, err := number(actual, path, name)
		if err != nil {
			return err
		}
		if !holds(v, arg.(float64)) {
			return fail(path, "%s: expected %s %v, got %v", name, name[1:], arg, actual)
		}
		return nil
	}
}

var valueOperators map[string]operator

func init() {
	valueOperators = map[string]operator{
		"$exists": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			want, _ := arg.(bool)
			if (actual != absent) != want {
				if want {
					return fail(path, "field is absent")
				}
				return fail(path, "field should be absent, got %s", short(actual))
			}
			return nil
		},
		"$eq": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			if !jsonEqual(actual, arg) {
				return fail(path, "$eq: expected %s, got %s", short(arg), short(actual))
			}
			return nil
		},
		"$ne": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			if jsonEqual(actual, arg) {
				return fail(path, "$ne: expected anything but %s", short(arg))
			}
			return nil
		},
		"$approx": func(actual, arg any, spec map[string]any, _ scope, path string) error {
			tol := approxTol
			if t, ok := spec["$tol"].(float64); ok {
				tol = t
			}
			v, err := number(actual, path, "$approx")
			if err != nil {
				return err
			}
			if !(math.Abs(v-arg.(float64)) <= tol) {
				return fail(path, "$approx: expected %v ± %v, got %v", arg, tol, actual)
			}
			return nil
		},
		"$gt":  comparison("$gt", func(v, a float64) bool { return v > a }),
		"$gte": comparison("$gte", func(v, a float64) bool { return v >= a }),
		"$lt":  comparison("$lt", func(v, a float64) bool { return v < a }),
		"$lte": comparison("$lte", func(v, a float64) bool { return v <= a }),
		"$range": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			bounds := arg.([]any)
			lo, hi := bounds[0].(float64), bounds[1].(float64)
			v, err := number(actual, path, "$range")
			if err != nil {
				return err
			}
			if !(lo-literalTol <= v && v <= hi+literalTol) {
				return fail(path, "$range: expected a value in [%v, %v], got %v", lo, hi, actual)
			}
			return nil
		},
		"$type": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			allowed, ok := arg.([]any)
			if !ok {
				allowed = []any{arg}
			}
			t := jsonType(actual)
			for _, a := range allowed {
				if a == t {
					return nil
				}
			}
			return fail(path, "$type: expected %s, got %s %s", short(arg), t, short(actual))
		},
		"$len": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			n, err := length(actual, path, "$len")
			if err != nil {
				return err
			}
			if want, _ := toInt(arg); n != want {
				return fail(path, "$len: expected length %v, got %d: %s", arg, n, short(actual))
			}
			return nil
		},
		"$min_len": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			n, err := length(actual, path, "$min_len")
			if err != nil {
				return err
			}
			if want, _ := toInt(arg); n < want {
				return fail(path, "$min_len: expected length >= %v, got %d: %s", arg, n, short(actual))
			}
			return nil
		},
		"$max_len": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			n, err := length(actual, path, "$max_len")
			if err != nil {
				return err
			}
			if want, _ := toInt(arg); n > want {
				return fail(path, "$max_len: expected length <= %v, got %d: %s", arg, n, short(actual))
			}
			return nil
		},
		"$contains": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			if !hasElement(actual, arg) {
				return fail(path, "$contains: %s not in %s", short(arg), short(actual))
			}
			return nil
		},
		"$contains_all": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			var lacking []any
			for _, item := range arg.([]any) {
				if !hasElement(actual, item) {
					lacking = append(lacking, item)
				}
			}
			if len(lacking) > 0 {
				return fail(path, "$contains_all: %s not in %s", short(lacking), short(actual))
			}
			return nil
		},
		"$contains_any": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			for _, item := range arg.([]any) {
				if hasElement(actual, item) {
					return nil
				}
			}
			return fail(path, "$contains_any: none of %s in %s", short(arg), short(actual))
		},
		"$not_contains": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			if hasElement(actual, arg) {
				return fail(path, "$not_contains: %s found in %s", short(arg), short(actual))
			}
			return nil
		},
		"$contains_none": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			var found []any
			for _, item := range arg.([]any) {
				if hasElement(actual, item) {
					found = append(found, item)
				}
			}
			if len(found) > 0 {
				return fail(path, "$contains_none: %s found in %s", short(found), short(actual))
			}
			return nil
		},
		"$set_eq": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			values, err := array(actual, path, "$set_eq")
			if err != nil {
				return err
			}
			for _, v := range values {
				if !hasElement(arg, v) {
					return fail(path, "$set_eq: expected the elements %s, got %s (unexpected %s)", short(arg), short(values), short(v))
				}
			}
			for _, v := range arg.([]any) {
				if !hasElement(values, v) {
					return fail(path, "$set_eq: expected the elements %s, got %s (lacking %s)", short(arg), short(values), short(v))
				}
			}
			return nil
		},
		"$subset_of": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			values, err := array(actual, path, "$subset_of")
			if err != nil {
				return err
			}
			for _, v := range values {
				if !hasElement(arg, v) {
					return fail(path, "$subset_of: %s not among %s", short(v), short(arg))
				}
			}
			return nil
		},
		"$in": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			for _, option := range arg.([]any) {
				if jsonEqual(actual, option) {
					return nil
				}
			}
			return fail(path, "$in: %s is not one of %s", short(actual), short(arg))
		},
		"$prefix": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			s, ok := actual.(string)
			if !ok || !strings.HasPrefix(s, arg.(string)) {
				return fail(path, "$prefix: expected a string starting with %q, got %s", arg, short(actual))
			}
			return nil
		},
		"$regex": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			s, ok := actual.(string)
			re, err := regexp.Compile(`^(?:` + arg.(string) + `)$`)
			if err != nil {
				return fail(path, "$regex: bad pattern %q: %v", arg, err)
			}
			if !ok || !re.MatchString(s) {
				return fail(path, "$regex: expected a string matching /%s/ in full, got %s", arg, short(actual))
			}
			return nil
		},
		"$flat": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			values, err := array(actual, path, "$flat")
			if err != nil {
				return err
			}
			flat := []any{}
			for _, e := range values {
				if inner, ok := e.([]any); ok {
					flat = append(flat, inner...)
				} else {
					flat = append(flat, e)
				}
			}
			return check(flat, arg, sc, path+"<flat>")
		},
		"$each": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			values, err := array(actual, path, "$each")
			if err != nil {
				return err
			}
			for i, e := range values {
				if err := check(e, arg, sc, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			return nil
		},
		"$item": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			pair := arg.([]any)
			index, _ := toInt(pair[0])
			values, err := array(actual, path, "$item")
			if err != nil {
				return err
			}
			if index < -len(values) || index >= len(values) {
				return fail(path, "$item: no element %d in an array of length %d: %s", index, len(values), short(values))
			}
			i := index
			if i < 0 {
				i += len(values)
			}
			return check(values[i], pair[1], sc, fmt.Sprintf("%s[%d]", path, index))
		},
		"$count_where": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			values, err := array(actual, path, "$count_where")
			if err != nil {
				return err
			}
			bounds := arg.(map[string]any)
			n := 0
			for _, e := range values {
				if satisfies(e, bounds["match"], sc) {
					n++
				}
			}
			return counted(n, bounds, "elements matching "+short(bounds["match"]), path)
		},
		"$ordered": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			values, err := array(actual, path, "$ordered")
			if err != nil {
				return err
			}
			pos := 0
			for _, wanted := range arg.([]any) {
				for pos < len(values) && !jsonEqual(values[pos], wanted) {
					pos++
				}
				if pos == len(values) {
					return fail(path, "$ordered: %s is not a subsequence of %s", short(arg), short(values))
				}
				pos++
			}
			return nil
		},
		"$sorted": func(actual, arg any, _ map[string]any, _ scope, path string) error {
			values, err := array(actual, path, "$sorted")
			if err != nil {
				return err
			}
			if arg != "asc" && arg != "desc" {
				return fail(path, "$sorted: order must be 'asc' or 'desc', got %s", short(arg))
			}
			for i := 1; i < len(values); i++ {
				c, ok := compare(values[i-1], values[i])
				if !ok {
					return fail(path, "$sorted: cannot compare %s", short(values))
				}
				if (arg == "asc" && c > 0) || (arg == "desc" && c < 0) {
					return fail(path, "$sorted: expected %sending order, got %s", arg, short(values))
				}
			}
			return nil
		},
		"$has": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			if _, ok := actual.(map[string]any); !ok {
				return fail(path, "$has: expected an object, got %s", short(actual))
			}
			return checkObject(actual, arg, sc, path)
		},
		"$any_of": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			for _, alternative := range arg.([]any) {
				if satisfies(actual, alternative, sc) {
					return nil
				}
			}
			return fail(path, "$any_of: %s matches none of %s", short(actual), short(arg))
		},
		"$not": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			if satisfies(actual, arg, sc) {
				return fail(path, "$not: %s should not match %s", short(actual), short(arg))
			}
			return nil
		},
		"$name_of": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			expected, err := resolveLabel(sc.labels, arg)
			if err != nil {
				return err
			}
			s, ok := actual.(string)
			if !ok || s == "" || bareName(s) != bareName(expected) {
				return fail(path, "$name_of: expected the pattern name saved as %s (%s), got %s", short(arg), short(expected), short(actual))
			}
			return nil
		},
		"$not_name_of": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			refs, ok := arg.([]any)
			if !ok {
				refs = []any{arg}
			}
			for _, ref := range refs {
				other, err := resolveLabel(sc.labels, ref)
				if err != nil {
					return err
				}
				if bareName(actual) == bareName(other) {
					return fail(path, "$not_name_of: %s is the name saved as %s", short(actual), short(ref))
				}
			}
			return nil
		},
		"$same_as": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			expected, err := resolveLabel(sc.labels, arg)
			if err != nil {
				return err
			}
			if !jsonEqual(actual, expected) {
				return fail(path, "$same_as: expected the value saved as %s (%s), got %s", short(arg), short(expected), short(actual))
			}
			return nil
		},
		"$eq_field": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			other := sibling(sc, arg.(string))
			if other == absent || !jsonEqualTol(actual, other, approxTol) {
				return fail(path, "$eq_field: expected the value of field %q (%s), got %s", arg, short(other), short(actual))
			}
			return nil
		},
		"$len_of_field": func(actual, arg any, _ map[string]any, sc scope, path string) error {
			other := sibling(sc, arg.(string))
			if other == absent {
				return fail(path, "$len_of_field: the enclosing object has no field %q", arg)
			}
			mine, err := length(actual, path, "$len_of_field")
			if err != nil {
				return err
			}
			theirs, err := length(other, path, "$len_of_field")
			if err != nil {
				return err
			}
			if mine != theirs {
				return fail(path, "$len_of_field: length %d differs from length %d of field %q", mine, theirs, arg)
			}
			return nil
		},
	}
}

// compare orders two numbers or two strings (code-point order).
func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case float64:
		if y, ok := b.(float64); ok {
			switch {
			case x < y:
				return -1, true
			case x > y:
				return 1, true
			}
			return 0, true
		}
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), true
		}
	}
	return 0, false
}

func sibling(sc scope, name string) any {
	if m, ok := sc.enclosing.(map[string]any); ok {
		if v, ok := m[name]; ok {
			return v
		}
	}
	return absent
}

func mayBeAbsent(sub any) bool {
	if !isOperatorObject(sub) {
		return false
	}
	m := sub.(map[string]any)
	_, e := m["$exists"]
	_, a := m["$any_of"]
	return e || a
}

// checkObject is the partial object match ("object spec"): each key of spec
// names a field whose value must satisfy the key's matcher; the key "$any_of"
// holds object specs of which at least one must match.
func checkObject(obj, spec any, sc scope, path string) error {
	o, ok := obj.(map[string]any)
	if !ok {
		return fail(path, "expected an object, got %s", short(obj))
	}
	s, ok := spec.(map[string]any)
	if !ok {
		return fail(path, "object spec must be an object, got %s", short(spec))
	}
	inner := sc.inside(o)
	for _, key := range sortedKeys(s) {
		sub := s[key]
		if key == "$any_of" {
			matched := false
			for _, alternative := range sub.([]any) {
				if satisfiesObject(o, alternative, sc) {
					matched = true
					break
				}
			}
			if !matched {
				return fail(path, "object matches none of the alternatives %s", short(sub))
			}
			continue
		}
		fieldPath := path + "." + key
		value, present := o[key]
		if !present {
			if !mayBeAbsent(sub) {
				return fail(fieldPath, "field is missing (fields present: %s)", short(sortedKeys(o)))
			}
			value = absent
		}
		if err := check(value, sub, inner, fieldPath); err != nil {
			return err
		}
	}
	return nil
}

func satisfiesObject(obj, spec any, sc scope) bool { return checkObject(obj, spec, sc, "$") == nil }

var predictionAssertionKeys = map[string]bool{
	"count": true, "min_count": true, "max_count": true, "contains": true, "not_contains": true,
	"all": true, "first": true, "at": true, "where": true, "then": true, "required": true,
	"count_where": true, "sorted_by": true, "order": true, "unique_field": true, "sum": true,
	"max_by": true, "same_as": true, "comment": true,
}

func numericField(p any, name, path, what string) (float64, error) {
	var v any = absent
	if m, ok := p.(map[string]any); ok {
		if x, ok := m[name]; ok {
			v = x
		}
	}
	f, ok := v.(float64)
	if !ok {
		return 0, fail(path, "%s: field %q is not a number: %s", what, name, short(v))
	}
	return f, nil
}

// checkPredictions applies one prediction-list assertion (README §5.1).
func checkPredictions(predictions any, assertion any, sc scope, path string) error {
	preds, ok := predictions.([]any)
	if !ok {
		return fail(path, "predictions must be a list, got %s", short(predictions))
	}
	a, ok := assertion.(map[string]any)
	if !ok {
		return fail(path, "a prediction assertion must be an object, got %s", short(assertion))
	}
	for k := range a {
		if !predictionAssertionKeys[k] {
			return fail(path, "unknown prediction assertion key %q", k)
		}
	}
	n := len(preds)
	element := func(i int) string { return fmt.Sprintf("%s[%d]", path, i) }

	if c, ok := toInt(a["count"]); ok && n != c {
		return fail(path, "count: expected %d predictions, got %d: %s", c, n, short(preds))
	}
	if c, ok := toInt(a["min_count"]); ok && n < c {
		return fail(path, "min_count: expected at least %d predictions, got %d: %s", c, n, short(preds))
	}
	if c, ok := toInt(a["max_count"]); ok && n > c {
		return fail(path, "max_count: expected at most %d predictions, got %d", c, n)
	}
	if spec, ok := a["contains"]; ok {
		found := false
		for _, p := range preds {
			if satisfiesObject(p, spec, sc) {
				found = true
				break
			}
		}
		if !found {
			return fail(path, "contains: no prediction matches %s; predictions: %s", short(spec), short(preds))
		}
	}
	if spec, ok := a["not_contains"]; ok {
		for i, p := range preds {
			if satisfiesObject(p, spec, sc) {
				return fail(element(i), "not_contains: prediction matches %s", short(spec))
			}
		}
	}
	if spec, ok := a["all"]; ok {
		for i, p := range preds {
			if err := checkObject(p, spec, sc, element(i)); err != nil {
				return err
			}
		}
	}
	if spec, ok := a["first"]; ok {
		if n == 0 {
			return fail(path, "first: there are no predictions")
		}
		if err := checkObject(preds[0], spec, sc, element(0)); err != nil {
			return err
		}
	}
	if at, ok := a["at"]; ok {
		pair := at.([]any)
		index, _ := toInt(pair[0])
		if index < -n || index >= n {
			return fail(path, "at: no prediction %d among %d", index, n)
		}
		i := index
		if i < 0 {
			i += n
		}
		if err := checkObject(preds[i], pair[1], sc, element(i)); err != nil {
			return err
		}
	}
	if selector, ok := a["where"]; ok {
		chosen := -1
		for i, p := range preds {
			if satisfiesObject(p, selector, sc) {
				chosen = i
				break
			}
		}
		if chosen < 0 {
			required, has := a["required"].(bool)
			if !has || required {
				return fail(path, "where: no prediction matches %s; predictions: %s", short(selector), short(preds))
			}
		} else {
			then, has := a["then"]
			if !has {
				then = map[string]any{}
			}
			if err := checkObject(preds[chosen], then, sc, element(chosen)); err != nil {
				return err
			}
		}
	}
	if cw, ok := a["count_where"]; ok {
		bounds := cw.(map[string]any)
		m := 0
		for _, p := range preds {
			if satisfiesObject(p, bounds["match"], sc) {
				m++
			}
		}
		if err := counted(m, bounds, "predictions matching "+short(bounds["match"]), path); err != nil {
			return err
		}
	}
	if f, ok := a["sorted_by"]; ok {
		name := f.(string)
		order := "desc"
		if o, ok := a["order"].(string); ok {
			order = o
		}
		if order != "asc" && order != "desc" {
			return fail(path, "sorted_by: order must be 'asc' or 'desc', got %q", order)
		}
		values := make([]float64, n)
		for i, p := range preds {
			v, err := numericField(p, name, element(i), "sorted_by")
			if err != nil {
				return err
			}
			values[i] = v
		}
		for i := 1; i < n; i++ {
			before, after := values[i-1], values[i]
			if (order == "desc" && after > before+literalTol) || (order == "asc" && after < before-literalTol) {
				return fail(path, "sorted_by %s (%s): predictions %d and %d are out of order: %v", name, order, i-1, i, values)
			}
		}
	}
	if f, ok := a["unique_field"]; ok {
		name := f.(string)
		var seen []any
		for i, p := range preds {
			var v any
			if m, ok := p.(map[string]any); ok {
				v = bareName(m[name])
			}
			for _, earlier := range seen {
				if jsonEqual(v, earlier) {
					return fail(element(i), "unique_field %s: value %s occurs more than once", name, short(v))
				}
			}
			seen = append(seen, v)
		}
	}
	if s, ok := a["sum"]; ok {
		spec := s.(map[string]any)
		total := 0.0
		for i, p := range preds {
			v, err := numericField(p, spec["field"].(string), element(i), "sum")
			if err != nil {
				return err
			}
			total += v
		}
		tol := approxTol
		if t, ok := spec["tol"].(float64); ok {
			tol = t
		}
		if !(math.Abs(total-spec["approx"].(float64)) <= tol) {
			return fail(path, "sum of %s: expected %v ± %v, got %v", spec["field"], spec["approx"], tol, total)
		}
	}
	if mb, ok := a["max_by"]; ok {
		spec := mb.(map[string]any)
		if n == 0 {
			return fail(path, "max_by: there are no predictions")
		}
		values := make([]float64, n)
		best := math.Inf(-1)
		for i, p := range preds {
			v, err := numericField(p, spec["field"].(string), element(i), "max_by")
			if err != nil {
				return err
			}
			values[i] = v
			best = math.Max(best, v)
		}
		matched := false
		for i, p := range preds {
			if math.Abs(values[i]-best) <= literalTol && satisfiesObject(p, spec["match"], sc) {
				matched = true
				break
			}
		}
		if !matched {
			return fail(path, "max_by %s: no prediction with the maximum %v matches %s", spec["field"], best, short(spec["match"]))
		}
	}
	if s, ok := a["same_as"]; ok {
		if err := checkSameAs(preds, s.(map[string]any), sc, path); err != nil {
			return err
		}
	}
	return nil
}

// checkSameAs compares element-wise with a saved prediction list (fields
// omitted: all fields; []: none, only the lengths).
func checkSameAs(preds []any, spec map[string]any, sc scope, path string) error {
	ref := spec["ref"]
	saved, err := resolveLabel(sc.labels, ref)
	if err != nil {
		return err
	}
	theirs, ok := saved.([]any)
	if !ok {
		return fail(path, "same_as: the value saved as %s is not a list: %s", short(ref), short(saved))
	}
	mine := append([]any(nil), preds...)
	theirs = append([]any(nil), theirs...)
	order := "exact"
	if o, ok := spec["order"].(string); ok {
		order = o
	}
	switch order {
	case "by_name":
		byName := func(l []any) {
			sort.SliceStable(l, func(i, j int) bool {
				return fmt.Sprint(bareName(l[i].(map[string]any)["name"])) < fmt.Sprint(bareName(l[j].(map[string]any)["name"]))
			})
		}
		byName(mine)
		byName(theirs)
	case "exact":
	default:
		return fail(path, "same_as: order must be 'exact' or 'by_name', got %q", order)
	}
	if len(mine) != len(theirs) {
		return fail(path, "same_as %s: %d predictions, but %d were saved", short(ref), len(mine), len(theirs))
	}
	fields, hasFields := spec["fields"].([]any)
	for i := range mine {
		a, _ := mine[i].(map[string]any)
		b, _ := theirs[i].(map[string]any)
		var names []string
		if hasFields {
			for _, f := range fields {
				names = append(names, f.(string))
			}
		} else {
			union := map[string]any{}
			for k := range a {
				union[k] = nil
			}
			for k := range b {
				union[k] = nil
			}
			names = sortedKeys(union)
		}
		for _, name := range names {
			left, lok := a[name]
			right, rok := b[name]
			if !lok || !rok {
				if lok != rok {
					return fail(fmt.Sprintf("%s[%d].%s", path, i, name), "same_as %s: field present on one side only", short(ref))
				}
				continue
			}
			if !jsonEqual(left, right) {
				return fail(fmt.Sprintf("%s[%d].%s", path, i, name), "same_as %s: %s != saved %s", short(ref), short(left), short(right))
			}
		}
	}
	return nil
}
