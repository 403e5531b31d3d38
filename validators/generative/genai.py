"""An ONNX generator run in onnxruntime-genai itself (where installed): the folder fwconv wrote
(the .onnx, genai_config.json, the tokenizer) opened as an app opens it, greedy search from the
same prompt ids as the source, the tokens compared. In its own process, quiet, deaf to Ctrl-C."""

from __future__ import annotations

import importlib.util
import os

from fwconv.models.hf import GENAI_CONFIG


def genai_folder(onnx_path: str) -> tuple[str, list[int]] | None:
    """The folder onnxruntime-genai would open for `onnx_path` (when its config names that file)
    and the EOS ids its search stops at."""
    import json

    folder = os.path.dirname(os.path.abspath(onnx_path))
    try:
        with open(os.path.join(folder, GENAI_CONFIG)) as f:
            model = json.load(f)["model"]
        named, eos = model["decoder"]["filename"], model.get("eos_token_id")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    eos = [eos] if isinstance(eos, int) else [e for e in eos or [] if isinstance(e, int)]
    return (folder, eos) if named == os.path.basename(onnx_path) else None


def up_to_eos(tokens: list[int], eos: list[int]) -> list[int]:
    """A greedy search's tokens as a runtime that stops at EOS returns them (the EOS included)."""
    end = next((i for i, t in enumerate(tokens) if t in eos), None)
    return tokens if end is None else tokens[:end + 1]


def run_genai(onnx_path: str, source, prompts: list[list[int]], steps: int) -> dict | None:
    """{"runtime", "prompts": [{"same_tokens", ...}], "same_tokens"} or an "error"; None where
    onnxruntime-genai is not installed or no genai_config.json names this file (a note says so)."""
    found = genai_folder(onnx_path)
    if found is None or importlib.util.find_spec("onnxruntime_genai") is None:
        return None
    folder, eos = found
    from fwconv.procs import spawn, stop
    from fwconv.quiet import DEBUG
    from fwconv.validators.generative.verdict import greedy

    process, conn = spawn(_genai_child, folder, prompts, steps, DEBUG["on"], name="fwconv-genai")
    try:
        got = conn.recv() if conn.poll(600) else {"error": "onnxruntime-genai did not answer in 600 s"}
    except EOFError:
        got = {"error": f"onnxruntime-genai ended without an answer (exit code {process.exitcode})"}
    finally:
        stop(process)
    if "error" in got:
        return {"runtime": "onnxruntime-genai", "error": got["error"], "prompts": [], "same_tokens": False}
    results = []
    for ids, tokens in zip(prompts, got["tokens"]):
        want = up_to_eos(greedy(source, ids, steps)[0], eos)
        results.append({"same_tokens": tokens == want, "genai": tokens[:steps], "source": want})
    return {"runtime": "onnxruntime-genai", "prompts": results, "same_tokens": all(r["same_tokens"] for r in results)}


def _genai_child(conn, folder: str, prompts: list[list[int]], steps: int, debug: bool) -> None:
    from fwconv.procs import quiet_worker

    quiet_worker(debug)
    try:
        import onnxruntime_genai as og

        model = og.Model(folder)
        found = []
        for ids in prompts:
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=len(ids) + steps, do_sample=False)
            generator = og.Generator(model, params)
            generator.append_tokens(ids)
            tokens = []
            while not generator.is_done() and len(tokens) < steps:
                generator.generate_next_token()
                tokens.append(int(generator.get_next_tokens()[0]))
            found.append(tokens)
        conn.send({"tokens": found})
    except Exception as exc:  # the runtime's own failure, reported to the parent as a finding
        conn.send({"error": f"onnxruntime-genai failed to run the model: {str(exc).splitlines()[0] if str(exc) else exc!r}"})
