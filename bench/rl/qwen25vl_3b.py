"""The Qwen2.5-VL-3B shape in transformers (the config of ../generation/hf_baseline.py, which stays a standalone copy of
the shared baseline): r1v_loop.py and hf_train_profile.py build their random-weight models from it."""
from transformers import Qwen2_5_VLConfig


def config():
    text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=128000, tie_word_embeddings=True,
                rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": [16, 24, 24]}, rope_theta=1e6)
    vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
                  temporal_patch_size=2, spatial_merge_size=2, in_channels=3, hidden_act="silu", window_size=112,
                  fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                           image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
    cfg._attn_implementation = "sdpa"
    return cfg
