"""The generative validator: a language model artifact against its source, token by token.

`validate_generative(source_dir, artifact, ...)` drives the source (transformers, eager) and the
artifact (a generative `.tflite` in LiteRT; a `.litertlm` through both the LiteRT interpreter
and LiteRT-LM itself) with the same token ids, and returns a GenerativeReport (verdict.py).
"""

from __future__ import annotations

import contextlib
import dataclasses

from fwconv.errors import InputError

DEFAULT_PROMPTS = ("the quick brown fox jumps over the lazy dog and runs into the woods",
                   "Once upon a time, in a small village by the sea, there lived an old",
                   "def fibonacci(n):\n    if n < 2:\n        return n\n    return")


@dataclasses.dataclass
class GenerativeSettings:
    precision: str = "fp32"
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    steps: int = 32
    latency: bool = True
    threads: int | None = None
    trust_remote_code: bool = False
    trust_pickle: bool = False

    @classmethod
    def from_options(cls, options, precision: str | None = None) -> "GenerativeSettings":
        return cls(precision or options.precision or options.artifact_precision, tuple(options.prompt) or DEFAULT_PROMPTS,
                   options.decode_steps, options.latency, options.threads, options.trust_remote_code,
                   options.trust_pickle)


def check_prompts(source_dir: str, settings: GenerativeSettings, cache_length: int) -> None:
    """The prompts and decode steps fit a cache of `cache_length` (before an export spends its time)."""
    from fwconv.models.hf import load_tokenizer

    tokenizer = load_tokenizer(source_dir, trust_remote_code=settings.trust_remote_code)
    check_room([tokenizer(p)["input_ids"] for p in settings.prompts], settings.steps, cache_length)


def validate_generative(source_dir: str, artifact: str, settings: GenerativeSettings, *, contract: dict | None = None):
    """The report on `artifact` (.tflite, .litertlm, .pte or ONNX) against the model directory `source_dir`."""
    from fwconv.models.hf import load_causal_lm, load_tokenizer, read_hf_dir
    from fwconv.models.litertlm import bundled_tflite, is_litertlm
    from fwconv.validators.generative.runners import LiteRTGenerator, TorchGenerator

    model_dir = read_hf_dir(source_dir, trust_pickle=settings.trust_pickle)
    tokenizer = load_tokenizer(source_dir, trust_remote_code=settings.trust_remote_code)
    source = TorchGenerator(load_causal_lm(model_dir, trust_remote_code=settings.trust_remote_code))
    kind = artifact_kind(artifact)
    if kind != "litert":
        candidate = open_candidate(artifact, settings.threads, kind)
        room = candidate.cache_length or model_dir.context_length  # a static cache, else the model's context
        report, prompts = _judge(source, candidate, tokenizer, settings, room)
        if kind == "onnx":
            _check_genai(report, artifact, source, prompts, settings.steps)
        else:
            report.notes.append("a .pte generator carries no tokenizer (the app ships the source's, sha256 in the "
                                "manifest) and keeps its KV cache inside the program (not compared)")
        _measure(report, settings, source_dir, (candidate.name, artifact), prompts[0])
        return report
    bundle = artifact if is_litertlm(artifact) else None
    with (bundled_tflite(artifact) if bundle else contextlib.nullcontext(artifact)) as tflite:
        candidate = LiteRTGenerator(tflite, layout=_layout(contract), threads=settings.threads)
        report, prompts = _judge(source, candidate, tokenizer, settings, candidate.cache_length)
        if not report.parity_passed:  # where it departs: layer by layer on the prefill graph
            from fwconv.validators.generative.layers import first_diverging_layer

            bound = report.thresholds.max_cache_error or 0.05
            report.layers = first_diverging_layer(source.model, candidate, prompts[0], bound)
        if bundle:
            _check_bundle(report, bundle, source, tokenizer, settings)
        else:
            report.notes.append("a .tflite carries no tokenizer: the app ships the source's (sha256 in the manifest)")
        _measure(report, settings, source_dir, ("litert", tflite), prompts[0])
    return report


def _check_genai(report, artifact: str, source, prompts: list[list[int]], steps: int) -> None:
    """The ONNX folder in onnxruntime-genai, where it is installed and fwconv's config is beside the file."""
    from fwconv.validators.generative.genai import run_genai

    report.genai = run_genai(artifact, source, prompts, steps)
    if report.genai is None:
        report.notes.append("not run in onnxruntime-genai (not installed, or no genai_config.json beside the file "
                            "names it); ONNX Runtime ran the decoder")


def artifact_kind(path: str) -> str:
    """Which generator drives `path`: "pte", "onnx" or "litert" (.tflite and .litertlm)."""
    from fwconv.models.formats import detect_format

    fmt = detect_format(path)
    return {"pte": "pte", "onnx": "onnx"}.get(fmt, "litert")


def open_candidate(path: str, threads: int | None = None, kind: str | None = None):
    """The .pte or ONNX generator for `path` (`kind` when already known)."""
    from fwconv.validators.generative.runners import ExecuTorchGenerator, OnnxGenerator

    kind = kind or artifact_kind(path)
    return ExecuTorchGenerator(path) if kind == "pte" else OnnxGenerator(path, threads=threads)


def _judge(source, candidate, tokenizer, settings: GenerativeSettings, room: int | None):
    """The token-level verdict on the settings' prompts (each checked to fit `room` positions)."""
    from fwconv.validators.generative.verdict import FIXED_TEXT, judge

    prompts = [tokenizer(p)["input_ids"] for p in settings.prompts]
    room = room or 1 << 20
    check_room(prompts, settings.steps, room)
    text = tokenizer(FIXED_TEXT)["input_ids"][: room - 1]
    return judge(source, candidate, prompts, settings.steps, settings.precision, text), prompts


def _measure(report, settings: GenerativeSettings, source_dir: str, side: tuple[str, str], prompt: list[int]) -> None:
    """Speed of both sides, each in its own process (where latency was asked for)."""
    if not settings.latency:
        return
    from fwconv.validators.generative.speed import measure

    report.speed = measure({"pytorch": ("pytorch", source_dir), side[0]: side}, prompt, settings.steps,
                           threads=settings.threads, trust=(settings.trust_remote_code, settings.trust_pickle))


def _layout(contract: dict | None):
    from fwconv.validators.generative.runners import CacheLayout

    cache, default = (contract or {}).get("cache_layout") or {}, CacheLayout()
    return CacheLayout(cache.get("k", {}).get("time_dim", default.k_time_dim),
                       cache.get("v", {}).get("time_dim", default.v_time_dim))


def check_room(prompts: list[list[int]], steps: int, cache_length: int) -> None:
    """Every prompt has tokens, and the longest one plus the decode steps fits the cache."""
    if not all(prompts):
        raise InputError("a prompt tokenizes to nothing: give text (--prompt)")
    longest = max(len(p) for p in prompts)
    if longest + steps > cache_length:
        raise InputError(f"a prompt of {longest} tokens plus {steps} decode steps does not fit the artifact's cache "
                         f"of {cache_length}", hint="use shorter --prompt text or fewer --decode-steps")


def _check_bundle(report, bundle: str, source, tokenizer, settings: GenerativeSettings) -> None:
    """LiteRT-LM's own run of the bundle (where installed) and the bundle's tokenizer."""
    import importlib.util

    from fwconv.validators.generative.bundle import chat_template_parity, run_litert_lm

    if importlib.util.find_spec("litert_lm") is None:
        report.tokenizer = _bundled_tokenizer_parity(bundle, tokenizer)
        report.notes.append("LiteRT-LM (pip litert-lm-api) is not installed: the bundle's tokenizer was checked with "
                            "`tokenizers`, its generation only through the LiteRT interpreter")
        return
    run = run_litert_lm(bundle, source, tokenizer, list(settings.prompts), settings.steps)
    report.tokenizer = run.pop("tokenizer", None) or _bundled_tokenizer_parity(bundle, tokenizer)
    report.chat_template = chat_template_parity(tokenizer, bundle)
    report.litert_lm = run


def _bundled_tokenizer_parity(bundle: str, tokenizer) -> dict | None:
    """The bundle's tokenizer.json read with `tokenizers` (where LiteRT-LM cannot say)."""
    import tokenizers

    from fwconv.models.litertlm import bundled_tokenizer_json
    from fwconv.validators.generative.bundle import tokenizer_parity

    text = bundled_tokenizer_json(bundle)
    if text is None:
        return None
    bundled = tokenizers.Tokenizer.from_str(text)
    return tokenizer_parity(tokenizer, lambda s: bundled.encode(s).ids)
