"""What a LiteRT-LM bundle adds to the model: its tokenizer, checked against the source's, and the
bundle run in LiteRT-LM itself (greedy sampler), its text checked against the source's tokens."""

from __future__ import annotations

from typing import Callable

PARITY_STRINGS = ("", " ", "hello world", "  two  spaces, trailing  ", "tabs\tand\nnew lines\r\n",
                  "ünïcödé — 日本語 🙂", "The quick brown fox: 123 + 4.5 = ?", "a" * 50)


def tokenizer_parity(source_tokenizer, encode: Callable[[str], list[int]], strings=PARITY_STRINGS) -> dict:
    """The bundle's ids for each string against the source tokenizer's, with or without its special
    tokens (a runtime may add BOS itself); the first string that differs is named."""
    mismatch, modes = None, set()
    for text in strings:
        got = list(encode(text))
        plain = source_tokenizer(text, add_special_tokens=False)["input_ids"]
        special = source_tokenizer(text)["input_ids"]
        if got == special:
            modes.add("with special tokens")
        elif got == plain:
            modes.add("without special tokens")
        else:
            mismatch = f"{text!r}: bundle {got[:12]}, source {special[:12]}"
            break
    status = "identical" if mismatch is None else "differs"
    return {"status": status, "checked": len(strings), "mismatch": mismatch, "matched": sorted(modes)}


def chat_template_parity(source_tokenizer, bundled_json_config: dict | None) -> dict | None:
    """The chat template the source renders against the bundle's (None where the source has none)."""
    template = getattr(source_tokenizer, "chat_template", None)
    if not template:
        return None
    bundled = (bundled_json_config or {}).get("chat_template")
    return {"status": "identical" if bundled == template else "differs"}


def run_litert_lm(bundle: str, source, source_tokenizer, prompts: list[str], steps: int, eos: set[int]) -> dict:
    """Each prompt through LiteRT-LM (CPU, top-k 1), its text against the source's greedy tokens
    on the same ids (detokenized by the bundle's own tokenizer), and the bundle's tokenizer."""
    from fwconv.errors import require

    litert_lm = require("litert_lm", "llm")
    try:
        engine = litert_lm.Engine(bundle, backend=litert_lm.Backend.CPU(), cache_dir=":nocache")
    except RuntimeError as exc:
        return {"runtime": "litert-lm", "error": f"LiteRT-LM cannot load the bundle: {exc}", "prompts": [],
                "same_text": False, "tokenizer": None}
    try:
        results = [_generate(litert_lm, engine, source, text, steps, eos) for text in prompts]
        return {"runtime": "litert-lm", "prompts": results, "same_text": all(r["same_text"] for r in results),
                "tokenizer": tokenizer_parity(source_tokenizer, engine.tokenize)}
    except RuntimeError as exc:  # the runtime's own failure (its log names the cause on stderr)
        return {"runtime": "litert-lm", "error": f"LiteRT-LM failed to run the bundle: {exc}", "prompts": [],
                "same_text": False, "tokenizer": tokenizer_parity(source_tokenizer, engine.tokenize)}
    finally:
        engine.close()


def _generate(litert_lm, engine, source, text: str, steps: int, eos: set[int]) -> dict:
    from fwconv.validators.generative.verdict import greedy

    ids = ([engine.bos_token_id] if engine.bos_token_id is not None else []) + engine.tokenize(text)
    tokens, _ = greedy(source, ids, steps)
    tokens = tokens[:next((i for i, t in enumerate(tokens) if t in eos), len(tokens))]
    session = engine.create_session(apply_prompt_template=False, max_output_tokens=steps,
                                    sampler_config=litert_lm.SamplerConfig(top_k=1, temperature=0.0, seed=0))
    try:
        session.run_prefill([text])
        got = session.run_decode().texts[0]
    finally:
        session.close()
    want = engine.detokenize(tokens)
    return {"prompt": text, "same_text": got == want, "litert_lm": got[:200], "source": want[:200]}
