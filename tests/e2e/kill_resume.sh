#!/usr/bin/env bash
# Crash safety of training (issue #7, CLI.md --save-steps/--resume): a run killed with SIGKILL at any moment
# and resumed (possibly killed again) must end with adapter files byte-identical to an uninterrupted run with
# the same seed. Also: a half-written checkpoint (checkpoint-N.tmp-PID/) and atomic-write temp files
# (*.tmp.PID) are ignored by --resume and removed, and a corrupt complete checkpoint is refused with one line.
#   Env: PEFTC_BIN, PEFTC_SOURCE_DIR; KILL_ROUNDS (default 20); KILL_SEED (default: the shell's pid, printed
#   so a failure can be replayed).
set -u
BIN="${PEFTC_BIN:?set PEFTC_BIN}"
SRC="${PEFTC_SOURCE_DIR:?set PEFTC_SOURCE_DIR}"
ROUNDS="${KILL_ROUNDS:-20}"
RANDOM="${KILL_SEED:-$$}"
echo "kill_resume: KILL_SEED=${KILL_SEED:-$$}, $ROUNDS rounds"
work="$(mktemp -d /tmp/peftc_kill_resume.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 # a tiny model; the machine is shared
failed=0
fail() {
    echo "FAIL: $*" >&2
    failed=$((failed + 1))
}

# 30 records of 4-14 random ids (< the golden vocabulary of 128), from a fixed seed so every run sees the same file.
awk 'BEGIN { srand(7); for (r = 0; r < 30; r++) { n = 4 + int(rand() * 11); s = "";
      for (i = 0; i < n; i++) s = s (i ? ", " : "") int(rand() * 128); print "{\"input_ids\": [" s "]}" } }' \
    >"$work/data.jsonl"

# Shuffled data, dropout (the trainer's RNG) and AdamW (moments): everything a resume must restore.
STEPS=24
# The command line as an array, so that `"$BIN" "${ARGS[@]}" &` makes $! the pid of peftc itself: killing a
# backgrounded shell function would kill only its subshell and leave peftc running.
set_args() { # set_args OUT [extra options]
    local out=$1
    shift
    ARGS=(train --model "$SRC/tests/golden/data/llama_gqa/model" --data "$work/data.jsonl" --method lora --r 4
        --lora-dropout 0.1 --lr 1e-2 --steps $STEPS --batch 3 --seq-len 16 --save-steps 1 --seed 11 --quiet
        --out "$out" "$@")
}
train() { # train OUT [extra options], in the foreground
    set_args "$@"
    "$BIN" "${ARGS[@]}"
}
rand_delay() { # a random delay in [0, $1] seconds
    awk -v r=$RANDOM -v d="$1" 'BEGIN { printf "%.3f", r / 32767 * d }'
}
# SIGKILL pid at a random moment of its run, placed by progress rather than by the clock (a loaded machine
# makes run times vary several-fold): wait until checkpoint-K exists for a random K (K = 0: no wait), then a
# random delay of up to a twelfth of a run (two steps at the reference pace), which lands anywhere in the
# following steps and checkpoint writes. K stops 6 steps short of the end so that the kill still lands when the
# machine runs faster than it did for the reference (a kill after the run has ended tests nothing; the check
# after the rounds counts them).
kill_mid_run() { # kill_mid_run PID OUT
    local k=$((RANDOM % (STEPS - 6))) polls=0
    while [ "$k" -gt 0 ] && [ ! -d "$2/checkpoint-$k" ] && kill -0 "$1" 2>/dev/null && [ $polls -lt 3000 ]; do
        sleep 0.01
        polls=$((polls + 1))
    done
    sleep "$(rand_delay "$(awk -v d="$duration" 'BEGIN { printf "%.3f", d / 12 }')")"
    kill -9 "$1" 2>/dev/null
}
same_adapter() { # same_adapter DIR: DIR's adapter files equal the reference's byte for byte
    cmp -s "$work/ref/adapter_model.safetensors" "$1/adapter_model.safetensors" &&
        cmp -s "$work/ref/adapter_config.json" "$1/adapter_config.json"
}
leftovers() { find "$1" -name '*.tmp*' 2>/dev/null | head -n 5; }

# The uninterrupted reference, twice (if two plain runs differed, no resume could match them).
t0=$(date +%s.%N)
train "$work/ref" 2>"$work/err" || { echo "FAIL: reference run: $(cat "$work/err")" >&2; exit 1; }
t1=$(date +%s.%N)
duration=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
train "$work/ref2" 2>"$work/err" || { echo "FAIL: second reference run: $(cat "$work/err")" >&2; exit 1; }
same_adapter "$work/ref2" || { echo "FAIL: two uninterrupted runs with the same seed differ" >&2; exit 1; }
echo "reference run: ${duration}s for $STEPS steps"

# The rounds. A round kills the first run at a random moment, then resumes until a run completes, killing
# about a third of the resumes again.
kills_landed=0
tmp_seen=0
for round in $(seq 1 "$ROUNDS"); do
    out="$work/round$round"
    set_args "$out"
    "$BIN" "${ARGS[@]}" 2>"$work/err_$round" &
    pid=$!
    kill_mid_run $pid "$out"
    wait $pid 2>/dev/null
    rc=$?
    [ $rc -eq 137 ] && kills_landed=$((kills_landed + 1))
    done_ok=$([ $rc -eq 0 ] && echo 1 || echo 0)
    attempts=0
    while [ "$done_ok" -eq 0 ]; do
        attempts=$((attempts + 1))
        if [ $attempts -gt 12 ]; then
            fail "round $round: no completed run after 12 resumes"
            break
        fi
        [ -n "$(leftovers "$out")" ] && tmp_seen=$((tmp_seen + 1))
        set_args "$out" --resume
        "$BIN" "${ARGS[@]}" 2>"$work/err_$round" &
        pid=$!
        if [ $attempts -le 4 ] && [ $((RANDOM % 3)) -eq 0 ]; then
            kill_mid_run $pid "$out"
        fi
        wait $pid 2>/dev/null
        rc=$?
        if [ $rc -eq 137 ]; then
            kills_landed=$((kills_landed + 1))
        elif [ $rc -eq 0 ]; then
            done_ok=1
        else
            fail "round $round: resume exited $rc: $(cat "$work/err_$round")"
            break
        fi
    done
    # Nothing of this round may still be running (a surviving writer would make the comparison meaningless).
    if pgrep -f -- "--out $out( |\$)" >/dev/null 2>&1; then fail "round $round: a peftc process survived its kill"; fi
    if [ "$done_ok" -eq 1 ]; then
        same_adapter "$out" || fail "round $round: the final adapter differs from the uninterrupted run"
        [ -z "$(leftovers "$out")" ] || fail "round $round: temp files left behind: $(leftovers "$out")"
    fi
    # Keep one interrupted-and-finished directory for the checks below; remove the rest as we go.
    [ "$round" -ne 1 ] && rm -rf "$out"
done
echo "rounds: $ROUNDS, kills that landed mid-run: $kills_landed, resumes that found temp files: $tmp_seen"
[ "$kills_landed" -ge $((ROUNDS / 2)) ] || fail "only $kills_landed kills landed mid-run: the kill window is off"

# A half-written checkpoint newer than every complete one, and stray temp files, must be ignored and removed.
# Start from round 1's finished directory cut back to checkpoint-9 (as if killed just after writing it).
out="$work/stale"
cp -r "$work/round1" "$out"
rm -f "$out/adapter_model.safetensors" "$out/adapter_config.json"
for c in "$out"/checkpoint-*; do [ "${c##*-}" -gt 9 ] && rm -rf "$c"; done
mkdir -p "$out/checkpoint-15.tmp-4242"
head -c 100 "$out/checkpoint-9/trainer_state.bin" >"$out/checkpoint-15.tmp-4242/trainer_state.bin"
echo garbage >"$out/adapter_model.safetensors.tmp.4242"
echo garbage >"$out/checkpoint-9/adapter_config.json.tmp.4243"
train "$out" --resume 2>"$work/err" || fail "stale: resume: $(cat "$work/err")"
same_adapter "$out" || fail "stale: resuming past a half-written checkpoint changed the result"
[ -z "$(leftovers "$out")" ] || fail "stale: --resume left temp files: $(leftovers "$out")"

# A complete checkpoint whose state file is corrupt: refuse with one line naming it, never train on garbage.
out="$work/corrupt"
cp -r "$work/round1" "$out"
newest=$(ls -d "$out"/checkpoint-* | sed 's/.*checkpoint-//' | sort -n | tail -n 1)
printf '\x01' | dd of="$out/checkpoint-$newest/trainer_state.bin" bs=1 seek=200 conv=notrunc status=none
train "$out" --resume >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$work/err")" -eq 1 ] &&
    grep -q "^peftc: error: .*checkpoint-$newest/trainer_state.bin" "$work/err" ||
    fail "corrupt checkpoint: want exit 1 and one line naming it, got rc $rc: $(cat "$work/err")"

[ "$failed" -eq 0 ] && echo "kill_resume: all $ROUNDS rounds byte-identical"
[ "$failed" -eq 0 ]
