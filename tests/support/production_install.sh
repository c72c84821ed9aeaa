#!/usr/bin/env bash
# The README's production install, exactly as a new user runs it: a clean venv, then the `pip install` command of
# README.md's "Running in production" section (the core with [embeddings,opensearch] and every plugin, from the
# checkout, no `test` extra). Then it checks that
#   * pip printed no setuptools deprecation warning,
#   * pytest is not installed (product code must never need the test kit),
#   * `pi plugins --json` reports no failed plugin,
#   * `pi --help` lists every command of the README's operators' table,
#   * `pi health` exits 0 on the embedded defaults (PI_DATA_DIR in a temp dir, HF_HUB_OFFLINE=1, no services).
# The install is built from a copy of the checkout's files (building in the checkout would leave build/ and a
# *.egg-info there that shadows the development install's entry points). PYTHON picks the interpreter (python3).
# .ci/run calls it before the test suite; pip's cache makes it take about a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
checkout=$(pwd)
PYTHON=${PYTHON:-python3}
started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/pi-production-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
    echo "production install: FAILED: $*" >&2
    exit 1
}

# the README's install command: from its `pip install ".[` line to the first line not continued by a backslash
section=$(awk '/^## Running in production/ {inside = 1; next} inside && /^## / {exit} inside' README.md)
install=$(printf '%s\n' "$section" | sed -n '/^pip install "\.\[/,/[^\\]$/p' | sed 's/\\$//' | tr -s '\n ' '  ' || true)
[ -n "$install" ] || fail "no 'pip install \".[...' command in README.md's 'Running in production' section"
# the operators' table: every `pi <command>` it documents
commands=$(printf '%s\n' "$section" | awk "/^Operators' commands:/ {inside = 1; next} inside && /^\\|/ {table = 1; print; next} table {exit}" |
    { grep -o '`pi [a-z][a-z-]*' || true; } | cut -c5- | sort -u)
[ "$(printf '%s\n' "$commands" | grep -c .)" -ge 10 ] || fail "could not read the operators' table in README.md: got '$commands'"

mkdir "$work/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md pi_framework plugins |
        tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$work/src"
else
    tar --exclude='*.egg-info' --exclude=build --exclude=__pycache__ -cf - pyproject.toml README.md pi_framework plugins |
        tar -xf - -C "$work/src"
fi

"$PYTHON" -m venv "$work/venv"
echo "production install: $install(from a copy of $checkout, clean venv $("$work/venv/bin/python" --version))"
# the README's command, run by a shell as a user pasting it would (quotes and all), with the venv's pip first on PATH
# PIP_VERBOSE=1 only makes pip show the build backends' output, where setuptools prints its deprecation warnings
if ! (cd "$work/src" && PATH="$work/venv/bin:$PATH" PIP_VERBOSE=1 bash -c "$install") >"$work/pip.log" 2>&1; then
    cat "$work/pip.log" >&2
    fail "pip install"
fi
if grep -E 'SetuptoolsDeprecationWarning|DEPRECATION:' "$work/pip.log" | sort | uniq -c >&2; then
    fail "installing printed deprecation warnings (above)"
fi
if "$work/venv/bin/python" -c 'import pytest' 2>/dev/null; then
    fail "pytest is installed although the test extra was not asked for"
fi

# the product on the embedded defaults: nothing from this shell's environment, no checkout on sys.path
mkdir "$work/run"
run() {
    (cd "$work/run" && env -i PATH="$work/venv/bin:/usr/bin:/bin" HOME="$work/run" LANG=C.UTF-8 HF_HUB_OFFLINE=1 \
        PI_DATA_DIR="$work/run/pi-data" "$@")
}

run pi plugins --json >"$work/plugins.json" || fail "pi plugins --json exited $?"
"$work/venv/bin/python" - "$work/plugins.json" <<'EOF' || fail "pi plugins --json reports failed plugins"
import json, sys

report = json.load(open(sys.argv[1]))
for name, reason in report["failed"].items():
    print(f"FAILED {name}: {reason}", file=sys.stderr)
print("production install: plugins loaded:", ", ".join(sorted(plugin["name"] for plugin in report["loaded"])))
sys.exit(1 if report["failed"] else 0)
EOF

listed=$(run pi --help | awk '/^Commands:/ {inside = 1; next} inside && $1 != "" {print $1}' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$commands") <(printf '%s\n' "$listed"))
[ -z "$missing" ] || fail "pi --help lacks documented command(s): $(echo "$missing" | tr '\n' ' ')"
echo "production install: pi --help lists every documented command: $(echo "$commands" | tr '\n' ' ')"

if ! run pi health >"$work/health.txt" 2>&1; then
    cat "$work/health.txt" >&2
    fail "pi health exited non-zero on the embedded defaults"
fi
echo "production install: pi health ok ($(grep -c '^ok' "$work/health.txt") checks)"
echo "production install: passed in $(($(date +%s) - started)) s"
