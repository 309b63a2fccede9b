#!/usr/bin/env bash
# The MGT-Geo recipe (train_mgt_geo.sh: FRE-Text checkpoint, VerMulti geometry, 256 prompts × 16 samples, actor lr
# 1e-6, 2 episodes) with DAPO's settings as the DAPO paper (arXiv 2503.14476, §3 and its recipe) uses them:
#   - group-relative advantages without a critic (GRPO's group_norm) and no KL term (--init_kl_coef 0);
#   - clip-higher: ε_low 0.2, ε_high 0.28;
#   - dynamic sampling: groups whose accuracy is all 0 or all 1 are dropped and more prompts are rolled out;
#   - token-level policy loss over the whole optimizer step (--loss_agg_mode token-mean);
#   - overlong reward shaping: a 1,024-token soft-punishment buffer before the 4,096-token limit (the paper: 4,096
#     before 20,480; scaled to this recipe's length), factor 1.0.
# Upstream LMM-R1 has no DAPO recipe; this is ours. Paths come from the variables below; extra arguments are passed
# on (--dry_run).
set -euo pipefail

MODEL_PATH=${MODEL_PATH:-./checkpoints/lmm-r1-fre-text}
DATA_PATH=${DATA_PATH:-./data/VerMulti/mathv_geo_message.jsonl}
SAVE_PATH=${SAVE_PATH:-./checkpoints}
MODEL_NAME=${MODEL_NAME:-lmm-r1-dapo-geo}
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
   --advantage_estimator group_norm \
   --init_kl_coef 0 \
   --eps_clip_low_high 0.2 0.28 \
   --loss_agg_mode token-mean \
   --dynamic_filtering \
   --dynamic_filtering_reward_range 0 1 \
   --overlong_buffer_len 1024 \
   --overlong_penalty_factor 1.0 \
   --bf16 \
   --actor_learning_rate 1e-6 \
   --prompt_data "$DATA_PATH" \
   --input_key message \
   --label_key answer \
   --normalize_reward \
   --gradient_checkpointing \
   --save_steps 20 \
   --save_hf_ckpt \
   --load_checkpoint \
   --use_tensorboard "$SAVE_PATH/$MODEL_NAME/logs" \
   ${REMOTE_RM_URL:+--remote_rm_url "$REMOTE_RM_URL"} \
   "$@"
