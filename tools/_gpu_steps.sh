# Steps shared by the one-call GPU batches (tools/gpu_batch.sh, tools/gpu_profile.sh). Sourced after
# the batch sets $log, the file every step's summary line is appended to.

# One line per step, with the time, on the terminal and in $log.
step() { echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$log"; }

# start_smi CSV: records the GPU in $log, then polls its SM clock, power and clock event reasons
# into CSV every 500 ms (the H200 idles at 345 MHz between short batches). Sets $smi to the
# poller's pid, empty without nvidia-smi; stop it with `[ -n "$smi" ] && kill "$smi"`.
start_smi() {
  smi=""
  command -v nvidia-smi >/dev/null || return 0
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >>"$log" 2>&1
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv \
    -lms 500 >"$1" 2>&1 &
  smi=$!
}

# dawn_conformance LOGDIR TIMEOUT_S: the matrix-kernel ([mma]) cases of the conformance suite and of
# deft-flatten's tests on Dawn, one test process per file; logs and the JSON lines of every case in
# LOGDIR. (Long Dawn test processes stalled on the H200 while a pipeline was created
# asynchronously; Dawn now creates them with the blocking call: DEFT_SYNC_PIPELINES, kernels/gpu.ts.)
dawn_conformance() {
  local dir=$1 limit=$2 f
  for f in conformance_test deft_flatten_test; do
    step "conformance on Dawn, matrix kernels: $f"
    DEFT_RUNTIME=dawn DEFT_REQUIRE_SUBGROUP_MATRIX=1 DEFT_REQUIRE_F16=1 \
      DEFT_CONFORMANCE_LOG="$dir/conformance-dawn.jsonl" timeout "$limit" \
      deno test -A "tests/methods/$f.ts" --filter "[mma]" >"$dir/conformance-dawn-$f.log" 2>&1
    echo "conformance $f exit $?" | tee -a "$log"
    grep -E "passed.*failed" "$dir/conformance-dawn-$f.log" | tail -n 1 | tee -a "$log"
  done
}
