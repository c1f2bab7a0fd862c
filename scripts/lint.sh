#!/usr/bin/env bash
# Static checks, run by scripts/test.sh and on their own:
#
#   ./scripts/lint.sh          # everything below
#   ./scripts/lint.sh -offline # skip govulncheck (no vulnerability database at hand)
#
#   1. go mod tidy -diff   go.mod/go.sum are tidy
#   2. go vet              (test.sh runs it too; here so that lint.sh alone is complete)
#   3. staticcheck         every check but a few style ones: staticcheck.conf
#   4. golangci-lint       the curated set in .golangci.yml (errcheck, errorlint, bodyclose,
#                          noctx, misspell, nilerr, govet's extra analyzers, ...)
#   5. govulncheck         known vulnerabilities reachable from the code, in the modules
#                          and in the Go standard library
#
# The tools are built with `go install module/cmd@version` at the versions pinned below (the
# module proxy here serves these) into $FASTRTC_TOOLS (default: $(go env GOPATH)/fastrtc-tools),
# one directory per version, so that a machine builds each once.
#
# Times measured on the 2-core dev machine, warm build cache: tidy 1 s, vet 10 s,
# staticcheck 25 s, golangci-lint 35 s, govulncheck 20 s. Building the tools the first time:
# golangci-lint ~2 min, staticcheck + govulncheck ~25 s.
#
# The vulnerability database: vuln.go.dev when it answers; else (this workplace reaches only
# the module proxy) the Go team's database as published in the golang.org/x/vulndb module, a
# snapshot whose date is VULNDB_VERSION's timestamp: its data/osv/ is the same OSV entries
# that vuln.go.dev serves, which govulncheck reads from a directory. The script says loudly
# which one it used; a stale snapshot misses newer advisories, so bump VULNDB_VERSION (the
# newest pseudo-version the proxy serves) from time to time.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

STATICCHECK_VERSION=v0.8.2   # honnef.co/go/tools (staticcheck 2026.2.2)
GOLANGCI_VERSION=v2.15.0     # github.com/golangci/golangci-lint/v2
GOVULNCHECK_VERSION=v1.9.0   # golang.org/x/vuln
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018 # golang.org/x/vulndb (2026-11-05)

offline=false
[ "${1:-}" = "-offline" ] && offline=true

TOOLS="${FASTRTC_TOOLS:-$(go env GOPATH)/fastrtc-tools}"

# tool NAME MODULE/CMD VERSION: prints the path of the binary, building it when missing.
tool() {
  local name=$1 pkg=$2 version=$3 dir="$TOOLS/$1@$3"
  if [ ! -x "$dir/$name" ]; then
    echo "lint: building $pkg@$version into $dir" >&2
    mkdir -p "$dir"
    # GOFLAGS cleared: a caller's -mod=... must not apply to the tool's own module.
    GOFLAGS= GOBIN="$dir" go install "$pkg@$version" >&2
  fi
  echo "$dir/$name"
}

step() { echo "== lint: $*"; }
failed=()
# check NAME CMD...: runs a check; a failure is reported at the end, after the other checks.
check() {
  local name=$1; shift
  if ! "$@"; then failed+=("$name"); echo "!! lint: $name FAILED" >&2; fi
}
t0=$(date +%s)
secs() { echo "($(($(date +%s) - t0)) s)"; t0=$(date +%s); }

step "go mod tidy -diff"
check "go mod tidy -diff (run go mod tidy)" go mod tidy -diff
secs

step "go vet"
check "go vet" go vet ./...
secs

step "staticcheck $STATICCHECK_VERSION (staticcheck.conf)"
check staticcheck "$(tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION")" ./...
secs

step "golangci-lint $GOLANGCI_VERSION (.golangci.yml)"
check golangci-lint "$(tool golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_VERSION")" run ./...
secs

# vulncheck: govulncheck against vuln.go.dev, else against the offline snapshot; never a
# silent pass without a database.
vulncheck() {
  local govulncheck dbdir
  govulncheck=$(tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION")
  if command -v curl >/dev/null && curl -fsS -m 5 -o /dev/null https://vuln.go.dev/index/db.json.gz 2>/dev/null; then
    step "govulncheck $GOVULNCHECK_VERSION, database https://vuln.go.dev (live)"
    govuln "$govulncheck" ./...
    return
  fi
  # Downloaded from outside the module, so that go.mod and go.sum are not touched; the
  # module cache holds it read-only, and govulncheck only reads it.
  dbdir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS= GO111MODULE=on go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" 2>/dev/null |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
  if [ -z "$dbdir" ] || [ ! -d "$dbdir/data/osv" ]; then
    echo "!! lint: govulncheck NOT RUN: vuln.go.dev is unreachable and golang.org/x/vulndb@$VULNDB_VERSION" >&2
    echo "!!       could not be downloaded. No vulnerability check was made." >&2
    failed+=("govulncheck (no vulnerability database)")
    return
  fi
  step "govulncheck $GOVULNCHECK_VERSION, database: OFFLINE SNAPSHOT golang.org/x/vulndb@$VULNDB_VERSION"
  echo "!! vuln.go.dev is unreachable: checking against the Go vulnerability database as of"
  echo "!! ${VULNDB_VERSION:7:4}-${VULNDB_VERSION:11:2}-${VULNDB_VERSION:13:2} ($(find "$dbdir/data/osv" -name '*.json' | wc -l) entries): advisories published after that are NOT checked."
  govuln "$govulncheck" -db "file://$dbdir/data/osv" ./...
}

# govuln GOVULNCHECK ARGS...: runs govulncheck and applies the policy: a vulnerability that
# the code reaches (a called symbol) in a module fails; one in the standard library is
# fixed only by a newer Go toolchain, which this machine's image sets (go1.26.8 here; the
# only newer one on offer is go1.27.3 via GOTOOLCHAIN, a project-wide switch), so it is
# printed loudly but fails only with LINT_STDLIB_VULNS=fail. Vulnerabilities in imported
# code that is never called are listed by `govulncheck -show verbose`, not here.
govuln() {
  local bin=$1; shift
  if ! command -v jq >/dev/null; then # no jq: plain text output, any finding fails
    check govulncheck "$bin" "$@"
    return
  fi
  local out rc=0 called mods std
  out=$(mktemp)
  "$bin" -format json "$@" >"$out" || rc=$?
  if [ $rc -ne 0 ]; then
    cat "$out" >&2; rm -f "$out"; failed+=("govulncheck (exit $rc)"); return
  fi
  called=$(jq -rs '
    (map(select(.osv) | .osv) | map({key: .id, value: .summary}) | from_entries) as $sum
    | [.[] | select(.finding) | .finding | select(.trace[0].function != null)
       | {id: .osv, mod: .trace[0].module, ver: .trace[0].version, fixed: .fixed_version}]
    | unique_by(.id) | .[] | "\(.mod) \(.ver) -> \(.fixed // "no fix"): \(.id) \($sum[.id])"' "$out")
  rm -f "$out"
  mods=$(grep -v '^stdlib ' <<<"$called" || true)
  std=$(grep '^stdlib ' <<<"$called" || true)
  if [ -z "$called" ]; then
    echo "govulncheck: no vulnerability reached by the code"
  fi
  if [ -n "$mods" ]; then
    echo "!! govulncheck: vulnerabilities in modules, reached by the code (upgrade them in go.mod):" >&2
    echo "$mods" | sed 's/^/!!   /' >&2
    failed+=("govulncheck (modules)")
  fi
  if [ -n "$std" ]; then
    echo "!! govulncheck: vulnerabilities in the Go standard library of $(go env GOVERSION), reached by the code;"
    echo "!! only a newer Go fixes them (this is NOT a pass for the toolchain):"
    echo "$std" | sed 's/^/!!   /'
    if [ "${LINT_STDLIB_VULNS:-warn}" = fail ]; then failed+=("govulncheck (standard library)"); fi
  fi
}
if $offline; then
  echo "!! lint: govulncheck SKIPPED (-offline): no vulnerability check was made"
else
  vulncheck
  secs
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf '!! lint failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "== lint: all checks passed"
