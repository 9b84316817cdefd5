#!/usr/bin/env bash
# One GPU session's measurements in one call (device time is scarce): the conformance suite's matrix
# kernels on Dawn, calibration and tuning on both runtimes, two benchmarks on both runtimes, cold L2
# (the tensor-core issue's trees, then the eleven paper presets), and on Dawn the matrix kernel's
# tile grid and its profile by subtraction. nvidia-smi is polled beside it all. Everything lands in
# $OUT (default out/gpu-batch), the most important first, so a run cut short still returns what it
# finished; the logs go into one logs.tgz at the end (the device tool returns at most 8 files).
#
#   bash .gpu/run.sh bash tools/gpu_batch.sh            # on the GPU host (run.sh sets DAWN_NODE)
#   RUNTIMES=deno SCALE=0.02 bash tools/gpu_batch.sh    # a dry run on a software adapter
#
# STEPS picks steps (a comma list, in this order whatever the list's: conformance, calibrate, tune,
# perf, trees, presets, occupancy, profile; default all but occupancy (OCC_TILES: the tiles of
# tools/occupancy_mma.ts)), so a session can split them over two calls and keep
# the stored calibration and tuning (carried in out/). PERF_VARIANTS and PERF_TREES narrow the
# perf step (tools/perf_runtimes.ts --variants/--trees; PERF_RUNTIMES, default dawn); PROFILE_ARGS
# adds arguments to tools/profile_mma.ts (split on spaces); TUNE_METHODS the methods tune measures
# (default deft-flatten); tune times cold caches, as the benchmarks do (TUNE_COLD=0: warm).
# TREE_METHODS and PRESET_METHODS are the methods the two benchmarks run (`bench --methods`; default
# sequence,deft-flatten,tree-mask and sequence,deft-flatten; `all` for every method).
set -uo pipefail
out=${OUT:-out/gpu-batch}
runtimes=${RUNTIMES:-deno,dawn}
scale=${SCALE:-1}
mkdir -p "$out/logs"
log="$out/run.log"
cli=(deno run -A cli/main.ts)
# shellcheck source=tools/_gpu_steps.sh
. "$(dirname "$0")/_gpu_steps.sh"
scale_args=()
[ "$scale" != 1 ] && scale_args=(--scale "$scale")
steps=${STEPS:-conformance,calibrate,tune,trees,presets,perf,profile}  # occupancy: only when named
want() { [[ ",$steps," == *",$1,"* ]]; }

start_smi "$out/logs/smi-loop.csv"

if [[ "$runtimes" == *dawn* ]] && want conformance; then
  dawn_conformance "$out/logs" "${TEST_TIMEOUT:-150}"
fi

if want calibrate; then
  step "calibrate ($runtimes)"
  timeout "${CAL_TIMEOUT:-120}" "${cli[@]}" calibrate --runtime "$runtimes" --quick --force >>"$log" 2>&1 || echo "calibrate failed" | tee -a "$log"
fi

if want tune; then
  step "tune ($runtimes)"
  # Cold, as the benchmarks below measure (TUNE_COLD=0: warm caches, tune's own default).
  tune_cold=(--cold)
  [ "${TUNE_COLD:-1}" = 0 ] && tune_cold=()
  timeout "${TUNE_TIMEOUT:-150}" "${cli[@]}" tune --runtime "$runtimes" --methods "${TUNE_METHODS:-deft-flatten}" --budget-ms "${TUNE_BUDGET_MS:-300}" "${tune_cold[@]}" "${scale_args[@]}" \
    >>"$log" 2>&1 || echo "tune failed" | tee -a "$log"
fi
if want calibrate || want tune; then
  tar -czf "$out/calibration-tuning.tgz" out/calibration out/tuning 2>/dev/null
fi

if [[ "$runtimes" == *dawn* ]] && want perf; then
  small=()
  [ "$scale" != 1 ] && small=(--small)
  step "variants of the methods, interleaved (${PERF_RUNTIMES:-dawn})"
  perf_args=()
  [ -n "${PERF_VARIANTS:-}" ] && perf_args+=(--variants "$PERF_VARIANTS")
  [ -n "${PERF_TREES:-}" ] && perf_args+=(--trees "$PERF_TREES")
  OUT="$out" timeout "${PERF_TIMEOUT:-150}" deno run -A tools/perf_runtimes.ts --runtimes "${PERF_RUNTIMES:-dawn}" "${small[@]}" \
    "${perf_args[@]}" --samples "${PERF_SAMPLES:-20}" --lead 2000 >"$out/logs/perf_runtimes.log" 2>&1
  echo "perf_runtimes exit $?" | tee -a "$log"
fi

if want trees; then
  step "bench: the tensor-core issue's trees"
  timeout "${TREES_TIMEOUT:-240}" "${cli[@]}" bench table14 unshared-32x4096 few-shot-b50 speculative-t64 grid-4000-50x200 \
    grid-1024-16x256-64x32 sharing-4 \
    --runtime "$runtimes" --methods "${TREE_METHODS:-sequence,deft-flatten,tree-mask}" --cold \
    --budget-ms "${BUDGET_MS:-600}" "${scale_args[@]}" -o "$out/issue-trees.json" --force --quiet \
    >>"$log" 2>&1
  echo "bench exit $?" | tee -a "$log"
fi

if want presets; then
  step "bench: the eleven paper presets"
  timeout "${PRESETS_TIMEOUT:-300}" "${cli[@]}" bench --runtime "$runtimes" --methods "${PRESET_METHODS:-sequence,deft-flatten}" --cold \
    --budget-ms "${BUDGET_MS:-400}" "${scale_args[@]}" -o "$out/presets.json" --force --quiet \
    >>"$log" 2>&1
  echo "bench exit $?" | tee -a "$log"
fi
rm -f "$out"/*.html # reports are rebuilt from the JSON with `deft-bench report`

if [[ "$runtimes" == *dawn* ]] && want occupancy; then
  small=()
  [ "$scale" != 1 ] && small=(--small --sms 1)
  step "matrix kernel: workgroups resident per SM, per tile (Dawn)"
  OUT="$out" timeout "${OCC_TIMEOUT:-120}" deno run -A tools/occupancy_mma.ts "${small[@]}" \
    --tiles "${OCC_TILES:-r32-k16,r64-k16}" \
    >"$out/logs/occupancy_mma.log" 2>&1
  echo "occupancy_mma exit $?" | tee -a "$log"
fi

if [[ "$runtimes" == *dawn* ]] && want profile; then
  small=()
  [ "$scale" != 1 ] && small=(--small)
  step "matrix kernel: profile by subtraction (Dawn)"
  read -ra profile_args <<<"${PROFILE_ARGS:-}"
  OUT="$out" timeout "${PROFILE_TIMEOUT:-100}" deno run -A tools/profile_mma.ts "${small[@]}" \
    --samples 15 --lead 2000 "${profile_args[@]}" >"$out/logs/profile_mma.log" 2>&1
  echo "profile_mma exit $?" | tee -a "$log"
fi
[ -n "$smi" ] && kill "$smi"
step "done"
tar -czf "$out/logs.tgz" -C "$out" logs && rm -rf "$out/logs"
