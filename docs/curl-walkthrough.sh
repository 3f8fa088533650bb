#!/usr/bin/env bash
# KATO over HTTP/JSON with curl: the twin of grpcurl-walkthrough.sh, through the gateway.
#
# The same calls and the same output: first with client-held state (each request posts
# the whole `state` to /v1/sessions:<method>, jq threads the returned one into the next),
# then with a server-held session named in the path (/v1/sessions/{id}:<method>).
# Bodies are proto3 JSON, as grpcurl prints them.
#
# Usage: docs/curl-walkthrough.sh [http://HOST:PORT]   (default http://127.0.0.1:8080)
# Needs curl and jq. tests/e2e/test_http_gateway.py runs this script.
set -euo pipefail
BASE="${1:-http://127.0.0.1:8080}"

kato() {  # kato VERB PATH [JSON]: one call; a non-2xx answer prints its JSON error and fails
  curl -sS --fail-with-body -X "$1" "$BASE$2" -H 'Content-Type: application/json' ${3:+-d "$3"}
}

echo "# start from an empty knowledge base"
kato POST /v1/knowledgeBases/walkthrough:clear '{}' >/dev/null

echo "# client-held: a new session is just its knowledge base id"
STATE='{"kbId": "walkthrough"}'
STATE=$(kato POST /v1/sessions:observe "{\"state\": $STATE, \"observation\": {\"strings\": [\"hello\"]}}" | jq -c .state)
STATE=$(kato POST /v1/sessions:observe "{\"state\": $STATE, \"observation\": {\"strings\": [\"world\"], \"emotives\": {\"joy\": 0.5}}}" | jq -c .state)
LEARNED=$(kato POST /v1/sessions:learn "{\"state\": $STATE}")
echo "$LEARNED" | jq -r .patternName          # PTRN|<sha1 of the pattern>
STATE=$(echo "$LEARNED" | jq -c .state)        # short-term memory is empty again
STATE=$(kato POST /v1/sessions:observe "{\"state\": $STATE, \"observation\": {\"strings\": [\"hello\"]}}" | jq -c .state)
kato POST /v1/sessions:predict "{\"state\": $STATE}" \
  | jq -c '.predictions[] | {name, frequency, emotives, present: [.present[].symbols], future: [.future[].symbols]}'

echo "# server-held: the server keeps the state; calls carry the session id"
SESSION=$(kato POST /v1/sessions '{"kbId": "walkthrough", "ttlSeconds": 600}' | jq -r .session.sessionId)
kato POST "/v1/sessions/$SESSION:observe" '{"observation": {"strings": ["hello"]}}' | jq -c .
kato POST "/v1/sessions/$SESSION:observe" '{"observation": {"strings": ["world"]}}' | jq -c .
kato POST "/v1/sessions/$SESSION:learn" '{}' | jq -r .patternName   # the same pattern, learned again
kato POST "/v1/sessions/$SESSION:observe" '{"observation": {"strings": ["hello"]}}' | jq -c .
kato GET "/v1/sessions/$SESSION/predictions" \
  | jq -c '.predictions[] | {name, frequency, emotives, present: [.present[].symbols], future: [.future[].symbols]}'
kato DELETE "/v1/sessions/$SESSION" >/dev/null
