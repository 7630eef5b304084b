#!/usr/bin/env bash
# One prepared GPU check of identity_tf (details: benchmarks/gpu_check.py's docstring).
#
#   bash benchmarks/gpu_check.sh                     # GPU machine: every task x {default, mirrored} x XLA on/off,
#                                                    # solver timings, XLA + MirroredStrategy probe; < 8 minutes
#   bash benchmarks/gpu_check.sh --allow-cpu --tiny  # the same on CPU at a tiny size (tests/benchmarks)
#
# Writes benchmarks/results/gpu_{env,solvers,mirrored_xla,train_step,train}.json (--out-dir to change).
# Exit codes: 0 ok; 1 a run/probe failed or the budget ran out; 2 no GPU visible (without --allow-cpu);
# 3 no usable Python environment (missing interpreter or packages: this machine may not be able to install them).
#
# The interpreter: $IDENTITY_TF_PYTHON, else <repo>/.venv/bin/python, else python3 on PATH.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

python="${IDENTITY_TF_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then
    python="$repo/.venv/bin/python"
  else
    python="$(command -v python3 || true)"
  fi
fi
if [ -z "$python" ] || ! [ -x "$(command -v "$python" || echo "$python")" ]; then
  echo "gpu_check: FAILED: no Python interpreter (looked at \$IDENTITY_TF_PYTHON, $repo/.venv/bin/python and" \
       "python3 on PATH). Create the venv on this machine or carry one built for it, then rerun." >&2
  exit 3
fi

missing="$("$python" - <<'EOF' 2>&1
import importlib.util
needed = ["tensorflow", "keras", "tensorflow_probability", "tf_keras", "numpy", "scipy", "yaml", "ortools", "elkai"]
print(" ".join(name for name in needed if importlib.util.find_spec(name) is None))
EOF
)"
status=$?
if [ $status -ne 0 ]; then
  echo "gpu_check: FAILED: $python does not run: $missing" >&2
  exit 3
fi
if [ -n "$missing" ]; then
  echo "gpu_check: FAILED: $python ($("$python" -V 2>&1)) lacks the packages: $missing." \
       "Install identity_tf's dependencies into it (pip install -e $repo; on a GPU machine tensorflow[and-cuda])," \
       "or point IDENTITY_TF_PYTHON at an interpreter that has them. Nothing was run." >&2
  exit 3
fi

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
cd "$repo" && exec "$python" "$here/gpu_check.py" "$@"
