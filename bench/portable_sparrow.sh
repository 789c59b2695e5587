#!/usr/bin/env bash
# A sparrow tool that runs on another x86-64 Linux machine without its build dependencies
# (a GPU machine's image had no libcjson, so bench/gpu_peer.sh could not build there):
#   bash bench/portable_sparrow.sh DIR        (default .gpu)
# builds build-portable/ without MPI (the kernels are still chosen at start-up from cpuid,
# so the same binary suits any x86-64 CPU), copies the binary, libcjson.so.1 and
# libgomp.so.1 into DIR, and writes DIR/sparrow-run, which runs it with DIR on the
# library path. Then, on the other machine: SPARROW=$PWD/DIR/sparrow-run bash bench/gpu_peer.sh
# The other machine needs a glibc at least as new as this one's (Debian 12: 2.36).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu}
cmake -S . -B build-portable -DCMAKE_BUILD_TYPE=Release -DSPR_MPI=OFF -DSPR_BUILD_TESTS=OFF >/dev/null
cmake --build build-portable -j"$(nproc)" --target sparrow_cli >/dev/null
mkdir -p "$dir"
cp build-portable/sparrow "$dir/"
for lib in libcjson.so.1 libgomp.so.1; do
    path=$(ldd build-portable/sparrow | awk -v l="$lib" '$1 == l { print $3 }')
    [ -n "$path" ] || { echo "portable_sparrow: $lib not linked?" >&2; exit 1; }
    cp -L "$path" "$dir/"
done
cat >"$dir/sparrow-run" <<'EOF'
#!/bin/sh
# sparrow with the libraries copied beside it (bench/portable_sparrow.sh)
d=$(dirname "$0")
LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec "$d/sparrow" "$@"
EOF
chmod +x "$dir/sparrow-run"
"$dir/sparrow-run" info --cpu
echo "portable sparrow in $dir: run it as $dir/sparrow-run"
