#!/usr/bin/env bash
# KATO over grpcurl: observe -> observe -> learn -> observe -> predict, twice.
#
# First with client-held state: the request carries the whole `state` and the
# response returns the new one, which the next request sends (jq threads it).
# Then with a server-held session: CreateSession, then every call carries only
# the `sessionId`. Both sessions share the knowledge base "walkthrough".
#
# Usage: docs/grpcurl-walkthrough.sh [HOST:PORT]   (default 127.0.0.1:50051)
# Needs grpcurl and jq. tests/e2e/test_grpcurl.py runs this script.
set -euo pipefail
ADDR="${1:-127.0.0.1:50051}"

kato() {  # kato METHOD JSON: call kato.v1.KatoService/METHOD with a JSON request
  grpcurl -plaintext -d "$2" "$ADDR" "kato.v1.KatoService/$1"
}

echo "# start from an empty knowledge base"
kato ClearKnowledgeBase '{"kbId": "walkthrough"}' >/dev/null

echo "# client-held: a new session is just its knowledge base id"
STATE='{"kbId": "walkthrough"}'
STATE=$(kato Observe "{\"state\": $STATE, \"observation\": {\"strings\": [\"hello\"]}}" | jq -c .state)
STATE=$(kato Observe "{\"state\": $STATE, \"observation\": {\"strings\": [\"world\"], \"emotives\": {\"joy\": 0.5}}}" | jq -c .state)
LEARNED=$(kato Learn "{\"state\": $STATE}")
echo "$LEARNED" | jq -r .patternName          # PTRN|<sha1 of the pattern>
STATE=$(echo "$LEARNED" | jq -c .state)        # short-term memory is empty again
STATE=$(kato Observe "{\"state\": $STATE, \"observation\": {\"strings\": [\"hello\"]}}" | jq -c .state)
kato Predict "{\"state\": $STATE}" \
  | jq -c '.predictions[] | {name, frequency, emotives, present: [.present[].symbols], future: [.future[].symbols]}'

echo "# server-held: the server keeps the state; calls carry the session id"
SESSION=$(kato CreateSession '{"kbId": "walkthrough", "ttlSeconds": 600}' | jq -r .session.sessionId)
kato Observe "{\"sessionId\": \"$SESSION\", \"observation\": {\"strings\": [\"hello\"]}}" | jq -c .
kato Observe "{\"sessionId\": \"$SESSION\", \"observation\": {\"strings\": [\"world\"]}}" | jq -c .
kato Learn "{\"sessionId\": \"$SESSION\"}" | jq -r .patternName   # the same pattern, learned again
kato Observe "{\"sessionId\": \"$SESSION\", \"observation\": {\"strings\": [\"hello\"]}}" | jq -c .
kato Predict "{\"sessionId\": \"$SESSION\"}" \
  | jq -c '.predictions[] | {name, frequency, emotives, present: [.present[].symbols], future: [.future[].symbols]}'
kato DeleteSession "{\"sessionId\": \"$SESSION\"}" >/dev/null
