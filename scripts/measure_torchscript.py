"""TorchScript `.pt` against `.pt2` of the same models through `fwconv torch2tflite` (default route,
default settings, each run a fresh process): how often a `.pt` converts where its `.pt2` would.

Random-init `transformers` models (small configs, one tensor out), traced with torch.jit.trace and
exported with torch.export at the same sample; the exit code of each conversion is recorded
(0 pass, 3 parity refused, 5 unsupported op, 1 converter error), the TS2EP stage of the `.pt`'s
manifest, and, apart from fwconv's own verdict, each passing `.pt` artifact is run here in LiteRT
on a fresh input (another seed) against the TorchScript module (independent err/scale).

    .venv/bin/python scripts/measure_torchscript.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
FWCONV = os.path.join(os.path.dirname(sys.executable), "fwconv")
IMAGE, TOKENS = (1, 3, 32, 32), (1, 16)
TEXT = dict(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=64)
LM = dict(TEXT, num_key_value_heads=2)
WINDOWED = dict(image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4)
PYRAMID = dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
               num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2])


def models() -> dict:
    """name -> (build, input shape, output attribute)."""
    import transformers as t

    vision = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64)
    return {
        "bert": (lambda: t.BertModel(t.BertConfig(**TEXT)), TOKENS, "last_hidden_state"),
        "distilbert": (lambda: t.DistilBertModel(t.DistilBertConfig(vocab_size=300, dim=64, n_layers=2, n_heads=4,
                                                                    hidden_dim=128)), TOKENS, "last_hidden_state"),
        "roberta": (lambda: t.RobertaModel(t.RobertaConfig(**TEXT)), TOKENS, "last_hidden_state"),
        "albert": (lambda: t.AlbertModel(t.AlbertConfig(embedding_size=32, **TEXT)), TOKENS, "last_hidden_state"),
        "deberta-v2": (lambda: t.DebertaV2Model(t.DebertaV2Config(**TEXT)), TOKENS, "last_hidden_state"),
        "gpt2": (lambda: t.GPT2LMHeadModel(t.GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4,
                                                        n_positions=64)), TOKENS, "logits"),
        "llama": (lambda: t.LlamaForCausalLM(t.LlamaConfig(**LM)), TOKENS, "logits"),
        "qwen2": (lambda: t.Qwen2ForCausalLM(t.Qwen2Config(**LM)), TOKENS, "logits"),
        "mistral": (lambda: t.MistralForCausalLM(t.MistralConfig(**LM)), TOKENS, "logits"),
        "gemma": (lambda: t.GemmaForCausalLM(t.GemmaConfig(head_dim=16, **LM)), TOKENS, "logits"),
        "phi3": (lambda: t.Phi3ForCausalLM(t.Phi3Config(pad_token_id=0, **LM)), TOKENS, "logits"),
        "vit": (lambda: t.ViTModel(t.ViTConfig(**vision)), IMAGE, "last_hidden_state"),
        "deit": (lambda: t.DeiTModel(t.DeiTConfig(**vision)), IMAGE, "last_hidden_state"),
        "resnet": (lambda: t.ResNetModel(t.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1])),
                   IMAGE, "pooler_output"),
        "convnext": (lambda: t.ConvNextModel(t.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1])),
                     IMAGE, "pooler_output"),
        "convnextv2": (lambda: t.ConvNextV2Model(t.ConvNextV2Config(num_stages=2, hidden_sizes=[16, 32],
                                                                    depths=[1, 1])), IMAGE, "pooler_output"),
        "mobilenetv2": (lambda: t.MobileNetV2Model(t.MobileNetV2Config(image_size=32, depth_multiplier=0.35)), IMAGE,
                        "pooler_output"),
        "mobilevitv2": (lambda: t.MobileViTV2Model(t.MobileViTV2Config(image_size=64)), (1, 3, 64, 64),
                        "pooler_output"),
        "regnet": (lambda: t.RegNetModel(t.RegNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                                        groups_width=8)), IMAGE, "pooler_output"),
        "dpt": (lambda: t.DPTForDepthEstimation(t.DPTConfig(
            backbone_out_indices=[0, 1], neck_hidden_sizes=[8, 16], fusion_hidden_size=16, head_hidden_size=8,
            **vision)), IMAGE, "predicted_depth"),
        "yolos": (lambda: t.YolosModel(t.YolosConfig(num_detection_tokens=4, **dict(vision, image_size=[32, 32]))),
                  IMAGE, "last_hidden_state"),
        "beit": (lambda: t.BeitModel(t.BeitConfig(use_relative_position_bias=True, **vision)), IMAGE,
                 "last_hidden_state"),
        "swin": (lambda: t.SwinModel(t.SwinConfig(**WINDOWED)), IMAGE, "pooler_output"),
        "swinv2": (lambda: t.Swinv2Model(t.Swinv2Config(**WINDOWED)), IMAGE, "pooler_output"),
        "pvt-v2": (lambda: t.PvtV2Model(t.PvtV2Config(**PYRAMID)), IMAGE, "last_hidden_state"),
        "segformer": (lambda: t.SegformerModel(t.SegformerConfig(**PYRAMID)), IMAGE, "last_hidden_state"),
        "mobilevit": (lambda: t.MobileViTModel(t.MobileViTConfig(image_size=64)), (1, 3, 64, 64), "pooler_output"),
        "electra": (lambda: t.ElectraModel(t.ElectraConfig(embedding_size=32, **TEXT)), TOKENS, "last_hidden_state"),
        "opt": (lambda: t.OPTForCausalLM(t.OPTConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, ffn_dim=128,
                                                     num_attention_heads=4, max_position_embeddings=64,
                                                     word_embed_proj_dim=64)), TOKENS, "logits"),
        "mixtral": (lambda: t.MixtralForCausalLM(t.MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **LM)),
                    TOKENS, "logits"),
        "mixtral-eager": (lambda: t.MixtralForCausalLM(t.MixtralConfig(
            num_local_experts=4, num_experts_per_tok=2, experts_implementation="eager", **LM)), TOKENS, "logits"),
        "falcon": (lambda: t.FalconForCausalLM(t.FalconConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                                                              num_attention_heads=4)), TOKENS, "logits"),
    }




def _wrap(model, key: str):
    import torch

    class Out(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return getattr(self.model(x), key)

    return Out().eval()


def _save(name: str, build, shape, key: str, work: str) -> tuple[str, str | None]:
    import torch

    from fixtures.thirdparty import _trained_scale

    torch.manual_seed(0)
    module = _wrap(_trained_scale(build().eval()), key)
    x = torch.randint(0, 300, shape) if shape == TOKENS else torch.randn(shape)
    pt, pt2 = os.path.join(work, f"{name}.pt"), os.path.join(work, f"{name}.pt2")
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(module, (x,), strict=False), pt)
        try:
            torch.export.save(torch.export.export(module, (x,)), pt2)
        except Exception:
            pt2 = None
    return pt, pt2


def _fresh_input(shape):
    import numpy as np

    rng = np.random.default_rng(12345)
    return rng.integers(0, 300, shape) if shape == TOKENS else rng.standard_normal(shape).astype(np.float32)


def _independent(pt: str, tflite: str, shape) -> str:
    """The artifact in LiteRT (not through fwconv) against the TorchScript module, on a new input."""
    import numpy as np
    import torch
    from ai_edge_litert.interpreter import Interpreter

    x = _fresh_input(shape)
    with torch.no_grad():
        want = torch.jit.load(pt)(torch.from_numpy(x)).numpy()
    runner = Interpreter(model_path=tflite).get_signature_runner()
    ((name, detail),) = runner.get_input_details().items()
    got = np.asarray(next(iter(runner(**{name: x.astype(detail["dtype"])}).values())))
    if got.size != want.size:
        return f"shape {list(got.shape)} vs {list(want.shape)}"
    return f"{float(np.abs(got.reshape(want.shape) - want).max() / max(np.abs(want).max(), 1e-12)):.1e}"


def _ts2ep_status(path: str) -> str:
    import json

    manifest = path + ".tflite.fwconv.json"
    if not os.path.exists(manifest):
        return "-"
    return json.load(open(manifest)).get("extra", {}).get("ts2ep", {}).get("status", "-")


def _convert(path: str, shape, work: str) -> tuple[int, float, str]:
    dtype = ["--input-dtype", "int64", "--input-range", "0,300"] if shape == TOKENS else []
    out = os.path.join(work, os.path.basename(path) + ".tflite")
    t0 = time.perf_counter()
    run = subprocess.run([FWCONV, "torch2tflite", path, "--input-shape", ",".join(map(str, shape)), *dtype, "-o", out,
                          "--no-latency", "--force"], capture_output=True, text=True, timeout=1800)
    error = next((line for line in run.stderr.splitlines() if line.startswith("fwconv: error")), "")
    return run.returncode, time.perf_counter() - t0, error[15:140]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    found = models()
    names = args.only or list(found)
    print("| model | .pt2 | .pt (TorchScript) | TS2EP | .pt artifact in LiteRT, fresh input (err/scale) | .pt reason |\n"
          "|---|---|---|---|---|---|", flush=True)
    passes = {"pt": 0, "pt2": 0}  # a model neither converts counts against both
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            build, shape, key = found[name]
            try:
                pt, pt2 = _save(name, build, shape, key, work)
            except Exception as exc:
                print(f"| {name} | - | - | - | - | could not build/trace: {str(exc).splitlines()[0][:80]} |", flush=True)
                continue
            rc2 = _convert(pt2, shape, work) if pt2 else (None, 0.0, "torch.export failed")
            rc = _convert(pt, shape, work)
            passes["pt"] += rc[0] == 0
            passes["pt2"] += rc2[0] == 0
            show = lambda r: "pass" if r[0] == 0 else "no .pt2" if r[0] is None else f"exit {r[0]}"
            check = _independent(pt, os.path.join(work, f"{name}.pt.tflite"), shape) if rc[0] == 0 else "-"
            print(f"| {name} | {show(rc2)} ({rc2[1]:.0f} s) | {show(rc)} ({rc[1]:.0f} s) | {_ts2ep_status(pt)} | {check} "
                  f"| {rc[2]} |", flush=True)
    print(f"\n.pt passes {passes['pt']}/{len(names)}, .pt2 passes {passes['pt2']}/{len(names)}")


if __name__ == "__main__":
    main()
