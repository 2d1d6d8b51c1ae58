#!/usr/bin/env bash
# The GPU checks of rlmem in one run: the CUDA tests, the throughput report at 1,024 .. 65,536 envs
# (CUDA graphs on, and the eager path beside it), and the wall-clock seconds to learn
# RepeatPreviousEasy. Every step has its own time limit and the next one runs even if it fails.
#
#   scripts/device_check.sh OUT_DIR
#
# Figures land in OUT_DIR as JSON, the output of every step in OUT_DIR/log.txt; the tables print
# as they are measured. The limits fit one 10-minute call to a lent GPU machine.
# Smaller sizes for a dry run on the CPU:
#   DEVICE=cpu SIZES=64,256 LEARN_ENVS=64 LEARN_SEEDS=0 LEARN_BUDGET=100000 TRAIN_SECONDS=0.5 \
#     MEMORY_ENVS=16 MEMORY_LENGTHS=64 AGENT_ENVS=16 scripts/device_check.sh /tmp/check
set -u
OUT=${1:?usage: scripts/device_check.sh OUT_DIR}
DEVICE=${DEVICE:-cuda}
SIZES=${SIZES:-1024,4096,16384,65536}
NET=${NET:-hidden_size=128 encoder_sizes=128}  # the network: an LSTM of 128
TRAIN_SECONDS=${TRAIN_SECONDS:-3}
LEARN_ENVS=${LEARN_ENVS:-1024}
LEARN_SEEDS=${LEARN_SEEDS:-0,1,2}
LEARN_BUDGET=${LEARN_BUDGET:-4000000}
MEMORY_ENVS=${MEMORY_ENVS:-16384 65536}   # each memory core's update alone, at these N (space-separated)
MEMORY_LENGTHS=${MEMORY_LENGTHS:-64,256,1024}
AGENT_ENVS=${AGENT_ENVS:-1024 16384}      # PPO, DQN and PQN training env-steps/s at these N (space-separated)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, log it, never stop the script
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$OUT/log.txt"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
}

python -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version());
print('device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" | tee "$OUT/machine.txt"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
  --format=csv | tee -a "$OUT/machine.txt"

step cuda-tests 180 python -m pytest -q -p no:cacheprovider -rs tests/test_cuda_graphs.py tests/test_tasks.py \
  -k "cuda or graph or gpu or sync"
# shellcheck disable=SC2086
step throughput 150 python -m rlmem throughput --device "$DEVICE" --what all --sizes "$SIZES" --no-popgym \
  --seconds 2 --train-seconds "$TRAIN_SECONDS" --sb3-device same --set $NET --json "$OUT/throughput.json"
step learn 90 python -m rlmem throughput --device "$DEVICE" --what learn --set n_envs="$LEARN_ENVS" \
  --learn-seeds "$LEARN_SEEDS" --learn-budget "$LEARN_BUDGET" --json "$OUT/learn.json"
# shellcheck disable=SC2086
step throughput-eager 90 python -m rlmem throughput --device "$DEVICE" --what rollout,train --sizes "$SIZES" \
  --seconds 2 --train-seconds "$TRAIN_SECONDS" --no-sb3 --set $NET cuda_graphs=false unroll=chunked \
  --json "$OUT/throughput-eager.json"
# shellcheck disable=SC2086
step throughput-chunked 70 python -m rlmem throughput --device "$DEVICE" --what train --sizes "$SIZES" \
  --train-seconds "$TRAIN_SECONDS" --no-sb3 --set $NET unroll=chunked --json "$OUT/throughput-chunked.json"
for n in $MEMORY_ENVS; do  # the scan cores and attention against the LSTM: the T = 1,024 at 65,536 envs
  step "memory-speed-$n" 120 python scripts/memory_speed.py --device "$DEVICE" --envs "$n" --lengths "$MEMORY_LENGTHS" \
    --repeats 3 --json "$OUT/memory-speed-$n.json"
done
for n in $AGENT_ENVS; do  # the three agents at their defaults, CUDA graphs on; DQN also eagerly (the reference)
  step "agent-speed-$n" 100 python scripts/agent_speed.py --agents ppo,dqn,pqn --device "$DEVICE" --seconds 5 \
    --set n_envs="$n"
  step "dqn-eager-speed-$n" 60 python scripts/agent_speed.py --agents dqn --device "$DEVICE" --seconds 5 \
    --set n_envs="$n" --set cuda_graphs=false
done
echo "=== done $(date -u +%H:%M:%S)"
