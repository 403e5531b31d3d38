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


def chat_template_parity(source_tokenizer, bundle: str) -> dict | None:
    """The chat template the source renders with against the one the bundle carries (LiteRT-LM
    renders prompts with it); None where the source has none."""
    import io
    import os
    import tempfile

    template = getattr(source_tokenizer, "chat_template", None)
    if not template:
        return None
    from fwconv.errors import require

    peek = require("litert_lm_builder.litertlm_peek", "llm")
    with tempfile.TemporaryDirectory(prefix="fwconv-template-") as work:
        path = os.path.join(work, "template.jinja")
        peek.peek_litertlm_file(bundle, None, io.StringIO(), jinja_prompt_template_path=path)
        bundled = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    return {"status": "identical" if bundled == template else "differs",
            "mismatch": None if bundled == template else "the bundle's chat template is not the source's"}


def run_litert_lm(bundle: str, source, source_tokenizer, prompts: list[str], steps: int) -> dict:
    """Each prompt through LiteRT-LM (CPU, top-k 1) in its own process (its memory apart; a crash
    of the runtime is reported, not fatal), its text against the source's greedy tokens on the
    same ids (detokenized by the bundle's own tokenizer), and the bundle's tokenizer."""
    from fwconv.procs import spawn, stop
    from fwconv.quiet import DEBUG
    from fwconv.validators.generative.verdict import greedy

    process, parent = spawn(_litert_lm_child, bundle, prompts, steps, DEBUG["on"], name="fwconv-litert-lm")
    try:
        first = _receive(parent, process)
        if "error" in first:
            return {"runtime": "litert-lm", "error": first["error"], "prompts": [], "same_text": False, "tokenizer": None}
        parent.send([greedy(source, ids, steps)[0] for ids in first["prompt_ids"]])
        run = _receive(parent, process)
    except BaseException:  # Ctrl-C or a failure here: the child is stopped now, not waited for
        stop(process)
        raise
    finally:
        process.join(timeout=30)
        stop(process)
    encoded = dict(zip(PARITY_STRINGS, first["parity_ids"]))
    run["tokenizer"] = tokenizer_parity(source_tokenizer, lambda text: encoded[text])
    return run


def _receive(conn, process, timeout: float = 600.0) -> dict:
    if conn.poll(timeout):
        try:
            return conn.recv()
        except EOFError:
            pass
    process.join(timeout=5)
    return {"runtime": "litert-lm", "error": f"LiteRT-LM ended without an answer (exit code {process.exitcode})",
            "prompts": [], "same_text": False}


def _litert_lm_child(conn, bundle: str, prompts: list[str], steps: int, debug: bool = False) -> None:
    """In the child: tokenize (the ids LiteRT-LM feeds), wait for the source's tokens, generate."""
    from fwconv.procs import quiet_worker

    quiet_worker(debug)
    import litert_lm

    try:
        engine = litert_lm.Engine(bundle, backend=litert_lm.Backend.CPU(), cache_dir=":nocache")
    except RuntimeError as exc:
        conn.send({"error": f"LiteRT-LM cannot load the bundle: {exc}"})
        return
    bos = [engine.bos_token_id] if engine.bos_token_id is not None else []
    conn.send({"prompt_ids": [bos + engine.tokenize(p) for p in prompts],
               "parity_ids": [engine.tokenize(t) for t in PARITY_STRINGS]})
    expected = conn.recv()
    try:
        results = [_generate(litert_lm, engine, text, tokens, steps) for text, tokens in zip(prompts, expected)]
        conn.send({"runtime": "litert-lm", "prompts": results, "same_text": all(r["same_text"] for r in results)})
    except RuntimeError as exc:  # the runtime's own failure (its log names the cause on stderr)
        conn.send({"runtime": "litert-lm", "error": f"LiteRT-LM failed to run the bundle: {exc}", "prompts": [],
                   "same_text": False})
    finally:
        engine.close()


def as_litert_lm_shows(tokens: list[int], stops: list[list[int]]) -> list[int]:
    """The source's tokens as LiteRT-LM would show them: up to the first complete stop sequence
    (its eos_token_ids, some several tokens long), without a trailing part that could still begin
    one (LiteRT-LM holds such tokens back until it knows, and drops them at the length limit)."""
    stops = [list(s) for s in stops if s]
    for i in range(len(tokens)):
        if any(tokens[i:i + len(s)] == s for s in stops):
            tokens = tokens[:i]
            break
    for cut in range(1, len(tokens) + 1):  # the longest held-back tail first
        tail = tokens[cut - 1:]
        if any(len(tail) < len(s) and s[:len(tail)] == tail for s in stops):
            return tokens[:cut - 1]
    return tokens


def _generate(litert_lm, engine, text: str, tokens: list[int], steps: int) -> dict:
    session = engine.create_session(apply_prompt_template=False, max_output_tokens=steps,
                                    sampler_config=litert_lm.SamplerConfig(top_k=1, temperature=0.0, seed=0))
    try:
        session.run_prefill([text])
        got = session.run_decode().texts[0]
    finally:
        session.close()
    want = engine.detokenize(as_litert_lm_shows(tokens, engine.eos_token_ids))
    return {"prompt": text, "same_text": got == want, "litert_lm": got[:200], "source": want[:200]}
