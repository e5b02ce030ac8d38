#!/usr/bin/env bash
# Runs GORM's own test suite (the tests/ module of the GORM version in this
# repository's go.mod) against PostgreSQL twice: once as GORM ships it, once
# with gormflight installed on GORM's test handle and every read cached. It
# prints the tests whose outcome differs and exits 1 when a test fails only
# with the plugin and is not listed in allowed.txt. See README.md.
#
# Environment (all optional):
#   GORM_SUITE_PG       libpq conninfo of the server, without dbname
#                       (default: host=127.0.0.1 port=5432 user=postgres sslmode=disable)
#   GORM_SUITE_DB       database the suite owns; DROPPED and recreated (default gorm_suite)
#   GORMFLIGHT_REDIS_ADDR  Redis for the plugin (default 127.0.0.1:6379)
#   GORM_TESTS_DIR      use this copy of GORM's tests/ directory instead of downloading it
#   GORM_GIT_DIR        or take tests/ from this git clone of go-gorm/gorm, at the version's tag
#   GORM_SUITE_RACE=1   build the test binaries with -race
#   GORM_SUITE_KEEP=1   keep the work directory (logs, binaries) and the database
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
pg=${GORM_SUITE_PG:-host=127.0.0.1 port=5432 user=postgres sslmode=disable}
dbname=${GORM_SUITE_DB:-gorm_suite}
redis_addr=${GORMFLIGHT_REDIS_ADDR:-127.0.0.1:6379}
prefix="gorm-suite:$(date +%s):$$"
stats_test=TestGormflightSuiteStats

die() { echo "gorm-suite: $*" >&2; exit 2; }
log() { echo "gorm-suite: $*" >&2; }

for tool in go jq psql git; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $dbname =~ ^[a-z_][a-z0-9_]*$ ]] || die "GORM_SUITE_DB must be a plain lower-case identifier"

work=$(mktemp -d "${TMPDIR:-/tmp}/gorm-suite.XXXXXX")
cleanup() {
	if command -v redis-cli >/dev/null; then
		# Only this run's keys; the shared Redis is never flushed.
		redis-cli -u "redis://$redis_addr" --scan --pattern "$prefix:*" |
			xargs -r -n 500 redis-cli -u "redis://$redis_addr" del >/dev/null || true
	fi
	if [[ ${GORM_SUITE_KEEP:-} == 1 ]]; then
		log "work directory kept: $work; database kept: $dbname"
	else
		rm -rf "$work"
		psql "$pg dbname=postgres" -q -c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

gorm_version=$(cd "$repo" && go list -m -f '{{.Version}}' gorm.io/gorm)
[[ -n $gorm_version ]] || die "cannot read the gorm.io/gorm version of $repo"

# fetch_tests puts GORM's tests/ module of $gorm_version into $work/tests.
# By default it comes from the Go module proxy: tests/ is a module of its own
# (gorm.io/gorm/tests) without tags, so the proxy serves it by the commit of
# the release tag, which gorm-commits.txt records.
fetch_tests() {
	local commit dir
	commit=$(awk -v v="$gorm_version" '$1 == v { print $2 }' "$here/gorm-commits.txt")
	if [[ -n ${GORM_TESTS_DIR:-} ]]; then
		log "tests/ from GORM_TESTS_DIR=$GORM_TESTS_DIR"
		cp -R "$GORM_TESTS_DIR" "$work/tests"
	elif [[ -n ${GORM_GIT_DIR:-} ]]; then
		local tagged
		tagged=$(git --git-dir="$GORM_GIT_DIR" rev-parse "$gorm_version^{commit}") ||
			die "tag $gorm_version not in $GORM_GIT_DIR"
		[[ -z $commit || $tagged == "$commit" ]] ||
			die "$GORM_GIT_DIR has $gorm_version at $tagged, gorm-commits.txt says $commit"
		log "tests/ from $GORM_GIT_DIR at $gorm_version ($tagged)"
		git --git-dir="$GORM_GIT_DIR" archive "$tagged" tests | tar -x -C "$work"
	else
		[[ -n $commit ]] || die "gorm-commits.txt has no commit for gorm $gorm_version; add it:
  git ls-remote https://github.com/go-gorm/gorm 'refs/tags/$gorm_version^{}'"
		log "tests/ from the module proxy: gorm.io/gorm/tests@$commit"
		local got
		got=$(cd "$work" && go mod download -json "gorm.io/gorm/tests@$commit") || true
		dir=$(jq -r '.Dir // empty' <<<"$got" 2>/dev/null) || true
		[[ -n $dir ]] || die "$(jq -r '.Error // empty' <<<"$got" 2>/dev/null)
the module proxy does not serve gorm.io/gorm/tests@$commit; set GORM_GIT_DIR to a clone of https://github.com/go-gorm/gorm or GORM_TESTS_DIR to its tests/ directory"
		cp -R "$dir" "$work/tests"
	fi
	chmod -R u+w "$work/tests"
	[[ -f $work/tests/tests_test.go ]] || die "no tests_test.go in GORM's tests/"
}

# prepare_module points the copy at released GORM $gorm_version (instead of
# ../, its parent checkout) and at this repository, adds the file that
# installs the plugin (built only with -tags gormflight) and builds both test
# binaries from the same module graph.
prepare_module() {
	local race=()
	[[ ${GORM_SUITE_RACE:-} == 1 ]] && race=(-race)
	cd "$work/tests"
	go mod edit -dropreplace gorm.io/gorm -require "gorm.io/gorm@$gorm_version" \
		-require github.com/gormflight/gormflight@v0.0.0-00010101000000-000000000000 \
		-replace "github.com/gormflight/gormflight=$repo"
	cp "$here/zz_gormflight_test.go.in" zz_gormflight_test.go
	go mod tidy
	local selected
	selected=$(go list -m -f '{{.Version}}' gorm.io/gorm)
	[[ $selected == "$gorm_version" ]] || die "the tests need gorm $selected, the repository has $gorm_version"
	log "building the test binaries (gorm $gorm_version)"
	go test "${race[@]}" -c -o "$work/plain.test" .
	go test "${race[@]}" -tags gormflight -c -o "$work/plugin.test" .
	cd - >/dev/null
}

# GORM's tests of its in-memory LRU (lru_test.go) touch no database, so the
# plugin cannot change them, and their wall-clock sleeps fail on a loaded
# machine: both passes skip them.
unit_only_tests() {
	sed -nE 's/^func (Test[A-Za-z0-9_]+)\(.*/\1/p' "$work/tests/lru_test.go" 2>/dev/null | paste -sd'|'
}

recreate_db() {
	psql "$pg dbname=postgres" -v ON_ERROR_STOP=1 -q \
		-c "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" -c "CREATE DATABASE $dbname" >/dev/null
}

# run_pass runs one binary over the whole suite into $work/<name>.json. A
# test that panics ends the process; the pass then resumes with the tests not
# yet started (same database, fresh Redis prefix), and the test that was
# running when the process died is recorded as failed.
run_pass() {
	local name=$1 bin=$2 chunk=0 rc skip=$unit_only started unfinished
	: >"$work/$name.json"
	recreate_db
	while ((chunk < 100)); do
		chunk=$((chunk + 1))
		local args=(-test.count=1 -test.v=test2json -test.timeout=30m)
		[[ -n $skip ]] && args+=("-test.skip=^($skip)\$")
		rc=0
		(cd "$work/tests" && GORM_DIALECT=postgres GORM_DSN="$pg dbname=$dbname TimeZone=Asia/Shanghai" \
			GORMFLIGHT_SUITE_PREFIX="$prefix:$name:$chunk" GORMFLIGHT_REDIS_ADDR="$redis_addr" \
			"$bin" "${args[@]}") >"$work/$name.$chunk.out" 2>&1 || rc=$?
		go tool test2json -p gorm.io/gorm/tests <"$work/$name.$chunk.out" >"$work/$name.$chunk.json"
		started=$(jq -r 'select(.Action == "run" and .Test != null and (.Test | contains("/") | not)) | .Test' "$work/$name.$chunk.json")
		unfinished=$(jq -r 'select(.Test != null and (.Test | contains("/") | not))
			| select(.Action == "run" or .Action == "pass" or .Action == "fail" or .Action == "skip")
			| [.Test, .Action] | @tsv' "$work/$name.$chunk.json" |
			awk -F'\t' '$2 == "run" { s[$1] = 1 } $2 != "run" { delete s[$1] } END { for (t in s) print t }')
		for t in $unfinished; do
			log "$name: $t ended the process (exit $rc); resuming after it"
			jq -nc --arg t "$t" '{Action: "fail", Test: $t, Crashed: true}' >>"$work/$name.$chunk.json"
		done
		cat "$work/$name.$chunk.json" >>"$work/$name.json"
		if [[ $rc == 0 || $rc == 1 ]] && [[ -z $unfinished ]]; then
			return 0
		fi
		[[ -n $started ]] || die "$name: the test binary exited $rc without running a test; see $work/$name.$chunk.out"
		skip=$(printf '%s\n' ${skip//|/ } $started | sort -u | paste -sd'|')
	done
	die "$name: too many crashes"
}

# names prints the test names (subtests included) with the given result.
names() {
	if [[ ! -f $work/$1.results ]]; then
		jq -r --arg s "$stats_test" 'select(.Test != null and .Test != $s)
			| select(.Action == "pass" or .Action == "fail" or .Action == "skip")
			| [.Action, .Test] | @tsv' "$work/$1.json" >"$work/$1.results"
	fi
	awk -F'\t' -v a="$2" '$1 == a { print $2 }' "$work/$1.results" | sort -u
}

# assertions prints the first failure lines logged by a test or its subtests.
assertions() {
	if [[ ! -f $work/$1.failures ]]; then
		jq -r 'select(.Action == "output" and .Test != null)
			| select(.Output | test("^ +[A-Za-z0-9_]+\\.go:[0-9]+: |^panic: "))
			| [(.Test | sub("/.*"; "")), (.Output | rtrimstr("\n"))] | @tsv' "$work/$1.json" >"$work/$1.failures"
	fi
	awk -F'\t' -v t="$2" '$1 == t { print $2 }' "$work/$1.failures" | head -n 3 | cut -c1-220 | sed -E 's/^ */      /'
}

# allowed_reason prints the allowed.txt reason of a top-level test, if any.
allowed_reason() {
	awk -v t="$1" '!/^#/ && $1 == t { $1 = ""; sub(/^ +/, ""); print; exit }' "$here/allowed.txt"
}

# summary prints one pass's figures.
summary() {
	local all fails
	all=$( (names "$1" pass; names "$1" fail; names "$1" skip) | sort -u)
	fails=$(names "$1" fail)
	printf '%-14s %4d top-level tests (%d with subtests), %d failed (%d with subtests), %ss\n' "$1:" \
		"$(grep -vc / <<<"$all" || true)" "$(grep -c . <<<"$all" || true)" \
		"$(grep -vc / <<<"$fails" || true)" "$(grep -c . <<<"$fails" || true)" "$2"
}

# report compares the passes; it returns 1 when a test fails only with the
# plugin and allowed.txt does not list it, or when the cache served nothing.
report() {
	local status=0 t n reason diff
	names plain fail >"$work/fail.plain"
	names plugin fail >"$work/fail.plugin"
	echo
	echo "GORM $gorm_version suite on PostgreSQL, gormflight $(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')"
	summary plain "$plain_secs"
	summary plugin "$plugin_secs"
	jq -r 'select(.Action == "output") | .Output' "$work/plugin.json" |
		grep -a GORMFLIGHT_STATS | sed -E 's/.*GORMFLIGHT_STATS/plugin counters:/' || true
	if jq -e --arg s "$stats_test" 'select(.Action == "fail" and .Test == $s)' "$work/plugin.json" >/dev/null; then
		echo "FAIL: $stats_test: the cache was not in effect"
		status=1
	fi
	comm -23 <( (names plain pass; names plain fail; names plain skip) | grep -v / | sort -u) \
		<( (names plugin pass; names plugin fail; names plugin skip) | grep -v / | sort -u) |
		sed 's/^/did not run with the plugin: /'
	echo
	echo "failing only with the plugin:"
	diff=$(comm -13 "$work/fail.plain" "$work/fail.plugin")
	for t in $(sed 's,/.*,,' <<<"$diff" | sort -u); do
		n=$(grep -c "^$t/" <<<"$diff" || true)
		reason=$(allowed_reason "$t")
		if [[ -n $reason ]]; then
			echo "  $t ($n subtests)  allowed: $reason"
		else
			echo "  $t ($n subtests)  NOT ALLOWED"
			status=1
		fi
		assertions plugin "$t"
	done
	echo "failing only without the plugin:"
	comm -23 "$work/fail.plain" "$work/fail.plugin" | sed 's,/.*,,' | sort -u | sed 's/^/  /'
	return $status
}

fetch_tests
prepare_module
unit_only=$(unit_only_tests)
[[ -z $unit_only ]] || log "skipped in both passes (lru_test.go, no database): ${unit_only//|/ }"
SECONDS=0
log "pass 1/2: without the plugin"
run_pass plain "$work/plain.test"
plain_secs=$SECONDS
log "pass 2/2: with the plugin, every read cached"
SECONDS=0
run_pass plugin "$work/plugin.test"
plugin_secs=$SECONDS
report
