#!/usr/bin/env bash
# One GPU session's measurements in one call (device time is scarce): the conformance suite on Dawn
# (every method and kernel family, matrix units required), calibration and tuning on both runtimes,
# then two benchmarks on both runtimes, cold L2: the tensor-core issue's trees, then the eleven
# paper presets. Everything lands in $OUT (default out/gpu-batch), the most important first, so a
# run cut short still returns what it finished.
#
#   bash .gpu/run.sh bash tools/gpu_batch.sh            # on the GPU host (run.sh sets DAWN_NODE)
#   RUNTIMES=deno SCALE=0.02 bash tools/gpu_batch.sh    # a dry run on a software adapter
set -uo pipefail
out=${OUT:-out/gpu-batch}
runtimes=${RUNTIMES:-deno,dawn}
scale=${SCALE:-1}
mkdir -p "$out"
log="$out/run.log"
cli=(deno run -A cli/main.ts)
step() { echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$log"; }
scale_args=()
[ "$scale" != 1 ] && scale_args=(--scale "$scale")

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm \
  --format=csv >>"$log" 2>&1

if [[ "$runtimes" == *dawn* ]]; then
  step "conformance on Dawn (matrix units required)"
  DEFT_RUNTIME=dawn DEFT_REQUIRE_SUBGROUP_MATRIX=1 DEFT_REQUIRE_F16=1 timeout "${TEST_TIMEOUT:-200}" \
    deno test -A --parallel tests/methods/ >"$out/conformance-dawn.log" 2>&1
  echo "conformance exit $?" | tee -a "$log"
  grep -E "passed.*failed" "$out/conformance-dawn.log" | tail -n 1 | tee -a "$log"
fi

step "calibrate ($runtimes)"
timeout "${CAL_TIMEOUT:-120}" "${cli[@]}" calibrate --runtime "$runtimes" --quick --force >>"$log" 2>&1 || echo "calibrate failed" | tee -a "$log"

step "tune ($runtimes)"
timeout "${TUNE_TIMEOUT:-150}" "${cli[@]}" tune --runtime "$runtimes" --budget-ms "${TUNE_BUDGET_MS:-300}" "${scale_args[@]}" \
  >>"$log" 2>&1 || echo "tune failed" | tee -a "$log"
tar -czf "$out/calibration-tuning.tgz" out/calibration out/tuning 2>/dev/null

step "bench: the tensor-core issue's trees"
timeout "${TREES_TIMEOUT:-240}" "${cli[@]}" bench table14 unshared-32x4096 few-shot-b50 speculative-t64 grid-4000-50x200 \
  grid-1024-16x256-64x32 sharing-4 \
  --runtime "$runtimes" --methods sequence,deft-flatten,tree-mask --cold \
  --budget-ms "${BUDGET_MS:-600}" "${scale_args[@]}" -o "$out/issue-trees.json" --force --quiet \
  >>"$log" 2>&1
echo "bench exit $?" | tee -a "$log"

step "bench: the eleven paper presets"
timeout "${PRESETS_TIMEOUT:-300}" "${cli[@]}" bench --runtime "$runtimes" --methods sequence,deft-flatten --cold \
  --budget-ms "${BUDGET_MS:-400}" "${scale_args[@]}" -o "$out/presets.json" --force --quiet \
  >>"$log" 2>&1
echo "bench exit $?" | tee -a "$log"
rm -f "$out"/*.html # reports are rebuilt from the JSON with `deft-bench report`
step "done"
