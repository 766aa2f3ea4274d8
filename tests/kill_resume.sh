#!/usr/bin/env bash
# kill_resume.sh — crash safety of `nrlab pretrain`: kill it at random moments, resume, and
# require the same result as a run that was never interrupted.
#
#   tests/kill_resume.sh NRLAB [SEED [TRIALS]]      (CTest: label "reliability")
#
# 1. Writes a small synthetic corpus (domain "syn": train.txt ~300 KB, valid.txt ~16 KB of
#    generated sentences; no network).
# 2. Runs the reference: nrlab pretrain --preset nano --ctx 32 --batch 4 --steps 40
#    --save-every 5 --seed 3 --threads 1, never interrupted.
# 3. Runs the same command in another directory and interrupts it up to TRIALS times (default 6)
#    after a random delay (bash RANDOM seeded with SEED, default 1) with, in turn, SIGINT, SIGKILL,
#    SIGTERM, a double SIGINT (the second one kills at once, possibly while saving), ... then
#    resumes with the same command, until a run completes.
# 4. Checks:
#    (a) after every interruption, when model.safetensors exists, `nrlab eval --checkpoint DIR
#        --text valid.txt` succeeds (the files on disk are never torn), and the next run resumes;
#        SIGINT / SIGTERM stop cleanly (exit status 128 + signal, "stopped by signal" logged);
#    (b) for every step 1..40, the loss and gradient norm last logged in the interrupted run's
#        train_log.jsonl equal the reference's to the last bit (a run killed with SIGKILL resumes
#        from the last save, so it logs some steps twice: the last entry counts);
#    (c) the final model.safetensors and config.json are byte-identical to the reference's, and
#        so is the final validation result line.
# Prints one line per trial and a summary; exits non-zero on the first failed check.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: kill_resume.sh NRLAB [SEED [TRIALS]]" >&2
  exit 2
fi
nrlab=$1
seed=${2:-1}
max_trials=${3:-6}
[[ -x $nrlab ]] || { echo "kill_resume: $nrlab is not an executable" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/nr-kill-resume.XXXXXX")
cleanup() {
  if [[ -n ${pid:-} ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  if [[ ${NR_KEEP_WORK:-0} == 1 ]]; then echo "kill_resume: work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
pid=

fail() {
  echo "kill_resume: FAILED: $*" >&2
  exit 1
}

# ---- 1. corpus ---------------------------------------------------------------------------------
mkdir -p "$work/corpus/syn"
make_text() {  # make_text SEED BYTES: deterministic sentences from a fixed vocabulary
  awk -v seed="$1" -v bytes="$2" 'BEGIN {
    n = split("the a model learns text from many small words while every layer adds its own " \
              "residue to one stream of numbers that predicts which byte comes next and " \
              "training slowly lowers the loss on new languages without forgetting old ones " \
              "une langue nouvelle der kleine Hund läuft über die Straße é è ü ß", w, " ")
    state = seed; total = 0
    while (total < bytes) {
      len = 4 + (state % 9); line = ""
      for (i = 0; i < len; i++) {
        state = (state * 1103515245 + 12345) % 2147483648
        line = line (i ? " " : "") w[1 + int(state / 65536) % n]
      }
      line = toupper(substr(line, 1, 1)) substr(line, 2) "."
      print line; total += length(line) + 1
    }
  }'
}
make_text 11 300000 >"$work/corpus/syn/train.txt"
make_text 29 16000 >"$work/corpus/syn/valid.txt"

args=(pretrain --corpus "$work/corpus" --domain syn --preset nano --ctx 32 --batch 4 --steps 40
      --save-every 5 --seed 3 --threads 1)
steps=40

# "step loss grad_norm" of the last record logged for each step (records without "step" or
# "loss", such as evaluations, skipped).
last_per_step() {
  awk '
    function field(name,   m) {
      if (match($0, "\"" name "\":[^,}]*")) return substr($0, RSTART + length(name) + 3, RLENGTH - length(name) - 3)
      return ""
    }
    { s = field("step"); l = field("loss"); if (s != "" && l != "") last[s + 0] = l " " field("grad_norm") }
    END { for (s in last) print s, last[s] }' "$1" | sort -n
}
# ---- 2. the reference ----------------------------------------------------------------------------
start_ns=$(date +%s%N)
"$nrlab" "${args[@]}" --out "$work/ref" >"$work/ref.out" 2>"$work/ref.err" \
  || { cat "$work/ref.err" >&2; fail "the reference run exited with status $?"; }
ref_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
echo "reference run: $steps steps in ${ref_ms} ms"

# ---- 3 and 4. rounds of interrupted runs, each checked against the reference -----------------
# A round runs the command in a fresh directory, interrupting it after a random delay and
# resuming, until it completes; rounds repeat until TRIALS interruptions have happened (a run
# that completes before its signal ends the round early).
RANDOM=$seed
signals=(INT KILL TERM INT2 KILL INT TERM KILL)
trials=0 clean_stops=0 killed=0 evals=0 resumes=0 rounds=0 logged=0 leftovers=0 early=0
# A background job of a script starts with SIGINT ignored; nrlab must get it as from a terminal
# (Ctrl-C), also before it installs its handler: reset it with env, or else use job control.
launch=()
if env --default-signal=INT true 2>/dev/null; then launch=(env --default-signal=INT); else set -m; fi

# check_round DIR: (b) and (c) for a completed run in DIR.
check_round() {
  local dir=$1
  last_per_step "$dir/train_log.jsonl" >"$dir.steps"
  if ! diff "$work/ref.steps" "$dir.steps" >"$dir.diff"; then
    head -n 20 "$dir.diff" >&2
    fail "(b) round $rounds: the per-step losses of the interrupted run differ from the reference's"
  fi
  logged=$((logged + $(grep '"step"' "$dir/train_log.jsonl" | grep -c '"loss"' || true)))
  cmp "$work/ref/model.safetensors" "$dir/model.safetensors" \
    || fail "(c) round $rounds: the final model.safetensors differs from the reference's"
  cmp "$work/ref/config.json" "$dir/config.json" || fail "(c) round $rounds: the final config.json differs"
  cmp <(tail -n 1 "$work/ref/train_log.jsonl") <(tail -n 1 "$dir/train_log.jsonl") \
    || fail "(c) round $rounds: the final validation line differs: $(tail -n 1 "$dir/train_log.jsonl")"
  leftovers=$((leftovers + $(find "$dir" -name '*.tmp.*' | wc -l)))
}

last_per_step "$work/ref/train_log.jsonl" >"$work/ref.steps"
[[ $(wc -l <"$work/ref.steps") -eq $steps ]] || fail "the reference logged $(wc -l <"$work/ref.steps") steps, not $steps"

attempt=0
while ((trials < max_trials && rounds < 3 * max_trials)); do
  rounds=$((rounds + 1))
  run_dir="$work/run-$rounds"
  completed=0
  while ((completed == 0)); do
    attempt=$((attempt + 1))
    sig=none
    ((trials < max_trials)) && sig=${signals[trials % ${#signals[@]}]}
    log="$work/attempt-$attempt.err"
    "${launch[@]}" "$nrlab" "${args[@]}" --out "$run_dir" >"$work/attempt-$attempt.out" 2>"$log" &
    pid=$!
    delay_ms=0
    if [[ $sig != none ]]; then
      # A delay between 5% and 70% of the time the reference took for the steps left (counted
      # from the last step logged): early kills land while loading, later ones during training
      # or while a checkpoint is written.
      done_steps=0
      if [[ -f $run_dir/train_log.jsonl ]]; then
        done_steps=$(last_per_step "$run_dir/train_log.jsonl" | tail -n 1 | cut -d' ' -f1)
      fi
      delay_ms=$((20 + ref_ms * (steps - ${done_steps:-0}) * (5 + RANDOM % 66) / (100 * steps)))
      sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
      if kill -0 "$pid" 2>/dev/null; then
        case $sig in
          INT2) kill -INT "$pid" 2>/dev/null || true; sleep 0.02; kill -INT "$pid" 2>/dev/null || true ;;
          *) kill -"$sig" "$pid" 2>/dev/null || true ;;
        esac
      else
        sig=late
      fi
    fi
    rc=0
    { wait "$pid"; } 2>/dev/null || rc=$?  # (braces: no "Killed" job notice from the shell)
    pid=
    if grep -q "resuming" "$log"; then resumes=$((resumes + 1)); fi
    if [[ $sig == none || $sig == late ]]; then
      [[ $rc -eq 0 ]] || { cat "$log" >&2; fail "attempt $attempt ran without a signal and exited with status $rc"; }
      [[ $sig == late ]] && early=$((early + 1))
      echo "round $rounds, attempt $attempt: $([[ $sig == late ]] && echo "finished before its signal (${delay_ms} ms)" || echo "no signal"), completed"
      completed=1
      break
    fi
    trials=$((trials + 1))
    stopped=$(grep -c "stopped by signal" "$log" || true)
    note=""
    case $sig in
      INT | TERM)
        want=$((128 + $(kill -l "$sig")))
        if [[ $rc -eq 0 ]]; then
          completed=1
          note=" (the signal came after the last step: the run completed)"
        elif [[ $rc -ne $want ]]; then
          cat "$log" >&2
          fail "attempt $attempt: SIG$sig gave exit status $rc, expected $want (or 0)"
        elif [[ $stopped -gt 0 ]]; then
          clean_stops=$((clean_stops + 1))
          note=", clean stop: $(grep -o 'after step [0-9]*' "$log" | tail -n 1)"
        else
          note=" (before the handler was installed: default action)"
        fi
        ;;
      KILL | INT2)
        [[ $rc -ne 0 ]] || completed=1
        killed=$((killed + 1))
        ;;
    esac
    echo "round $rounds, attempt $attempt: SIG$sig after ${delay_ms} ms -> exit status $rc$note"
    # (a) whatever is on disk loads.
    if [[ -f $run_dir/model.safetensors ]]; then
      "$nrlab" eval --checkpoint "$run_dir" --text "$work/corpus/syn/valid.txt" --threads 1 \
        >"$work/eval-$attempt.out" 2>"$work/eval-$attempt.err" \
        || { cat "$work/eval-$attempt.err" >&2; fail "after attempt $attempt (SIG$sig) the checkpoint does not load"; }
      evals=$((evals + 1))
    fi
  done
  check_round "$run_dir"
done
((trials >= max_trials)) || fail "only $trials interruptions in $rounds rounds (the runs finish too fast?)"

# ---- 5. a kill inside the last save ------------------------------------------------------------
# The random delays rarely land in the few milliseconds of the final save, the one moment where
# the order of the two writes matters: kill the run while model.safetensors is being written
# after the last step (its temporary file exists), resume, and require the reference's result.
targeted=0
for ((try = 1; try <= 5 && targeted == 0; try++)); do
  rounds=$((rounds + 1))
  run_dir="$work/run-$rounds"
  "${launch[@]}" "$nrlab" "${args[@]}" --out "$run_dir" >"$work/target-$try.out" 2>"$work/target-$try.err" &
  pid=$!
  until grep -qs "\"loss\".*\"step\":$steps[,}]" "$run_dir/train_log.jsonl" || ! kill -0 "$pid" 2>/dev/null; do
    sleep 0.002
  done
  until compgen -G "$run_dir/model.safetensors.tmp.*" >/dev/null || ! kill -0 "$pid" 2>/dev/null; do :; done
  if kill -KILL "$pid" 2>/dev/null; then targeted=1; fi
  { wait "$pid"; } 2>/dev/null || true
  pid=
  if [[ $targeted -eq 1 ]] && compgen -G "$run_dir/model.safetensors.tmp.*" >/dev/null; then
    state_step=unknown
    [[ -f $run_dir/training_state.safetensors ]] &&
      state_step=$(grep -ao '"step":"[0-9]*"' "$run_dir/training_state.safetensors" | head -n 1 | grep -o '[0-9]*' || true)
    echo "round $rounds: SIGKILL while model.safetensors was written at the last save" \
         "(training_state.safetensors then at step $state_step)"
    "$nrlab" "${args[@]}" --out "$run_dir" >"$work/target-resume.out" 2>"$work/target-resume.err" \
      || { cat "$work/target-resume.err" >&2; fail "the resume after the kill inside the last save failed"; }
    if ! cmp -s "$work/ref/model.safetensors" "$run_dir/model.safetensors"; then
      fail "(c) killed while writing model.safetensors at its last save, then resumed: the final" \
           "model.safetensors differs from the reference's. training_state.safetensors was already written" \
           "for step $state_step, so the resumed run trained no step and never rewrote model.safetensors" \
           "(stale, from an earlier save). Fix in the save callback: write model.safetensors (and" \
           "config.json) first and training_state.safetensors last, so that the resume state is the" \
           "commit point of a save."
    fi
    check_round "$run_dir"
    trials=$((trials + 1))
    killed=$((killed + 1))
  else
    targeted=0
    echo "round $rounds: missed the last save's model.safetensors write; trying again"
  fi
done
[[ ${#launch[@]} -gt 0 ]] || set +m
[[ $targeted -eq 1 ]] || echo "kill_resume: WARNING: could not kill a run inside its last save in 5 tries"

echo "kill_resume: OK: $trials interruptions in $rounds rounds ($clean_stops clean stops on SIGINT/SIGTERM," \
     "$killed killed with SIGKILL or a second SIGINT), $resumes resumes, $evals checkpoints loaded by nrlab eval;" \
     "per round, the last of the step records ($logged in all) bit-identical to the reference for all $steps steps" \
     "and the final model.safetensors byte-identical; $early runs finished before their signal;" \
     "$leftovers temporary files left by killed writes"
