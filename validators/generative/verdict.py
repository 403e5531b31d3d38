"""The token-by-token verdict on a generative artifact against its source.

For each prompt: the source generates greedily (its tokens and logits at every step); the
artifact is then driven twice with its own cache: teacher-forced on the source's tokens (so one
flipped token cannot cascade, and every step compares the same context), and free-running
greedily (the tokens an app would produce). The prefill's KV cache is compared too, and a fixed
text's perplexity on both sides. A float artifact must match step by step and produce the same
tokens; a quantized one is judged by its distributions (top-1 agreement, mean KL, perplexity
ratio), thresholds tight enough that one weight scaled by 1.5 still fails (tests/test_llm_litert.py).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fwconv.validators.generative.metrics import StepMetrics, cache_error, compare_logits, first_departing_cache_layer, nll

FIXED_TEXT = ("the quick brown fox jumps over the lazy dog while the small cat sleeps near the warm fire "
              "and the old man reads a book about ships, stars and the sea")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Per-step bounds (float artifacts) and distribution bounds (every artifact)."""

    max_relative_error: float | None  # per step, |a - b| / max |source logit|; None: not judged per step
    min_cosine: float | None
    same_tokens: bool  # free-running greedy tokens must equal the source's
    min_top1_rate: float
    max_mean_kl: float
    max_perplexity_ratio: float
    max_cache_error: float | None

    @classmethod
    def for_precision(cls, precision: str) -> "Thresholds":
        if precision == "fp32":
            return cls(1e-4, 0.99999, True, 1.0, 1e-6, 1.001, 1e-4)
        if precision == "fp16":
            return cls(2e-2, 0.999, False, 0.95, 5e-3, 1.02, 2e-2)
        return cls(None, None, False, 0.85, 0.02, 1.05, None)


@dataclasses.dataclass
class PromptResult:
    prompt: list[int]
    source_tokens: list[int]
    artifact_tokens: list[int]
    steps: list[StepMetrics]
    cache: dict | None

    @property
    def first_divergent_token(self) -> int | None:
        return next((i for i, (a, b) in enumerate(zip(self.source_tokens, self.artifact_tokens)) if a != b), None)

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "source_tokens": self.source_tokens, "artifact_tokens": self.artifact_tokens,
                "first_divergent_token": self.first_divergent_token, "cache": self.cache,
                "steps": [s.to_dict() for s in self.steps]}


@dataclasses.dataclass
class GenerativeReport:
    """Every figure of the verdict, and what failed (empty: passed)."""

    precision: str
    thresholds: Thresholds
    prompts: list[PromptResult]
    perplexity: dict
    speed: dict | None = None
    tokenizer: dict | None = None
    litert_lm: dict | None = None  # the bundle run in LiteRT-LM itself (validators/generative/bundle.py)
    chat_template: dict | None = None
    genai: dict | None = None  # an ONNX generator run in onnxruntime-genai itself (validators/generative/genai.py)
    layers: dict | None = None  # on failure: each decoder layer's output on the prefill graph (layers.py)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def all_steps(self) -> list[StepMetrics]:
        return [s for p in self.prompts for s in p.steps]

    def summary(self) -> dict:
        steps = self.all_steps
        return {"steps": len(steps), "prompts": len(self.prompts),
                "worst_relative_error": max(s.relative_error for s in steps),
                "min_cosine": min(s.cosine for s in steps),
                "top1_rate": sum(s.top1 for s in steps) / len(steps),
                "top5_rate": sum(s.top5 for s in steps) / len(steps),
                "mean_kl": float(np.mean([s.kl for s in steps])), "max_kl": max(s.kl for s in steps),
                "same_tokens": all(p.first_divergent_token is None for p in self.prompts),
                "worst_cache_error": max((p.cache["relative_error"] for p in self.prompts if p.cache), default=None),
                "perplexity_ratio": self.perplexity["ratio"]}

    def failures(self) -> list[str]:
        t, s, found = self.thresholds, self.summary(), []
        found += self._step_failures()
        if t.same_tokens:
            for i, p in enumerate(self.prompts):
                if p.first_divergent_token is not None:
                    found.append(f"prompt {i}: greedy tokens differ from the source's at position {p.first_divergent_token}")
        if s["top1_rate"] < t.min_top1_rate:
            found.append(f"top-1 agreement {s['top1_rate']:.3f} < {t.min_top1_rate}")
        if s["mean_kl"] > t.max_mean_kl:
            found.append(f"mean KL {s['mean_kl']:.3g} > {t.max_mean_kl:g}")
        if not s["perplexity_ratio"] <= t.max_perplexity_ratio:
            found.append(f"perplexity ratio {s['perplexity_ratio']:.4f} > {t.max_perplexity_ratio}")
        if t.max_cache_error is not None and s["worst_cache_error"] is not None and s["worst_cache_error"] > t.max_cache_error:
            worst = max((p.cache for p in self.prompts if p.cache), key=lambda c: c["relative_error"])
            first = first_departing_cache_layer(worst, t.max_cache_error)
            found.append(f"prefill KV cache departs first at layer {first} (the error enters at or before that "
                         f"layer's K/V projections; worst {worst['layer']}: error/scale {worst['relative_error']:.3g} "
                         f"> {t.max_cache_error:g})")
        if self.tokenizer and self.tokenizer["status"] != "identical":
            found.append(f"the bundle's tokenizer differs from the source's: {self.tokenizer['mismatch']}")
        if self.chat_template and self.chat_template["status"] != "identical":
            found.append(self.chat_template["mismatch"])
        if self.litert_lm and self.litert_lm.get("error"):
            found.append(self.litert_lm["error"])
        elif t.same_tokens and self.litert_lm and not self.litert_lm["same_text"]:
            first = next(i for i, r in enumerate(self.litert_lm["prompts"]) if not r["same_text"])
            found.append(f"LiteRT-LM's greedy text differs from the source's (prompt {first})")
        if self.genai and self.genai.get("error"):
            found.append(self.genai["error"])
        elif t.same_tokens and self.genai and not self.genai["same_tokens"]:
            first = next(i for i, r in enumerate(self.genai["prompts"]) if not r["same_tokens"])
            found.append(f"onnxruntime-genai's greedy tokens differ from the source's (prompt {first})")
        return found

    def _step_failures(self) -> list[str]:
        t, found = self.thresholds, []
        if t.max_relative_error is None:
            return found
        for i, p in enumerate(self.prompts):
            bad = next((s for s in p.steps if s.relative_error > t.max_relative_error or s.cosine < t.min_cosine
                        or not s.top1), None)
            if bad is not None:
                found.append(f"prompt {i}: first failing decode step {bad.step} (error/scale {bad.relative_error:.3g}, "
                             f"cosine {bad.cosine:.6f}, top-1 {'same' if bad.top1 else 'differs'})")
        return found

    kind = "generative"
    latency_passed = True  # no latency budget applies to a generator (yet): its speed is reported

    @property
    def parity_passed(self) -> bool:
        return not self.failures()

    def failure_line(self, most: int = 3) -> str:
        """The first failures, for a one-line error (the report lists them all)."""
        found = self.failures()
        return "; ".join(found[:most]) + (f" (+{len(found) - most} more in the report)" if len(found) > most else "")

    def checks(self) -> list[tuple[str, str | None]]:
        """(check name, failure or None): one per prompt, then perplexity, tokenizer, LiteRT-LM."""
        failures = self.failures()
        named = lambda key: next((f for f in failures if key in f), None)
        found = [(f"prompt[{i}]", named(f"prompt {i}:")) for i in range(len(self.prompts))]
        found += [("distribution", named("top-1") or named("mean KL") or named("perplexity")),
                  ("kv_cache", named("KV cache"))]
        if self.tokenizer:
            found.append(("tokenizer", named("tokenizer")))
        if self.litert_lm:
            found.append(("litert_lm", named("LiteRT-LM")))
        return found

    def to_junit(self, suite: str = "fwconv.validate.generative") -> str:
        from xml.etree import ElementTree as ET

        from fwconv.validators.report import xml_text

        root = ET.Element("testsuites")
        cases = self.checks()
        ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                           failures=str(sum(1 for _, f in cases if f)), errors="0")
        for name, failure in cases:
            case = ET.SubElement(ts, "testcase", classname=suite, name=name)
            if failure:
                ET.SubElement(case, "failure", type="parity", message=xml_text(failure))
        return ET.tostring(root, encoding="unicode", xml_declaration=True)

    def to_markdown(self) -> str:
        icon = "✅" if self.parity_passed else "❌"
        return "\n".join([f"### {icon} fwconv generative validate: {self.status.replace('_', ' ')}", "", "```",
                          self.to_text(), "```", ""])

    def to_html(self) -> str:
        import html

        return (f"<!doctype html><meta charset=utf-8><title>fwconv generative report</title>"
                f"<pre>{html.escape(self.to_text())}</pre>")

    latency: dict = dataclasses.field(default_factory=dict)  # per-call latency does not apply; see `speed`

    @property
    def status(self) -> str:
        return "pass" if self.parity_passed else "parity_failed"

    def to_dict(self) -> dict:
        return {"kind": "generative", "status": self.status, "precision": self.precision,
                "thresholds": dataclasses.asdict(self.thresholds), "summary": self.summary(),
                "failures": self.failures(), "perplexity": self.perplexity, "speed": self.speed,
                "tokenizer": self.tokenizer, "chat_template": self.chat_template, "litert_lm": self.litert_lm,
                "genai": self.genai, "layers": self.layers, "notes": self.notes, "prompts": [p.to_dict() for p in self.prompts]}

    def to_text(self) -> str:
        s = self.summary()
        lines = [f"generative parity ({self.precision}): {'PASSED' if self.parity_passed else 'FAILED'} — "
                 f"{s['prompts']} prompts x {s['steps'] // max(s['prompts'], 1)} decode steps",
                 f"  per step: worst error/scale {s['worst_relative_error']:.3g}, min cosine {s['min_cosine']:.6f}, "
                 f"top-1 {s['top1_rate']:.3f}, top-5 {s['top5_rate']:.3f}, mean KL {s['mean_kl']:.3g}",
                 f"  greedy tokens: {'identical to the source' if s['same_tokens'] else self._divergence_line()}",
                 f"  prefill KV cache: worst error/scale {s['worst_cache_error']:.3g}" if s["worst_cache_error"] is not None
                 else "  prefill KV cache: not compared",
                 f"  perplexity on a fixed text: source {self.perplexity['source']:.3f}, artifact "
                 f"{self.perplexity['artifact']:.3f} (ratio {s['perplexity_ratio']:.4f})"]
        if self.tokenizer:
            lines.append(f"  tokenizer: {self.tokenizer['status']} ({self.tokenizer['checked']} strings"
                         + (f"; {self.tokenizer['mismatch']}" if self.tokenizer.get("mismatch") else "") + ")")
        if self.chat_template:
            lines.append(f"  chat template: {self.chat_template['status']}")
        if self.litert_lm and self.litert_lm.get("error"):
            lines.append(f"  LiteRT-LM: {self.litert_lm['error']}")
        elif self.litert_lm:
            same = sum(r["same_text"] for r in self.litert_lm["prompts"])
            lines.append(f"  LiteRT-LM (greedy): {same}/{len(self.litert_lm['prompts'])} prompts give the source's text")
        if self.genai and self.genai.get("error"):
            lines.append(f"  onnxruntime-genai: {self.genai['error']}")
        elif self.genai:
            same = sum(r["same_tokens"] for r in self.genai["prompts"])
            lines.append(f"  onnxruntime-genai (greedy): {same}/{len(self.genai['prompts'])} prompts give the source's "
                         "tokens")
        if self.speed:
            lines += [f"  speed: {line}" for line in speed_lines(self.speed)]
        if self.layers:
            first = self.layers["first_diverging_layer"]
            entry = next((e for e in self.layers["layers"] if e["layer"] == first), None)
            lines.append("  prefill graph, layer by layer: " + (
                f"first diverging: decoder layer {first} (error/scale {entry['error']:.3g} at its closest artifact "
                f"tensor {entry['artifact_tensor'][-80:]})" if entry is not None
                else "every decoder layer's output is matched; the error enters after the final norm"))
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  FAILED: {f}" for f in self.failures()]
        return "\n".join(lines)

    def _divergence_line(self) -> str:
        first = [(i, p.first_divergent_token) for i, p in enumerate(self.prompts) if p.first_divergent_token is not None]
        return "differ: " + ", ".join(f"prompt {i} at position {pos}" for i, pos in first)


def speed_lines(speed: dict) -> list[str]:
    return [f"{side}: time to first token {v['ttft_ms']:.2f} ms, prefill {v['prefill_tokens_per_s']:.0f} tok/s, "
            f"decode {v['decode_tokens_per_s']:.0f} tok/s (p50 {v['decode_p50_ms']:.3f} ms, p90 {v['decode_p90_ms']:.3f} ms)"
            + (f", peak RSS {v['peak_rss_mib']:.0f} MiB" if v.get("peak_rss_mib") else "")
            for side, v in speed.items()]


def greedy(generator, prompt: list[int], steps: int) -> tuple[list[int], list[np.ndarray]]:
    """`steps` greedy tokens and the logits each was picked from."""
    logits, tokens, seen = generator.start(prompt), [], []
    for i in range(steps):
        seen.append(logits)
        tokens.append(int(np.argmax(logits)))
        if i + 1 < steps:
            logits = generator.step(tokens[-1])
    return tokens, seen


def teacher_forced(generator, prompt: list[int], tokens: list[int]) -> list[np.ndarray]:
    """The artifact's logits at every step, fed the source's tokens."""
    out = [generator.start(prompt)]
    for token in tokens[:-1]:
        out.append(generator.step(token))
    return out


def perplexity(generator, text: list[int]) -> float:
    logits, total = generator.start(text[:2]), []
    for token in text[2:]:
        total.append(nll(logits, token))
        logits = generator.step(token)
    return float(math.exp(np.mean(total)))


def judge(source, artifact, prompts: list[list[int]], steps: int, precision: str, text: list[int]) -> GenerativeReport:
    """Run both generators over every prompt and the fixed text; the report holds the verdict."""
    results = []
    for prompt in prompts:
        src_tokens, src_logits = greedy(source, prompt, steps)
        cache = _prefill_cache(source, artifact, prompt)
        forced = teacher_forced(artifact, prompt, src_tokens)
        metrics = [compare_logits(i, a, b) for i, (a, b) in enumerate(zip(src_logits, forced))]
        art_tokens, _ = greedy(artifact, prompt, steps)
        results.append(PromptResult(prompt, src_tokens, art_tokens, metrics, cache))
    ppl_source, ppl_artifact = perplexity(source, text), perplexity(artifact, text)
    return GenerativeReport(precision, Thresholds.for_precision(precision), results,
                            {"source": ppl_source, "artifact": ppl_artifact, "ratio": ppl_artifact / ppl_source,
                             "tokens": len(text)})


def _prefill_cache(source, artifact, prompt: list[int]) -> dict | None:
    """The cache each side holds after the prompt (all but its last token, which decode writes)."""
    source.start(prompt)
    artifact.start(prompt)
    try:
        return cache_error(source.cache(len(prompt) - 1), artifact.cache(len(prompt) - 1))
    except (ValueError, AttributeError):  # a cache laid out otherwise: "not compared", not guessed
        return None
