#!/usr/bin/env bash
# Model parallelism on 2 MPI ranks, end to end (scripts/test.sh runs it when the build
# has MPI). Usage: tests/test_dist.sh BUILD_DIR MPIRUN [MPIRUN OPTIONS...]
#   e.g. tests/test_dist.sh build mpirun --oversubscribe -np 2 --allow-run-as-root
#   1. test_dist --mpi: dense on 2 ranks == 1 process to 1e-5, merged top-k, checkpoints
#      N -> 1, 1 -> N, N -> N
#   2. a rank that dies (SIGKILL) or hangs: the job ends with an error within 60 s
#      (hang: rank 0's own timeout message), it does not hang
#   3. the small preset, sampled, 2 epochs: P@1 on 2 ranks within 0.02 of 1 process;
#      the 2-rank model saved and evaluated on 1 process gives the 2-rank P@1; a
#      1-process model evaluated on 2 ranks gives the 1-process P@1
#   3b. a 2-rank run stopped mid-epoch and resumed on 2 ranks predicts as the
#      uninterrupted one, byte for byte; resumed on 1 process, its P@1 is within 0.02;
#      an evaluation inside the epoch scores what the stopped run's settled model does
#   4. a manifest naming shards of two saves is refused (1 process, 2 ranks, and
#      info --verify); a shard damaged where its rank reads it: rank 0 prints rank 1's
#      message; a
#      SIGTERM that reaches one rank only, and a metrics file that fails mid-run: both
#      ranks stop at the same batch and save the model
#   5. a model whose output layer does not fit --max-memory on 1 process trains on 2
#      ranks that each fit it
set -euo pipefail
build=$1
shift
mpi=("$@")
sparrow=$build/sparrow
work=$(mktemp -d "${TMPDIR:-/tmp}/sparrow_dist.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() {
    echo "FAIL test_dist.sh: $*" >&2
    exit 1
}
start=$SECONDS

echo "-- test_dist --mpi on ${mpi[*]}"
"${mpi[@]}" "$build/test_dist" --mpi "$work"

for mode in die hang; do
    echo "-- a rank that ${mode}s"
    t0=$SECONDS
    set +e
    timeout 60 "${mpi[@]}" "$build/test_dist" --mpi-$mode >"$work/$mode.log" 2>&1
    rc=$?
    set -e
    dt=$((SECONDS - t0))
    [ "$rc" -ne 124 ] || fail "$mode: the job hung (killed after 60 s)"
    [ "$rc" -ne 0 ] || fail "$mode: expected a non-zero exit, got 0"
    if [ "$mode" = hang ]; then
        grep -q "no answer from the other ranks in 3 s" "$work/$mode.log" ||
            { cat "$work/$mode.log"; fail "hang: expected rank 0's timeout message"; }
    else
        grep -Eq "no answer from the other ranks|exited on signal 9|killed" "$work/$mode.log" ||
            { cat "$work/$mode.log"; fail "die: expected a message naming the dead rank"; }
    fi
    echo "   exit $rc after ${dt}s: $(grep -Eo 'no answer from the other ranks in [0-9]+ s|exited on signal 9 \(Killed\)' "$work/$mode.log" | head -1)"
done

echo "-- small preset, sampled, 2 epochs: 1 process and 2 ranks"
"$sparrow" gen --preset small --out "$work/small" --seed 1 >/dev/null
common=(--train "$work/small/train.txt" --test "$work/small/test.txt" --epochs 2 --threads 1
    --seed 1 --eval-max 2000 --quiet)
p1_one=$("$sparrow" train "${common[@]}" --save "$work/one.model" 2>/dev/null | awk '{print $2}')
p1_two=$("${mpi[@]}" "$sparrow" train "${common[@]}" --save "$work/two.model" \
    --metrics "$work/two.jsonl" 2>"$work/two.log" | awk '{print $2}')
echo "   P@1: 1 process $p1_one, 2 ranks $p1_two"
awk -v a="$p1_one" -v b="$p1_two" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.02) }' ||
    fail "P@1 on 2 ranks $p1_two is not within 0.02 of 1 process $p1_one"
grep -q '"ranks": 2, "comm_seconds_per_step": [0-9.e-]*, "compute_seconds_per_step": [0-9.e-]*, "comm_bytes_per_step": [0-9]' \
    "$work/two.jsonl" || { cat "$work/two.jsonl"; fail "metrics: expected ranks, comm and compute time, bytes"; }
grep -q "^rank 1 of 2: labels \[2500, 5000) of 5000" "$work/two.log" ||
    { cat "$work/two.log"; fail "expected rank 1's summary line"; }

# Sampled hidden layers (--hidden-sparsity) on 2 ranks: every rank draws their neurons
# alike, so the replicas stay the same: the save's shards agree (the manifest's load
# checks their fingerprints) and one process evaluates it to the run's own P@1.
p1_hs=$("${mpi[@]}" "$sparrow" train "${common[@]}" --epochs 1 --hidden 32,32 --hidden-sparsity 0.5 \
    --save "$work/hs.model" 2>"$work/hs.log" | awk '{print $2}')
[ -n "$p1_hs" ] || { cat "$work/hs.log"; fail "--hidden-sparsity on 2 ranks: expected a run"; }
p1_hs_eval=$("$sparrow" eval --model "$work/hs.model" --test "$work/small/test.txt" --eval-max 2000 2>&1 |
    sed -n 's/.*"p_at_1": \([0-9.e-]*\).*/\1/p')
awk -v a="$p1_hs" -v b="$p1_hs_eval" 'BEGIN { exit !(b != "" && a - b < 5e-5 && b - a < 5e-5) }' ||
    fail "--hidden-sparsity on 2 ranks: P@1 $p1_hs, its save evaluated on 1 process '$p1_hs_eval'"
echo "   sampled hidden layers on 2 ranks: P@1 $p1_hs, its save on 1 process $p1_hs_eval"

# ev MODEL [LAUNCHER...]: P@1 of `sparrow eval`
ev() {
    local model=$1
    shift
    "$@" "$sparrow" eval --model "$model" --test "$work/small/test.txt" --threads 1 --eval-max 2000 |
        tail -1 | sed 's/.*"p_at_1": \([0-9.]*\).*/\1/'
}
p1_two_on_one=$(ev "$work/two.model")
p1_one_on_two=$(ev "$work/one.model" "${mpi[@]}")
echo "   2-rank model on 1 process: P@1 $p1_two_on_one; 1-process model on 2 ranks: $p1_one_on_two"
awk -v a="$p1_two_on_one" -v b="$p1_two" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4) }' ||
    fail "the 2-rank model evaluated on 1 process: P@1 $p1_two_on_one, expected $p1_two"
awk -v a="$p1_one_on_two" -v b="$p1_one" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4) }' ||
    fail "the 1-process model evaluated on 2 ranks: P@1 $p1_one_on_two, expected $p1_one"

# Filtered evaluation (--filter-labels): each rank ranks k + the most excluded labels,
# then the merge; the same figures on 1 process and on 2 ranks, not the unfiltered ones.
"$sparrow" predict --model "$work/two.model" --input "$work/small/test.txt" --threads 1 --k 2 |
    awk 'NR % 2 == 1 { split($1, a, ":"); print NR - 1, a[1] }' >"$work/filter.txt"
fev() { "$@" "$sparrow" eval --model "$work/two.model" --test "$work/small/test.txt" --threads 1 --k 2 \
    --filter-labels "$work/filter.txt" | tail -1 | sed 's/"seconds": [^,]*//'; }
f_one=$(fev)
f_two=$(fev "${mpi[@]}")
[ -n "$f_one" ] && [ "$f_one" = "$f_two" ] || fail "filtered eval: 1 process $f_one, 2 ranks $f_two"
p1_filtered=$(echo "$f_two" | sed 's/.*"p_at_1": \([0-9.]*\).*/\1/')
[ "$p1_filtered" != "$p1_two" ] || fail "filtered eval: P@1 $p1_filtered, the unfiltered figure"
echo "   filtered P@1 (every second point without its top label): $p1_filtered on 1 process and 2 ranks"

# A data file every rank fails to read: the error once, every rank ended cleanly (no
# MPI_ABORT), exit 2; train and eval alike.
printf '2 5\n0:1\n99999999:1\n' >"$work/bad_x.txt" # beyond the header's and the model's features
for cmd in "train --train $work/bad_x.txt --quiet" "train --train $work/small/train.txt --test $work/missing.txt --quiet" \
    "eval --model $work/two.model --test $work/bad_x.txt"; do
    rc=0
    # shellcheck disable=SC2086
    timeout 120 "${mpi[@]}" "$sparrow" $cmd >/dev/null 2>"$work/bad.err" || rc=$?
    [ "$rc" -eq 2 ] && [ "$(grep -c '^sparrow: ' "$work/bad.err")" -eq 1 ] && ! grep -q MPI_ABORT "$work/bad.err" ||
        { cat "$work/bad.err"; fail "$cmd on 2 ranks: expected exit 2, one error line, no MPI_ABORT (got $rc)"; }
done
# ... and a check of the data read (points without labels; another training set below)
printf '2 5 3\n 0:1\n 1:1\n' >"$work/nolab.txt"
rc=0
timeout 120 "${mpi[@]}" "$sparrow" train --train "$work/nolab.txt" --quiet >/dev/null 2>"$work/bad.err" || rc=$?
[ "$rc" -eq 2 ] && [ "$(grep -c 'none of its 2 training points has a label' "$work/bad.err")" -eq 1 ] &&
    ! grep -q MPI_ABORT "$work/bad.err" ||
    { cat "$work/bad.err"; fail "a training set without labels on 2 ranks: expected exit 2, told once, no MPI_ABORT (got $rc)"; }
echo "   a data error on 2 ranks: told once, no MPI_ABORT"

# Failures before the data is read and around the model (options, --save, --resume,
# --max-memory, a model to evaluate): every rank fails alike, the error told once (the
# ranks' held stderr dropped), exit 2, no MPI_ABORT; --help exits 0, printed once.
# expect_once RC PATTERN ARGS...: the 2-rank sparrow ARGS exits RC, PATTERN on exactly
# one stderr line, no MPI_ABORT
expect_once() {
    local want=$1 pattern=$2 rc=0
    shift 2
    timeout 120 "${mpi[@]}" "$sparrow" "$@" >"$work/once.out" 2>"$work/once.err" || rc=$?
    [ "$rc" -eq "$want" ] && [ "$(grep -c -- "$pattern" "$work/once.err")" -eq 1 ] &&
        ! grep -q MPI_ABORT "$work/once.err" ||
        { cat "$work/once.err"; fail "sparrow $* on 2 ranks: expected exit $want, '$pattern' once, no MPI_ABORT (got $rc)"; }
}
tiny=(train --train "$work/small/train.txt" --max-batches 1 --hidden 8 --quiet)
expect_once 2 "^sparrow train: --hidden must be" "${tiny[@]}" --hidden 0
expect_once 2 "^sparrow train: $work/none.json: cannot open" "${tiny[@]}" --config "$work/none.json"
expect_once 2 "^sparrow: $work/nodir/m.model: cannot write" "${tiny[@]}" --save "$work/nodir/m.model"
expect_once 2 "^sparrow: $work/none.model: cannot open" "${tiny[@]}" --resume "$work/none.model"
expect_once 2 "^sparrow train: the model needs .* on this rank, more than --max-memory" "${tiny[@]}" --max-memory 1K
expect_once 2 "^sparrow: $work/none.model: cannot open" eval --model "$work/none.model" --test "$work/small/test.txt"
expect_once 2 "^sparrow predict: $work/none.txt: cannot open" predict --model "$work/two.model" --input "$work/small/test.txt" \
    --labels "$work/none.txt"
# a diverged loss: every rank sees it at the same step (the softmax's allreduced sums)
expect_once 1 "^sparrow: training diverged at step 2: loss is nan" "${tiny[@]}" --max-batches 5 --lr 1e30
# --verbose: every rank logs its own rehashes, each line naming its rank (two identical
# unnamed lines before)
timeout 120 "${mpi[@]}" "$sparrow" train --train "$work/small/train.txt" --max-batches 3 --hidden 8 --verbose \
    --rehash-first 1 --rebuild-every 2 >/dev/null 2>"$work/log.err" ||
    { cat "$work/log.err"; fail "train --verbose on 2 ranks: expected exit 0"; }
for r in 0 1; do
    grep -q "^  \[sparrow\] rank $r: step 2: rehash 1 in" "$work/log.err" &&
        grep -q "^  \[sparrow\] rank $r: step 3: rebuild 2 in" "$work/log.err" ||
        { cat "$work/log.err"; fail "train --verbose on 2 ranks: expected rank $r's rehash and rebuild lines"; }
done
timeout 120 "${mpi[@]}" "$sparrow" train --help >"$work/once.out" 2>"$work/once.err" ||
    { cat "$work/once.err"; fail "train --help on 2 ranks: expected exit 0"; }
[ "$(grep -c "^usage: sparrow train" "$work/once.out")" -eq 1 ] || fail "train --help on 2 ranks: expected the help once"
# ... and where one rank alone fails (a directory missing on its machine: here its own
# options, MPMD), that rank's message, naming it, and every rank ends cleanly
one=()
for x in "${mpi[@]}"; do [ "$x" = 2 ] && one+=(1) || one+=("$x"); done
[ "${one[*]}" != "${mpi[*]}" ] || fail "cannot make a 1-rank launcher from '${mpi[*]}' (expected -np 2)"
rc=0
timeout 120 "${one[@]}" "$sparrow" "${tiny[@]}" --save "$work/alone.model" : -np 1 "$sparrow" \
    "${tiny[@]}" --save "$work/nodir/m.model" >/dev/null 2>"$work/alone.err" || rc=$?
[ "$rc" -eq 2 ] && [ "$(grep -c "^sparrow: rank 1: $work/nodir/m.model: cannot write" "$work/alone.err")" -eq 1 ] &&
    [ "$(grep -c "^sparrow" "$work/alone.err")" -eq 1 ] && ! grep -q MPI_ABORT "$work/alone.err" &&
    [ ! -e "$work/alone.model" ] ||
    { cat "$work/alone.err"; fail "--save unwritable on rank 1 only: expected rank 1's message alone, exit 2, no MPI_ABORT (got $rc)"; }
rc=0
timeout 120 "${one[@]}" "$sparrow" "${tiny[@]}" : -np 1 "$sparrow" "${tiny[@]}" --max-memory 1M \
    >/dev/null 2>"$work/alone.err" || rc=$?
[ "$rc" -eq 2 ] && [ "$(grep -c "^sparrow train: rank 1: the model needs" "$work/alone.err")" -eq 1 ] &&
    ! grep -q MPI_ABORT "$work/alone.err" ||
    { cat "$work/alone.err"; fail "--max-memory too small on rank 1 only: expected its message, exit 2 (got $rc)"; }
echo "   option, output, model, memory errors and a diverged loss on 2 ranks: told once (or by the rank alone), no MPI_ABORT"

echo "-- a 2-rank save onto a private model (chmod 600): the manifest and its new shards stay private"
"${mpi[@]}" "$sparrow" "${tiny[@]}" --save "$work/priv.model" >/dev/null 2>&1 ||
    fail "a 2-rank save for the file modes failed"
chmod 600 "$work/priv.model"
(umask 022 && "${mpi[@]}" "$sparrow" "${tiny[@]}" --save "$work/priv.model" >/dev/null 2>&1) ||
    fail "the second 2-rank save for the file modes failed"
modes=$(cd "$work" && stat -c '%a' priv.model*)
[ "$(echo "$modes" | sort -u)" = 600 ] && [ "$(echo "$modes" | wc -l)" -ge 3 ] ||
    fail "a save onto a 600 sharded model: expected the manifest and its shards 600, got $(cd "$work" && stat -c '%n %a' priv.model* | tr '\n' ' ')"

echo "-- a 2-rank run stopped mid-epoch and resumed on 2 ranks: the uninterrupted model"
p1_stop=$("${mpi[@]}" "$sparrow" train "${common[@]}" --max-batches 50 --save "$work/res.model" \
    --metrics "$work/stop.jsonl" 2>/dev/null | awk '{print $2}')
# Its last evaluation took the owed Adam steps after the save; eval of the save on 1
# process (the shards assembled) and on 2 ranks takes them too (each shard's options)
p1_stop_one=$(ev "$work/res.model")
p1_stop_two=$(ev "$work/res.model" "${mpi[@]}")
echo "   stopped at step 50: P@1 $p1_stop; its save evaluated on 1 process $p1_stop_one, on 2 ranks $p1_stop_two"
awk -v a="$p1_stop" -v b="$p1_stop_one" -v c="$p1_stop_two" \
    'BEGIN { exit !(b != "" && c != "" && a - b <= 1e-4 && b - a <= 1e-4 && a - c <= 1e-4 && c - a <= 1e-4) }' ||
    fail "stopped at step 50 on 2 ranks: P@1 $p1_stop, its save evaluated: $p1_stop_one (1 process), $p1_stop_two (2 ranks)"
# An evaluation inside the epoch at step 50 (--eval-every) reads each shard's owed rows
# as settled (spr_settled): every metric that of the stopped run's settled model (read
# as stored, P@3, nDCG@3 and nDCG@5 differed)
"${mpi[@]}" "$sparrow" train "${common[@]}" --max-batches 60 --eval-every 50 \
    --metrics "$work/within.jsonl" >/dev/null 2>&1 || fail "the 2-rank run with --eval-every failed"
differ=$(/usr/bin/python3 - "$work/within.jsonl" "$work/stop.jsonl" <<'PYEOF'
import json, sys
w = [json.loads(l) for l in open(sys.argv[1]) if l.strip() and json.loads(l).get("step") == 50]
s = [json.loads(l) for l in open(sys.argv[2]) if l.strip() and "step" in json.loads(l)]
if not w or not s:
    print("no evaluation at step 50")
else:
    print(" ".join("%s %r/%r" % (k, w[0][k], s[-1][k]) for k in w[0]
                   if k.startswith(("p_at_", "ndcg_at_")) and w[0][k] != s[-1][k]))
PYEOF
)
[ -z "$differ" ] || fail "2 ranks, step 50: evaluated inside the epoch / the run stopped there: $differ"
echo "   its evaluation at step 50 inside the epoch, on 2 ranks: every P@k and nDCG@k the same"
"$sparrow" info --model "$work/res.model" | grep -q "^Adam at the last step: lr 0.001, betas 0.9 0.999, eps 1e-08" ||
    fail "info of the 2-rank save: expected its Adam options (shard 0's)"
"${mpi[@]}" "$sparrow" train "${common[@]}" --resume "$work/res.model" --save "$work/res.model" \
    --quiet 2>"$work/res.log" >/dev/null || { cat "$work/res.log"; fail "the resumed 2-rank run failed"; }
grep -q "resuming $work/res.model: step 50, epoch 1 at sample 6401 of 30000" "$work/res.log" ||
    { cat "$work/res.log"; fail "expected the resume to start at sample 6401"; }
for m in two res; do
    "$sparrow" predict --model "$work/$m.model" --input "$work/small/test.txt" --threads 1 >"$work/$m.pred"
done
cmp -s "$work/two.pred" "$work/res.pred" || fail "the resumed 2-rank model predicts otherwise than the uninterrupted one"
# ... and the same 2-rank save resumed on 1 process (a run moved to one machine)
"${mpi[@]}" "$sparrow" train "${common[@]}" --max-batches 50 --save "$work/res1.model" >/dev/null 2>&1
"$sparrow" train "${common[@]}" --resume "$work/res1.model" --save "$work/res1.model" \
    2>"$work/res1.log" >/dev/null || { cat "$work/res1.log"; fail "the 2-rank save resumed on 1 process failed"; }
grep -q "epoch 1 at sample 6401 of 30000" "$work/res1.log" || { cat "$work/res1.log"; fail "res1: expected sample 6401"; }
p1_res1=$(ev "$work/res1.model")
echo "   resumed on 2 ranks: identical predictions; on 1 process: P@1 $p1_res1 (2 ranks throughout: $p1_two)"
awk -v a="$p1_res1" -v b="$p1_two" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.02) }' ||
    fail "the 2-rank save resumed on 1 process: P@1 $p1_res1, not within 0.02 of $p1_two"

# ... and not with another training set (the shards' note of it): every rank refuses
{ head -n 1 "$work/small/train.txt"; tail -n +2 "$work/small/train.txt" | tac; } >"$work/reversed.txt"
other=()
for a in "${common[@]}"; do other+=("${a/$work\/small\/train.txt/$work/reversed.txt}"); done
rc=0
timeout 120 "${mpi[@]}" "$sparrow" train "${other[@]}" --resume "$work/res1.model" --save "$work/res2.model" \
    >/dev/null 2>"$work/res2.log" || rc=$?
[ "$rc" -eq 2 ] && [ "$(grep -c "reversed.txt is not the training set of $work/res1.model" "$work/res2.log")" -eq 1 ] &&
    [ ! -e "$work/res2.model" ] && ! grep -q MPI_ABORT "$work/res2.log" ||
    { cat "$work/res2.log"; fail "resumed with another training set on 2 ranks: expected exit 2 naming it once (rank 0), got $rc"; }
"$sparrow" info --model "$work/res.model" | grep -q "training set: 30000 points, digest " ||
    fail "sparrow info of a 2-rank save: expected its training set"
"$sparrow" info --model "$work/res.model" | grep -q "res.model: the manifest of 2 shards" ||
    fail "sparrow info of a 2-rank save: expected it to say it is the manifest of 2 shards"
"$sparrow" info --model "$work/res.model" --json | grep -q '"shards": 2' || fail "info --json: expected \"shards\": 2"
# a manifest copied without its shard 1: info (and any peek: eval, --resume) names it
mkdir "$work/lost"
cp "$work/res.model" "$work/res.model".*.rank0of2 "$work/lost/"
rc=0
"$sparrow" info --model "$work/lost/res.model" >/dev/null 2>"$work/lost.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "^sparrow: $work/lost/res.model\..*\.rank1of2: cannot open: No such file or directory (shard 1 of 2 named by $work/lost/res.model)" "$work/lost.err" ||
    { cat "$work/lost.err"; fail "info of a manifest without shard 1: expected exit 2 naming it (got $rc)"; }
# info peeks at shard 0 and the manifest: the figures of the whole model loaded
SPARROW_LIB="$build/libsparrow.so" PYTHONPATH="$(dirname "$0")/../python" /usr/bin/python3 - "$work/res.model" <<'PYEOF' ||
import sys, sparrow
peek, info = sparrow.Model.peek(sys.argv[1]), sparrow.Model.load(sys.argv[1]).info
assert all(peek[k] == v for k, v in info.items()) and peek["n_labels"] == 5000, (peek, info)
assert peek["shards"] == 2, peek
PYEOF
    fail "peek of a 2-rank manifest: expected the loaded whole model's info"

echo "-- a manifest naming shards of two saves"
# Shard 1 of another run (seed 2) put where two.model's manifest looks: refused by name,
# on 1 process and on 2 ranks (it was assembled into a model no run ever had).
"${mpi[@]}" "$sparrow" train --train "$work/small/train.txt" --epochs 1 --threads 1 --seed 2 \
    --max-batches 20 --save "$work/other.model" --quiet >/dev/null 2>&1 || fail "training other.model"
shard1=$(awk '$1 == "shard" && $2 == 1 { print $5 }' "$work/two.model")
other1=$(awk '$1 == "shard" && $2 == 1 { print $5 }' "$work/other.model")
[ -n "$shard1" ] && [ -n "$other1" ] || fail "expected shard 1 in both manifests"
cp "$work/$shard1" "$work/shard1.keep"
cp "$work/$other1" "$work/$shard1"
for launcher in one two; do
    set +e
    if [ $launcher = one ]; then
        "$sparrow" eval --model "$work/two.model" --test "$work/small/test.txt" >/dev/null 2>"$work/mixed.err"
    else
        "${mpi[@]}" "$sparrow" eval --model "$work/two.model" --test "$work/small/test.txt" >/dev/null 2>"$work/mixed.err"
    fi
    rc=$?
    set -e
    [ "$rc" -ne 0 ] && grep -q "$shard1: not from the same save as" "$work/mixed.err" ||
        { cat "$work/mixed.err"; fail "mixed shards ($launcher): expected a refusal naming $shard1, got exit $rc"; }
done
# info --verify streams the shards without loading them: it names the odd one too
set +e
"$sparrow" info --model "$work/two.model" --verify >/dev/null 2>"$work/mixed.err"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "$shard1: not from the same save as" "$work/mixed.err" ||
    { cat "$work/mixed.err"; fail "mixed shards (info --verify): expected exit 2 naming $shard1, got exit $rc"; }
mv "$work/shard1.keep" "$work/$shard1"
"$sparrow" info --model "$work/two.model" --verify >/dev/null || fail "info --verify of two.model restored"
echo "   refused on 1 process, on 2 ranks and by info --verify"

echo "-- a shard damaged where its rank reads it"
# A byte of shard 1's weights flipped (found by info --verify naming a W section): on 2
# ranks rank 1 fails, and the message rank 0 prints is rank 1's own (it said "see its
# message", which rank 1 never printed).
cp "$work/$shard1" "$work/shard1.keep"
size=$(stat -c %s "$work/$shard1")
found=0
for k in $(seq 1 2 199); do
    off=$((size * k / 200))
    /usr/bin/python3 -c "import sys; p, o = sys.argv[1], int(sys.argv[2]); b = bytearray(open(p, 'rb').read()); b[o] ^= 0xff; open(p, 'wb').write(b)" "$work/$shard1" "$off"
    "$sparrow" info --model "$work/two.model" --verify >/dev/null 2>"$work/verify.err" || true
    if grep -q "section W\[" "$work/verify.err"; then
        found=1
        break
    fi
    cp "$work/shard1.keep" "$work/$shard1"
done
[ $found = 1 ] || fail "no byte of $shard1's weights found to damage"
set +e
"${mpi[@]}" "$sparrow" eval --model "$work/two.model" --test "$work/small/test.txt" >/dev/null 2>"$work/damaged.err"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "failed on rank 1: .*$shard1: section W\[.*checksum mismatch" "$work/damaged.err" ||
    { cat "$work/damaged.err"; fail "a damaged shard on 2 ranks: expected exit 2 and rank 1's message, got exit $rc"; }
mv "$work/shard1.keep" "$work/$shard1"
echo "   exit 2, rank 1's own message: $(grep -o 'failed on rank 1: .*' "$work/damaged.err" | head -1 | cut -c1-90)"

echo "-- a signal that reaches one rank only, and a metrics file that fails mid-run"
# The ranks agree at every batch whether to stop: a SIGTERM to rank 1 alone (as mpirun's
# forwarding may deliver it a batch apart) stops both at the same batch and they save
# together (the other rank used to wait for collectives that never came, and fail at the
# timeout with nothing saved). Under SPARROW_MPI_TIMEOUT=20 such a hang fails fast.
sig_run=(--train "$work/small/train.txt" --batch 2 --epochs 500 --threads 1 --save "$work/sig.model")
set +e
SPARROW_MPI_TIMEOUT=20 timeout 100 "${mpi[@]}" "$sparrow" train "${sig_run[@]}" >"$work/sig.out" 2>"$work/sig.err" &
job=$!
for _ in $(seq 200); do
    grep -q "^  training:" "$work/sig.err" 2>/dev/null && break
    sleep 0.1
done
sleep 1
ranks=$(pgrep -f -- "--save $work/sig.model" | while read -r p; do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = sparrow ] && echo "$p"; done)
[ "$(echo "$ranks" | wc -l)" = 2 ] || fail "expected 2 rank processes, found: $ranks"
kill -TERM "$(echo "$ranks" | tail -1)"
wait $job
rc=$?
set -e
[ "$rc" -ne 124 ] || fail "signal to one rank: the job hung"
grep -q "interrupted at step [0-9]*, model saved to $work/sig.model" "$work/sig.err" ||
    { cat "$work/sig.err"; fail "signal to one rank: expected the model saved by both ranks"; }
"$sparrow" info --model "$work/sig.model" >/dev/null ||
    fail "signal to one rank: the saved model does not load"
echo "   SIGTERM to one rank: both stopped and saved (exit $rc)"
# Rank 0 alone writes the metrics file; a failure there (a FIFO whose reader leaves after
# 6 KB) stops every rank at that evaluation with the model saved, exit 2 (it used to
# abort the job with every step lost).
mkfifo "$work/metrics.fifo"
head -c 6000 "$work/metrics.fifo" >/dev/null &
set +e
SPARROW_MPI_TIMEOUT=20 timeout 100 "${mpi[@]}" "$sparrow" train --train "$work/small/train.txt" \
    --test "$work/small/test.txt" --epochs 30 --eval-every 1 --eval-max 50 --threads 1 \
    --metrics "$work/metrics.fifo" --save "$work/mstop.model" --quiet >"$work/mstop.out" 2>"$work/mstop.err"
rc=$?
set -e
[ "$rc" = 2 ] || { cat "$work/mstop.err"; fail "metrics failure on 2 ranks: expected exit 2, got $rc"; }
grep -q "the metrics file unwritable; the model is saved" "$work/mstop.err" ||
    { cat "$work/mstop.err"; fail "metrics failure on 2 ranks: expected the model saved"; }
"$sparrow" info --model "$work/mstop.model" >/dev/null ||
    fail "metrics failure on 2 ranks: the saved model does not load"
! grep -q MPI_ABORT "$work/mstop.err" || { cat "$work/mstop.err"; fail "metrics failure on 2 ranks: MPI_ABORT"; }
echo "   metrics file failed mid-run: both stopped and saved (exit 2), no MPI_ABORT"

# An allocation of inference failing on rank 1 alone (tests/failalloc.c, launched MPMD):
# the ranks agree on it (spr_dist_agree) instead of waiting for rank 1 in a collective;
# a training run saves its steps on both ranks, eval and predict end; exit 1, rank 1's
# message naming it, no MPI_ABORT.
failalloc=$build/libfailalloc.so
if [ -f "$failalloc" ]; then
    # fail1 SIZE LOG ARGS...: ARGS on 2 ranks, rank 1's allocations of SIZE bytes failing
    fail1() {
        local size=$1 log=$2 rc=0
        shift 2
        SPARROW_MPI_TIMEOUT=30 timeout 100 "${one[@]}" "$sparrow" "$@" : -np 1 env LD_PRELOAD="$failalloc" \
            FAILALLOC_SIZE="$size" "$sparrow" "$@" >/dev/null 2>"$log" || rc=$?
        [ "$rc" -eq 1 ] && ! grep -q MPI_ABORT "$log" ||
            { cat "$log"; fail "rank 1 out of memory in $1: expected exit 1, no MPI_ABORT (got $rc)"; }
    }
    # 81920 bytes: evaluate's top-5 ids of a 4,096-point chunk; 163840: the merge of the
    # 2 ranks' top-5 of a predict chunk
    fail1 81920 "$work/oom_train.err" train "${common[@]}" --epochs 1 --eval-every 20 --eval-max 100 \
        --save "$work/oom.model"
    grep -q "^sparrow: rank 1: out of memory in evaluate" "$work/oom_train.err" &&
        grep -q "the evaluation failed; the model is saved" "$work/oom_train.err" ||
        { cat "$work/oom_train.err"; fail "rank 1 out of memory evaluating during training: expected its message and the model saved"; }
    "$sparrow" info --model "$work/oom.model" | grep -q "^trained: 20 steps" ||
        fail "rank 1 out of memory evaluating during training: the saved model is not the 20 steps"
    fail1 81920 "$work/oom_eval.err" eval --model "$work/two.model" --test "$work/small/test.txt" --threads 1
    grep -q "^sparrow: rank 1: out of memory in evaluate" "$work/oom_eval.err" ||
        { cat "$work/oom_eval.err"; fail "eval, rank 1 out of memory: expected its message"; }
    fail1 163840 "$work/oom_predict.err" predict --model "$work/two.model" --input "$work/small/test.txt" --threads 1
    grep -q "^sparrow: rank 1: out of memory merging the ranks' top-k" "$work/oom_predict.err" ||
        { cat "$work/oom_predict.err"; fail "predict, rank 1 out of memory: expected its message"; }
    echo "   rank 1 out of memory in inference (train's evaluation, eval, predict): agreed, saved, no MPI_ABORT"
    # Rank 0 alone out of memory creating the model (5,380,416 bytes: layer 0 of the
    # small preset, hidden 8): every rank ends with its exit code, 1 (the others said 2,
    # bad input, and mpirun reported whichever rank ended first). Two runs: mpirun as users
    # run it (its exit status, rank 0's message), then with Open MPI's abort on a non-zero
    # exit off, to read every rank's own exit code: by default mpirun kills the ranks
    # still running when the first ends non-zero, which can cut a rank's "exit" line
    # (1 run in 20 here; CI failed on it in session 25). Off, mpirun's own status is 0.
    said() { "$@"; local rc=$?; echo "exit $rc" >&2; return $rc; }
    export -f said
    oom0() {
        timeout 100 "${one[@]}" env LD_PRELOAD="$failalloc" FAILALLOC_SIZE=5380416 bash -c 'said "$@"' _ "$sparrow" \
            "${tiny[@]}" : -np 1 bash -c 'said "$@"' _ "$sparrow" "${tiny[@]}"
    }
    rc=0
    oom0 >/dev/null 2>"$work/oom0.err" || rc=$?
    [ "$rc" -eq 1 ] && ! grep -q "^exit [02]$" "$work/oom0.err" &&
        grep -q "^sparrow: out of memory: layer 0 needs" "$work/oom0.err" && ! grep -q MPI_ABORT "$work/oom0.err" ||
        { cat "$work/oom0.err"; fail "rank 0 out of memory creating the model: expected its message, exit 1 (got $rc)"; }
    OMPI_MCA_orte_abort_on_non_zero_status=0 oom0 >/dev/null 2>"$work/oom0.err" || true
    [ "$(grep -c "^exit 1$" "$work/oom0.err")" -eq 2 ] && [ "$(grep -c "^exit" "$work/oom0.err")" -eq 2 ] ||
        { cat "$work/oom0.err"; fail "rank 0 out of memory creating the model: expected exit 1 on both ranks"; }
    echo "   rank 0 alone out of memory creating the model: its message, exit 1 on both ranks"
else
    echo "   (no $failalloc, a sanitizer build: the out-of-memory cases did not run)"
fi
# Rank 1's shard too large for its file size limit (ulimit -f; 20 MB leaves
# MPI's shared memory alone, the shard is 35 MB): the save fails on every rank, no
# manifest, no shard left behind, exit 2, no MPI_ABORT
mkdir "$work/fsz"
rc=0
timeout 100 "${one[@]}" "$sparrow" train "${common[@]}" --max-batches 3 --save "$work/fsz/m.model" : -np 1 \
    bash -c 'ulimit -f 20000; exec "$0" "$@"' "$sparrow" train "${common[@]}" --max-batches 3 \
    --save "$work/fsz/m.model" >/dev/null 2>"$work/fsz.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "^sparrow: rank 1: $work/fsz/m.model\..*rank1of2: cannot write: File too large" "$work/fsz.err" &&
    ! grep -q MPI_ABORT "$work/fsz.err" && [ -z "$(ls "$work/fsz")" ] ||
    { cat "$work/fsz.err"; ls "$work/fsz"; fail "rank 1's shard over its file size limit: expected exit 2, its message, nothing left, no MPI_ABORT (got $rc)"; }
echo "   rank 1's shard over its file size limit: the save failed on both, nothing left, no MPI_ABORT"

echo "-- --max-memory per rank: 300,000 labels, hidden 32"
# A tiny data set whose header declares 300,000 labels: the output layer dominates.
{
    echo "64 500 300000"
    for i in $(seq 0 63); do echo "$((i * 4651 % 300000)) $((i % 500)):1 $(((i * 7 + 3) % 500)):0.5"; done
} | awk 'NR == 1 || !seen[$0]++' >"$work/wide.txt"
wide=(--train "$work/wide.txt" --hidden 32 --epochs 1 --batch 16 --threads 1 --quiet)
# (both refused at 1K: the message says what the model needs)
need_one=$("$sparrow" train "${wide[@]}" --max-memory 1K 2>&1 | sed -n 's/.*needs \([0-9.]*\) MB.*/\1/p' || true)
need_rank=$("${mpi[@]}" "$sparrow" train "${wide[@]}" --max-memory 1K 2>&1 |
    sed -n 's/.*needs \([0-9.]*\) MB.*/\1/p' | head -1 || true)
[ -n "$need_one" ] && [ -n "$need_rank" ] || fail "expected --max-memory 1K to be refused with the figure"
limit=$(awk -v a="$need_one" -v b="$need_rank" 'BEGIN { printf "%dM", (a + b) / 2 / 1.048576 }')
echo "   needs $need_one MB on 1 process, $need_rank MB per rank of 2; --max-memory $limit"
if "$sparrow" train "${wide[@]}" --max-memory "$limit" >/dev/null 2>"$work/mem1.log"; then
    fail "1 process: expected --max-memory $limit to refuse a model of $need_one MB"
fi
"${mpi[@]}" "$sparrow" train "${wide[@]}" --max-memory "$limit" >/dev/null 2>"$work/mem2.log" ||
    { cat "$work/mem2.log"; fail "2 ranks: expected the model to train within --max-memory $limit per rank"; }
grep "^rank" "$work/mem2.log" | sed 's/^/   /'

echo "test_dist.sh: all passed in $((SECONDS - start))s"
