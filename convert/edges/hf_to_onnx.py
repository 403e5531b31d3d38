"""Hugging Face causal LM directory -> an ONNX decoder with past key/values.

The naming the ONNX ecosystem consumes (Optimum, transformers.js, onnxruntime-genai): inputs
`input_ids`, `attention_mask`, `position_ids`, `past_key_values.{i}.key|value`
[batch, kv_heads, past_sequence_length, head_dim]; outputs `logits`, `present.{i}.key|value`
[batch, kv_heads, total_sequence_length, head_dim]; batch and lengths dynamic, so one graph does
the prefill (past length 0) and each decode step. Exported by torch.onnx's TorchScript exporter
(what Optimum uses for decoders): the dynamo exporter wants the past length >= 2 at export time
and does not accept `dynamic_axes` for a cache that starts empty. Eager attention kernels are
traced (explicit MatMul/Softmax, no fused SDPA that older runtimes lack).
"""

from __future__ import annotations

import json
import os
import shutil

from fwconv.convert.edges.hf_export import CacheGeometry, generative_edge, common_contract, load_for_export
from fwconv.convert.job import Artifact, Job
from fwconv.errors import ConversionError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.models.hf import GENAI_CONFIG, HfModelDir
from fwconv.quiet import captured_output, tail
from fwconv.specs import TensorSpec

TOOLS = ("torch", "transformers", "onnx", "onnxruntime", "onnxruntime-genai")
TOKENIZER_SIDECARS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
OPSET = 17
EXAMPLE_PAST, EXAMPLE_TOKENS = 3, 4


def io_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    return ["input_ids", "attention_mask", "position_ids", *past], ["logits", *present]


def dynamic_axes(layers: int) -> dict[str, dict[int, str]]:
    names_in, names_out = io_names(layers)
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"}}
    axes.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in names_in[3:]})
    axes.update({n: {0: "batch_size", 2: "total_sequence_length"} for n in names_out[1:]})
    return axes


def past_key_values_module(model):
    """`model` as forward(input_ids, attention_mask, position_ids, *past) -> (logits, *present)."""
    torch = require("torch", "llm")
    from transformers.cache_utils import DynamicCache

    config, layers = model.config, CacheGeometry.of(model.config).layers

    class PastKeyValuesLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(config=config)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=cache, use_cache=True)
            present = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *present)

    return PastKeyValuesLM().eval()


def sidecars(model_dir: HfModelDir) -> list[str]:
    """The files written beside the .onnx so onnxruntime-genai can open its folder: its config and
    the source's tokenizer files."""
    return [GENAI_CONFIG] + [n for n in TOKENIZER_SIDECARS if os.path.isfile(os.path.join(model_dir.path, n))]


def genai_config(model_dir: HfModelDir, config, geometry: CacheGeometry, filename: str) -> dict:
    """onnxruntime-genai's genai_config.json for the exported decoder (greedy search by default)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    tokens = model_dir.token_ids()
    context = model_dir.context_length or 2048
    inputs = {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
              "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"}
    outputs = {"logits": "logits", "present_key_names": "present.%d.key", "present_value_names": "present.%d.value"}
    decoder = {"session_options": {"log_id": "onnxruntime-genai", "provider_options": []}, "filename": filename,
               "head_size": geometry.head_dim, "hidden_size": text.hidden_size,
               "num_attention_heads": text.num_attention_heads, "num_hidden_layers": geometry.layers,
               "num_key_value_heads": geometry.kv_heads, "inputs": inputs, "outputs": outputs}
    model = {"type": model_dir.model_type, "vocab_size": geometry.vocab, "context_length": context,
             "decoder": decoder, **{f"{k}_token_id": v for k, v in tokens.items() if v is not None}}
    search = {"do_sample": False, "num_beams": 1, "max_length": context, "min_length": 0, "top_k": 1, "top_p": 1.0,
              "temperature": 1.0, "repetition_penalty": 1.0, "past_present_share_buffer": False}
    return {"model": model, "search": search}


def _write_sidecars(model_dir: HfModelDir, config, geometry: CacheGeometry, out: str) -> None:
    folder = os.path.dirname(out)
    with open(os.path.join(folder, GENAI_CONFIG), "w") as f:
        json.dump(genai_config(model_dir, config, geometry, os.path.basename(out)), f, indent=2)
    for name in sidecars(model_dir)[1:]:
        shutil.copyfile(os.path.join(model_dir.path, name), os.path.join(folder, name))


QUANTIZATION = "int8 weights of every MatMul in blocks of 32, symmetric, activations float (MatMulNBits, " \
               "onnxruntime.quantization.MatMulNBitsQuantizer: what onnxruntime-genai and transformers.js run)"


def _quantize_int8(path: str, job: Job) -> None:
    """Weight-only int8 in place (MatMulNBits, bits 8). ONNX Runtime's quantize_dynamic (per-tensor
    uint8 activations) was tried first: top-1 agreement 0.60 on a random-init Llama, refused."""
    onnx = require("onnx", "onnx")
    nbits = require("onnxruntime.quantization.matmul_nbits_quantizer", "onnx")
    with job.stage("quantize:onnxruntime") as record, captured_output() as cap:
        try:
            config = nbits.DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=8)
            quantizer = nbits.MatMulNBitsQuantizer(onnx.load(path), bits=8, algo_config=config)
            quantizer.process()
            quantizer.model.save_model_to_file(path + ".int8", use_external_data_format=False)
        except Exception as exc:
            record.detail = tail(cap.text, 3)
            raise ConversionError("quantize", f"onnxruntime's int8 weight quantization failed: {first_line(exc)}") \
                from exc
    os.replace(path + ".int8", path)


def export_onnx(model_dir: HfModelDir, plan, job: Job, out: str) -> Artifact:
    """The decoder with past key/values as ONNX at `out`, checked by onnx's checker, and beside it
    what onnxruntime-genai needs to open the folder (sidecars())."""
    torch = require("torch", "llm")
    onnx = require("onnx", "onnx")
    model = load_for_export(model_dir, job, "eager")
    geometry = CacheGeometry.of(model.config)
    names_in, names_out = io_names(geometry.layers)
    past = [torch.zeros(1, geometry.kv_heads, EXAMPLE_PAST, geometry.head_dim) for _ in names_in[3:]]
    args = (torch.ones(1, EXAMPLE_TOKENS, dtype=torch.long), torch.ones(1, EXAMPLE_PAST + EXAMPLE_TOKENS,
            dtype=torch.long), torch.arange(EXAMPLE_PAST, EXAMPLE_PAST + EXAMPLE_TOKENS).unsqueeze(0), *past)
    with job.stage("export:torch.onnx") as record, captured_output() as cap:
        try:
            with torch.no_grad():
                torch.onnx.export(past_key_values_module(model), args, out, input_names=names_in,
                                  output_names=names_out, dynamic_axes=dynamic_axes(geometry.layers),
                                  opset_version=OPSET, dynamo=False)
            onnx.checker.check_model(out)
        except Exception as exc:
            record.detail = tail(cap.text, 3)
            raise ConversionError("export", f"torch.onnx could not export the decoder of {model_dir.model_type}: "
                                            f"{first_line(exc)}") from exc
    if plan.quantize == "dynamic":
        _quantize_int8(out, job)
    _write_sidecars(model_dir, model.config, geometry, out)
    contract = common_contract(model_dir, plan.cache_length, model_dir.tokenizer)
    contract.update({"runtime": "onnxruntime", "sidecars": sidecars(model_dir), "convention": "optimum/transformers.js decoder with past",
                     "inputs": names_in[:3] + ["past_key_values.{i}.key", "past_key_values.{i}.value"],
                     "outputs": ["logits", "present.{i}.key", "present.{i}.value"], "layers": geometry.layers,
                     "cache": f"[batch, {geometry.kv_heads}, time, {geometry.head_dim}] float32, passed in and out",
                     "opset": OPSET, "cache_length": None,
                     "quantization": QUANTIZATION if plan.quantize else "none (float32)", "context_length": model_dir.context_length})
    kv = lambda n: TensorSpec(n, [None, geometry.kv_heads, None, geometry.head_dim], "float32")
    specs_in = [TensorSpec(n, [None, None], "int64") for n in names_in[:3]] + [kv(n) for n in names_in[3:]]
    specs_out = [TensorSpec("logits", [None, None, geometry.vocab], "float32")] + [kv(n) for n in names_out[1:]]
    return Artifact(out, "onnx", specs_in, specs_out, tools=tool_versions(*TOOLS), extra={"generative": contract})


EDGES = [generative_edge("onnx", TOOLS, "torch.onnx (decoder with past key/values)")]
