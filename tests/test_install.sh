#!/usr/bin/env bash
# test_install.sh: sparrow as an installed package, the way a user meets it.
#   bash tests/test_install.sh BUILD_DIR [EXTRA_CFLAGS]
# Installs BUILD_DIR into a temporary prefix with `cmake --install`, then:
#   - every file is in place (tool, library, header, pkg-config, CMake package, man page,
#     plot script);
#   - doc/example.c compiles with `pkg-config --cflags --libs sparrow`, runs and learns;
#   - the same through find_package(sparrow) in a tiny CMake project;
#   - the installed tool runs, and `sparrow plot` finds its installed script;
#   - the man page renders with `man -l`, `man sparrow` finds it, and every line of
#     every command's --help is in it.
# EXTRA_CFLAGS: the sanitizer flags of a sanitized build (its library needs them).
# Prints what it expected and what it got for each failure; exits non-zero on any.
set -u
if [ $# -lt 1 ]; then
    echo "usage: $0 BUILD_DIR [EXTRA_CFLAGS]" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
EXTRA=${2:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3

TMP=$(mktemp -d "${TMPDIR:-/tmp}/test_install.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
PREFIX=$TMP/prefix

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); }
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL: $*" >&2
}

if cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" 2>&1; then pass; else
    fail "cmake --install: $(tail -n 5 "$TMP/install.log")"
fi
LIBDIR=$(dirname "$(find "$PREFIX" -name 'libsparrow.so' | head -n 1)")
for f in bin/sparrow include/sparrow.h share/man/man1/sparrow.1 share/sparrow/plot.py; do
    if [ -f "$PREFIX/$f" ]; then pass; else fail "install: expected $PREFIX/$f"; fi
done
for f in libsparrow.so pkgconfig/sparrow.pc cmake/sparrow/sparrowConfig.cmake \
    cmake/sparrow/sparrowConfigVersion.cmake cmake/sparrow/sparrowTargets.cmake; do
    if [ -e "$LIBDIR/$f" ]; then pass; else fail "install: expected $LIBDIR/$f (LIBDIR from libsparrow.so)"; fi
done
# Only the public API is exported by the shared library.
internal=$(nm -D --defined-only "$LIBDIR/libsparrow.so" | awk '$2 == "T" {print $3}' | grep -v '^spr_' | grep -v '^_' | head -n 3)
if [ -z "$internal" ]; then pass; else fail "libsparrow.so: expected only spr_* symbols, got $internal"; fi

# ---------------------------------------------------------------- pkg-config
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig
version=$(pkg-config --modversion sparrow 2>&1)
want=$(sed -n 's/^#define SPR_VERSION_STRING "\(.*\)"/\1/p' "$SRC/include/sparrow.h")
if [ "$version" = "$want" ]; then pass; else fail "pkg-config --modversion: expected $want, got $version"; fi
flags=$(pkg-config --cflags --libs sparrow 2>&1)
# shellcheck disable=SC2086
if cc -std=c11 -Wall -Wextra -Werror $EXTRA "$SRC/doc/example.c" $flags -o "$TMP/example" 2>"$TMP/cc.log"; then
    pass
else
    fail "cc doc/example.c \$(pkg-config --cflags --libs sparrow) = $flags: $(head -c 600 "$TMP/cc.log")"
fi
mkdir -p "$TMP/data"
if out=$(LD_LIBRARY_PATH=$LIBDIR "$TMP/example" "$TMP/data" 2>&1); then pass; else fail "example: exit $?: $out"; fi
echo "test_install: example: $out"
# It ran against the installed library, and it learned (the most frequent label
# alone scores about 0.28 on tiny).
linked=$(LD_LIBRARY_PATH=$LIBDIR ldd "$TMP/example" 2>/dev/null | awk '/libsparrow/ {print $3}')
case $linked in "$LIBDIR"/*) pass ;; *) fail "example: expected libsparrow from $LIBDIR, ldd says '$linked'" ;; esac
p1=$(echo "$out" | sed -n 's/.*P@1 \([0-9.]*\) .*/\1/p')
if "$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 0.4 else 1)' "${p1:-0}"; then pass; else
    fail "example: expected P@1 >= 0.4, got '${p1}'"
fi

# ---------------------------------------------------------------- CMake package
mkdir -p "$TMP/proj"
cat >"$TMP/proj/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(uses_sparrow C)
find_package(sparrow 0.1 REQUIRED)
add_executable(example example.c)
target_link_libraries(example PRIVATE sparrow::sparrow)
EOF
cp "$SRC/doc/example.c" "$TMP/proj/"
if cmake -S "$TMP/proj" -B "$TMP/proj/build" -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_C_FLAGS="$EXTRA" \
    >"$TMP/proj.log" 2>&1 && cmake --build "$TMP/proj/build" >>"$TMP/proj.log" 2>&1; then
    pass
    # (Training runs on every core, HOGWILD: the figures may differ in the last digit.)
    out2=$(LD_LIBRARY_PATH=$LIBDIR "$TMP/proj/build/example" "$TMP/data" 2>&1)
    case $out2 in "sparrow $want: P@1 0."[4-9]*) pass ;; *) fail "find_package example: expected 'sparrow $want: P@1 >= 0.4 ...', got '$out2'" ;; esac
else
    fail "find_package(sparrow): $(tail -n 8 "$TMP/proj.log")"
fi

# ---------------------------------------------------------------- the installed tool
if "$PREFIX/bin/sparrow" --version | grep -q "sparrow $want"; then pass; else
    fail "installed sparrow --version: expected 'sparrow $want', got $("$PREFIX/bin/sparrow" --version 2>&1)"
fi
"$PREFIX/bin/sparrow" train --train "$TMP/data/train.txt" --test "$TMP/data/test.txt" --hidden 16 \
    --epochs 2 --threads 1 --metrics "$TMP/m.jsonl" --quiet >/dev/null 2>"$TMP/train.err" || fail "installed train: $(head -c 400 "$TMP/train.err")"
# The installed plot.py is the one run: a copy that the source tree does not have.
cp "$PREFIX/share/sparrow/plot.py" "$TMP/plot.orig"
sed 's/print(f"wrote /print(f"installed: wrote /' "$TMP/plot.orig" >"$PREFIX/share/sparrow/plot.py"
out=$("$PREFIX/bin/sparrow" plot "$TMP/m.jsonl" --out "$TMP/curve.png" 2>&1)
case $out in "installed: wrote"*) pass ;; *) fail "installed sparrow plot: expected the installed plot.py to run, got: $out" ;; esac
if [ -s "$TMP/curve.png" ]; then pass; else fail "installed sparrow plot: no $TMP/curve.png"; fi

# ---------------------------------------------------------------- man page
MAN1=$PREFIX/share/man/man1/sparrow.1
if MANWIDTH=200 man --warnings -l "$MAN1" >"$TMP/man.txt" 2>"$TMP/man.err" && [ ! -s "$TMP/man.err" ]; then pass; else
    fail "man -l $MAN1: warnings or failure: $(head -c 400 "$TMP/man.err")"
fi
if MANPATH=$PREFIX/share/man MANWIDTH=200 man sparrow 2>/dev/null | grep -q "SPARROW(1)"; then pass; else
    fail "man sparrow with MANPATH=$PREFIX/share/man: expected the page"
fi
# Every --help line (of sparrow and of each command) is a line of the rendered page.
problems=$("$PY" - "$PREFIX/bin/sparrow" "$TMP/man.txt" <<'EOF' 2>&1
import subprocess, sys
binary, rendered = sys.argv[1], open(sys.argv[2]).read()
page = {" ".join(l.split()) for l in rendered.splitlines()}
main = subprocess.run([binary, "--help"], capture_output=True, text=True).stdout
cmds = []
inside = False
for line in main.splitlines():
    if line.strip() == "commands:":
        inside = True
    elif inside and line.strip() and not line.strip().startswith("-"):
        cmds.append(line.split()[0])
    elif inside and cmds and not line.strip():
        break
missing = []
for args in [[]] + [[c] for c in cmds]:
    text = subprocess.run([binary, *args, "--help"], capture_output=True, text=True).stdout
    for line in text.splitlines():
        norm = " ".join(line.split())
        if norm and norm not in page:
            missing.append("%s: %r" % (" ".join(["sparrow"] + args), line))
if len(cmds) < 5:
    missing.append("expected at least 5 commands in sparrow --help, got %s" % cmds)
print("\n".join(missing[:5]))
EOF
)
if [ -z "$problems" ]; then pass; else fail "man page and --help disagree (rebuild makes the page from --help):
$problems"; fi

echo "test_install: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
