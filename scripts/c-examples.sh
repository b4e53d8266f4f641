#!/usr/bin/env bash
# Builds the C API (release staticlib + cdylib), stages it as a prefix with
# include/shmsock.h, lib/libshmsock.{a,so} and lib/pkgconfig/shmsock.pc,
# compiles the C (and, if a C++ compiler is present, C++) examples against
# it with the flags pkg-config gives, and runs them: the fork test, the
# streaming and shutdown test (16 MiB chunk by chunk, a thread woken by a
# shutdown from another), the poll echo server with several typed clients at once, the C++ example,
# and a client linked against the shared library. Then all of it again
# under AddressSanitizer (the examples are instrumented; the Rust library
# is not). Exits non-zero on the first failure.
#
#   scripts/c-examples.sh            # everything
#   SHMSOCK_NO_ASAN=1 scripts/c-examples.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
work=$target/c-examples
prefix=$work/prefix

step() { printf '\n--- %s\n' "$*"; }
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }

command -v cc >/dev/null || { echo "c-examples: no C compiler (cc): skipped"; exit 0; }

step "build the library (release)"
cargo build --release -p shmsock-ffi
version=$(cargo metadata --no-deps --format-version 1 |
  sed -n 's/.*"name":"shmsock-ffi","version":"\([^"]*\)".*/\1/p')
[ -n "$version" ] || version=0.0.0

step "stage $prefix"
rm -rf "$work"
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig" "$work/bin"
cp include/shmsock.h "$prefix/include/"
cp "$target/release/libshmsock_ffi.a" "$prefix/lib/libshmsock.a"
cp "$target/release/libshmsock_ffi.so" "$prefix/lib/libshmsock.so"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" \
  ffi/pkgconfig/shmsock.pc.in >"$prefix/lib/pkgconfig/shmsock.pc"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
if command -v pkg-config >/dev/null; then
  cflags=$(pkg-config --cflags shmsock)
  # Static: the archive itself plus the system libraries it needs.
  static_libs="$prefix/lib/libshmsock.a $(pkg-config --static --libs-only-l shmsock | sed 's/-lshmsock//')"
  shared_libs="$(pkg-config --libs shmsock) -Wl,-rpath,$prefix/lib"
else
  echo "no pkg-config: using the flags from shmsock.pc.in"
  cflags="-I$prefix/include"
  static_libs="$prefix/lib/libshmsock.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
  shared_libs="-L$prefix/lib -lshmsock -Wl,-rpath,$prefix/lib"
fi
warn="-Wall -Wextra -Werror"

have_cxx=0
command -v c++ >/dev/null && have_cxx=1

# Runs `$@` with a watchdog; fails the script if it fails or hangs.
run() {
  local what=$1
  shift
  if timeout 120 "$@"; then ok "$what"; else
    echo "FAILED: $what (exit $?)"
    fail=$((fail + 1))
    exit 1
  fi
}

# Builds and runs everything with the extra compiler flags in $1 (a label
# in $2): the binaries go to $work/bin/$2.
build_and_run() {
  local extra=$1 label=$2 bin=$work/bin/$2
  mkdir -p "$bin"
  step "[$label] the header compiles as C99, C11 and C23 with -pedantic"
  for std in c99 c11 c2x; do
    printf '#include <shmsock.h>\nint main(void) { return shmsock_version() == SHMSOCK_VERSION_NUMBER ? 0 : 1; }\n' \
      >"$bin/hdr.c"
    cc -std=$std -pedantic $warn $extra $cflags "$bin/hdr.c" -o "$bin/hdr_$std" $static_libs
    run "[$label] header as $std" "$bin/hdr_$std"
  done
  step "[$label] compile the examples (static library)"
  for ex in echo_server typed_client fork_test stream_test; do
    cc -std=c11 -O2 -g $warn $extra $cflags examples/c/$ex.c -o "$bin/$ex" $static_libs
  done
  cc -std=c11 -O2 -g $warn $extra $cflags examples/c/typed_client.c \
    -o "$bin/typed_client_shared" $shared_libs
  if [ $have_cxx = 1 ]; then
    c++ -std=c++17 -O2 -g $warn $extra $cflags examples/c/raii.cpp -o "$bin/raii" $static_libs
  fi

  step "[$label] run"
  run "[$label] fork_test" "$bin/fork_test"
  run "[$label] stream_test" "$bin/stream_test"
  local sock=$work/echo-$label.sock
  local clients=4
  # One server, several typed clients at once (+1: the shared-lib client).
  "$bin/echo_server" "$sock" $((clients + 1)) &
  local server=$!
  local pids=()
  for i in $(seq $clients); do
    timeout 120 "$bin/typed_client" "$sock" 500 &
    pids+=($!)
  done
  local bad=0
  for p in "${pids[@]}"; do wait "$p" || bad=1; done
  timeout 120 "$bin/typed_client_shared" "$sock" 200 || bad=1
  if ! timeout 30 tail --pid=$server -f /dev/null; then
    kill "$server" 2>/dev/null || true
    bad=1
  fi
  wait "$server" || bad=1
  if [ $bad = 0 ]; then ok "[$label] echo_server + $clients typed clients + a shared-library client"; else
    echo "FAILED: [$label] echo server/clients"
    exit 1
  fi
  if [ $have_cxx = 1 ]; then
    run "[$label] C++ RAII example" "$bin/raii" "$work/raii-$label.sock"
  else
    echo "no C++ compiler (c++): C++ example skipped"
  fi
}

build_and_run "" plain
if [ "${SHMSOCK_NO_ASAN:-0}" != 1 ]; then
  # detect_leaks: the examples free every handle; the library's handle
  # table keeps its (reachable) slot chunks for the life of the process.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  build_and_run "-fsanitize=address -fno-omit-frame-pointer" asan
fi
echo
echo "c-examples: $pass passed, $fail failed"
