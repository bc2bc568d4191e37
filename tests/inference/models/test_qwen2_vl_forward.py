"""One prefill of the engine's model (reference ops, paged pool with blocks
placed out of order) against transformers' logits on the same checkpoint."""
import torch

from inference.layers.attention import AttentionMetadata
from inference.models.loader import load_model
from inference.ops import get_ops
from inference.processor import Processor
from qwen2vl_tiny import IMAGE, hf_inputs, image_prompt, make_image


def test_prefill_logits_match_transformers(hf_model, tiny_ckpt):
    model = load_model(tiny_ckpt, torch.float32, torch.device("cpu"), get_ops("cpu"))
    proc = Processor(model.config, tiny_ckpt)
    p = proc({"prompt_token_ids": image_prompt([5, 6, 7], [8, 9, 10, 11]), "images": [make_image(112, 84, 0)]})
    cfg, length, block_size = model.config, len(p.token_ids), 4
    num_blocks = -(-length // block_size)
    pool = torch.zeros(2 * num_blocks + 1, cfg.num_hidden_layers, 2, block_size, cfg.num_key_value_heads, cfg.head_dim)
    for i, attn in enumerate(model.attention_layers()):
        attn.k_cache, attn.v_cache = pool[:, i, 0], pool[:, i, 1]
    blocks = torch.arange(num_blocks, 0, -1, dtype=torch.int32) * 2  # reversed, spread out
    slots = (blocks.long()[:, None] * block_size + torch.arange(block_size)).flatten()[:length]
    meta = AttentionMetadata(False, slots, blocks[None], torch.tensor([length], dtype=torch.int32),
                             torch.tensor([0, length], dtype=torch.int32), length, length)
    ids = torch.tensor(p.token_ids)
    embeds = model.embed(ids, model.encode_images(p.pixel_values, p.image_grid_thw),
                         torch.nonzero(ids == IMAGE).flatten())
    logits = model.compute_logits(model(embeds, p.positions, meta))
    with torch.no_grad():
        ref = hf_model(**hf_inputs(p, hf_model)).logits[0]
    assert torch.allclose(logits, ref, atol=1e-4, rtol=0), (logits - ref).abs().max()


def test_prompt_positions_match_transformers_rope_index(hf_model, tiny_ckpt):
    model_cfg = load_model(tiny_ckpt, torch.float32, torch.device("cpu"), get_ops("cpu")).config
    proc = Processor(model_cfg, tiny_ckpt)
    p = proc({"prompt_token_ids": image_prompt([5], [8, 9], num_images=2),
              "images": [make_image(56, 56, 1), make_image(112, 84, 2)]})
    kwargs = hf_inputs(p, hf_model)
    args = dict(image_grid_thw=kwargs["image_grid_thw"], attention_mask=kwargs["attention_mask"])
    if "mm_token_type_ids" in kwargs:
        args["mm_token_type_ids"] = kwargs["mm_token_type_ids"]
    positions, delta = hf_model.model.get_rope_index(kwargs["input_ids"], **args)
    assert torch.equal(positions[:, 0], p.positions)
    assert int(delta) == p.rope_delta
