"""Generators: a language model driven token by token, the same way in every runtime.

A generator `start(prompt)`s (returns the logits that pick the first new token) and then
`step(token)`s (appends one token at the next position, returns the next logits), keeping its
own KV cache; `cache()` returns what it holds per layer as (keys, values) arrays of shape
[kv_heads, time, head_dim], so caches from different runtimes compare directly.

- TorchGenerator: the source, a transformers causal LM with its own cache (eager).
- LiteRTGenerator: a litert-torch generative `.tflite` (`prefill_N` / `decode` signatures, the
  cache passed in and out as `kv_cache_{k,v}_{i}`, an additive float mask), driven as LiteRT-LM
  drives it: the prompt but its last token through the smallest prefill signature that holds it
  (chunked when longer), then `decode` one token at a time.
"""

from __future__ import annotations

import dataclasses
import re
import time

import numpy as np

from fwconv.errors import InputError, RunnerError, first_line, require

MASKED = float(np.finfo(np.float32).min)  # the additive mask's "do not attend"


@dataclasses.dataclass(frozen=True)
class CacheLayout:
    """Where time runs in the artifact's cache tensors (litert-torch: k [1, heads, T, dim], v [1, heads, dim, T])."""

    k_time_dim: int = 2
    v_time_dim: int = 3


class TimedGenerator:
    """start/step timed the same way for every runtime: a subclass gives `_start(prompt)` and
    `_step(token)`, each returning the logits that pick the next token."""

    prefill_seconds = last_step_seconds = 0.0

    def start(self, prompt: list[int]) -> np.ndarray:
        t0 = time.perf_counter()
        logits = self._start(prompt)
        self.prefill_seconds = time.perf_counter() - t0
        return logits

    def step(self, token: int) -> np.ndarray:
        t0 = time.perf_counter()
        logits = self._step(token)
        self.last_step_seconds = time.perf_counter() - t0
        return logits


class TorchGenerator(TimedGenerator):
    """The source model in PyTorch, greedy-ready; its cache is transformers' own."""

    name = "pytorch"

    def __init__(self, model):
        self.torch = require("torch", "llm")
        self.model = model
        self.past = None
        self.position = 0

    def _start(self, prompt: list[int]) -> np.ndarray:
        self.past, self.position = None, 0
        return self._forward(prompt)

    def _step(self, token: int) -> np.ndarray:
        return self._forward([token])

    def _forward(self, tokens: list[int]) -> np.ndarray:
        torch = self.torch
        ids = torch.tensor([tokens], dtype=torch.long)
        positions = torch.arange(self.position, self.position + len(tokens)).unsqueeze(0)
        with torch.no_grad():
            out = self.model(input_ids=ids, past_key_values=self.past, position_ids=positions, use_cache=True)
        self.past, self.position = out.past_key_values, self.position + len(tokens)
        return out.logits[0, -1].float().numpy()

    def cache(self, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
        layers = getattr(self.past, "layers", None)
        pairs = [(layer.keys, layer.values) for layer in layers] if layers is not None else list(self.past)
        return [(k[0, :, :length].float().numpy(), v[0, :, :length].float().numpy()) for k, v in pairs]


class LiteRTGenerator(TimedGenerator):
    """A litert-torch generative `.tflite` in the LiteRT interpreter, driven as an app would."""

    name = "litert"

    def __init__(self, path: str, *, layout: CacheLayout = CacheLayout(), threads: int | None = None):
        from fwconv.models.tflite import open_interpreter

        self.path = path
        self.interpreter = open_interpreter(path, threads)
        signatures = self.interpreter.get_signature_list()
        self.prefill = {int(m[1]): name for name in signatures if (m := re.fullmatch(r"prefill_(\d+)", name))}
        if "decode" not in signatures or not self.prefill:
            raise InputError(f"{path} is not a generative LiteRT model (signatures: {', '.join(signatures)})",
                             hint="it needs prefill_N and decode signatures (litert-torch's generative export)")
        self.runners = {name: self.interpreter.get_signature_runner(name) for name in signatures}
        decode = self.runners["decode"].get_input_details()
        self.cache_names = sorted(n for n in decode if n.startswith("kv_cache_"))
        self.layout = layout
        self.cache_length = int(decode["mask"]["shape"][-1])
        self.kv = {}
        self.position = 0

    def _start(self, prompt: list[int]) -> np.ndarray:
        if len(prompt) > self.cache_length:
            raise InputError(f"a prompt of {len(prompt)} tokens does not fit the cache of {self.cache_length}")
        self._empty_cache()
        self.position = 0
        self._prefill(prompt[:-1])
        return self._step(prompt[-1])

    def _empty_cache(self) -> None:
        details = self.runners["decode"].get_input_details()
        self.kv = {n: np.zeros(details[n]["shape"], details[n]["dtype"]) for n in self.cache_names}

    def _prefill(self, tokens: list[int]) -> None:
        longest = max(self.prefill)
        for begin in range(0, len(tokens), longest):
            chunk = tokens[begin:begin + longest]
            size = min(n for n in self.prefill if n >= len(chunk))
            padded = np.zeros((1, size), np.int32)
            padded[0, :len(chunk)] = chunk
            positions = np.arange(self.position, self.position + size, dtype=np.int32)
            self._run(self.prefill[size], padded, positions)
            self.position += len(chunk)  # padded slots are overwritten by the tokens that follow

    def _step(self, token: int) -> np.ndarray:
        if self.position >= self.cache_length:
            raise RunnerError(f"litert: the cache of {self.cache_length} positions is full")
        out = self._run("decode", np.array([[token]], np.int32), np.array([self.position], np.int32))
        self.position += 1
        return np.asarray(out["logits"]).reshape(-1).astype(np.float32)

    def _feed(self, tokens: np.ndarray, positions: np.ndarray) -> dict:
        mask = np.where(np.arange(self.cache_length)[None, :] <= positions[:, None], 0.0, MASKED).astype(np.float32)
        return {"tokens": tokens, "input_pos": positions, "mask": mask[None, None], **self.kv}

    def prefill_feed(self, tokens: list[int], size: int) -> dict:
        """The feed of a first prefill call (empty cache) of `tokens` padded to `size`."""
        self._empty_cache()
        padded = np.zeros((1, size), np.int32)
        padded[0, :len(tokens)] = tokens
        return self._feed(padded, np.arange(size, dtype=np.int32))

    def _run(self, signature: str, tokens: np.ndarray, positions: np.ndarray) -> dict:
        feed = self._feed(tokens, positions)
        try:
            out = self.runners[signature](**feed)
        except Exception as exc:
            raise RunnerError(f"litert: {signature} failed: {first_line(exc)}") from exc
        self.kv = {n: out[n] for n in self.cache_names}
        return out

    def cache(self, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
        layers = sorted({int(n.rsplit("_", 1)[1]) for n in self.cache_names})
        pairs = []
        for i in layers:
            k = np.moveaxis(self.kv[f"kv_cache_k_{i}"][0], self.layout.k_time_dim - 1, 1)[:, :length]
            v = np.moveaxis(self.kv[f"kv_cache_v_{i}"][0], self.layout.v_time_dim - 1, 1)[:, :length]
            pairs.append((k.astype(np.float32), v.astype(np.float32)))
        return pairs


class ExecuTorchGenerator(TimedGenerator):
    """An ExecuTorch `.pte` generator (forward(tokens, input_pos), the cache in mutable buffers) in
    the ExecuTorch runtime, driven as its LLM runner drives it: the whole prompt in one call when
    the program takes dynamic lengths (else token by token), then one token per call."""

    name = "executorch"

    def __init__(self, path: str):
        from fwconv.models.executorch import execute, load_method, open_program, runner_constants

        self.path, self._execute = path, execute
        self.torch = require("torch", "executorch")
        program = open_program(path)
        constants = runner_constants(program, path)
        if not constants.get("use_kv_cache"):
            raise InputError(f"{path} is not an ExecuTorch generator with a KV cache (no use_kv_cache method)",
                             hint="convert the model directory with `fwconv convert DIR --to pte`")
        self.cache_length = int(constants.get("get_max_seq_len") or constants.get("get_max_context_len"))
        self.dynamic = bool(constants.get("enable_dynamic_shape"))
        self.method = load_method(program, "forward", path)
        self.position = 0

    def _start(self, prompt: list[int]) -> np.ndarray:
        self.position = 0  # the mask hides every slot past the position, so no reset is needed
        chunks = [prompt] if self.dynamic else [[t] for t in prompt]
        for chunk in chunks:
            logits = self._run(chunk)
        return logits

    def _step(self, token: int) -> np.ndarray:
        return self._run([token])

    def _run(self, tokens: list[int]) -> np.ndarray:
        torch = self.torch
        if self.position + len(tokens) > self.cache_length:
            raise InputError(f"executorch: {self.position + len(tokens)} positions do not fit the program's static "
                             f"cache of {self.cache_length}")
        positions = torch.arange(self.position, self.position + len(tokens), dtype=torch.long)
        (logits,) = self._execute(self.method, [torch.tensor([tokens], dtype=torch.long), positions], self.path)
        self.position += len(tokens)
        return logits.reshape(-1, logits.shape[-1])[-1].float().numpy()


class OnnxGenerator(TimedGenerator):
    """An ONNX decoder with past key/values in ONNX Runtime: the prompt in one call with an empty
    past, then one token per call, each call's `present.*` fed back as the next `past_key_values.*`."""

    name = "onnxruntime"

    def __init__(self, path: str, *, threads: int | None = None, device: str = "cpu"):
        from fwconv.validators.runners.onnxrt_runner import OnnxRuntimeRunner

        self.session = OnnxRuntimeRunner(path, device=device, threads=threads).activate().session
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = sorted((n for n in inputs if n.startswith("past_key_values.")), key=_layer_order)
        if "input_ids" not in inputs or not self.past_names:
            raise InputError(f"{path} is not an ONNX decoder with past key/values (inputs: {', '.join(inputs)})",
                             hint="convert the model directory with `fwconv convert DIR --to onnx`")
        self.shapes = {n: inputs[n].shape for n in self.past_names}
        self.cache_length = None  # the cache grows: the model's context bounds it
        self.position, self.past = 0, {}

    def _start(self, prompt: list[int]) -> np.ndarray:
        self.position = 0
        self.past = {n: np.zeros((1, s[1], 0, s[3]), np.float32) for n, s in self.shapes.items()}
        return self._run(prompt)

    def _step(self, token: int) -> np.ndarray:
        return self._run([token])

    def _run(self, tokens: list[int]) -> np.ndarray:
        total = self.position + len(tokens)
        feed = {"input_ids": np.array([tokens], np.int64), "attention_mask": np.ones((1, total), np.int64),
                "position_ids": np.arange(self.position, total, dtype=np.int64)[None], **self.past}
        try:
            logits, *present = self.session.run(None, feed)
        except Exception as exc:
            raise RunnerError(f"onnxruntime: the decoder failed: {first_line(exc)}") from exc
        names = [o.name for o in self.session.get_outputs()][1:]
        self.past = {n.replace("present.", "past_key_values.", 1): t for n, t in zip(names, present)}
        self.position = total
        return np.asarray(logits)[0, -1].astype(np.float32)

    def cache(self, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
        layers = sorted({_layer_order(n)[0] for n in self.past_names})
        return [(self.past[f"past_key_values.{i}.key"][0, :, :length], self.past[f"past_key_values.{i}.value"][0, :, :length])
                for i in layers]


def _layer_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return int(parts[1]), parts[2]
