'use strict';
// The matcher vocabulary of the conformance vectors (tests/conformance README
// §4 and §5.1), ported from tests/conformance/matchers.py, which stays the
// executable definition: when the two disagree, matchers.py is right.
//
// Values are what JSON.parse gives: null, booleans, numbers, strings, arrays
// and plain objects. Step results are built from the same types. A missing
// field is the ABSENT symbol.

const LITERAL_TOL = 1e-9; // numbers compared by deep equality
const APPROX_TOL = 1e-6; // default of $approx, and $eq_field and sum
const PTRN_PREFIX = 'PTRN|';
const ABSENT = Symbol('absent');

/** A failed expectation; the message starts with the JSON path. */
class MatchError extends Error {}

const fail = (path, message) => new MatchError(`${path}: ${message}`);

function short(v, limit = 300) {
  if (v === ABSENT) return '<absent>';
  let text;
  try {
    text = JSON.stringify(v);
  } catch {
    text = String(v);
  }
  if (text === undefined) text = String(v);
  return text.length <= limit ? text : `${text.slice(0, limit - 3)}...`;
}

const isNumber = (v) => typeof v === 'number';
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const has = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);
const bareName = (v) => (typeof v === 'string' && v.startsWith(PTRN_PREFIX) ? v.slice(PTRN_PREFIX.length) : v);

function jsonEqual(a, b, tol = LITERAL_TOL) {
  if (isNumber(a) && isNumber(b)) {
    if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
    if (!Number.isFinite(a) || !Number.isFinite(b)) return a === b;
    return Math.abs(a - b) <= tol;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => jsonEqual(x, b[i], tol));
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => has(b, k) && jsonEqual(a[k], b[k], tol));
  }
  if (Array.isArray(a) || Array.isArray(b) || isObject(a) || isObject(b)) return false;
  return a === b;
}

function jsonType(v) {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return 'boolean';
  if (isNumber(v)) return 'number';
  if (typeof v === 'string') return 'string';
  if (Array.isArray(v)) return 'array';
  if (isObject(v)) return 'object';
  return typeof v;
}

function isOperatorObject(spec) {
  if (!isObject(spec)) return false;
  const keys = Object.keys(spec);
  return keys.length > 0 && keys.every((k) => k.startsWith('$'));
}

/** Follows `label.key.0.key` into the saved results (negative list indexes allowed). */
function resolveLabel(labels, ref) {
  if (typeof ref !== 'string' || ref === '') {
    throw new MatchError(`label reference must be a non-empty string, got ${short(ref)}`);
  }
  const [head, ...rest] = ref.split('.');
  if (!has(labels, head)) throw new MatchError(`unknown label ${JSON.stringify(head)} in reference ${JSON.stringify(ref)}`);
  let value = labels[head];
  for (const part of rest) {
    if (isObject(value) && has(value, part)) {
      value = value[part];
    } else if (Array.isArray(value) && /^-?\d+$/.test(part)) {
      const index = Number(part);
      if (index < -value.length || index >= value.length) {
        throw new MatchError(`reference ${JSON.stringify(ref)}: index ${index} out of range (length ${value.length})`);
      }
      value = value[index < 0 ? index + value.length : index];
    } else {
      throw new MatchError(`reference ${JSON.stringify(ref)}: no ${JSON.stringify(part)} in ${short(value, 120)}`);
    }
  }
  return value;
}

function number(v, path, op) {
  if (!isNumber(v)) throw fail(path, `${op} needs a number, got ${short(v)}`);
  return v;
}

function length(v, path, op) {
  if (typeof v === 'string') return [...v].length; // code points, as Python's len
  if (Array.isArray(v)) return v.length;
  if (isObject(v)) return Object.keys(v).length;
  throw fail(path, `${op} needs an array, string or object, got ${short(v)}`);
}

function array(v, path, op) {
  if (!Array.isArray(v)) throw fail(path, `${op} needs an array, got ${short(v)}`);
  return v;
}

/** Array: an element equals item. String: item is a substring. Object: item is a key. */
function hasElement(container, item) {
  if (Array.isArray(container)) return container.some((e) => jsonEqual(e, item));
  if (typeof container === 'string') return typeof item === 'string' && container.includes(item);
  if (isObject(container)) return typeof item === 'string' && has(container, item);
  return false;
}

function counted(n, bounds, what, path) {
  const unknown = Object.keys(bounds).filter((k) => !['match', 'count', 'min', 'max'].includes(k));
  if (unknown.length) throw fail(path, `count_where: unknown key(s) ${short(unknown)}`);
  if (has(bounds, 'count') && n !== bounds.count) throw fail(path, `expected exactly ${bounds.count} ${what}, found ${n}`);
  if (has(bounds, 'min') && n < bounds.min) throw fail(path, `expected at least ${bounds.min} ${what}, found ${n}`);
  if (has(bounds, 'max') && n > bounds.max) throw fail(path, `expected at most ${bounds.max} ${what}, found ${n}`);
}

/** Scope: saved step results, and the object enclosing the checked value. */
const scopeOf = (labels, enclosing = null) => ({ labels, enclosing });

/** Throws a MatchError unless `actual` satisfies the value matcher `spec`. */
function check(actual, spec, scope, path = '$') {
  if (!isOperatorObject(spec)) {
    if (actual === ABSENT) throw fail(path, `field is missing (expected ${short(spec)})`);
    if (!jsonEqual(actual, spec)) throw fail(path, `expected ${short(spec)}, got ${short(actual)}`);
    return;
  }
  for (const [op, arg] of Object.entries(spec)) {
    if (op === '$tol') continue; // a modifier of $approx
    const handler = VALUE_OPERATORS[op];
    if (!handler) throw fail(path, `unknown operator ${op}`);
    if (actual === ABSENT && op !== '$exists' && op !== '$any_of') {
      throw fail(path, `field is missing (${op} ${short(arg, 120)})`);
    }
    handler(actual, arg, spec, scope, path);
  }
}

function satisfies(actual, spec, scope) {
  try {
    check(actual, spec, scope);
    return true;
  } catch (err) {
    if (err instanceof MatchError) return false;
    throw err;
  }
}

const comparison = (name, holds) => (actual, arg, spec, scope, path) => {
  if (!holds(number(actual, path, name), arg)) throw fail(path, `${name}: expected ${name.slice(1)} ${arg}, got ${short(actual)}`);
};

function sibling(scope, name) {
  const e = scope.enclosing;
  return isObject(e) && has(e, name) ? e[name] : ABSENT;
}

const VALUE_OPERATORS = {
  $exists(actual, arg, spec, scope, path) {
    if ((actual !== ABSENT) !== Boolean(arg)) {
      throw fail(path, arg ? 'field is absent' : `field should be absent, got ${short(actual)}`);
    }
  },
  $eq(actual, arg, spec, scope, path) {
    if (!jsonEqual(actual, arg)) throw fail(path, `$eq: expected ${short(arg)}, got ${short(actual)}`);
  },
  $ne(actual, arg, spec, scope, path) {
    if (jsonEqual(actual, arg)) throw fail(path, `$ne: expected anything but ${short(arg)}`);
  },
  $approx(actual, arg, spec, scope, path) {
    const tol = has(spec, '$tol') ? spec.$tol : APPROX_TOL;
    if (!(Math.abs(number(actual, path, '$approx') - arg) <= tol)) throw fail(path, `$approx: expected ${arg} ± ${tol}, got ${short(actual)}`);
  },
  $gt: comparison('$gt', (v, a) => v > a),
  $gte: comparison('$gte', (v, a) => v >= a),
  $lt: comparison('$lt', (v, a) => v < a),
  $lte: comparison('$lte', (v, a) => v <= a),
  $range(actual, [lo, hi], spec, scope, path) {
    const v = number(actual, path, '$range');
    if (!(lo - LITERAL_TOL <= v && v <= hi + LITERAL_TOL)) throw fail(path, `$range: expected a value in [${lo}, ${hi}], got ${short(actual)}`);
  },
  $type(actual, arg, spec, scope, path) {
    const allowed = Array.isArray(arg) ? arg : [arg];
    if (!allowed.includes(jsonType(actual))) throw fail(path, `$type: expected ${allowed.join(' or ')}, got ${jsonType(actual)} ${short(actual, 120)}`);
  },
  $len(actual, arg, spec, scope, path) {
    const n = length(actual, path, '$len');
    if (n !== arg) throw fail(path, `$len: expected length ${arg}, got ${n}: ${short(actual)}`);
  },
  $min_len(actual, arg, spec, scope, path) {
    const n = length(actual, path, '$min_len');
    if (n < arg) throw fail(path, `$min_len: expected length >= ${arg}, got ${n}: ${short(actual)}`);
  },
  $max_len(actual, arg, spec, scope, path) {
    const n = length(actual, path, '$max_len');
    if (n > arg) throw fail(path, `$max_len: expected length <= ${arg}, got ${n}: ${short(actual)}`);
  },
  $contains(actual, arg, spec, scope, path) {
    if (!hasElement(actual, arg)) throw fail(path, `$contains: ${short(arg, 120)} not in ${short(actual)}`);
  },
  $contains_all(actual, arg, spec, scope, path) {
    const lacking = arg.filter((item) => !hasElement(actual, item));
    if (lacking.length) throw fail(path, `$contains_all: ${short(lacking, 120)} not in ${short(actual)}`);
  },
  $contains_any(actual, arg, spec, scope, path) {
    if (!arg.some((item) => hasElement(actual, item))) throw fail(path, `$contains_any: none of ${short(arg, 120)} in ${short(actual)}`);
  },
  $not_contains(actual, arg, spec, scope, path) {
    if (hasElement(actual, arg)) throw fail(path, `$not_contains: ${short(arg, 120)} found in ${short(actual)}`);
  },
  $contains_none(actual, arg, spec, scope, path) {
    const found = arg.filter((item) => hasElement(actual, item));
    if (found.length) throw fail(path, `$contains_none: ${short(found, 120)} found in ${short(actual)}`);
  },
  $set_eq(actual, arg, spec, scope, path) {
    const values = array(actual, path, '$set_eq');
    const unexpected = values.filter((v) => !hasElement(arg, v));
    const lacking = arg.filter((v) => !hasElement(values, v));
    if (unexpected.length || lacking.length) {
      throw fail(path, `$set_eq: expected the elements ${short(arg, 120)}, got ${short(values)} ` +
        `(unexpected ${short(unexpected, 80)}, lacking ${short(lacking, 80)})`);
    }
  },
  $subset_of(actual, arg, spec, scope, path) {
    const outside = array(actual, path, '$subset_of').filter((v) => !hasElement(arg, v));
    if (outside.length) throw fail(path, `$subset_of: ${short(outside, 120)} not among ${short(arg, 120)}`);
  },
  $in(actual, arg, spec, scope, path) {
    if (!arg.some((option) => jsonEqual(actual, option))) throw fail(path, `$in: ${short(actual)} is not one of ${short(arg)}`);
  },
  $prefix(actual, arg, spec, scope, path) {
    if (!(typeof actual === 'string' && actual.startsWith(arg))) throw fail(path, `$prefix: expected a string starting with ${JSON.stringify(arg)}, got ${short(actual)}`);
  },
  $regex(actual, arg, spec, scope, path) {
    if (!(typeof actual === 'string' && new RegExp(`^(?:${arg})$`, 'u').test(actual))) {
      throw fail(path, `$regex: expected a string matching /${arg}/ in full, got ${short(actual)}`);
    }
  },
  $flat(actual, arg, spec, scope, path) {
    const flat = [];
    for (const e of array(actual, path, '$flat')) {
      if (Array.isArray(e)) flat.push(...e);
      else flat.push(e);
    }
    check(flat, arg, scope, `${path}<flat>`);
  },
  $each(actual, arg, spec, scope, path) {
    array(actual, path, '$each').forEach((e, i) => check(e, arg, scope, `${path}[${i}]`));
  },
  $item(actual, [index, sub], spec, scope, path) {
    const values = array(actual, path, '$item');
    if (index < -values.length || index >= values.length) {
      throw fail(path, `$item: no element ${index} in an array of length ${values.length}: ${short(values)}`);
    }
    check(values[index < 0 ? index + values.length : index], sub, scope, `${path}[${index}]`);
  },
  $count_where(actual, arg, spec, scope, path) {
    const n = array(actual, path, '$count_where').filter((e) => satisfies(e, arg.match, scope)).length;
    counted(n, arg, `elements matching ${short(arg.match, 120)}`, path);
  },
  $ordered(actual, arg, spec, scope, path) {
    const values = array(actual, path, '$ordered');
    let position = 0;
    for (const wanted of arg) {
      while (position < values.length && !jsonEqual(values[position], wanted)) position += 1;
      if (position === values.length) throw fail(path, `$ordered: ${short(arg, 120)} is not a subsequence of ${short(values)}`);
      position += 1;
    }
  },
  $sorted(actual, arg, spec, scope, path) {
    const values = array(actual, path, '$sorted');
    if (arg !== 'asc' && arg !== 'desc') throw fail(path, `$sorted: order must be 'asc' or 'desc', got ${short(arg)}`);
    for (let i = 1; i < values.length; i += 1) {
      const [a, b] = [values[i - 1], values[i]];
      if ((arg === 'asc' && a > b) || (arg === 'desc' && a < b)) throw fail(path, `$sorted: expected ${arg}ending order, got ${short(values)}`);
    }
  },
  $has(actual, arg, spec, scope, path) {
    if (!isObject(actual)) throw fail(path, `$has: expected an object, got ${short(actual)}`);
    checkObject(actual, arg, scope, path);
  },
  $any_of(actual, arg, spec, scope, path) {
    if (!arg.some((alternative) => satisfies(actual, alternative, scope))) throw fail(path, `$any_of: ${short(actual)} matches none of ${short(arg)}`);
  },
  $not(actual, arg, spec, scope, path) {
    if (satisfies(actual, arg, scope)) throw fail(path, `$not: ${short(actual)} should not match ${short(arg)}`);
  },
  $name_of(actual, arg, spec, scope, path) {
    const expected = resolveLabel(scope.labels, arg);
    if (!(typeof actual === 'string' && actual && bareName(actual) === bareName(expected))) {
      throw fail(path, `$name_of: expected the pattern name saved as ${JSON.stringify(arg)} (${short(expected)}), got ${short(actual)}`);
    }
  },
  $not_name_of(actual, arg, spec, scope, path) {
    for (const ref of Array.isArray(arg) ? arg : [arg]) {
      if (bareName(actual) === bareName(resolveLabel(scope.labels, ref))) {
        throw fail(path, `$not_name_of: ${short(actual)} is the name saved as ${JSON.stringify(ref)}`);
      }
    }
  },
  $same_as(actual, arg, spec, scope, path) {
    const expected = resolveLabel(scope.labels, arg);
    if (!jsonEqual(actual, expected)) throw fail(path, `$same_as: expected the value saved as ${JSON.stringify(arg)} (${short(expected)}), got ${short(actual)}`);
  },
  $eq_field(actual, arg, spec, scope, path) {
    const other = sibling(scope, arg);
    if (other === ABSENT || !jsonEqual(actual, other, APPROX_TOL)) {
      throw fail(path, `$eq_field: expected the value of field ${JSON.stringify(arg)} (${short(other)}), got ${short(actual)}`);
    }
  },
  $len_of_field(actual, arg, spec, scope, path) {
    const other = sibling(scope, arg);
    if (other === ABSENT) throw fail(path, `$len_of_field: the enclosing object has no field ${JSON.stringify(arg)}`);
    const mine = length(actual, path, '$len_of_field');
    const theirs = length(other, path, '$len_of_field');
    if (mine !== theirs) throw fail(path, `$len_of_field: length ${mine} differs from length ${theirs} of field ${JSON.stringify(arg)}`);
  },
};

const mayBeAbsent = (sub) => isOperatorObject(sub) && (has(sub, '$exists') || has(sub, '$any_of'));

/**
 * Partial object match: each key of `spec` names a field whose value must
 * satisfy the key's matcher; the key "$any_of" holds object specs of which at
 * least one must match.
 */
function checkObject(obj, spec, scope, path = '$') {
  if (!isObject(obj)) throw fail(path, `expected an object, got ${short(obj)}`);
  if (!isObject(spec)) throw fail(path, `object spec must be an object, got ${short(spec)}`);
  const inner = scopeOf(scope.labels, obj);
  for (const [key, sub] of Object.entries(spec)) {
    if (key === '$any_of') {
      if (!sub.some((alternative) => satisfiesObject(obj, alternative, scope))) {
        throw fail(path, `object matches none of the alternatives ${short(sub)}`);
      }
      continue;
    }
    const fieldPath = `${path}.${key}`;
    if (!has(obj, key)) {
      if (!mayBeAbsent(sub)) throw fail(fieldPath, `field is missing (fields present: ${short(Object.keys(obj).sort())})`);
      check(ABSENT, sub, inner, fieldPath);
      continue;
    }
    check(obj[key], sub, inner, fieldPath);
  }
}

function satisfiesObject(obj, spec, scope) {
  try {
    checkObject(obj, spec, scope);
    return true;
  } catch (err) {
    if (err instanceof MatchError) return false;
    throw err;
  }
}

const PREDICTION_ASSERTION_KEYS = new Set([
  'count', 'min_count', 'max_count', 'contains', 'not_contains', 'all', 'first', 'at',
  'where', 'then', 'required', 'count_where', 'sorted_by', 'order', 'unique_field',
  'sum', 'max_by', 'same_as', 'comment',
]);

function numericField(p, name, path, what) {
  const value = isObject(p) && has(p, name) ? p[name] : ABSENT;
  if (!isNumber(value)) throw fail(path, `${what}: field ${JSON.stringify(name)} is not a number: ${short(value, 120)}`);
  return value;
}

/** Throws a MatchError unless the prediction list satisfies every key of `assertion` (README §5.1). */
function checkPredictions(preds, assertion, scope, path = '$') {
  if (!Array.isArray(preds)) throw fail(path, `predictions must be a list, got ${short(preds)}`);
  if (!isObject(assertion)) throw fail(path, `a prediction assertion must be an object, got ${short(assertion)}`);
  const unknown = Object.keys(assertion).filter((k) => !PREDICTION_ASSERTION_KEYS.has(k));
  if (unknown.length) throw fail(path, `unknown prediction assertion key(s) ${short(unknown)}`);
  const n = preds.length;
  const element = (i) => `${path}[${i}]`;
  const a = assertion;

  if (has(a, 'count') && n !== a.count) throw fail(path, `count: expected ${a.count} predictions, got ${n}: ${short(preds)}`);
  if (has(a, 'min_count') && n < a.min_count) throw fail(path, `min_count: expected at least ${a.min_count} predictions, got ${n}: ${short(preds)}`);
  if (has(a, 'max_count') && n > a.max_count) throw fail(path, `max_count: expected at most ${a.max_count} predictions, got ${n}`);
  if (has(a, 'contains') && !preds.some((p) => satisfiesObject(p, a.contains, scope))) {
    throw fail(path, `contains: no prediction matches ${short(a.contains)}; predictions: ${short(preds)}`);
  }
  if (has(a, 'not_contains')) {
    preds.forEach((p, i) => {
      if (satisfiesObject(p, a.not_contains, scope)) throw fail(element(i), `not_contains: prediction matches ${short(a.not_contains)}`);
    });
  }
  if (has(a, 'all')) preds.forEach((p, i) => checkObject(p, a.all, scope, element(i)));
  if (has(a, 'first')) {
    if (!n) throw fail(path, 'first: there are no predictions');
    checkObject(preds[0], a.first, scope, element(0));
  }
  if (has(a, 'at')) {
    const [index, spec] = a.at;
    if (index < -n || index >= n) throw fail(path, `at: no prediction ${index} among ${n}`);
    const i = index < 0 ? index + n : index;
    checkObject(preds[i], spec, scope, element(i));
  }
  if (has(a, 'where')) {
    const chosen = preds.findIndex((p) => satisfiesObject(p, a.where, scope));
    if (chosen < 0) {
      if (a.required !== false) throw fail(path, `where: no prediction matches ${short(a.where)}; predictions: ${short(preds)}`);
    } else {
      checkObject(preds[chosen], has(a, 'then') ? a.then : {}, scope, element(chosen));
    }
  }
  if (has(a, 'count_where')) {
    const bounds = a.count_where;
    const m = preds.filter((p) => satisfiesObject(p, bounds.match, scope)).length;
    counted(m, bounds, `predictions matching ${short(bounds.match, 200)}`, path);
  }
  if (has(a, 'sorted_by')) {
    const name = a.sorted_by;
    const order = has(a, 'order') ? a.order : 'desc';
    if (order !== 'asc' && order !== 'desc') throw fail(path, `sorted_by: order must be 'asc' or 'desc', got ${short(order)}`);
    const values = preds.map((p, i) => numericField(p, name, element(i), 'sorted_by'));
    for (let i = 1; i < n; i += 1) {
      const [before, after] = [values[i - 1], values[i]];
      if (order === 'desc' ? after > before + LITERAL_TOL : after < before - LITERAL_TOL) {
        throw fail(path, `sorted_by ${name} (${order}): predictions ${i - 1} and ${i} are out of order: ${short(values)}`);
      }
    }
  }
  if (has(a, 'unique_field')) {
    const seen = [];
    preds.forEach((p, i) => {
      const value = isObject(p) ? bareName(has(p, a.unique_field) ? p[a.unique_field] : null) : null;
      if (seen.some((earlier) => jsonEqual(value, earlier))) {
        throw fail(element(i), `unique_field ${a.unique_field}: value ${short(value, 120)} occurs more than once`);
      }
      seen.push(value);
    });
  }
  if (has(a, 'sum')) {
    const spec = a.sum;
    const total = preds.reduce((acc, p, i) => acc + numericField(p, spec.field, element(i), 'sum'), 0);
    const tol = has(spec, 'tol') ? spec.tol : APPROX_TOL;
    if (!(Math.abs(total - spec.approx) <= tol)) throw fail(path, `sum of ${spec.field}: expected ${spec.approx} ± ${tol}, got ${total}`);
  }
  if (has(a, 'max_by')) {
    const spec = a.max_by;
    if (!n) throw fail(path, 'max_by: there are no predictions');
    const values = preds.map((p, i) => numericField(p, spec.field, element(i), 'max_by'));
    const best = Math.max(...values);
    const top = preds.filter((p, i) => Math.abs(values[i] - best) <= LITERAL_TOL);
    if (!top.some((p) => satisfiesObject(p, spec.match, scope))) {
      throw fail(path, `max_by ${spec.field}: no prediction with the maximum ${best} matches ${short(spec.match)}`);
    }
  }
  if (has(a, 'same_as')) checkSameAs(preds, a.same_as, scope, path);
}

/** Element-wise comparison with a saved prediction list (fields omitted: all; []: none). */
function checkSameAs(preds, spec, scope, path) {
  const ref = spec.ref;
  const saved = resolveLabel(scope.labels, ref);
  if (!Array.isArray(saved)) throw fail(path, `same_as: the value saved as ${JSON.stringify(ref)} is not a list: ${short(saved)}`);
  let mine = [...preds];
  let theirs = [...saved];
  const order = has(spec, 'order') ? spec.order : 'exact';
  if (order === 'by_name') {
    const key = (p) => String(isObject(p) ? bareName(p.name) : '');
    const byName = (x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0);
    mine = mine.sort(byName);
    theirs = theirs.sort(byName);
  } else if (order !== 'exact') {
    throw fail(path, `same_as: order must be 'exact' or 'by_name', got ${short(order)}`);
  }
  if (mine.length !== theirs.length) throw fail(path, `same_as ${ref}: ${mine.length} predictions, but ${theirs.length} were saved`);
  mine.forEach((a, i) => {
    const b = theirs[i];
    const names = has(spec, 'fields') ? spec.fields : [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    for (const name of names) {
      const left = has(a, name) ? a[name] : ABSENT;
      const right = has(b, name) ? b[name] : ABSENT;
      if (left === ABSENT || right === ABSENT) {
        if (left !== right) throw fail(`${path}[${i}].${name}`, `same_as ${ref}: field present on one side only`);
        continue;
      }
      if (!jsonEqual(left, right)) throw fail(`${path}[${i}].${name}`, `same_as ${ref}: ${short(left, 200)} != saved ${short(right, 200)}`);
    }
  });
}

module.exports = {
  ABSENT, MatchError, scopeOf, short, jsonEqual, isOperatorObject, resolveLabel,
  check, checkObject, checkPredictions,
};
