"""tokenbench's model weights written as a GGUF file llama.cpp loads, so the peer benchmark times llama.cpp
on the very same random weights (the `gguf` package, the writer llama.cpp's own converter uses).

Names and layout as llama.cpp's convert_hf_to_gguf.py writes a Llama: the fused qkv / gate_up split back
into their projections, q and k rows permuted from Hugging Face's rotate-half RoPE layout to llama.cpp's
interleaved pairs (the converter's `permute`), norms in F32 (llama.cpp requires them so), the rest in the
run's dtype bit for bit. The vocabulary is placeholder tokens: the benchmark feeds token ids, never text.
"""
from __future__ import annotations

from pathlib import Path

import torch

from bench.configs.model_configs import ModelConfig
from kernels import hf_mapping as hf

# our HF-layout parameter name -> llama.cpp's tensor name (per layer, under blk.{i}.)
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_LAYER_BIAS_NAMES = {"self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                     "self_attn.v_proj.bias": "attn_v.bias"}


def rope_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of a q or k projection from rotate-half order (first half, second half of each head) to
    interleaved pairs, as llama.cpp's converter does."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def gguf_tensors(m: ModelConfig, ours: dict) -> list[tuple[str, torch.Tensor]]:
    """(llama.cpp name, tensor) for every tensor of the model, in the order the converter writes them."""
    d = m.layer_dims
    out = [("token_embd.weight", ours["embed"])]
    for i, weights in enumerate(ours["layers"]):
        views = hf.layer_weights_to_hf_views(weights, d)
        for hf_name, tensor in views.items():
            name = {**_LAYER_NAMES, **_LAYER_BIAS_NAMES}[hf_name.removeprefix("model.layers.")]
            if name.startswith("attn_q."):
                tensor = rope_permute(tensor, d.heads)
            elif name.startswith("attn_k."):
                tensor = rope_permute(tensor, d.kv_heads)
            if tensor.dim() == 1:  # norms (and biases) in F32, as llama.cpp requires
                tensor = tensor.float()
            out.append((f"blk.{i}.{name}", tensor))
    out += [("output_norm.weight", ours["final_norm"].float()), ("output.weight", ours["lm_head"])]
    return out


def write_gguf(path: Path, m: ModelConfig, ours: dict, context: int) -> Path:
    import gguf

    d = m.layer_dims
    kinds = {torch.float32: gguf.GGMLQuantizationType.F32, torch.float16: gguf.GGMLQuantizationType.F16,
             torch.bfloat16: gguf.GGMLQuantizationType.BF16}
    file_types = {torch.float32: gguf.LlamaFileType.ALL_F32, torch.float16: gguf.LlamaFileType.MOSTLY_F16,
                  torch.bfloat16: gguf.LlamaFileType.MOSTLY_BF16}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"tokenbench random {m.name}")
    w.add_context_length(max(context, 2))
    w.add_embedding_length(d.hidden)
    w.add_block_count(m.layers)
    w.add_feed_forward_length(d.ffn)
    w.add_head_count(d.heads)
    w.add_head_count_kv(d.kv_heads)
    w.add_key_length(d.head_dim)
    w.add_value_length(d.head_dim)
    w.add_rope_dimension_count(d.head_dim)
    w.add_rope_freq_base(d.rope_theta)
    w.add_layer_norm_rms_eps(d.norm_eps)
    w.add_vocab_size(d.vocab)
    w.add_file_type(file_types[ours["lm_head"].dtype])
    w.add_tokenizer_model("llama")  # SentencePiece-style: placeholder pieces, ids only
    w.add_token_list([f"<t{i}>".encode() for i in range(d.vocab)])
    w.add_token_scores([0.0] * d.vocab)
    w.add_token_types([gguf.TokenType.NORMAL] * d.vocab)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for name, tensor in gguf_tensors(m, ours):
        t = tensor.detach().contiguous()
        # bytes as stored, so bf16 needs no numpy dtype; the shape is derived back from the byte shape
        w.add_tensor(name, t.view(torch.uint8).numpy(), raw_dtype=kinds[t.dtype])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
