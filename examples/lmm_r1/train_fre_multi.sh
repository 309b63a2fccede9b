#!/usr/bin/env bash
# LMM-R1 FRE-Multi (foundational reasoning enhancement on multimodal data) — upstream
# examples/scripts/lmm_r1/train_fre_multi.sh (TideDra/lmm-r1 f917f18) as one `lmmr1 train` process. Same
# hyperparameters: Qwen2.5-VL-3B-Instruct, VerMulti mathv60k prompts, REINFORCE++-baseline, actor lr 1e-6, KL 0.001
# (k1, in the reward), 256 prompts × 16 samples, train batch 256, generate 4096, 2 episodes. Upstream's 8-GPU Ray /
# vLLM / DeepSpeed layout flags are dropped (lmmr1 train would accept and ignore them), and the math_verifier reward
# server is replaced by the built-in LMM-R1 rule reward (set REMOTE_RM_URL to use a server, e.g. `lmmr1 reward
# serve`). Paths come from the variables below; extra arguments are passed on (--dry_run).
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-./models/Qwen2.5-VL-3B-Instruct}
DATA_PATH=${DATA_PATH:-./data/VerMulti/mathv60k_message.jsonl}
SAVE_PATH=${SAVE_PATH:-./checkpoints}
MODEL_NAME=${MODEL_NAME:-lmm-r1-fre-multi}
DEVICE=${DEVICE:-cuda}
REMOTE_RM_URL=${REMOTE_RM_URL:-}

${LMMR1:-lmmr1} train \
   --pretrain "$MODEL_PATH" \
   --save_path "$SAVE_PATH/$MODEL_NAME" \
   --ckpt_path "$SAVE_PATH/$MODEL_NAME/ckpt" \
   --device "$DEVICE" \
   --micro_train_batch_size 2 \
   --train_batch_size 256 \
   --micro_rollout_batch_size 2 \
   --rollout_batch_size 256 \
   --temperature 1.0 \
   --n_samples_per_prompt 16 \
   --max_epochs 1 \
   --num_episodes 2 \
   --prompt_max_len 4096 \
   --max_samples 100000 \
   --generate_max_len 4096 \
   --advantage_estimator reinforce_baseline \
   --bf16 \
   --actor_learning_rate 1e-6 \
   --init_kl_coef 0.001 \
   --prompt_data "$DATA_PATH" \
   --input_key message \
   --label_key answer \
   --normalize_reward \
   --lambd 1 \
   --gamma 1 \
   --gradient_checkpointing \
   --save_steps 20 \
   --save_hf_ckpt \
   --load_checkpoint \
   --use_tensorboard "$SAVE_PATH/$MODEL_NAME/logs" \
   ${REMOTE_RM_URL:+--remote_rm_url "$REMOTE_RM_URL"} \
   "$@"
