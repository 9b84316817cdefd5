#!/usr/bin/env bash
# Prepares a private CPU testbed for Dawn's subgroup-matrix WGSL kernels: Mesa >= 25.2 lavapipe
# (software Vulkan with VK_KHR_cooperative_matrix, 8x8x8 configs) unpacked from Debian's packages,
# and Dawn's dawn.node from npm webgpu@0.6.2. Nothing is installed and no system library is touched:
# everything lives in a cache folder and only processes started by tools/with-lavapipe.sh see it.
#
#   .ci/lavapipe.sh [--refresh] [--check] [--quiet] [--print-env]
#     --refresh    ask Debian for the newest Mesa even when a prepared one is cached
#     --check      run the self-test even when nothing changed
#     --quiet      no progress messages (warnings still go to stderr)
#     --print-env  print only the export lines (eval "$(.ci/lavapipe.sh --print-env)")
#   Environment: DEFT_CACHE (cache root; default ${XDG_CACHE_HOME:-$HOME/.cache}/deft-bench),
#     DEFT_DEBIAN_MIRROR (default http://deb.debian.org/debian), DENO_BIN (the deno to wrap;
#     default the first deno on PATH, else the one `npx -y deno@2.9.6` runs).
#   Exit: 0 ready; 3 something cannot be had (no network, package or suite gone, not Debian-like),
#     with a loud warning naming it, so CI reports the Dawn tests as skipped; 1 prepared but broken
#     (the self-test failed); 2 bad usage.
#
# Layout under the cache root:
#   mesa-<version>/debs/  the downloaded .deb files (the minimal closure, see below)
#   mesa-<version>/root/  dpkg-deb -x of each, pruned to lavapipe, the Vulkan loader and glibc
#   mesa-<version>/lvp_icd.json  lavapipe's ICD with the absolute private library path
#   mesa-<version>/bin/deno      a copy of deno whose ELF interpreter is the private ld.so and whose
#                                DT_RPATH is the private library folder (see "Why a patched deno")
#   webgpu-0.6.2/dawn.node       Dawn's Node-API addon (only this file of the 49 MiB npm tarball)
#   lavapipe.env                 the exports tools/with-lavapipe.sh sources
#
# Which packages: apt resolves the whole dependency closure of mesa-vulkan-drivers (trixie-backports;
# sid only when backports lacks Mesa >= 25.2), libvulkan1, glibc, libstdc++ and patchelf against an
# empty package status, with a private apt configuration in a temporary folder. Only the packages
# whose libraries are really needed are downloaded: starting from those six, the private ld.so lists
# the libraries that lavapipe, the Vulkan loader, dawn.node and deno need; each one that does not
# resolve inside the private folder pulls the closure package named after it, until all resolve.
#
# Why a patched deno: these libraries need trixie's glibc, so the process must run the private ld.so.
# Starting `ld.so --library-path DIR deno ...` works for that process, but then /proc/self/exe (and
# so Deno.execPath(), which `deno task` and tests use to spawn deno again) is ld.so itself, and the
# children would run without the private libraries. LD_LIBRARY_PATH is worse: every child, git
# included, would load trixie's libc with the system's ld.so and crash. A copy of deno with the
# private ld.so as its ELF interpreter and the private folder as DT_RPATH has none of these
# problems: it is self-contained, Deno.execPath() names it, and system programs it spawns stay
# untouched. The one library with a DT_RUNPATH (libLLVM's $ORIGIN/../lib, which would hide the
# executable's DT_RPATH from its own dependencies) gets $ORIGIN instead. The self-test then reads
# /proc/self/maps of a process that loaded Dawn and lavapipe and fails if any shared library came
# from outside the private folder.
set -uo pipefail

MIN_MESA=25.2
WEBGPU_PKG=webgpu@0.6.2
DENO_PIN=deno@2.9.6
MIRROR=${DEFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=${DEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deft-bench}
HERE=$(cd "$(dirname "$0")" && pwd)

refresh=0 check=0 quiet=0 print_env=0
for a in "$@"; do
  case "$a" in
  --refresh) refresh=1 ;;
  --check) check=1 ;;
  --quiet) quiet=1 ;;
  --print-env) print_env=1 quiet=1 ;;
  -h | --help)
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "lavapipe.sh: unknown option '$a' (try --help)" >&2
    exit 2
    ;;
  esac
done

say() { [ "$quiet" -eq 1 ] || echo "lavapipe: $*" >&2; }

# The loud warning: one paragraph naming exactly what is missing, framed so it cannot be missed.
warn_loud() { # $1 = what is missing, $2 = why, $3 = how to fix, $4 = what else is missing
  {
    echo "################################################################################"
    echo "WARNING: DAWN SUBGROUP-MATRIX KERNELS CANNOT RUN ON THIS MACHINE. Missing: $1 ($2).${4:+ Also missing: $4.}"
    echo "The private Mesa >= $MIN_MESA lavapipe (Debian trixie-backports, else sid) and Dawn's"
    echo "dawn.node ($WEBGPU_PKG) are prepared under $BASE; without them the subgroup-matrix"
    echo "kernels are NOT executed and CI reports their tests as SKIPPED, not passed. $3"
    echo "################################################################################"
  } >&2
}
dawn_problem="" # set when dawn.node cannot be had, so a Mesa problem names both
unavailable() { # cannot be had: exit 3
  warn_loud "$1" "$2" "${3:-Fix that, then run .ci/lavapipe.sh again.}" "$dawn_problem"
  exit 3
}
broken() { # prepared but does not work: exit 1
  warn_loud "$1" "$2" "${3:-A bug or an incompatible package: see the output above (rm -rf $BASE/mesa-* rebuilds).}"
  exit 1
}

[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] \
  || unavailable "an x86-64 Linux host" "this is $(uname -s)/$(uname -m); the packages are Debian amd64"
mkdir -p "$BASE" || unavailable "a writable cache folder $BASE" "mkdir failed" "Set DEFT_CACHE."
BASE=$(cd "$BASE" && pwd -P) # absolute: the env file and the patched deno name it

# One preparation at a time per cache (CI jobs and a developer's shell may share it).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$BASE/.lavapipe.lock"
  flock 9
fi

# ---- Which Mesa: the one already prepared, unless --refresh or none is --------------------------
dir=""
if [ "$refresh" -eq 0 ] && [ -r "$BASE/lavapipe.env" ]; then
  prev=$(sed -nE "s/^export DEFT_LAVAPIPE_DIR='(.*)'$/\1/p" "$BASE/lavapipe.env")
  # (only a folder of this cache: a copied cache's env file names the original's)
  [ "${prev%/*}" = "$BASE" ] && [ -e "$prev/.complete" ] && dir=$prev
fi
if [ -z "$dir" ] && [ "$refresh" -eq 0 ]; then
  # No env file (e.g. a restored CI cache): take the newest complete mesa-* folder.
  for d in "$BASE"/mesa-*/; do
    [ -e "$d.complete" ] || continue
    if [ -z "$dir" ] || dpkg --compare-versions "$(cat "$d/mesa-version")" gt "$(cat "$dir/mesa-version")" 2>/dev/null; then
      dir=${d%/}
    fi
  done
fi

lib_dirs() { echo "$1/root/usr/lib/x86_64-linux-gnu:$1/root/lib/x86_64-linux-gnu"; }
ldso_of() { echo "$1/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"; }
patchelf_in() { # run the private patchelf (a trixie binary) under the private ld.so
  local d=$1
  shift
  "$(ldso_of "$d")" --library-path "$(lib_dirs "$d")" "$d/root/usr/bin/patchelf" "$@"
}

# ---- The deno to wrap and dawn.node (needed before the closure check, which covers them) -------
find_deno() {
  if [ -n "${DENO_BIN:-}" ]; then
    [ -x "$DENO_BIN" ] || unavailable "deno at DENO_BIN=$DENO_BIN" "not an executable"
    readlink -f "$DENO_BIN"
    return
  fi
  local p d
  local IFS=:
  for d in $PATH; do
    p="$d/deno"
    [ -x "$p" ] || continue
    case "$(readlink -f "$p")" in "$(readlink -f "$BASE")"/*) continue ;; esac # our own copies
    readlink -f "$p"
    return
  done
  # `npx deno` installs the npm package's binary; Deno.execPath() names the real ELF file.
  p=$(npx -y "$DENO_PIN" eval 'console.log(Deno.execPath())' 2>/dev/null | tail -n 1)
  [ -n "$p" ] && [ -x "$p" ] || unavailable "a deno binary" "none on PATH and 'npx -y $DENO_PIN' failed" \
    "Put deno on PATH or set DENO_BIN."
  readlink -f "$p"
}

dawn_dir="$BASE/${WEBGPU_PKG/@/-}"
dawn_node="$dawn_dir/dawn.node"
fetch_dawn() {
  [ -s "$dawn_node" ] && return 0
  command -v npm >/dev/null 2>&1 || unavailable "npm (to fetch $WEBGPU_PKG)" "npm is not on PATH"
  say "fetching dawn.node from npm $WEBGPU_PKG (49 MiB tarball, keeping dist/linux-x64/dawn.node)"
  local t tgz
  t=$(mktemp -d) || exit 1
  if ! tgz=$(cd "$t" && npm pack "$WEBGPU_PKG" --loglevel=error 2>"$t/npm.log" | tail -n 1) \
    || [ -z "$tgz" ] || [ ! -s "$t/$tgz" ]; then
    grep -v '^npm error A complete log' "$t/npm.log" | head -n 3 >&2
    rm -rf "$t"
    dawn_problem="dawn.node from npm $WEBGPU_PKG (npm pack failed: registry unreachable?)"
    return 1
  fi
  if ! tar -xzf "$t/$tgz" -C "$t" package/dist/linux-x64/dawn.node; then
    rm -rf "$t"
    dawn_problem="dawn.node (npm $WEBGPU_PKG has no package/dist/linux-x64/dawn.node)"
    return 1
  fi
  mkdir -p "$dawn_dir" && mv "$t/package/dist/linux-x64/dawn.node" "$dawn_node.tmp" \
    && mv "$dawn_node.tmp" "$dawn_node"
  rm -rf "$t"
  say "dawn.node: $dawn_node ($(du -h "$dawn_node" | cut -f1))"
}

deno_src=$(find_deno) || exit $?
fetch_dawn # on failure, try the Debian side anyway so that the warning names all that is missing

# ---- Preparing a Mesa folder from Debian's packages --------------------------------------------
prepare_mesa() {
  for t in apt-get apt-cache dpkg-deb dpkg; do
    command -v "$t" >/dev/null 2>&1 || unavailable "$t" "not on PATH; a Debian-like host is needed to unpack Debian packages"
  done
  local apt_dir
  apt_dir=$(mktemp -d) || exit 1
  # shellcheck disable=SC2064 # expand now: the folder is local
  trap "rm -rf '$apt_dir'" EXIT
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/dl"
  : >"$apt_dir/status"
  # A private apt: own sources, lists, cache and an empty dpkg status (so the closure is complete).
  # The system's apt.conf.d still applies (proxies), and its trusted keys verify the archive.
  local apt=(-oDir::Etc::SourceList="$apt_dir/sources.list" -oDir::Etc::SourceParts=/dev/null
    -oDir::State::Lists="$apt_dir/lists" -oDir::State::status="$apt_dir/status"
    -oDir::Cache="$apt_dir/cache" -oDir::Etc::Preferences=/dev/null
    -oDir::Etc::PreferencesParts=/dev/null -oDebug::NoLocking=1 -oAPT::Architecture=amd64
    -oAPT::Architectures=amd64 -oAcquire::Languages=none -oAcquire::Retries=3)
  [ "$(id -u)" -eq 0 ] && apt+=(-oAPT::Sandbox::User=root)
  local signed=""
  [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] \
    && signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "

  local suite="" mesa_pin="" ver="" s why=""
  for s in trixie-backports sid; do
    if [ "$s" = sid ]; then
      echo "deb ${signed}$MIRROR sid main" >"$apt_dir/sources.list"
      mesa_pin=mesa-vulkan-drivers
    else
      printf 'deb %s%s %s main\ndeb %s%s trixie main\n' "$signed" "$MIRROR" "$s" "$signed" "$MIRROR" \
        >"$apt_dir/sources.list"
      mesa_pin=mesa-vulkan-drivers/$s
    fi
    say "apt-get update ($s, private configuration)"
    if ! apt-get "${apt[@]}" -q update >"$apt_dir/update.log" 2>&1 \
      || grep -qE '^(W|E): (Failed|Some index|The repository|GPG error)' "$apt_dir/update.log"; then
      grep -E '^(W|E):' "$apt_dir/update.log" | head -n 5 >&2
      why+="${why:+; }$s: apt-get update failed"
      continue
    fi
    ver=$(apt-cache "${apt[@]}" show "$mesa_pin" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
    if [ -n "$ver" ] && dpkg --compare-versions "$ver" ge "$MIN_MESA"; then
      suite=$s
      break
    fi
    why+="${why:+; }$s: mesa-vulkan-drivers '${ver:-none}'"
    say "$s has mesa-vulkan-drivers '${ver:-none}', older than $MIN_MESA"
  done
  [ -n "$suite" ] || unavailable "mesa-vulkan-drivers >= $MIN_MESA from $MIRROR" \
    "$why; no network, no Debian archive key, or the suites moved on"
  say "Mesa $ver from $suite"

  # The full closure as apt resolves it (consistent versions), without downloading anything.
  local uris
  if ! uris=$(apt-get "${apt[@]}" -qq install --print-uris -y "$mesa_pin" libvulkan1 libc6 libstdc++6 libgcc-s1 patchelf 2>"$apt_dir/resolve.log"); then
    tail -n 5 "$apt_dir/resolve.log" >&2
    unavailable "an installable mesa-vulkan-drivers $ver closure" "apt could not resolve its dependencies in $suite"
  fi
  local -A closure=() debfile=() # package name -> name=version, and its .deb file name
  local line file name version
  while read -r line; do
    file=$(echo "$line" | awk '{print $2}')
    name=${file%%_*}
    version=${file#*_}
    version=${version%_*}
    version=${version//%3a/:}
    closure[$name]="$name=$version"
    debfile[$name]=$file
  done <<<"$uris"

  dir="$BASE/mesa-$ver"
  if [ -e "$dir/.complete" ]; then
    say "already prepared: $dir"
    return 0
  fi
  rm -rf "${dir:?}/root" "${dir:?}/bin"
  mkdir -p "$dir/debs" "$dir/root" || exit 1
  local root="$dir/root"
  local -A fetched=()

  fetch_unpack() { # package names from the closure; downloads the missing .debs, unpacks them
    local want=() p f
    for p in "$@"; do
      [ -n "${closure[$p]:-}" ] || unavailable "package $p" "not in the resolved $suite closure"
      fetched[$p]=1
      [ -s "$dir/debs/${debfile[$p]}" ] || want+=("${closure[$p]}")
    done
    if [ ${#want[@]} -gt 0 ]; then
      say "downloading ${want[*]}"
      if ! (cd "$apt_dir/dl" && apt-get "${apt[@]}" -q download "${want[@]}") >"$apt_dir/dl.log" 2>&1; then
        grep -E '^(W|E):' "$apt_dir/dl.log" | head -n 5 >&2
        unavailable "Debian packages ${want[*]}" "apt-get download failed"
      fi
      mv "$apt_dir"/dl/*.deb "$dir/debs/" || exit 1
    fi
    for p in "$@"; do
      f="$dir/debs/${debfile[$p]}"
      [ -s "$f" ] || unavailable "$f" "apt-get download did not write it"
      dpkg-deb -x "$f" "$root" || broken "an unpacked $f" "dpkg-deb -x failed"
    done
  }

  # Sonames needed (transitively) by what the process loads that are not inside the private folder.
  unresolved() {
    local objs=("$root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
      "$root/usr/lib/x86_64-linux-gnu/libvulkan.so.1" "$root/usr/bin/patchelf" "$deno_src")
    [ -s "$dawn_node" ] && objs+=("$dawn_node")
    local o
    for o in "${objs[@]}"; do
      [ -e "$o" ] || broken "$o" "a package that should ship it did not"
    done
    "$deno_src" run --allow-read --no-config --no-lock "$HERE/elf_needed.ts" \
      --lib-dir "$root/usr/lib/x86_64-linux-gnu" --lib-dir "$root/lib/x86_64-linux-gnu" "${objs[@]}" \
      || broken "the list of libraries that lavapipe needs" ".ci/elf_needed.ts failed"
  }
  # Debian names library packages after the soname: libfoo.so.3 -> libfoo3, libfoo3t64, libfoo.
  norm() { echo "$1" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9'; }
  package_for() {
    local so=$1 stem major k p
    stem=$(norm "${so%%.so*}")
    major=${so#*.so.}
    [ "$major" = "$so" ] && major="" || major=${major%%.*}
    [ "$stem" = libz ] && { echo zlib1g; return; }
    for p in "${!closure[@]}"; do
      [ -n "${fetched[$p]:-}" ] && continue
      k=$(norm "$p")
      case "$k" in "$stem$major" | "$stem${major}t64" | "$stem" | "${stem}t64") echo "$p" ;; esac
    done
  }

  fetch_unpack mesa-vulkan-drivers libvulkan1 libc6 libstdc++6 libgcc-s1 patchelf
  local missing more so p
  for _ in 1 2 3 4 5 6 7 8; do
    missing=$(unresolved) || exit $?
    [ -z "$missing" ] && break
    more=()
    for so in $missing; do
      for p in $(package_for "$so"); do more+=("$p"); done
    done
    if [ ${#more[@]} -eq 0 ]; then
      # No package is named after these: take every library package left in the closure.
      for p in "${!closure[@]}"; do
        [ -z "${fetched[$p]:-}" ] && case "$p" in lib* | zlib*) more+=("$p") ;; esac
      done
    fi
    [ ${#more[@]} -gt 0 ] || break
    # shellcheck disable=SC2046 # package names have no spaces
    fetch_unpack $(printf '%s\n' "${more[@]}" | sort -u)
  done
  missing=$(unresolved) || exit $?
  [ -z "$missing" ] || unavailable "${missing//$'\n'/ }" "no package of the $suite closure of mesa-vulkan-drivers $ver provides them"

  # Keep lavapipe only: the other Vulkan drivers, layers, docs and locales are ~130 MB of nothing.
  local L="$root/usr/lib/x86_64-linux-gnu"
  cp "$root/usr/share/vulkan/icd.d/lvp_icd.json" "$dir/lvp_icd.package.json" \
    || broken "lavapipe's ICD file in mesa-vulkan-drivers $ver" "usr/share/vulkan/icd.d/lvp_icd.json is missing"
  find "$L" -maxdepth 1 \( -name 'libvulkan_*.so' ! -name libvulkan_lvp.so -o -name 'libVkLayer_*' \) -delete
  rm -rf "${root:?}/usr/share" "${root:?}/etc" "${L:?}/gconv"
  # libLLVM's DT_RUNPATH ($ORIGIN/../lib) would hide the executable's DT_RPATH from its own
  # dependencies, which would then come from the system: point every RUNPATH at its own folder.
  local f rp
  # shellcheck disable=SC2016 # $ORIGIN is for ld.so, not the shell
  for f in "$L"/*.so*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    rp=$(patchelf_in "$dir" --print-rpath "$f" 2>/dev/null) || continue
    if [ -n "$rp" ] && [ "$rp" != '$ORIGIN' ]; then
      say "RUNPATH of $(basename "$f"): $rp -> \$ORIGIN"
      patchelf_in "$dir" --set-rpath '$ORIGIN' "$f" || broken "a patched $f" "patchelf failed"
    fi
  done
  echo "$ver" >"$dir/mesa-version"
  (cd "$dir/debs" && ls) >"$dir/packages"
  touch "$dir/.complete"
  say "prepared $dir: $(wc -l <"$dir/packages") packages, $(du -sh "$dir/debs" | cut -f1) downloaded, $(du -sh "$root" | cut -f1) unpacked"
}

changed=0
if [ -z "$dir" ]; then
  prepare_mesa
  changed=1
fi
if [ -n "$dawn_problem" ]; then
  p=$dawn_problem
  dawn_problem=""
  unavailable "$p" "the Mesa side is ready in $dir"
fi
ver=$(cat "$dir/mesa-version")
ldso=$(ldso_of "$dir")
icd="$dir/lvp_icd.json"
deno_copy="$dir/bin/deno"

# ---- The ICD file and the patched deno (both name absolute paths: redone if the folder moved) ----
api=$(sed -nE 's/.*"api_version": *"([^"]*)".*/\1/p' "$dir/lvp_icd.package.json" 2>/dev/null)
[ -n "$api" ] || api=1.4.0
icd_text=$(printf '{\n  "file_format_version": "1.0.1",\n  "ICD": {\n    "library_path": "%s",\n    "api_version": "%s"\n  }\n}' \
  "$dir/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" "$api")
if [ ! -r "$icd" ] || [ "$(cat "$icd")" != "$icd_text" ]; then
  echo "$icd_text" >"$icd"
  changed=1
fi

stamp="$deno_src $(stat -c '%s %Y' "$deno_src") $ldso"
if [ ! -x "$deno_copy" ] || [ "$(cat "$deno_copy.source" 2>/dev/null)" != "$stamp" ]; then
  say "patching a copy of $deno_src (interpreter $ldso)"
  mkdir -p "$dir/bin"
  cp "$deno_src" "$deno_copy.tmp" \
    && patchelf_in "$dir" --set-interpreter "$ldso" --force-rpath \
      --set-rpath "$(lib_dirs "$dir")" "$deno_copy.tmp" \
    && mv "$deno_copy.tmp" "$deno_copy" || broken "a patched copy of deno" "cp or patchelf failed"
  echo "$stamp" >"$deno_copy.source"
  changed=1
fi

# ---- The exports ---------------------------------------------------------------------------------
env_text="# written by .ci/lavapipe.sh; sourced by tools/with-lavapipe.sh
export DEFT_LAVAPIPE_DIR='$dir'
export DEFT_MESA_VERSION='$ver'
export DEFT_LAVAPIPE_BIN='$dir/bin'
export PATH=\"\$DEFT_LAVAPIPE_BIN:\$PATH\"
export VK_DRIVER_FILES='$icd'
export VK_LOADER_LAYERS_DISABLE='~implicit~'
export DENO_WEBGPU_BACKEND=vulkan
export DAWN_NODE='$dawn_node'
export DEFT_RUNTIME=dawn"

# ---- Self-test: Dawn on the private lavapipe lists subgroup matrices and computes one tile right,
# and every shared library in the process comes from the private folder (or is dawn.node) ---------
selftest_stamp="$stamp $(stat -c '%s %Y' "$dawn_node") $icd"
if [ "$changed" -eq 1 ] || [ "$check" -eq 1 ] \
  || [ "$(cat "$dir/selftest.ok" 2>/dev/null)" != "$selftest_stamp" ]; then
  say "self-test: Dawn subgroup matrices on lavapipe $ver"
  out=$(
    eval "$env_text"
    timeout 120 "$deno_copy" run -A --no-config --no-lock "$HERE/lavapipe_check.ts" 2>&1
  )
  rc=$?
  [ "$quiet" -eq 1 ] || echo "$out" | sed 's/^/lavapipe:   /' >&2
  if [ $rc -ne 0 ]; then
    [ "$quiet" -eq 1 ] && echo "$out" >&2
    rm -f "$dir/selftest.ok"
    broken "a working Dawn subgroup-matrix adapter on the private lavapipe" "the self-test exited $rc"
  fi
  echo "$selftest_stamp" >"$dir/selftest.ok"
fi

echo "$env_text" >"$BASE/lavapipe.env.tmp" && mv "$BASE/lavapipe.env.tmp" "$BASE/lavapipe.env"
if [ "$print_env" -eq 1 ]; then
  echo "$env_text" | grep '^export'
else
  say "ready: Mesa $ver lavapipe, dawn.node, deno copy under $dir"
  say "run commands with tools/with-lavapipe.sh, or: . '$BASE/lavapipe.env'"
fi
