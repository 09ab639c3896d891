#!/bin/sh
# A receiving agency acknowledges a referral: a duty officer has taken it, and the acknowledgement deadline is met.
# accept, decline, start, hold, resume, complete and refer-onward are the same call with another last word and
# their body (docs/openapi/referral.json). A move the lifecycle does not allow answers 409 with the current state.
#
#   RUJUKAN_REFERRAL_URL=https://rujukan.example/referral RUJUKAN_TOKEN=... sh acknowledge.sh <referral id>
set -eu
: "${RUJUKAN_REFERRAL_URL:=http://127.0.0.1:8002}"
: "${RUJUKAN_TOKEN:?set RUJUKAN_TOKEN to your agency's API token (the demo: dev-<agency id>)}"
: "${RUJUKAN_OFFICER:=Petugas piket}"
REFERRAL_ID="${1:?usage: acknowledge.sh <referral id>}"

# The same Idempotency-Key on a retry: a repeat after a lost answer is answered, not applied twice.
curl --fail-with-body --silent --show-error \
  -X POST "$RUJUKAN_REFERRAL_URL/v1/referrals/$REFERRAL_ID/acknowledge" \
  -H "Authorization: Bearer $RUJUKAN_TOKEN" \
  -H "Idempotency-Key: acknowledge-$REFERRAL_ID" \
  -H "Content-Type: application/json" \
  -d "{\"officer\": \"$RUJUKAN_OFFICER\", \"note\": \"diterima petugas piket\"}"
echo
