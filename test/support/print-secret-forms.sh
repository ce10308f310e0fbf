#!/bin/bash
# Prints the secret in $S in each form tools commonly print a secret in, one `name: printed` line
# each: test/support/secret-prints.ts runs it for the unit tests, and the end-to-end tests run it
# as a job step. Needs bash, dash, python3, node, jq and base64.
export PYTHONIOENCODING=utf-8
printf 'plain: %s\n' "$S"
printf 'base64: %s\n' "$(printf %s "$S" | base64 -w0)"
python3 - "$S" <<'PY'
import json, re, shlex, sys
from urllib.parse import quote, quote_plus
s = sys.argv[1]
lower_hex = lambda t: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), t)
print("python quote:", quote(s))
print("python quote_plus:", quote_plus(s))
print("python quote lower-case hex:", lower_hex(quote(s)))
print("python quote_plus lower-case hex:", lower_hex(quote_plus(s)))
print("python json.dumps:", json.dumps(s))
print("python json.dumps upper-case hex:", re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group()[2:].upper(), json.dumps(s)))
print("python json.dumps ensure_ascii=False:", json.dumps(s, ensure_ascii=False))
print("python shlex.quote:", shlex.quote(s))
PY
node -e 'const s = process.argv[1]; console.log("node JSON.stringify: " + JSON.stringify(s)); console.log("node encodeURIComponent: " + encodeURIComponent(s))' -- "$S"
printf 'jq @uri: %s\n' "$(jq -rn --arg s "$S" '$s | @uri')"
printf 'jq @json: %s\n' "$(jq -rn --arg s "$S" '$s | @json')"
for loc in C.UTF-8 C; do
  LC_ALL=$loc bash -c 'printf "bash printf %%q ($0): %q\n" "$1"' "$loc" "$S"
  LC_ALL=$loc bash -c 'printf "bash \${S@Q} ($0): %s\n" "${1@Q}"' "$loc" "$S"
  printf 'bash set -x (%s): %s\n' "$loc" "$(LC_ALL=$loc bash -xc ': "$1"' _ "$S" 2>&1)"
done
printf 'dash set -x: %s\n' "$(dash -xc ': "$1"' _ "$S" 2>&1)"
