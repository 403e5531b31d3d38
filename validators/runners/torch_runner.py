"""PyTorch runner: TorchScript `.pt`, ExportedProgram `.pt2`, or an nn.Module factory; cpu/cuda."""

from __future__ import annotations

import numpy as np

from fwconv.errors import InputError, RunnerError, first_line, require
from fwconv.specs import TensorSpec
from fwconv.models.torch_source import flatten_outputs, to_numpy
from fwconv.validators.runners.base import Intermediate, Runner


class TorchRunner(Runner):
    name = "torch"
    formats = ("torchscript", "exported", "torch-pickle", "factory")
    tools = ("torch",)
    devices = ("cpu", "cuda")

    @classmethod
    def create(cls, model, *, device="cpu", threads=None, trust_pickle=False):
        if threads:
            import torch

            torch.set_num_threads(threads)
        return cls(model, device=device, trust_pickle=trust_pickle)

    def __init__(self, source, *, device: str = "cpu", trust_pickle: bool = False):
        super().__init__()
        self._source_arg = source
        self.device = device
        self.trust_pickle = trust_pickle
        self.source = None
        self._fn = None
        self._output_names: list[str] | None = None

    def _activate(self) -> None:
        torch = require("torch", "torch")
        from fwconv.models.torch_source import TorchSource, load_torch_source

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RunnerError("--device cuda: PyTorch sees no CUDA device on this machine")
        src = self._source_arg
        self.source = src if isinstance(src, TorchSource) else load_torch_source(src, trust_pickle=self.trust_pickle)
        fn = self.source.callable()
        if self.device != "cpu":
            fn = fn.to(self.device)
        self._fn = fn

    def _deactivate(self) -> None:
        self._fn = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def input_names(self) -> list[str]:
        return list(self.source.input_names)

    def input_specs(self) -> list[TensorSpec]:
        return self.source.input_specs(self.input_names())

    def index_bounds(self) -> dict[str, int]:
        """Integer inputs stay below the size of the embedding table they index.

        An input is matched to an embedding by shared name parts (token_type_ids ->
        token_type_embeddings); otherwise the first embedding registered (usually the token
        table). Masks stay 0/1. TorchScript hides its modules' types: no bounds there.
        """
        import torch

        module = self._fn
        if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
            return {}
        tables = [(name, m.num_embeddings) for name, m in module.named_modules() if isinstance(m, torch.nn.Embedding)]
        bounds = {}
        for inp in self.input_names():
            words = {w for w in inp.lower().split("_") if w not in ("ids", "id", "input")}
            if "mask" in words:
                bounds[inp] = 2
                continue
            named = [size for name, size in tables if words and words <= set(name.lower().replace(".", "_").split("_"))]
            if named or tables:
                bounds[inp] = (named or [tables[0][1]])[0]
        return bounds

    def stage(self, feed: dict[str, np.ndarray]) -> list:
        import torch

        names = self.input_names()
        if len(names) < len(feed):
            names = list(feed)
        missing = [n for n in names[: len(feed)] if n not in feed]
        if missing:
            # positional: the feed's order is the model's order
            return [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in feed.values()]
        return [torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device) for n in names[: len(feed)]]

    def run_staged(self, args: list):
        import torch

        with torch.inference_mode():
            return self._fn(*args)

    def _infer(self, feed):
        try:
            raw = self.run_staged(self.stage(feed))
        except (RuntimeError, TypeError, ValueError, IndexError, AssertionError) as exc:  # .pt2 shape guards assert
            shapes = ", ".join(f"{k}{list(v.shape)}:{v.dtype}" for k, v in feed.items())
            raise InputError(f"the inputs ({shapes}) do not fit the model: {first_line(exc)}") from exc
        flat = flatten_outputs(raw)
        self._output_names = [n for n, _ in flat]
        return {n: to_numpy(t) for n, t in flat}

    def intermediates(self, feed):
        """Interpret the exported FX graph node by node (a .pt2's graph; a factory's module is
        exported first) and keep each op's tensor output with its module path and source line.
        TorchScript keeps no such graph a debugger can step through."""
        import torch

        if self.source.kind == "torchscript":
            raise RunnerError("TorchScript does not expose its intermediate tensors: debug the .pt2 "
                              "(torch.export.save) or the factory the model came from")
        args = self.stage(feed)
        graph_module = self._fn if self.source.kind == "exported" else torch.export.export(self._fn, tuple(args)).module()
        recorder = _recorder_class()(graph_module)
        with torch.inference_mode():
            recorder.run(*args)
        return recorder.found

    def timed_call(self, feed):
        args = self.stage(feed)
        return lambda: self.run_staged(args)

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def output_names(self) -> list[str]:
        if self._output_names is None:
            raise RunnerError("output names are known after the first inference")
        return list(self._output_names)


def _recorder_class():
    import torch.fx

    class Recorder(torch.fx.Interpreter):
        """Runs the graph and records every call_function node's tensor output."""

        def __init__(self, module):
            super().__init__(module)
            self.found: list[Intermediate] = []

        def run_node(self, node):
            from fwconv.models.provenance import module_from_stack, user_frame

            out = super().run_node(node)
            if node.op == "call_function" and isinstance(out, torch.Tensor):
                inputs = [a.name for a in node.all_input_nodes]
                self.found.append(Intermediate(node.name, node.name, str(node.target), inputs, to_numpy(out),
                                               module_from_stack(node.meta.get("nn_module_stack")),
                                               user_frame(node.meta.get("stack_trace"))))
            return out
    return Recorder


RUNNERS = [TorchRunner]
