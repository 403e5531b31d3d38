"""Hugging Face causal LM directory -> an ExecuTorch `.pte` generator with a KV cache.

The convention ExecuTorch's LLM runner consumes: one method `forward(tokens [1, T] int64,
input_pos [T] int64) -> logits [1, T, vocab]`, the cache as mutable buffers inside the program
(written at `input_pos` by index_copy, so a prefill of T tokens and a decode of one are the same
method; T is dynamic up to the cache length), and the constant methods the runner reads
(get_max_seq_len, get_max_context_len, get_vocab_size, get_bos_id, get_eos_ids, use_kv_cache,
enable_dynamic_shape, get_n_layers). Why not transformers' own exportable module: in
transformers 5.x its StaticCache counts positions in a plain tensor (`cumulative_length`) that
torch.export lifts as a constant and then sees mutated, and lowering fails; here the cache
position comes from the `input_pos` input and every written tensor is a registered buffer.
"""

from __future__ import annotations

import json

from fwconv.convert.edges.hf_export import CacheGeometry, generative_edge, check_full_attention, common_contract, load_for_export
from fwconv.convert.job import Artifact, Job
from fwconv.errors import ConversionError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.models.executorch import IO_METHOD
from fwconv.models.hf import HfModelDir
from fwconv.specs import TensorSpec

TOOLS = ("executorch", "torch", "transformers", "torchao")
EXAMPLE_TOKENS = 4  # the export's example prefill; T is dynamic in 1..cache_length-1


def static_cache_module(model, cache_length: int):
    """`model` wrapped as forward(tokens, input_pos) -> logits over a static cache held in buffers."""
    torch = require("torch", "llm")
    from transformers.cache_utils import Cache, StaticLayer

    class PositionedLayer(StaticLayer):
        """A static layer written at the positions the caller gives (not an internal counter)."""

        positions = None

        def update(self, key_states, value_states, *args, **kwargs):
            self.keys.index_copy_(2, self.positions, key_states)
            self.values.index_copy_(2, self.positions, value_states)
            return self.keys, self.values

        def get_seq_length(self):
            return self.positions[0]  # the query offset the causal mask starts from

    class StaticCacheLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            shape = CacheGeometry.of(model.config)
            self.cache = Cache(layers=[PositionedLayer(cache_length) for _ in range(shape.layers)])
            empty = torch.zeros(1, shape.kv_heads, 1, shape.head_dim)
            for i, layer in enumerate(self.cache.layers):
                layer.lazy_initialization(empty, empty)
                self.register_buffer(f"k_cache_{i}", layer.keys, persistent=False)
                self.register_buffer(f"v_cache_{i}", layer.values, persistent=False)

        def forward(self, tokens, input_pos):
            for i, layer in enumerate(self.cache.layers):  # the buffers as torch.export sees them
                layer.positions = input_pos
                layer.keys, layer.values = getattr(self, f"k_cache_{i}"), getattr(self, f"v_cache_{i}")
            out = self.model(input_ids=tokens, position_ids=input_pos.unsqueeze(0), past_key_values=self.cache,
                             use_cache=True)
            return out.logits

    return StaticCacheLM().eval()


QUANTIZATION = "int8 weights per output channel, int8 activations quantized per token at run time (torchao " \
               "Int8DynamicActivationIntxWeightConfig, XNNPACK's dynamically quantized kernels)"


def _quantize_int8(model, job: Job) -> None:
    """torchao's 8da8w in place: the Linear layers' weights int8 per channel, activations at run time."""
    torch = require("torch", "llm")
    quantization = require("torchao.quantization", "executorch")
    granularity = require("torchao.quantization.granularity", "executorch")
    with job.stage("quantize:torchao") as record:
        try:
            quantization.quantize_(model, quantization.Int8DynamicActivationIntxWeightConfig(
                weight_dtype=torch.int8, weight_granularity=granularity.PerAxis(0)))
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("quantize", f"torchao int8 quantization failed: {first_line(exc)}") from exc


def runner_metadata(model_dir: HfModelDir, geometry: CacheGeometry, cache_length: int) -> dict:
    """The constant methods ExecuTorch's LLM runner reads (and fwconv's own IO names)."""
    tokens = model_dir.token_ids()
    eos = tokens.get("eos")
    meta = {"get_max_seq_len": cache_length, "get_max_context_len": cache_length, "get_vocab_size": geometry.vocab,
            "use_kv_cache": True, "use_sdpa_with_kv_cache": False, "enable_dynamic_shape": True,
            "get_n_layers": geometry.layers,
            IO_METHOD: json.dumps({"inputs": ["tokens", "input_pos"], "outputs": ["logits"],
                                   "dynamic": {"tokens": [1], "input_pos": [0]}})}
    if isinstance(tokens.get("bos"), int):
        meta["get_bos_id"] = tokens["bos"]
    eos_ids = [eos] if isinstance(eos, int) else [e for e in eos or [] if isinstance(e, int)]
    if eos_ids:
        meta["get_eos_ids"] = eos_ids
    return meta


def export_pte(model_dir: HfModelDir, plan, job: Job, out: str) -> Artifact:
    """torch.export of the static-cache module, lowered for XNNPACK (or portable), written to `out`."""
    from fwconv.convert.edges.torch_to_pte import delegation, emit, lower

    torch = require("torch", "llm")
    model = load_for_export(model_dir, job, "sdpa")
    check_full_attention(model.config, plan.cache_length)
    if plan.quantize == "dynamic":
        _quantize_int8(model, job)
    geometry = CacheGeometry.of(model.config)
    module = static_cache_module(model, plan.cache_length)
    example = min(EXAMPLE_TOKENS, plan.cache_length - 1)
    args = (torch.zeros(1, example, dtype=torch.long), torch.arange(example))
    seq = torch.export.Dim("tokens", min=1, max=plan.cache_length - 1)
    with job.stage("export:torch.export") as record:
        try:
            with torch.no_grad():
                exported = torch.export.export(module, args, dynamic_shapes=({1: seq}, {0: seq}), strict=False)
        except Exception as exc:
            record.detail = first_line(exc)
            raise ConversionError("export", f"torch.export of the static-cache generator failed on "
                                            f"{model_dir.model_type}: {first_line(exc)}") from exc
    backend = plan.backend or "xnnpack"
    metadata = runner_metadata(model_dir, geometry, plan.cache_length)
    program = lower(exported, backend, metadata, job)
    ops = delegation(program, backend)
    emit(program, out, job)
    contract = common_contract(model_dir, plan.cache_length, model_dir.tokenizer)
    contract.update({"runtime": "executorch", "method": "forward(tokens [1, T] int64, input_pos [T] int64) -> "
                     "logits [1, T, vocab]", "cache": "mutable buffers inside the program (k_cache_i, v_cache_i: "
                     f"[1, {geometry.kv_heads}, {plan.cache_length}, {geometry.head_dim}])",
                     "layers": geometry.layers, "backend": backend, "delegation": ops,
                     "quantization": QUANTIZATION if plan.quantize else "none (float32)",
                     "runner_metadata": {k: v for k, v in metadata.items() if k != IO_METHOD}})
    specs = [TensorSpec("tokens", [1, None], "int64"), TensorSpec("input_pos", [None], "int64")]
    return Artifact(out, "pte", specs, [TensorSpec("logits", [1, None, geometry.vocab], "float32")],
                    tools=tool_versions(*TOOLS), extra={"generative": contract})


EDGES = [generative_edge("pte", TOOLS, "torch.export + ExecuTorch (static KV cache)")]
