#!/usr/bin/env bash
# Runs a command with Dawn on the private Mesa >= 25.2 lavapipe that .ci/lavapipe.sh prepares (a
# software Vulkan adapter with cooperative matrices, so Dawn's subgroup-matrix kernels run on a CPU):
#
#   tools/with-lavapipe.sh deno test -A tests/methods/
#   tools/with-lavapipe.sh deno run -A cli/main.ts ...
#
# It prepares the cache when needed (quietly when already there), then exports:
#   PATH             with the cache's deno first: a copy of deno whose ELF interpreter is the private
#                    glibc's ld.so and whose DT_RPATH is the private library folder, so that deno,
#                    libvulkan.so.1, lavapipe and dawn.node all load trixie's libraries while the
#                    system's stay untouched (.ci/lavapipe.sh explains why not ld.so --library-path
#                    or LD_LIBRARY_PATH);
#   VK_DRIVER_FILES  the private lavapipe ICD (absolute library path); implicit layers off;
#   DENO_WEBGPU_BACKEND=vulkan  Deno's own WebGPU in such a process uses the private lavapipe too;
#   DAWN_NODE        Dawn's addon from npm webgpu@0.6.2, in the cache;
#   DEFT_RUNTIME=dawn           the test suite and the CLI pick the Dawn runtime.
#
# Child processes work without anything more: the copy is self-contained, so Deno.execPath() (which
# `deno task` and tests use to start deno again) names it, `deno` found on PATH is it, and system
# programs (git) still run with the system's loader, since no LD_* variable is set. Only `deno` by
# name or Deno.execPath() gets the private lavapipe: `npx deno` would start the system-linked
# binary. The one leak: Vulkan programs of the system that a test might start would read
# VK_DRIVER_FILES and, failing to load trixie's lavapipe with their older glibc, see no Vulkan.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -eq 0 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  [ $# -eq 0 ] && exit 2
  exit 0
fi
"$root/.ci/lavapipe.sh" --quiet || exit $?
base=${DEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deft-bench}
# shellcheck source=/dev/null
. "$base/lavapipe.env"
exec "$@"
