"""Hugging Face causal LM directory -> generative LiteRT: litert-torch's `export_hf` (the real
tool), a `.tflite` with `prefill_N` / `decode` signatures and the KV cache passed in and out
(`kv_cache_{k,v}_{i}`: the convention LiteRT-LM and apps consume), or that model bundled with
its tokenizer as a `.litertlm` for LiteRT-LM. Float by default; a litert-torch recipe on request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from fwconv.convert.edges.hf_export import generative_edge
from fwconv.convert.job import Artifact, Job
from fwconv.errors import ConversionError, InputError, first_line, require
from fwconv.manifest import sha256_of, tool_versions
from fwconv.models.hf import HfModelDir, offline_environment
from fwconv.quiet import captured_output, tail
from fwconv.specs import TensorSpec

TOOLS = ("litert-torch", "transformers", "torch", "ai-edge-litert", "ai-edge-quantizer")
DEFAULT_PREFILL = 32
DEFAULT_CACHE = 128
K_TIME_DIM, V_TIME_DIM = 2, 3  # litert-torch's cache layout: k [1, heads, T, dim], v [1, heads, dim, T]
MASK = "additive float32 [1, 1, T, cache_length]: 0 where the cache position <= the query's, float32 min elsewhere"


@dataclasses.dataclass(frozen=True)
class GenerativePlan:
    """What the export is asked for, checked against the model before anything loads."""

    prefill_lengths: tuple[int, ...]
    cache_length: int
    recipe: str | None
    backend: str | None = None  # ExecuTorch's (xnnpack, portable)
    quantize: str | None = None  # "dynamic" for .pte / ONNX: int8 weights, activations quantized at run time

    @classmethod
    def from_options(cls, model_dir: HfModelDir, options, target: str = "tflite") -> "GenerativePlan":
        context = model_dir.context_length
        cache = options.cache_length or min(DEFAULT_CACHE, context or DEFAULT_CACHE)
        if context and cache > context:
            raise InputError(f"--cache-length {cache} is above the model's context ({context} positions)")
        prefill = options.prefill_length or (min(DEFAULT_PREFILL, cache // 2),)
        if max(prefill) >= cache:
            given = "--prefill-length" if options.prefill_length else "the default prefill length"
            raise InputError(f"{given} {max(prefill)} does not fit the cache of {cache} "
                             "(decode needs room after the prompt)", hint="give a smaller --prefill-length")
        if target in ("pte", "onnx"):
            return cls(tuple(prefill), cache, None, _backend(options, target), options.quantize)
        recipe = options.recipe or ("dynamic_wi8_afp32" if options.quantize == "dynamic" else None)
        if options.quantize not in (None, "dynamic"):
            raise InputError(f"--quantize {options.quantize} does not apply to a language model",
                             hint="use --quantize dynamic or --recipe NAME (litert-torch's recipes)")
        return cls(tuple(prefill), cache, recipe)


def _backend(options, target: str) -> str | None:
    """A .pte or ONNX generator is float32, or int8 with --quantize dynamic; a .pte picks ExecuTorch's backend."""
    if options.recipe or options.quantize not in (None, "dynamic"):
        given = f"--recipe {options.recipe}" if options.recipe else f"--quantize {options.quantize}"
        raise InputError(f"{given}: a language model goes to {target} in float32 or with --quantize dynamic "
                         "(int8 weights)", hint="litert-torch recipes apply to tflite/litertlm")
    if options.quantize and target == "pte" and options.backend == "portable":
        raise InputError("--quantize dynamic: the int8 .pte is lowered for XNNPACK (--backend xnnpack)")
    if target == "pte" and options.backend not in (None, "xnnpack", "portable"):
        raise InputError(f"--backend {options.backend}: a language model .pte is lowered for xnnpack or portable")
    return options.backend if target == "pte" else None


def check_recipe(recipe: str | None) -> None:
    if recipe is None:
        return
    recipes = require("ai_edge_quantizer.recipe", "llm")
    known = sorted(n for n in dir(recipes) if n.startswith(("dynamic_", "weight_only_", "static_")))
    if recipe not in known + ["dynamic_wi8_emb4_afp32"]:
        raise InputError(f"unknown recipe '{recipe}'", hint=f"litert-torch offers: {', '.join(known)}")


def export_litert(model_dir: HfModelDir, plan: GenerativePlan, job: Job, *, bundle: bool) -> dict[str, str]:
    """Run export_hf into the job's scratch folder; the paths it wrote (tflite, litertlm, tokenizer)."""
    check_recipe(plan.recipe)
    offline_environment()
    out = os.path.join(job.workdir, "export_hf")
    with job.stage("export:litert-torch") as record, captured_output() as cap:
        export = require("litert_torch.generative.export_hf.export", "llm")  # its import is part of the cost
        try:
            with _rms_norm_patch_while_exporting():
                export.export(model=model_dir.path, output_dir=out, prefill_lengths=list(plan.prefill_lengths),
                              cache_length=plan.cache_length, quantization_recipe=plan.recipe or "none",
                              keep_temporary_files=True, bundle_litert_lm=bundle, k_ts_idx=K_TIME_DIM,
                              v_ts_idx=V_TIME_DIM, trust_remote_code=job.options.trust_remote_code)
        except Exception as exc:
            record.detail = tail(cap.text, 3)
            raise ConversionError("export", f"litert-torch's export_hf failed on {model_dir.model_type}: "
                                            f"{first_line(exc)}", hint="run with --debug for its full log") from exc
        except SystemExit as exc:
            raise ConversionError("export", f"litert-torch's export_hf stopped (exit {exc.code}): "
                                            f"{tail(cap.text, 2) or 'no message'}") from None
    tflite = next((os.path.join(out, n) for n in ("model_quantized.tflite", "model.tflite")
                   if os.path.isfile(os.path.join(out, n))), None)
    if tflite is None:
        raise ConversionError("export", "litert-torch's export_hf wrote no model.tflite")
    paths = {"tflite": tflite, "tokenizer": os.path.join(out, "tokenizer.json")}
    if bundle:
        paths["litertlm"] = os.path.join(out, "model.litertlm")
    return paths


@contextlib.contextmanager
def _rms_norm_patch_while_exporting():
    """litert-torch's export_hf swaps transformers' RMSNorm for its own (HLFB-marked) one by
    replacing `transformers.integrations.use_kernel_forward_from_hub` when it is imported, for
    the rest of the process: a transformers model class imported later (a Python-API user's own
    Mixtral) got it too, and torch.jit.trace cannot trace it ("unsupported input type: Any").
    The swap is wanted while export_hf runs, so it is set for each export and undone after."""
    import transformers.integrations as integrations

    patches = require("litert_torch.generative.export_hf.core.patches", "llm")
    integrations.use_kernel_forward_from_hub = patches._use_kernel_forward_from_hub
    try:
        yield
    finally:
        integrations.use_kernel_forward_from_hub = patches.original_use_kernel_forward_from_hub


def artifact_for(paths: dict, target: str, model_dir: HfModelDir, plan: GenerativePlan) -> Artifact:
    """The Artifact (the file the target asked for) with the generative contract in `extra`."""
    from fwconv.models.tflite import signature_io

    signatures = signature_io(paths["tflite"])
    decode = signatures["decode"]
    spec = lambda d: TensorSpec(d["name"], d["shape"], d["dtype"])
    tokenizer = paths["tokenizer"] if os.path.isfile(paths["tokenizer"]) else model_dir.tokenizer
    contract = {
        "task": "text_generation", "model_type": model_dir.model_type, "architectures": model_dir.architectures,
        "signatures": signatures, "prefill_lengths": list(plan.prefill_lengths), "cache_length": plan.cache_length,
        "cache_layout": {"per_layer": ["kv_cache_k_{i}", "kv_cache_v_{i}"],
                         "k": {"time_dim": K_TIME_DIM, "shape": "[batch, kv_heads, time, head_dim]"},
                         "v": {"time_dim": V_TIME_DIM, "shape": "[batch, kv_heads, head_dim, time]"},
                         "layers": sum(1 for d in decode["inputs"] if d["name"].startswith("kv_cache_k_"))},
        "mask": MASK, "prefill_returns_logits": any(d["name"] == "logits" for n, s in signatures.items()
                                                    if n.startswith("prefill") for d in s["outputs"]),
        "tokens": model_dir.token_ids(), "context_length": model_dir.context_length,
        "tokenizer": {"file": os.path.basename(tokenizer) if tokenizer else None,
                      "sha256": sha256_of(tokenizer) if tokenizer else None,
                      "bundled": target == "litertlm"},
        "quantization_recipe": plan.recipe or "none (float32)",
    }
    return Artifact(paths[target], target, [spec(d) for d in decode["inputs"]], [spec(d) for d in decode["outputs"]],
                    tools=tool_versions(*TOOLS), extra={"generative": contract, "tflite_in_bundle": paths["tflite"]})


# Declared for the planner and the gate's cache key (the tools a conversion from a model directory
# runs on); convert/generative.py drives the export itself, with the prefill/decode contract.
EDGES = [generative_edge("tflite", TOOLS, "litert-torch export_hf"),
         generative_edge("litertlm", TOOLS + ("litert-lm-builder", "litert-lm-api"), "litert-torch export_hf")]
