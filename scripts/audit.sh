#!/usr/bin/env bash
# `make audit`: pip-audit over the project's virtual environment. A known vulnerability fails the run
# unless .ci/audit-ignore.txt lists its id with the reason. When no vulnerability database can be
# reached (no network, or a package index without PyPI's JSON API), it says so in one line and passes:
# nothing was audited then, which is not the same as nothing found.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
report="$(mktemp)"; errors="$(mktemp)"
trap 'rm -f "$report" "$errors"' EXIT

ignores=()
if [ -f .ci/audit-ignore.txt ]; then
  while read -r id _; do
    case "$id" in ""|\#*) ;; *) ignores+=(--ignore-vuln "$id") ;; esac
  done < .ci/audit-ignore.txt
fi

"$VENV/bin/pip-audit" --progress-spinner off --format json --output "$report" "${ignores[@]}" 2>"$errors"
status=$?
"$VENV/bin/python" - "$report" "$errors" "$status" <<'PY'
import json
import sys

report, errors, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    with open(report) as handle:
        deps = json.load(handle).get("dependencies", [])
except (OSError, ValueError):
    deps = None
if deps is None:
    lines = [line for line in open(errors).read().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit status {status}"
    unreachable = any(word in last for word in ("ConnectionError", "resolve", "Max retries", "timed out"))
    if unreachable:
        print(f"pip-audit: vulnerability database unreachable, audit skipped ({last[:160]})")
        sys.exit(0)
    print(f"pip-audit failed: {last}")
    sys.exit(1)
audited = [dep for dep in deps if "skip_reason" not in dep]
found = [(dep["name"], dep["version"], vuln) for dep in audited for vuln in dep.get("vulns", [])]
if not audited:
    print(f"pip-audit: the vulnerability service knows none of the {len(deps)} installed packages "
          "(package index without PyPI's JSON API); audit skipped")
    sys.exit(0)
for name, version, vuln in found:
    fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
    print(f"{name} {version}: {vuln['id']} (fixed in {fixes})")
print(f"pip-audit: {len(audited)} packages audited, {len(deps) - len(audited)} skipped, {len(found)} known vulnerabilities")
sys.exit(1 if found else 0)
PY
