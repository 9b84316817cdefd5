#!/usr/bin/env bash
# The matrix kernel's profile in one GPU call: stage 1 and the reduction timed apart, the fixed cost
# of a workgroup (the sub-tile loop and the output pass knocked out), the block size, and Dawn's
# device toggles (robustness, workgroup zero-init) one process each, since toggles are fixed when
# the device is made. Then, if time is left, the Dawn conformance step of the matrix kernels (with
# blocking pipeline creation, now Dawn's default: kernels/gpu.ts).
# nvidia-smi is polled beside it all. Everything lands in $OUT (default out/gpu-profile), at most 8
# files (the device tool's limit): profile-*.json, smi-loop.csv, logs.tgz.
#
#   bash .gpu/run.sh bash tools/gpu_profile.sh          # on the GPU host (run.sh sets DAWN_NODE)
#   SMALL=1 tools/with-lavapipe.sh bash tools/gpu_profile.sh   # a dry run on a CPU adapter
set -uo pipefail
out=${OUT:-out/gpu-profile}
rm -rf /tmp/gpu-profile-logs
mkdir -p "$out" /tmp/gpu-profile-logs
logs=/tmp/gpu-profile-logs
log="$logs/run.log"
# shellcheck source=tools/_gpu_steps.sh
. "$(dirname "$0")/_gpu_steps.sh"
small=()
[ -n "${SMALL:-}" ] && small=(--small)
trees=${TREES:-table14,few-shot,speculative}

start_smi "$out/smi-loop.csv"

profile() { # name, toggles, extra args...
  local name=$1 toggles=$2
  shift 2
  step "profile $name (toggles: ${toggles:-none})"
  DEFT_DAWN_TOGGLES=$toggles OUT="$logs/$name" timeout "${PROFILE_TIMEOUT:-120}" \
    deno run -A tools/profile_mma.ts "${small[@]}" --trees "$trees" --samples "${SAMPLES:-15}" \
    --lead 2000 --parts "$@" >"$logs/profile-$name.log" 2>&1
  echo "profile $name exit $?" | tee -a "$log"
  [ -f "$logs/$name/profile_mma.json" ] && cp "$logs/$name/profile_mma.json" "$out/profile-$name.json"
}

profile base "" --blocks "${BLOCKS:-0,256,512}" \
  --knockouts softmax,kv-load+stage,kv-load+stage+qk+softmax+pv,loop,loop+output,output
profile norobust disable_robustness --blocks 0,512 --knockouts ""
profile noinit disable_workgroup_init --blocks 0,512 --knockouts ""
profile both disable_robustness,disable_workgroup_init --blocks 0,512 \
  --knockouts loop,loop+output,output

[ -z "${NO_CONFORMANCE:-}" ] && dawn_conformance "$logs" "${TEST_TIMEOUT:-120}"

[ -n "$smi" ] && kill "$smi" 2>/dev/null
tar -czf "$out/logs.tgz" -C "$logs" . 2>/dev/null
step "done"
