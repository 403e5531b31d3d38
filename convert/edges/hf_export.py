"""What the generative edges from a model directory share: the model loaded for export (float32,
offline, the attention kernel the exporter traces best), its cache geometry, and the part of the
generative contract every target records (task, tokens, tokenizer, context)."""

from __future__ import annotations

import dataclasses
import os

from fwconv.errors import ConversionError, first_line
from fwconv.manifest import sha256_of
from fwconv.models.hf import HfModelDir


@dataclasses.dataclass(frozen=True)
class CacheGeometry:
    """One layer's cache tensor is [batch, kv_heads, time, head_dim]; `layers` of them for keys and values."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config) -> "CacheGeometry":
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        return cls(text.num_hidden_layers, getattr(text, "num_key_value_heads", None) or heads, head_dim,
                   text.vocab_size)


def load_for_export(model_dir: HfModelDir, job, attention: str):
    """The source model, float32 and in eval mode, with `attention` ("sdpa" or "eager") kernels."""
    from fwconv.models.hf import load_causal_lm

    with job.stage("load:transformers") as record:
        try:
            return load_causal_lm(model_dir, trust_remote_code=job.options.trust_remote_code, attention=attention)
        except Exception as exc:
            record.detail = first_line(exc)
            raise


def sliding_window(config) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "sliding_window", None)


def check_full_attention(config, cache_length: int) -> None:
    """A static cache here is full attention over `cache_length` positions: a model whose sliding
    window is shorter would attend further than it was trained to."""
    window = sliding_window(config)
    if window and window < cache_length:
        raise ConversionError("export", f"the model attends through a sliding window of {window} positions, "
                                        f"shorter than the cache of {cache_length}",
                              hint=f"use --cache-length {window} or less")


def common_contract(model_dir: HfModelDir, cache_length: int, tokenizer: str | None) -> dict:
    """The fields of the generative contract that do not depend on the runtime."""
    return {"task": "text_generation", "model_type": model_dir.model_type, "architectures": model_dir.architectures,
            "cache_length": cache_length, "tokens": model_dir.token_ids(), "context_length": model_dir.context_length,
            "tokenizer": {"file": os.path.basename(tokenizer) if tokenizer else None,
                          "sha256": sha256_of(tokenizer) if tokenizer else None, "bundled": False}}


def _not_a_graph_edge(artifact, job, out: str):
    raise ConversionError("export", "a language model directory is converted by convert/generative.py, not along a "
                                    "route of graph edges")


def generative_edge(target: str, tools: tuple[str, ...], tool: str):
    """The planner's and the gate cache key's view of a model-directory export to `target`."""
    from fwconv.convert.edges import Edge

    return Edge("hf", target, _not_a_graph_edge, tools, tool=tool)
