#!/usr/bin/env bash
# The logic of the GitHub Action (action.yml): lints the SQL migrations a
# pull request (or push) adds or changes, as `--format github` annotations,
# writes a Markdown findings table to the job summary and counts to the step
# outputs, and optionally applies the migrations under the guard.
#
# Inputs come as the runner passes them to a composite action's script:
#   INPUT_PATHS         folders or files to watch, space-separated (default: migrations)
#   INPUT_BASE          git ref to diff against (default: origin/$GITHUB_BASE_REF on a pull
#                       request, else the push's `before` commit from $GITHUB_EVENT_PATH);
#                       empty on neither: every file under INPUT_PATHS is linted
#   INPUT_PG_VERSION    --pg-version (default: locksmith.toml's, else 18)
#   INPUT_CONFIG        --config FILE
#   INPUT_APPLY_DIR     after a clean lint, `locksmith apply DIR` ...
#   INPUT_DATABASE_URL  ... against this URL (a secret; never printed)
#   LOCKSMITH           the command (default: locksmith on PATH)
# and the runner's GITHUB_STEP_SUMMARY and GITHUB_OUTPUT files.
# Exit: lint's code (1 on error findings), else apply's.
set -euo pipefail
locksmith="${LOCKSMITH:-locksmith}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
output="${GITHUB_OUTPUT:-/dev/null}"
read -r -a paths <<<"${INPUT_PATHS:-migrations}"

base="${INPUT_BASE:-}"
if [[ -z "$base" && -n "${GITHUB_BASE_REF:-}" ]]; then
  base="origin/$GITHUB_BASE_REF"
elif [[ -z "$base" && -n "${GITHUB_EVENT_PATH:-}" && -f "$GITHUB_EVENT_PATH" ]]; then
  # A push: its "before" commit (all zeros for a new branch: lint everything).
  base=$(sed -n 's/^ *"before": *"\([0-9a-f]*\)".*/\1/p' "$GITHUB_EVENT_PATH" | head -n 1)
  [[ "$base" =~ ^0+$ ]] && base=""
fi

files=()
if [[ -n "$base" ]]; then
  while IFS= read -r f; do
    [[ "$f" == *.sql && -f "$f" ]] && files+=("$f")
  done < <(git diff --name-only --diff-filter=AMR "$base"...HEAD -- "${paths[@]}")
else
  while IFS= read -r f; do files+=("$f"); done < <(
    for p in "${paths[@]}"; do
      if [[ -d "$p" ]]; then find "$p" -type f -name '*.sql'; elif [[ -f "$p" ]]; then echo "$p"; fi
    done | sort
  )
fi

{
  echo "files=${#files[@]}"
} >>"$output"
if ((${#files[@]} == 0)); then
  echo "locksmith: no changed SQL migrations under ${paths[*]}"
  { echo "## locksmith lint"; echo; echo "No changed SQL migrations under \`${paths[*]}\`."; } >>"$summary"
  echo "findings=0" >>"$output"
  echo "errors=0" >>"$output"
  exit 0
fi

args=(lint --format github)
[[ -n "${INPUT_PG_VERSION:-}" ]] && args+=(--pg-version "$INPUT_PG_VERSION")
[[ -n "${INPUT_CONFIG:-}" ]] && args+=(--config "$INPUT_CONFIG")
status=0
report=$("$locksmith" "${args[@]}" "${files[@]}") || status=$?
# The annotations, for the runner to attach to the diff.
[[ -n "$report" ]] && printf '%s\n' "$report"

# One table row per annotation: `::LEVEL file=F,line=L,col=C[,title=T]::MESSAGE`
# (the message's first line: the rest is the fix, in the annotation).
findings=0
errors=0
rows=""
unescape() { local s="${1//%2C/,}"; s="${s//%3A/:}"; s="${s//%0D/}"; printf '%s' "${s//%25/%}"; }
cell() { printf '%s' "${1//|/\\|}"; }
pattern='^::(error|warning|notice) file=([^,]*),line=([0-9]+),col=[0-9]+(,title=([^:]*))?::(.*)$'
while IFS= read -r line; do
  [[ "$line" =~ $pattern ]] || continue
  level="${BASH_REMATCH[1]}"
  file=$(unescape "${BASH_REMATCH[2]}")
  at="${BASH_REMATCH[3]}"
  title=$(unescape "${BASH_REMATCH[5]:-syntax error}")
  message="${BASH_REMATCH[6]%%%0A*}"
  message=$(unescape "$message")
  findings=$((findings + 1))
  [[ "$level" == error ]] && errors=$((errors + 1))
  rows+="| $level | \`$(cell "$file")\`:$at | $(cell "$title") | $(cell "$message") |"$'\n'
done <<<"$report"

{
  echo "## locksmith lint"
  echo
  if ((findings == 0)); then
    echo "No findings in ${#files[@]} changed migration(s)."
  else
    echo "$errors error(s), $((findings - errors)) other finding(s) in ${#files[@]} changed migration(s)."
    echo
    echo "| severity | where | rule | finding |"
    echo "|---|---|---|---|"
    printf '%s' "$rows"
    echo
    echo "Each annotation on the diff carries the safe rewrite. Rules: docs/rules.md."
  fi
} >>"$summary"
echo "findings=$findings" >>"$output"
echo "errors=$errors" >>"$output"
((status != 0)) && exit "$status"

if [[ -n "${INPUT_APPLY_DIR:-}" ]]; then
  if [[ -z "${INPUT_DATABASE_URL:-}" ]]; then
    echo "locksmith: apply-dir is set but database-url is empty: pass the secret as database-url" >&2
    exit 2
  fi
  echo "locksmith: applying $INPUT_APPLY_DIR under the guard"
  applied=0
  "$locksmith" apply "$INPUT_APPLY_DIR" --database-url "$INPUT_DATABASE_URL" || applied=$?
  echo "applied=$([[ $applied == 0 ]] && echo true || echo false)" >>"$output"
  exit "$applied"
fi
