#!/usr/bin/env bash
# Soak of `tee-verifier serve`: Verify and CheckMeasurement driven at once, open loop, at a share
# of the capacity measured right before, while the server's RSS and open files are sampled.
#
#   bash scripts/soak.sh                  # 10 minutes at 80 % (the release gate)
#   bash scripts/soak.sh --duration 30    # a smoke run
#
# 1. Builds the release binary and the load generator (--no-build skips it).
# 2. Mints distinct Nitro documents under a test PKI (`loadgen --mint-nitro`), so that every
#    Verify is a verification, not an answer from a cache of byte-identical evidence, and starts
#    `serve` on the embedded default registry with that root and the documents' time pinned
#    (`--dangerous-fixed-now`: test-only).
# 3. Capacity: both methods closed loop at once for --capacity-seconds (the capacity of the mix
#    the soak runs; each alone would have the whole machine).
# 4. Soak: both open loop at --load percent of their capacity for --duration seconds, the
#    server's VmRSS and /proc/PID/fd count sampled every --interval seconds.
# 5. A table and a verdict: 0 errors in both, and RSS and open files within --flat percent
#    (max − min over min) over the samples after --warmup seconds. Exits 1 if the verdict fails.
#
# Not part of scripts/test.sh (too long).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=600
warmup=60
interval=10
capacity_seconds=20
load=80
flat=10
distinct=20000
build=1

usage() {
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --duration S          soak length in seconds [600]
  --warmup S            samples before this are not judged [60]
  --interval S          sampling interval [10]
  --capacity-seconds S  length of the capacity measurement [20]
  --load PERCENT        share of capacity to drive [80]
  --flat PERCENT        allowed spread of RSS and open files after warm-up [10]
  --distinct N          distinct Nitro documents sent in turn [20000]
  --no-build            use the binaries already in target/release
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --interval) interval="$2"; shift 2 ;;
        --capacity-seconds) capacity_seconds="$2"; shift 2 ;;
        --load) load="$2"; shift 2 ;;
        --flat) flat="$2"; shift 2 ;;
        --distinct) distinct="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "soak.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
for number in "$duration" "$warmup" "$interval" "$capacity_seconds" "$load" "$flat" "$distinct"; do
    [[ "$number" =~ ^[0-9]+$ && "$number" -gt 0 ]] || { echo "soak.sh: $number is not a positive integer" >&2; exit 2; }
done
if (( warmup >= duration )); then
    echo "soak.sh: --warmup ($warmup s) must be shorter than --duration ($duration s)" >&2
    exit 2
fi
command -v jq >/dev/null || { echo "soak.sh: needs jq" >&2; exit 2; }

if (( build )); then
    cargo build --release --quiet --bin tee-verifier --example loadgen
fi
server_bin=target/release/tee-verifier
loadgen=target/release/examples/loadgen

work=$(mktemp -d "${TMPDIR:-/tmp}/tee-verifier-soak.XXXXXX")
server_pid=
sampler_pid=
cleanup() {
    [[ -n "$sampler_pid" ]] && kill "$sampler_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$loadgen" --mint-nitro "$work/pool" --distinct "$distinct" >/dev/null
now=$(cat "$work/pool/now")

"$server_bin" serve --nitro-root "$work/pool/root.der" --dangerous-fixed-now "$now" \
    --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --log-filter warn \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 300); do
    grep -q '^listening ' "$work/server.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "soak.sh: the server did not start:" >&2; cat "$work/server.err" >&2; exit 1; }
    sleep 0.1
done
line=$(grep '^listening ' "$work/server.out") || { echo "soak.sh: the server never said where it listens" >&2; exit 1; }
grpc=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line")
target="http://$grpc"

# Each load generator is one client thread on one connection: the client shares the cores.
verify_args=(--target "$target" --call verify --evidence-set "$work/pool/documents.bin" --no-baseline
    --threads 1 --connections 1 --json)
measure_args=(--target "$target" --call check-measurement --threads 1 --connections 1 --json)

echo "server        pid $server_pid, gRPC $grpc, $distinct distinct Nitro documents (now $now)"
echo "capacity      both closed loop at once for $capacity_seconds s …"
"$loadgen" "${verify_args[@]}" --concurrency 16 --duration "$capacity_seconds" >"$work/capacity-verify.json" &
capacity_verify=$!
"$loadgen" "${measure_args[@]}" --concurrency 32 --duration "$capacity_seconds" >"$work/capacity-measure.json" &
capacity_measure=$!
wait "$capacity_verify" "$capacity_measure"
verify_capacity=$(jq '.throughput' "$work/capacity-verify.json")
measure_capacity=$(jq '.throughput' "$work/capacity-measure.json")
verify_rate=$(jq -n "$verify_capacity * $load / 100 | floor")
measure_rate=$(jq -n "$measure_capacity * $load / 100 | floor")
echo "              Verify $verify_capacity req/s, CheckMeasurement $measure_capacity req/s"
echo "soak          $load %: Verify $verify_rate req/s and CheckMeasurement $measure_rate req/s for $duration s, sampled every $interval s (warm-up: the first $warmup s)"

sample() {
    local started=$1
    while kill -0 "$server_pid" 2>/dev/null; do
        local rss fds
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null) || break
        fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        echo "$(( $(date +%s) - started )) $rss $fds"
        sleep "$interval"
    done
}
sample "$(date +%s)" >"$work/samples" &
sampler_pid=$!

"$loadgen" "${verify_args[@]}" --concurrency 64 --rate "$verify_rate" --duration "$duration" >"$work/soak-verify.json" &
soak_verify=$!
"$loadgen" "${measure_args[@]}" --concurrency 64 --rate "$measure_rate" --duration "$duration" >"$work/soak-measure.json" &
soak_measure=$!
status=0
wait "$soak_verify" || status=1
wait "$soak_measure" || status=1
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
if (( status )); then
    echo "soak.sh: a load generator failed:" >&2
    cat "$work"/soak-*.json >&2
    exit 1
fi
alive=yes
kill -0 "$server_pid" 2>/dev/null || alive=no

echo
printf '%8s %10s %6s\n' "t (s)" "RSS (MiB)" "fds"
awk '{printf "%8d %10.1f %6d%s\n", $1, $2 / 1024, $3, ($1 < '"$warmup"' ? "  (warm-up)" : "")}' "$work/samples"
echo
for method in verify measure; do
    jq -r 'def ms: . / 100 | round / 10 | tostring + " ms";
        "\(.call): \(.ok) ok, \(.errors) errors, \(.throughput) req/s (asked \(.rate)), latency p50 \(.p50_us | ms), p99 \(.p99_us | ms), p99.9 \(.p999_us | ms), max \(.max_us | ms)" + (if .first_error then ", first error: \(.first_error)" else "" end)' \
        "$work/soak-$method.json"
done
errors=$(jq -s 'map(.errors) | add' "$work/soak-verify.json" "$work/soak-measure.json")
# Spread over the samples after warm-up: (max − min) / min, for RSS (column 2) and fds (column 3).
spread() {
    awk -v column="$1" -v warmup="$warmup" '$1 >= warmup {
        if (n == 0 || $column < min) min = $column
        if (n == 0 || $column > max) max = $column
        n++
    } END { if (n == 0) print "none"; else printf "%d %d %.1f %d\n", min, max, 100 * (max - min) / min, n }' "$work/samples"
}
read -r rss_min rss_max rss_spread judged <<<"$(spread 2)"
read -r fd_min fd_max fd_spread _ <<<"$(spread 3)"
if [[ "$rss_min" == none || "$judged" -lt 2 ]]; then
    echo "soak.sh: fewer than two samples after warm-up; run longer" >&2
    exit 1
fi
printf 'after warm-up (%d samples): RSS %.1f–%.1f MiB (spread %s %%), open files %d–%d (spread %s %%)\n' \
    "$judged" "$(jq -n "$rss_min / 1024")" "$(jq -n "$rss_max / 1024")" "$rss_spread" "$fd_min" "$fd_max" "$fd_spread"

verdict=PASS
(( errors == 0 )) || verdict=FAIL
[[ "$alive" == yes ]] || verdict=FAIL
awk -v a="$rss_spread" -v b="$fd_spread" -v flat="$flat" 'BEGIN { exit !(a <= flat && b <= flat) }' || verdict=FAIL
echo "verdict: $verdict ($errors errors; server alive: $alive; RSS and open files flat within $flat %: spreads $rss_spread % and $fd_spread %)"
[[ "$verdict" == PASS ]]
