"""Language models as generators on ExecuTorch and ONNX Runtime (issue 24): a model directory of
four real `transformers` families (random init, a tokenizer trained here) -> `.pte` and `.onnx`
with no flag but the target, each artifact then driven by a decode loop written here in its own
runtime (`executorch.runtime`: forward(tokens, input_pos) over the program's own cache; ONNX
Runtime: past key/values fed back), its greedy tokens against the source's full-recompute greedy
loop; a planted fault fails; a sequence past the static cache is refused with one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import invoke
from fixtures.llm import TEST_PROMPTS, TEST_STEPS, source_greedy, tiny_lm_dir

pytestmark = pytest.mark.slow

FAMILIES = ("llama", "qwen2", "qwen3", "phi3")
PROMPTS, STEPS = TEST_PROMPTS, TEST_STEPS
_BUILT: dict = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("llm-et-onnx")


def model_dir(workdir, family: str) -> str:
    return tiny_lm_dir(workdir, family)


def converted(workdir, family: str, target: str, *flags: str) -> str:
    if (family, target, flags) not in _BUILT:
        folder = workdir / "-".join((family, target) + tuple(f.strip("-") for f in flags))
        folder.mkdir()
        out = folder / f"model.{target}"
        result = invoke("convert", model_dir(workdir, family), "--to", target, "-o", out, "--no-latency", *flags)
        assert result.exit_code == 0, result.output
        if flags:
            _BUILT[(family, target, flags)] = (str(out), result.output)
            return _BUILT[(family, target, flags)]
        assert "greedy tokens: identical to the source" in result.output, result.output
        if target == "onnx":
            assert "onnxruntime-genai (greedy): 3/3 prompts give the source's tokens" in result.output
        _BUILT[(family, target, flags)] = str(out)
    return _BUILT[(family, target, flags)]


def executorch_greedy(pte: str, ids: list[int], steps: int) -> list[int]:
    """The test's own loop: the prompt in one forward call at positions 0..n-1, then one token per call."""
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(pte).load_method("forward")
    (logits,) = method.execute([torch.tensor([ids]), torch.arange(len(ids))])
    produced, position = [int(logits[0, -1].argmax())], len(ids)
    for _ in range(steps - 1):
        (logits,) = method.execute([torch.tensor([[produced[-1]]]), torch.tensor([position])])
        produced.append(int(logits[0, -1].argmax()))
        position += 1
    return produced


def genai_greedy(path: str, ids: list[int], steps: int) -> list[int]:
    """onnxruntime-genai opening the folder fwconv wrote, greedy search, as an app runs it."""
    import onnxruntime_genai as og

    model = og.Model(str(path).rsplit("/", 1)[0])
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + steps, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    produced = []
    while len(produced) < steps and not generator.is_done():
        generator.generate_next_token()
        produced.append(int(generator.get_next_tokens()[0]))
    return produced


def onnx_greedy(path: str, ids: list[int], steps: int) -> list[int]:
    """The test's own loop over Optimum's naming: empty past, then present.* fed back as past_key_values.*."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for i in session.get_inputs()
            if i.name.startswith("past_key_values.")}
    outputs = [o.name for o in session.get_outputs()]
    feed_ids, seen, produced = list(ids), 0, []
    for _ in range(steps):
        total = seen + len(feed_ids)
        result = dict(zip(outputs, session.run(None, {
            "input_ids": np.array([feed_ids], np.int64), "attention_mask": np.ones((1, total), np.int64),
            "position_ids": np.arange(seen, total, dtype=np.int64)[None], **past})))
        produced.append(int(result["logits"][0, -1].argmax()))
        past = {n: result[n.replace("past_key_values.", "present.", 1)] for n in past}
        seen, feed_ids = total, [produced[-1]]
    return produced


@pytest.mark.parametrize("target", ["pte", "onnx"])
@pytest.mark.parametrize("family", FAMILIES)
def test_generator_gives_the_source_greedy_tokens_in_its_runtime(family, target, workdir):
    artifact = converted(workdir, family, target)
    src = model_dir(workdir, family)
    loops = [executorch_greedy] if target == "pte" else [onnx_greedy, genai_greedy]
    distinct, eos = set(), json.load(open(f"{src}/config.json"))["eos_token_id"]
    for prompt in PROMPTS:
        ids, want = source_greedy(src, prompt, STEPS)
        for loop in loops:  # onnxruntime-genai's search ends at EOS, as apps see it
            expected = want if loop is not genai_greedy else want[:next(
                (i + 1 for i, t in enumerate(want) if t == eos), len(want))]
            assert loop(artifact, ids, STEPS) == expected, (family, target, prompt, loop.__name__)
        distinct.update(want)
    assert len(distinct) > 3, "the model's greedy text is degenerate: the comparison would prove little"
    contract = json.load(open(artifact + ".fwconv.json"))["extra"]["generative"]
    assert contract["runtime"] == {"pte": "executorch", "onnx": "onnxruntime"}[target]


def test_pte_carries_the_llm_runner_metadata(workdir):
    from executorch.runtime import Runtime

    pte = converted(workdir, "llama", "pte")
    program = Runtime.get().load_program(pte)
    value = lambda name: program.load_method(name).execute([])[0]
    assert value("use_kv_cache") is True and value("enable_dynamic_shape") is True
    assert value("get_max_seq_len") == 128 and value("get_vocab_size") == 320
    manifest = json.load(open(pte + ".fwconv.json"))
    assert manifest["extra"]["generative"]["delegation"]["delegated_subgraphs"] > 0  # XNNPACK took the matmuls
    shown = invoke("inspect", pte)
    assert "generator: ExecuTorch LLM runner program" in shown.output


@pytest.mark.parametrize("target", ["pte", "onnx"])
def test_a_planted_fault_fails_token_by_token(target, workdir, tmp_path):
    from fixtures.llm import plant_fault

    artifact = converted(workdir, "qwen2", target)
    faulty = plant_fault(model_dir(workdir, "qwen2"), str(tmp_path / "faulty"), 3.0)
    result = invoke("validate", faulty, artifact, "--no-latency", "--decode-steps", "8")
    assert result.exit_code == 3, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("fwconv: error")]
    assert len(errors) == 1 and "parity failed" in errors[0], result.output


def test_a_sequence_past_the_static_cache_is_one_line_exit_2(workdir):
    pte = converted(workdir, "llama", "pte")
    result = invoke("validate", model_dir(workdir, "llama"), pte, "--no-latency", "--decode-steps", "200")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("fwconv: error")]
    assert len(errors) == 1 and "does not fit" in errors[0] and "128" in errors[0], result.output


def test_validate_measures_both_runtimes_beside_pytorch(workdir):
    onnx = converted(workdir, "phi3", "onnx")
    result = invoke("validate", model_dir(workdir, "phi3"), onnx, "--decode-steps", "8", "--json",
                    str(workdir / "phi3-onnx.json"))
    assert result.exit_code == 0, result.output
    speed = json.load(open(workdir / "phi3-onnx.json"))["speed"]
    assert set(speed) == {"pytorch", "onnxruntime"}
    assert all(side["decode_tokens_per_s"] > 0 and side["peak_rss_mib"] > 0 for side in speed.values())


@pytest.mark.parametrize("target", ["pte", "onnx"])
def test_int8_generator_passes_by_distribution_and_a_planted_fault_still_fails(target, workdir, tmp_path):
    """--quantize dynamic: .pte torchao 8da8w on XNNPACK, ONNX MatMulNBits int8 weights. Judged by
    distributions (top-1 agreement, KL, perplexity ratio); a weight x1.5 in the source must fail."""
    from fixtures.llm import plant_fault

    artifact, output = converted(workdir, "llama", target, "--quantize", "dynamic")
    assert "generative parity (int8): PASSED" in output, output
    assert os.path.getsize(artifact) < 0.7 * os.path.getsize(converted(workdir, "llama", target))
    faulty = plant_fault(model_dir(workdir, "llama"), str(tmp_path / "faulty"), 1.5)
    result = invoke("validate", faulty, artifact, "--no-latency")
    assert result.exit_code == 3, result.output
    assert "top-1 agreement" in result.output or "mean KL" in result.output, result.output


@pytest.mark.parametrize("flags", [["--recipe", "dynamic_wi8_afp32"], ["--backend", "coreml"],
                                   ["--quantize", "fp16"]])
def test_options_a_generator_cannot_take_are_one_line_exit_2(flags, workdir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("convert", model_dir(workdir, "llama"), "--to", "pte", "-o", out / "m.pte", *flags)
    assert result.exit_code == 2, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("fwconv: error")]) == 1
    assert list(out.iterdir()) == []


def test_gate_takes_a_model_directory_to_onnx(workdir, tmp_path):
    config = tmp_path / "fwconv.toml"
    config.write_text(f'[gate]\noutput_dir = "out"\n\n[[model]]\nname = "qwen3"\nsource = "{model_dir(workdir, "qwen3")}"\n'
                      'targets = ["onnx"]\nlatency = false\ndecode_steps = 8\n')
    result = invoke("gate", config, "--json", tmp_path / "gate.json")
    assert result.exit_code == 0, result.output
    (job,) = json.load(open(tmp_path / "gate.json"))["results"]
    assert job["status"] == "pass" and job["validation"]["kind"] == "generative"
    again = invoke("gate", config, "--check-only", "--no-cache")
    assert again.exit_code == 0, again.output
