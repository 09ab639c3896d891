#!/bin/sh
# A receiving agency reads one of its referrals, with its victims' identity (only the fields of its data-sharing
# profile). Every such read is recorded on the case's timeline and the audit trail: read it when you need it.
#
#   RUJUKAN_REFERRAL_URL=https://rujukan.example/referral RUJUKAN_TOKEN=... sh read_referral.sh <referral id>
set -eu
: "${RUJUKAN_REFERRAL_URL:=http://127.0.0.1:8002}"
: "${RUJUKAN_TOKEN:?set RUJUKAN_TOKEN to your agency's API token (the demo: dev-<agency id>)}"
REFERRAL_ID="${1:?usage: read_referral.sh <referral id>}"

curl --fail-with-body --silent --show-error \
  "$RUJUKAN_REFERRAL_URL/v1/referrals/$REFERRAL_ID" \
  -H "Authorization: Bearer $RUJUKAN_TOKEN"
echo
