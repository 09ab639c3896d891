#!/bin/sh
# A police unit's system reports a case over HTTPS (the way to send victim identity: over AMQP it rests in
# plaintext on the broker's disk until intake seals it).
#
#   RUJUKAN_INTAKE_URL=https://rujukan.example/intake RUJUKAN_TOKEN=... \
#     sh report_case.sh "LP/B/123/XI/2026/SPKT/POLRES BENGKAYANG"
#
# 202 {"case_id", "case_code"} once the broker has the case; 401/403 for a wrong token; 422 names the fields at
# fault (never their values); 409 when the same report number came before with other content; 503: send the
# same report again (it is recognised, never a second case). Schema: docs/openapi/intake.json.
set -eu
: "${RUJUKAN_INTAKE_URL:=http://127.0.0.1:8001}"
: "${RUJUKAN_TOKEN:?set RUJUKAN_TOKEN to your unit's API token (the demo: dev-polres-bengkayang)}"
: "${RUJUKAN_AGENCY:=polres-bengkayang}"
REPORT_NUMBER="${1:?usage: report_case.sh <police report number>}"
REPORTED_AT="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

curl --fail-with-body --silent --show-error \
  -X POST "$RUJUKAN_INTAKE_URL/v1/cases" \
  -H "Authorization: Bearer $RUJUKAN_TOKEN" \
  -H "Content-Type: application/json" \
  --data-binary @- <<JSON
{
  "police_report_number": "$REPORT_NUMBER",
  "reporting_agency": "$RUJUKAN_AGENCY",
  "regency_code": "61.07",
  "reported_at": "$REPORTED_AT",
  "exploitation_types": ["sexual_exploitation"],
  "victims": [
    {"victim_ref": "V1", "full_name": "Contoh Korban", "sex": "female", "age_years": 16,
     "needs": ["psychosocial", "shelter"], "current_location": "RPTC Singkawang"}
  ]
}
JSON
echo
