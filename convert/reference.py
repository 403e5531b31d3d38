"""The source, loaded and run once: the Reference every route is converted from and validated
against (its runner, the sample inputs, the reference outputs, the dims that stay dynamic), and
the ConversionContext that carries it, with the options and settings, through one conversion."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from fwconv.convert.job import Artifact
from fwconv.convert.options import ConvertOptions
from fwconv.convert.planner import family_of
from fwconv.errors import InputError
from fwconv.models.formats import Source
from fwconv.specs import TensorSpec, bind_arrays, load_npz, name_positional


@dataclasses.dataclass
class Reference:
    """What every route is checked against. `artifact` is the source's interface (names,
    shapes, dtypes, layouts); `runner` stays active until `close()`."""

    artifact: Artifact
    runner: Any  # fwconv.validators.runners.Runner
    torch_source: Any  # the loaded TorchSource, for torch-rooted routes
    sample: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    dynamic: dict[str, dict[int, Any]] = dataclasses.field(default_factory=dict)  # {input: {dim: DynamicDim}}

    def close(self) -> None:
        self.runner.deactivate()


@dataclasses.dataclass
class ConversionContext:
    """One conversion's state between its stages: given once, read by every route."""

    source: Source
    target: str
    options: ConvertOptions
    settings: Any  # ValidateSettings, or None for the precision's defaults
    workdir: str
    labels: tuple[str, str]  # (source, artifact) as the reports name them
    route_jobs: int = 0  # >0: routes run side by side in worker processes
    reference: Reference | None = None
    prelude: Any = None  # a step before the routes (convert/ts2ep.py's record), for the manifest


def _sample_specs(options: ConvertOptions, names: list[str], recorded: list[TensorSpec] | None) -> list[TensorSpec]:
    """Input specs from --input-shape, with unnamed ones taking the model's names by position."""
    if not options.input_specs:
        if recorded:
            return recorded
        raise InputError("the model does not record its input shapes",
                         hint="give them with --input-shape 1,3,224,224 (repeatable) or --inputs FILE.npz")
    return name_positional(options.input_specs, names)


def _layout_of(shape, family: str) -> str | None:
    if len(shape) != 4:
        return None
    return "NCHW" if family in ("torch", "onnx") else "NHWC"


def prepare_source(source: Source, options: ConvertOptions) -> Reference:
    """Load the source, bind sample inputs and compute reference outputs (dynamic dims not yet)."""
    from fwconv.validators.runners import make_runner

    family = family_of(source.format)
    torch_source, prepared = None, None
    if source.format == "onnx":
        from fwconv.convert.onnx_prepare import prepare_onnx_source

        # A corrupt file is the user's input error, not a runtime failure. An opset older than the
        # runtimes take is upgraded once, on a private copy that the runner and the edges read.
        prepared = prepare_onnx_source(source.path)
    if family == "torch":
        from fwconv.models.torch_source import load_torch_source

        start = time.perf_counter()
        torch_source = load_torch_source(source.path, trust_pickle=options.trust_pickle)
        loaded = time.perf_counter() - start
        runner = make_runner(torch_source)
    else:
        model_path = prepared.path if prepared else source.path
        runner, loaded = make_runner(model_path, fmt=source.format, trust_pickle=options.trust_pickle), 0.0
    if prepared:
        prepared.bind(runner)  # the copy lives as long as the reference runner
    runner.activate()
    runner.load_seconds += loaded  # the source was loaded before the runner wrapped it
    sample = _sample(runner, options)
    outputs = runner.infer(sample)
    spec = lambda n, a: TensorSpec(n, list(a.shape), a.dtype.name, _layout_of(a.shape, family))
    artifact = Artifact(path=source.path, format=source.format, inputs=[spec(n, a) for n, a in sample.items()],
                        outputs=[spec(n, a) for n, a in outputs.items()])
    if prepared:
        prepared.annotate(artifact)
    return Reference(artifact, runner, torch_source, sample, outputs)


def _sample(runner, options: ConvertOptions) -> dict[str, np.ndarray]:
    """The sample inputs: the user's arrays, else seeded synthetic ones of the given or recorded shapes."""
    from fwconv.validators.inputs import parse_ranges, synthetic_inputs

    names = runner.input_names()
    if options.inputs:
        arrays = load_npz(options.inputs)
        return bind_arrays(arrays, [TensorSpec(n, []) for n in names[: len(arrays)]])
    try:
        recorded = runner.input_specs()
    except InputError:
        recorded = None
    for spec in recorded or []:  # TF models often leave only the batch open: take 1
        if spec.shape and spec.shape[0] is None and all(isinstance(d, int) for d in spec.shape[1:]):
            spec.shape[0] = 1
    specs = _sample_specs(options, names, recorded)
    return synthetic_inputs(specs, seed=0, ranges=parse_ranges(options.input_range), int_bounds=runner.index_bounds())


def dynamic_dims(options: ConvertOptions, ref: Reference) -> dict:
    """{input: {dim: DynamicDim}}: the user's --dynamic, and the dims the source already keeps
    variable (a .pt2's torch.export.Dims, an ONNX model's symbolic dims, a TF/Keras signature's
    open dims). A dim the user asks for that the source fixed is an error: its graph was
    specialised to that size."""
    from fwconv import dynamic as dyn

    artifact, own = ref.artifact, ()
    if ref.torch_source is not None and ref.torch_source.kind == "exported":
        own = dyn.of_exported_program(ref.torch_source.model, list(ref.sample))
        _refuse_fixed(artifact, options.dynamic, own, "exported with static shapes",
                      "export it with torch.export.Dim (dynamic_shapes=...) at a size above 1, or give a factory")
        _refuse_wider(artifact, options.dynamic, own)
    elif artifact.format == "onnx":
        from fwconv.models.onnx import input_dim_params, io_specs, load_onnx

        model = load_onnx(artifact.path, check=False)
        own = dyn.of_onnx_inputs(io_specs(model)[0], input_dim_params(model))
        _refuse_fixed(artifact, options.dynamic, own, "its ONNX graph fixes that size",
                      "export the ONNX model with that dim symbolic (torch.onnx.export dynamic_shapes=/dynamic_axes=)")
    elif artifact.format in ("savedmodel", "keras"):
        own = _tf_dims(artifact, options, ref.runner)
    shapes = {n: list(a.shape) for n, a in ref.sample.items()}
    table = dyn.per_input(tuple(own) + tuple(options.dynamic), shapes)
    dyn.check_examples(options.dynamic, table, shapes)
    return table


def _tf_dims(artifact: Artifact, options: ConvertOptions, runner) -> tuple:
    from fwconv import dynamic as dyn

    try:
        specs = runner.input_specs()
    except InputError:  # a signature fwconv cannot read shapes from: the user's --input-shape stands
        specs = []
    open_dims = tuple(dyn.DynamicDim(s.name, i, "") for s in specs for i, d in enumerate(s.shape) if d is None)
    if specs:
        _refuse_fixed(artifact, options.dynamic, open_dims, "its TensorFlow signature fixes that size",
                      "save the model with None in that dim of its input (keras.Input(shape=(None, ...)))")
    return dyn.tf_signature_dims(specs)


def _refuse_wider(artifact: Artifact, asked: tuple, own: tuple) -> None:
    """A MAX above the range the .pt2 was exported with: its graph's guards hold only inside it."""
    for d in asked:
        for o in own:
            if o.dim == d.dim and d.input in (None, o.input) and o.max is not None and (d.max or 0) > o.max:
                raise InputError(f"{artifact.path}: dim {o.dim} of {o.input} was exported for sizes {o.min}..{o.max}, "
                                 f"so --dynamic cannot stretch it to {d.max}",
                                 hint="ask for a MAX inside the exported range, or re-export with a wider torch.export.Dim")


def _refuse_fixed(artifact: Artifact, asked: tuple, own: tuple, why: str, hint: str) -> None:
    """A dim the user asks to vary that the source's graph fixed: refused (its graph was built for that size)."""
    fixed = [d for d in asked if not any(o.dim == d.dim and d.input in (None, o.input) for o in own)]
    if fixed:
        raise InputError(f"{artifact.path}: {why} (dim {fixed[0].dim} of {fixed[0].input or 'its inputs'} is fixed), "
                         "so --dynamic cannot make it variable", hint=hint)
