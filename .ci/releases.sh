#!/usr/bin/env bash
# What a new user installs today, and the oldest apache-beam we say we support: each in a fresh venv with no
# constraints, a plain `pip install .`, then .ci/smoke.py (sample run, rerun, portable runner, local streaming) from
# a directory outside the checkout. A new release that breaks the first command fails CI, not a user.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
floor="$(python3 -c "import re; print(re.search(r'apache-beam>=([0-9.]+)', open('$root/setup.py').read()).group(1))")"

check() {
  local label="$1"; shift
  local venv="/tmp/newsbeam-$label"
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$root" "$@"
  echo "== $label: $("$venv/bin/pip" freeze | grep -i -E '^(apache-beam|pyarrow|lxml|feedparser|trafilatura|numpy)==' | tr '\n' ' ')"
  (cd "$(mktemp -d)" && PATH="$venv/bin:$PATH" "$venv/bin/python" "$root/.ci/smoke.py")
}

check newest
newest="$("/tmp/newsbeam-newest/bin/python" -c 'import apache_beam; print(apache_beam.__version__)')"
if [ "$(python3 -c "print(tuple(map(int, '$floor'.split('.'))) + (0,) * (3 - len('$floor'.split('.'))))")" \
   = "$(python3 -c "print(tuple(map(int, '$newest'.split('.')[:3])))")" ]; then
  echo "== lowest apache-beam allowed (>=$floor) is the newest ($newest): checked above"
else
  check lowest-beam "apache-beam==$floor"
fi
