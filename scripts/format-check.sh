#!/usr/bin/env bash
# Fails when clang-format would change any C source or header of the project.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=()
while IFS= read -r f; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h')
if [[ ${#bad[@]} -gt 0 ]]; then
    printf 'clang-format would change: %s\n' "${bad[@]}" >&2
    echo "run: make format" >&2
    exit 1
fi
echo "format: clean"
