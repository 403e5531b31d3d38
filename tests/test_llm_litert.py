"""Language models as generators on LiteRT (issue 23): a model directory of four real
`transformers` families (random init, He-scaled, a tokenizer trained here) -> `.litertlm` and
`.tflite` with fwconv's defaults, each artifact then driven by a decode loop written here in its
own runtime (the LiteRT interpreter's signature runners; LiteRT-LM itself), its greedy tokens
against the source's own greedy loop (full recompute, no cache); a planted fault fails at fp32 and
at litert-torch's dynamic int8 recipe; bad inputs give one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import invoke
from fixtures.llm import TEST_PROMPTS, TEST_STEPS, source_greedy, tiny_lm_dir

pytestmark = pytest.mark.slow

FAMILIES = ("llama", "qwen2", "gemma", "phi3")
PROMPTS, STEPS = TEST_PROMPTS, TEST_STEPS
_BUILT: dict = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("llm")


def model_dir(workdir, family: str) -> str:
    return tiny_lm_dir(workdir, family)


def converted(workdir, family: str, target: str, *flags: str):
    """`fwconv convert DIR --to TARGET` (no other flag but `flags`), once per module; the result."""
    key = (family, target, flags)
    if key not in _BUILT:
        src = model_dir(workdir, family)
        out = workdir / f"{family}{'-'.join(('',) + flags).replace('--', '')}.{target}"
        result = invoke("convert", src, "--to", target, "-o", out, "--no-latency", *flags)
        assert result.exit_code == 0, result.output
        _BUILT[key] = (str(out), result.output)
    return _BUILT[key]


def litert_greedy(tflite: str, ids: list[int], steps: int) -> list[int]:
    """The test's own decode loop over the signatures: the prompt but its last token through the
    prefill signature (padded), then decode one token at a time with the cache fed back."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite)
    names = interpreter.get_signature_list()
    prefill_name = min((n for n in names if n.startswith("prefill_")), key=lambda n: int(n.split("_")[1]))
    prefill, decode = interpreter.get_signature_runner(prefill_name), interpreter.get_signature_runner("decode")
    details = decode.get_input_details()
    kv = {n: np.zeros(d["shape"], d["dtype"]) for n, d in details.items() if n.startswith("kv_cache_")}
    cache = int(details["mask"]["shape"][-1])
    low = np.finfo(np.float32).min

    def mask(positions):
        return np.where(np.arange(cache)[None, :] <= positions[:, None], 0, low).astype(np.float32)[None, None]

    size = int(prefill_name.split("_")[1])
    head = np.zeros((1, size), np.int32)
    head[0, :len(ids) - 1] = ids[:-1]
    pos = np.arange(size, dtype=np.int32)
    out = prefill(tokens=head, input_pos=pos, mask=mask(pos), **kv)
    kv = {n: out[n] for n in kv}
    token, position, produced = ids[-1], len(ids) - 1, []
    for _ in range(steps):
        pos = np.array([position], np.int32)
        out = decode(tokens=np.array([[token]], np.int32), input_pos=pos, mask=mask(pos), **kv)
        kv = {n: out[n] for n in kv}
        token, position = int(np.argmax(out["logits"].reshape(-1))), position + 1
        produced.append(token)
    return produced


def shown(tokens: list[int], stops: list[list[int]]) -> list[int]:
    """What LiteRT-LM prints of a token stream: it ends at a stop sequence (eos_token_ids, several
    tokens long for some models) and holds back trailing tokens that may still start one."""
    end = next((i for i in range(len(tokens)) for s in stops if s and tokens[i:i + len(s)] == s), len(tokens))
    tokens = tokens[:end]
    held = max((k for k in range(1, len(tokens) + 1) for s in stops if k < len(s) and tokens[-k:] == s[:k]), default=0)
    return tokens[:len(tokens) - held]


def bundled_tflite(bundle: str, out_dir) -> str:
    """The model inside a .litertlm, cut out with litert-lm-builder's own peek tool."""
    import io

    from litert_lm_builder import litertlm_peek

    litertlm_peek.peek_litertlm_file(bundle, str(out_dir), io.StringIO())
    found = [os.path.join(out_dir, n) for n in os.listdir(out_dir) if n.endswith(".tflite")]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_bundle_generates_the_source_tokens_in_litert_and_in_litert_lm(family, workdir, tmp_path):
    bundle, output = converted(workdir, family, "litertlm")
    src = model_dir(workdir, family)
    assert "generative parity (fp32): PASSED" in output and "LiteRT-LM (greedy): 3/3" in output
    manifest = json.load(open(bundle + ".fwconv.json"))
    contract = manifest["extra"]["generative"]
    assert set(contract["signatures"]) == {"prefill_32", "decode"} and contract["cache_length"] == 128
    assert contract["cache_layout"]["k"]["time_dim"] == 2 and contract["quantization_recipe"].startswith("none")
    validation = manifest["validation"]
    assert validation["summary"]["same_tokens"] and validation["tokenizer"]["status"] == "identical"
    assert validation["chat_template"]["status"] == "identical" and validation["litert_lm"]["same_text"]
    tflite = bundled_tflite(bundle, tmp_path)
    import litert_lm

    engine = litert_lm.Engine(bundle, backend=litert_lm.Backend.CPU(), cache_dir=":nocache")
    try:
        for prompt in PROMPTS:
            ids, want = source_greedy(src, prompt, STEPS)
            assert litert_greedy(tflite, ids, STEPS) == want, prompt
            assert engine.tokenize(prompt) == ids  # the bundle's tokenizer is the source's
            session = engine.create_session(apply_prompt_template=False, max_output_tokens=STEPS,
                                            sampler_config=litert_lm.SamplerConfig(top_k=1, temperature=0.0, seed=0))
            session.run_prefill([prompt])
            text = session.run_decode().texts[0]
            session.close()
            assert text == engine.detokenize(shown(want, engine.eos_token_ids)), prompt
    finally:
        engine.close()


def test_tflite_target_holds_the_signatures_and_matches_token_by_token(workdir):
    out, output = converted(workdir, "llama", "tflite")
    src = model_dir(workdir, "llama")
    assert "a .tflite carries no tokenizer" in output
    for prompt in PROMPTS:
        ids, want = source_greedy(src, prompt, STEPS)
        assert litert_greedy(out, ids, STEPS) == want
    manifest = json.load(open(out + ".fwconv.json"))
    decode = manifest["extra"]["generative"]["signatures"]["decode"]
    assert {d["name"] for d in decode["outputs"]} >= {"logits", "kv_cache_k_0", "kv_cache_v_1"}
    # fwconv validate on the same pair: the same verdict from the command line
    result = invoke("validate", src, out, "--no-latency", "--decode-steps", "8")
    assert result.exit_code == 0 and "greedy tokens: identical to the source" in result.output
    # litert-torch's global RMSNorm swap was undone after its export: a model class imported
    # later in this process keeps transformers' own (torch.jit.trace failed on the swapped one)
    import transformers.integrations
    from litert_torch.generative.export_hf.core import patches

    assert transformers.integrations.use_kernel_forward_from_hub is patches.original_use_kernel_forward_from_hub


def test_planted_fault_fails_at_fp32_and_at_dynamic_int8(workdir, tmp_path):
    """One MLP weight scaled by 1.5: refused at both precisions, while the honest int8 passes."""
    from fixtures.llm import plant_fault

    src = model_dir(workdir, "llama")
    int8, output = converted(workdir, "llama", "tflite", "--quantize", "dynamic")
    assert "generative parity (int8): PASSED" in output
    faulty = plant_fault(src, str(tmp_path / "faulty"))
    for flags, precision in (((), "fp32"), (("--quantize", "dynamic"), "int8")):
        out = tmp_path / f"faulty-{precision}.tflite"
        made = invoke("convert", faulty, "--to", "tflite", "-o", out, "--no-validate", *flags)
        assert made.exit_code == 0, made.output
        verdict = invoke("validate", src, out, "--no-latency", "--precision", precision)
        assert verdict.exit_code == 3, verdict.output
        assert "FAILED" in verdict.output
        if precision == "fp32":  # the fault sits in layer 0's MLP: layer 1's K/V are the first to depart
            assert "KV cache departs first at layer 1" in verdict.output
            assert "first diverging: decoder layer 0" in verdict.output


@pytest.mark.parametrize("case", ["cache-above-context", "prefill-fills-cache", "no-weights", "pickled-weights",
                                  "no-tokenizer", "not-causal", "unknown-recipe", "crafted-header", "no-memory",
                                  "text-config-string", "tokenizer-garbage", "generation-config-garbage",
                                  "unknown-model-type", "shape-lies", "folder-named-safetensors", "one-position",
                                  "empty-prompt", "decode-past-cache"])
def test_bad_language_model_input_is_one_line_exit_2_nothing_written(case, workdir, tmp_path, monkeypatch):
    src = model_dir(workdir, "llama")
    if case == "no-memory":  # as if the machine had 1 MiB free: refused before loading, saying what it needs
        monkeypatch.setattr("fwconv.models.hf._available_bytes", lambda: 1 << 20)
    flags: list[str] = []
    if case == "cache-above-context":
        flags = ["--cache-length", "512"]  # the model holds 256 positions
    elif case == "prefill-fills-cache":
        flags = ["--prefill-length", "64", "--cache-length", "64"]
    elif case == "unknown-recipe":
        flags = ["--recipe", "int3_magic"]
    elif case == "empty-prompt":
        flags = ["--prompt", ""]
    elif case == "decode-past-cache":
        flags = ["--decode-steps", "500"]
    elif case != "no-memory":
        src = _broken_dir(case, src, tmp_path / "model")
    out = tmp_path / "out" / "m.litertlm"
    out.parent.mkdir()
    started = time.perf_counter()
    result = invoke("convert", src, "--to", "litertlm", "-o", out, *flags)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("fwconv: error")]
    assert len(errors) == 1, result.output
    assert os.listdir(out.parent) == []
    if case == "no-memory":
        assert "needs about" in errors[0]
    assert time.perf_counter() - started < 15, "bad input must be found before the export runs"


def _broken_dir(case: str, src: str, dst) -> str:
    shutil.copytree(src, dst)
    if case == "no-weights":
        os.remove(dst / "model.safetensors")
    elif case == "no-tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(dst / name)
    elif case == "pickled-weights":
        import torch
        from safetensors.torch import load_file

        torch.save(load_file(dst / "model.safetensors"), dst / "pytorch_model.bin")
        os.remove(dst / "model.safetensors")
    elif case == "crafted-header":  # a tensor record pointing far past the end of the file
        _edit_safetensors_header(dst / "model.safetensors", lambda entry: entry.update(data_offsets=[0, 1 << 40]))
    elif case == "shape-lies":  # offsets inside the file, a shape far larger than they span
        _edit_safetensors_header(dst / "model.safetensors", lambda entry: entry.update(shape=[10**6, 10**6]))
    elif case == "folder-named-safetensors":
        os.mkdir(dst / "extra.safetensors")
    elif case == "tokenizer-garbage":
        (dst / "tokenizer.json").write_bytes(os.urandom(2000))
    elif case == "generation-config-garbage":
        (dst / "generation_config.json").write_text("not json")
    else:
        config = json.load(open(dst / "config.json"))
        edits = {"not-causal": {"architectures": ["LlamaForSequenceClassification"]},
                 "text-config-string": {"text_config": "abc"}, "unknown-model-type": {"model_type": "bogusarch"},
                 "one-position": {"max_position_embeddings": 1}}
        config.update(edits[case])
        json.dump(config, open(dst / "config.json", "w"))
    return str(dst)


def _edit_safetensors_header(path, edit) -> None:
    import struct

    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    edit(header[next(k for k in header if k != "__metadata__")])
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length:])


def test_gate_takes_a_model_directory_with_junit_per_model(workdir, tmp_path):
    src = model_dir(workdir, "phi3")
    config = tmp_path / "fwconv.toml"
    config.write_text(f'[gate]\noutput_dir = "out"\n\n[[model]]\nname = "phi3"\nsource = "{src}"\n'
                      'targets = ["litertlm"]\nlatency = false\ndecode_steps = 8\n')
    result = invoke("gate", config, "--junit", tmp_path / "gate.xml", "--json", tmp_path / "gate.json")
    assert result.exit_code == 0, result.output
    report = json.load(open(tmp_path / "gate.json"))
    (job,) = report["results"]
    assert job["status"] == "pass" and job["validation"]["kind"] == "generative"
    assert 'classname="fwconv.gate.phi3" name="litertlm"' in (tmp_path / "gate.xml").read_text()
    again = invoke("gate", config, "--check-only", "--no-cache")
    assert again.exit_code == 0, again.output


def test_an_architecture_the_exporter_refuses_is_one_line_exit_1_nothing_written(tmp_path):
    """GPT-2 (no num_key_value_heads): litert-torch's export_hf fails; the user gets its reason."""
    import transformers

    from fixtures.llm import train_tokenizer

    tokenizer = train_tokenizer()
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    (tmp_path / "out").mkdir()
    result = invoke("convert", tmp_path / "gpt2", "--to", "tflite", "-o", tmp_path / "out" / "m.tflite")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("fwconv: error")]
    assert len(errors) == 1 and "export_hf failed on gpt2" in errors[0], result.output
    assert os.listdir(tmp_path / "out") == []


def _fwconv(*args) -> subprocess.CompletedProcess:
    """The installed command in its own process: what a terminal shows, native logs included."""
    exe = os.path.join(os.path.dirname(sys.executable), "fwconv")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600)


def test_validate_of_a_bundle_keeps_stderr_to_one_line(workdir, tmp_path):
    """LiteRT-LM logs through glog in its child process and torch/torchao print on import: a passing
    validate prints nothing on stderr, a failing one exactly its error line."""
    from fixtures.llm import plant_fault

    bundle, _ = converted(workdir, "llama", "litertlm")
    src = model_dir(workdir, "llama")
    good = _fwconv("validate", src, bundle, "--no-latency", "--decode-steps", "8")
    assert good.returncode == 0 and good.stderr == "", good.stderr
    bad = _fwconv("validate", plant_fault(src, str(tmp_path / "faulty"), 3.0), bundle, "--no-latency")
    assert bad.returncode == 3 and len(bad.stderr.splitlines()) == 1, bad.stderr


@pytest.mark.parametrize("damage", ["header-cut", "tokenizer-length", "tokenizer-zlib", "model-garbage"])
def test_a_damaged_bundle_is_one_line_exit_2_naming_the_bundle(damage, workdir, tmp_path):
    import struct

    from fwconv.models.litertlm import sections

    bundle, _ = converted(workdir, "llama", "litertlm")
    data = bytearray(open(bundle, "rb").read())
    found = {s["type"]: s for s in sections(bundle)}
    if damage == "header-cut":
        data = data[:100]
    elif damage == "tokenizer-length":
        begin = found["HF_Tokenizer_Zlib"]["begin"]
        data[begin:begin + 8] = struct.pack("<Q", 2**64 - 1)
    elif damage == "tokenizer-zlib":
        begin = found["HF_Tokenizer_Zlib"]["begin"] + 8
        data[begin:begin + 16] = b"\xff" * 16
    else:
        begin = found["TFLiteModel"]["begin"]
        data[begin:begin + 4096] = os.urandom(4096)
    damaged = tmp_path / "damaged.litertlm"
    damaged.write_bytes(bytes(data))
    command = ("inspect", damaged) if not damage.startswith("tokenizer") else \
        ("validate", model_dir(workdir, "llama"), damaged, "--no-latency")
    result = _fwconv(*command)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert str(damaged) in result.stderr and "fwconv-" not in result.stderr, result.stderr
