"""ONNX -> TensorFlow SavedModel and TFLite, through onnx2tf, with the source's interface kept.

onnx2tf builds a Keras model (NHWC inside). What we do around it, and why (see FIELD-NOTES):
- it runs on a copy in a scratch cwd: it rewrites the .onnx it is given and writes side files;
- inputs keep their ONNX shape (keep_shape_absolutely_input_names), which also avoids its
  sample-image download for NHWC 3-channel inputs; a calibration file sits in the cwd anyway;
- it checks itself on the real sample, not all-ones (all-ones mis-converted LayerNorm+attention);
- Erf/GELU become builtin pseudo-ops ('erf'/'gelu', lowercase: other spellings are ignored);
- outputs come out channel-last or not, depending on internal layout: we pick each output's
  permutation from its shape (and, if both fit, from the numbers) and wrap the Keras model in a
  tf.function that restores the ONNX layout (or gives NHWC with --layout nhwc) under the ONNX names;
- the SavedModel and the .tflite are exported from that wrapper (the .tflite straight from its
  concrete function, no SavedModel round trip); TFLITE_BUILTINS only unless
  --allow-flex, so a Flex op is a named error, not a model that fails on the device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re

import numpy as np

from fwconv.convert.edges import Edge
from fwconv.convert.job import Artifact, Job
from fwconv.interface import Binding, Interface
from fwconv.convert.onnx_prepare import (PREPARE_STAGES, adopt_prepare_stages, constants_to_initializers,
                                         decompose_prelu, fold_col2im, name_nodes, split_strided_dilated_convs,
                                         undilate_max_pools)
from fwconv.models.onnx import io_specs, load_onnx
from fwconv.errors import ConversionError, InputError, UnsupportedOpError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.quiet import captured_output, tail
from fwconv.specs import TensorSpec, identifier

TOOLS = ("onnx2tf", "tensorflow", "tf-keras", "onnx", "onnxruntime", "onnxsim")
PSEUDO_OPS = ("erf", "gelu")


@dataclasses.dataclass(frozen=True)
class Onnx2TfSettings:
    """How onnx2tf's private copy of the graph is prepared and converted. The repairs
    (convert/repair.py) are replacements of these fields; the manifest records what ran."""

    opset_upgrade: int | None = None  # first bring an older graph to this opset (ONNX's version converter)
    onnxsim: bool = True  # simplify first (a dynamo export is already optimized: skipped there anyway)
    pseudo_ops: tuple = PSEUDO_OPS  # onnx2tf's replace_to_pseudo_operators (Erf/GELU as builtins)
    batchmatmul_unfold: bool = False
    group_convolution: bool = True

    @classmethod
    def from_options(cls, options) -> "Onnx2TfSettings":
        return cls()

    def onnx2tf_kwargs(self) -> dict:
        return {"replace_to_pseudo_operators": list(self.pseudo_ops), "enable_batchmatmul_unfold": self.batchmatmul_unfold,
                "disable_group_convolution": not self.group_convolution}
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def tf_name(name: str) -> str:
    """A TensorFlow-safe signature key for an ONNX tensor name."""
    return identifier(name)


@contextlib.contextmanager
def _cwd(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _channel_last_perm(rank: int) -> list[int]:
    """Permutation taking a channel-last tensor [N, d2.., C] back to channel-first [N, C, d2..]."""
    return [0, rank - 1] + list(range(1, rank - 1))


def _pick_perm(keras_out: np.ndarray, onnx_out: np.ndarray) -> list[int] | None:
    fitting = _fitting(keras_out, onnx_out.shape)
    if not fitting:
        return None
    if len(fitting) == 1:
        return fitting[0]
    errs = [float(np.max(np.abs(keras_out.transpose(p).astype(np.float64) - onnx_out))) for p in fitting]
    return fitting[int(np.argmin(errs))]


def run_onnx2tf(onnx_path: str, job: Job, exporter: str | None = None):
    """onnx2tf on a scratch copy; returns (keras model, onnx inputs, onnx outputs, sample feed,
    notes). Dims only the source left open (no --dynamic asked for them) are kept where onnx2tf
    can; where it cannot (an ONNX BERT's symbolic sequence length failed here) they are fixed
    at the sample's sizes, once, and the note says so. Dims the user asked for are never frozen."""
    model = load_onnx(onnx_path)
    settings = job.settings(Onnx2TfSettings)
    try:
        return (*_onnx2tf(model, job, exporter, settings), [])
    except ConversionError:
        if job.options.dynamic or not job.dynamic:
            raise
    frozen = sorted({d.label for per in job.dynamic.values() for d in per.values()})
    _fix_input_dims(model, job)
    job.dynamic = {}
    note = f"the source's dynamic dims ({', '.join(frozen)}) are fixed at the sample's sizes: onnx2tf could not keep them"
    return (*_onnx2tf(model, job, exporter, settings), [note])


def _fix_input_dims(model, job: Job) -> None:
    """The job's dynamic input dims set to the sample's sizes in this (private) copy of the graph."""
    for value in model.graph.input:
        for i in job.dynamic.get(value.name, {}):
            dim = value.type.tensor_type.shape.dim[i]
            dim.Clear()
            dim.dim_value = int(job.sample[value.name].shape[i]) if value.name in job.sample else 1


def _onnx2tf(model, job: Job, exporter: str | None, settings: Onnx2TfSettings):
    onnx = require("onnx", "tflite")
    onnx2tf = require("onnx2tf", "tflite")
    inputs, outputs = io_specs(model)
    for spec in inputs:
        fixed_unknown = [i for i, d in enumerate(spec.shape) if d is None and i not in job.dynamic.get(spec.name, {})]
        if fixed_unknown:
            raise InputError(f"ONNX input '{spec.name}' has dynamic dims {fixed_unknown} fwconv was not told about",
                             hint=f"keep them with --dynamic {spec.name}:{fixed_unknown[0]}, or export fixed shapes")
    work = os.path.join(job.workdir, "onnx2tf")
    os.makedirs(work, exist_ok=True)
    copy = os.path.join(work, "model.onnx")
    model = _prepare_copy(model, job, exporter, settings)
    onnx.save(model, copy)  # external data inlined; the user's file is never touched
    np.save(os.path.join(work, CALIBRATION_FILE), np.zeros((1, 8, 8, 3), np.float32))
    feed = _onnx_feed(job, inputs)
    data_paths = []
    for spec in inputs:
        path = os.path.join(work, f"sample_{len(data_paths)}.npy")
        np.save(path, feed[spec.name])
        data_paths.append([spec.name, path])
    with job.stage("convert:onnx2tf") as record, _cwd(work), captured_output() as cap:
        try:
            keras_model = onnx2tf.convert(
                input_onnx_file_path=copy, output_folder_path=os.path.join(work, "out"),
                keep_shape_absolutely_input_names=[s.name for s in inputs],
                custom_input_op_name_np_data_path=data_paths,
                not_use_onnxsim=True, not_use_opname_auto_generate=True,
                disable_model_save=True, verbosity="error", **settings.onnx2tf_kwargs())
        except SystemExit as exc:  # onnx2tf exits the process (SystemExit) on many errors
            record.detail = tail(cap.text, 3)
            raise ConversionError("convert", f"onnx2tf stopped (exit {exc.code}): {tail(cap.text, 2) or 'no message'}",
                                  hint="run with --debug for its full log") from None
        except Exception as exc:
            hint = ("onnx2tf could not keep the --dynamic dims variable here: convert at a fixed size, or to ONNX"
                    if job.dynamic else "run with --debug for its full log")
            raise ConversionError("convert", f"onnx2tf failed: {first_line(exc)}", hint=hint) from exc
    return keras_model, inputs, outputs, feed


def _prepare_copy(model, job: Job, exporter: str | None, settings: Onnx2TfSettings):
    """What onnx2tf's copy of the graph goes through first: onnxsim, then the rewrites onnx2tf
    needs (each exact, each counted in the stage record)."""
    from fwconv.convert.onnx_functions import expand_function_ops

    model = _upgrade_for_repair(model, job, settings.opset_upgrade)
    with job.stage("prepare:onnxsim") as record:
        # expanded before onnxsim, which folds what the bodies compute from static shapes
        model, expanded, failed = expand_function_ops(model)
        if exporter == "dynamo" and not expanded:  # already optimized by the exporter's onnxscript pass
            record.detail = "skipped: dynamo export is already optimized"
        elif not settings.onnxsim:
            record.detail = "skipped (repair: no-onnxsim)"
        else:
            model, record.detail = simplify(model)
        moved = constants_to_initializers(model)
        record.detail += f"; {moved} Constant nodes -> initializers" if moved else ""
        if expanded or failed:
            done = ", ".join(f"{n} {op}" for op, n in expanded.items())
            record.detail = f"{failed or done + ' expanded into ONNX function bodies (no onnx2tf converter)'}; " \
                            + record.detail
    with job.stage("prepare:onnx2tf") as record:
        done = [(name_nodes(model), "nodes named"), (decompose_prelu(model), "PRelu -> Relu arithmetic"),
                (split_strided_dilated_convs(model), "strided dilated Conv -> Conv + strided Slice"),
                (undilate_max_pools(model), "dilated MaxPool -> MaxPool(kernel 1, stride d) + MaxPool"),
                (fold_col2im(model), "non-overlapping Col2Im -> Reshape + Transpose + Reshape")]
        record.detail = "; ".join(f"{n} {what}" for n, what in done if n) or "nothing to rewrite"
        if done[-1][0]:  # onnx2tf reads the new Reshapes' output shapes from value_info
            model = require("onnx", "tflite").shape_inference.infer_shapes(model)
    return model


def _upgrade_for_repair(model, job: Job, target: int | None):
    """Repair `onnx-opset-upgrade`: bring an older graph to the repair's opset with ONNX's version
    converter (new attribute forms become inputs, which onnx2tf reads right)."""
    from fwconv.convert.onnx_prepare import modernize
    from fwconv.models.onnx import default_opset

    from fwconv.convert.repair import RepairNotApplicable

    if not target:
        return model
    if (default_opset(model) or target) >= target:
        raise RepairNotApplicable(f"the graph is already at opset {default_opset(model)}")
    with job.stage("prepare:opset-upgrade") as record:
        upgraded, details = modernize(model, target)
        record.detail = "; ".join(details)
        if upgraded is None:
            raise ConversionError("prepare", f"opset upgrade failed: {record.detail}")
    return upgraded


# onnxsim's fusions into ops onnx2tf 1.28 has no converter for: ONNX Runtime's com.microsoft
# Attention / GroupQueryAttention, and opset 23's RMSNormalization / RotaryEmbedding (which fwconv
# has just expanded out of the graph: convert/onnx_functions.py)
ONNXSIM_FUSIONS_SKIPPED = ["fuse_attention", "fuse_gqa", "fuse_rms_norm", "fuse_rope"]


def simplify(model):
    """Fold constants and infer shapes with onnxsim before onnx2tf sees the graph: onnx2tf
    mis-handles some unfolded graphs (e.g. ReduceMean axes given by a Constant node from the
    TorchScript exporter). If onnxsim cannot, or its result has an op the graph did not and onnx2tf
    cannot convert, go on with the original graph and say so."""
    from fwconv.convert.onnx_functions import onnx2tf_lacks

    onnxsim = require("onnxsim", "tflite")
    try:
        with captured_output():
            simplified, ok = onnxsim.simplify(model, skipped_optimizers=ONNXSIM_FUSIONS_SKIPPED)
    except Exception as exc:
        return model, f"onnxsim skipped: {first_line(exc)}"
    if not ok:
        return model, "onnxsim check failed; original graph used"
    kinds = lambda m: {(n.domain or "ai.onnx", n.op_type) for n in m.graph.node}
    added = sorted(f"{d}.{op}" for d, op in kinds(simplified) - kinds(model) if d != "ai.onnx" or onnx2tf_lacks(op))
    if added:  # a fusion onnx2tf cannot take (a runtime's contrib op, a newer standard op)
        return model, f"onnxsim fused into {', '.join(added)}, which onnx2tf cannot convert; original graph used"
    return simplified, "simplified"


def _onnx_feed(job: Job, inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """The job's sample, keyed by ONNX names (same order), cast to the ONNX dtypes."""
    values = list(job.sample.values())
    if len(values) != len(inputs):
        raise ConversionError("convert", f"the ONNX model takes {len(inputs)} inputs, the sample has {len(values)}")
    return {s.name: v.astype(s.dtype) for s, v in zip(inputs, values)}


def _reference_outputs(onnx_path: str, feed, outputs: list[TensorSpec], keras_outs) -> dict:
    """What each output must look like. Static ONNX shapes settle most layouts; only when a
    shape fits both readings (e.g. [1, 8, 8, 8]) are the numbers needed, so only then does
    ONNX Runtime run."""
    ambiguous = any(not spec.is_static or len(_fitting(y, spec.shape)) != 1 for spec, y in zip(outputs, keras_outs))
    if not ambiguous:
        return {spec.name: np.empty(spec.shape, np.float32) for spec in outputs}
    ort = require("onnxruntime", "onnx")
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def _fitting(y: np.ndarray, shape) -> list[list[int]]:
    candidates = [list(range(y.ndim))] + ([_channel_last_perm(y.ndim)] if y.ndim >= 3 else [])
    return [p for p in candidates if list(y.transpose(p).shape) == list(shape)]


def build_wrapper(keras_model, onnx_path: str, inputs, outputs, feed, layout: str):
    """A tf.Module whose serving function has the ONNX interface (or NHWC with layout='nhwc')."""
    tf = require("tensorflow", "tflite")
    keras_outs = keras_model([tf.constant(feed[s.name]) for s in inputs])
    keras_outs = [np.asarray(y) for y in (keras_outs if isinstance(keras_outs, (list, tuple)) else [keras_outs])]
    if len(keras_outs) != len(outputs):
        raise ConversionError("convert", f"onnx2tf produced {len(keras_outs)} outputs for {len(outputs)} ONNX outputs")
    onnx_outs = _reference_outputs(onnx_path, feed, outputs, keras_outs)
    perms = []
    for spec, y in zip(outputs, keras_outs):
        perm = _pick_perm(y, onnx_outs[spec.name])
        if perm is None:
            raise ConversionError("convert", f"onnx2tf output for '{spec.name}' has shape {list(np.shape(y))}, "
                                             f"which no layout maps to the ONNX shape {spec.shape}")
        perms.append(perm)
    nhwc = layout == "nhwc"
    in_perm = {s.name: (0, 2, 3, 1) if nhwc and len(s.shape) == 4 else None for s in inputs}
    out_perm = {s.name: (0, 2, 3, 1) if nhwc and len(s.shape) == 4 else None for s in outputs}
    signature = []
    for s in inputs:
        shape = [s.shape[i] for i in in_perm[s.name]] if in_perm[s.name] else s.shape
        signature.append(tf.TensorSpec(shape, tf.as_dtype(s.dtype), name=tf_name(s.name)))

    def serve(*xs):
        xs = [tf.transpose(x, np.argsort(in_perm[s.name])) if in_perm[s.name] else x for s, x in zip(inputs, xs)]
        ys = keras_model(list(xs))
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        result = {}
        for spec, y, perm in zip(outputs, ys, perms):
            if perm != list(range(len(perm))):
                y = tf.transpose(y, perm)
            if out_perm[spec.name]:
                y = tf.transpose(y, out_perm[spec.name])
            result[tf_name(spec.name)] = tf.identity(y)
        return result

    module = tf.Module()
    module.keras_model = keras_model
    module.serve = tf.function(serve, input_signature=signature)
    interface = Interface(tuple(Binding(s.name, tf_name(s.name), in_perm[s.name]) for s in inputs),
                          tuple(Binding(s.name, tf_name(s.name), out_perm[s.name]) for s in outputs))
    return module, interface


def _artifact_specs(prev: Artifact, interface: Interface, side: str) -> list[TensorSpec]:
    specs = []
    by_name = {s.name: s for s in (prev.inputs if side == "inputs" else prev.outputs)}
    for b in getattr(interface, side):
        src, perm = by_name.get(b.source), b.transpose
        shape = [src.shape[i] for i in perm] if (src and perm) else (list(src.shape) if src else [])
        layout = "NHWC" if perm else (src.layout if src else None)
        specs.append(TensorSpec(b.name, shape, src.dtype if src else "float32", layout))
    return specs


def _build(onnx_artifact: Artifact, job: Job):
    """onnx2tf + the interface wrapper. Returns (module, concrete function, artifact template)."""
    adopt_prepare_stages(onnx_artifact, job)
    keras_model, inputs, outputs, feed, frozen = run_onnx2tf(onnx_artifact.path, job, onnx_artifact.extra.get("exporter"))
    with job.stage("wrap"):
        module, interface = build_wrapper(keras_model, onnx_artifact.path, inputs, outputs, feed, job.options.layout)
        concrete = module.serve.get_concrete_function()
        # onnx2tf creates some variables outside Keras layers (e.g. depthwise conv kernels);
        # tracking everything the function captures lets SavedModel/TFLite export include them.
        module.captured_variables = list(concrete.variables)
    template = Artifact(
        path="", format="", inputs=_artifact_specs(onnx_artifact, interface, "inputs"),
        outputs=_artifact_specs(onnx_artifact, interface, "outputs"), tools=tool_versions(*TOOLS),
        notes=onnx_artifact.notes + [f"onnx2tf pseudo-ops: {', '.join(job.used[Onnx2TfSettings].pseudo_ops) or 'none'}",
                                     f"layout: {job.options.layout}"]
        + frozen,
        extra={**{k: v for k, v in onnx_artifact.extra.items() if k != PREPARE_STAGES}, "signature": "serving_default"},
        interface=onnx_artifact.interface.compose(interface) if onnx_artifact.interface else interface,
    )
    if frozen:  # the artifact's inputs are the sample's sizes now, not the ONNX's open dims
        for b, spec in zip(interface.inputs, template.inputs):
            if b.source in feed:
                shape = list(feed[b.source].shape)
                spec.shape = [shape[i] for i in b.transpose] if b.transpose else shape
    return module, concrete, template


def onnx_to_savedmodel(artifact: Artifact, job: Job, out: str) -> Artifact:
    tf = require("tensorflow", "tflite")
    module, concrete, template = _build(artifact, job)
    with job.stage("save:savedmodel"), captured_output():
        tf.saved_model.save(module, out, signatures={"serving_default": concrete})
    return dataclasses.replace(template, path=out, format="savedmodel")


def onnx_to_tflite(artifact: Artifact, job: Job, out: str) -> Artifact:
    """Straight from the wrapper's concrete function (no SavedModel round trip on disk): the
    signature keeps the source's input/output names."""
    tf = require("tensorflow", "tflite")
    from fwconv.models.tflite import op_summary, read_io, set_io_order

    module, concrete, template = _build(artifact, job)

    def make_converter():  # a converter converts once: selective quantization needs a fresh one
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if job.options.allow_flex:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = ops
        return converter, _configure_quantization(converter, job, template)

    with job.stage("convert:tflite") as record, captured_output() as cap:
        converter, quant_notes = make_converter()
        try:
            flatbuffer = converter.convert()
        except Exception as exc:
            text = str(exc) + "\n" + cap.text
            # The converter lists unsupported raw ops as "tf.OpName {...}" (CamelCase = a TF op).
            flex = sorted({f"Flex{name}" for name in re.findall(r"\btf\.([A-Z][A-Za-z0-9]+)\b", text)})
            record.detail = first_line(exc)
            if "Select TensorFlow op" in text or "TF Select" in text or flex:
                raise UnsupportedOpError(flex or ["(see --debug)"], stage="convert",
                                         hint="pass --allow-flex to keep them as Select-TF ops") from exc
            raise ConversionError("convert", f"TFLite converter failed: {first_line(exc)}") from exc
    flatbuffer, quantization = _selective_quantization(lambda: make_converter()[0], flatbuffer, job, template)
    with open(out, "wb") as f:
        f.write(flatbuffer)
    # TF's converter may list the output tensors in another order than the function's: apps that
    # read by index must get the source's order.
    set_io_order(out, [s.name for s in template.inputs], [s.name for s in template.outputs])
    summary = op_summary(out)
    if (summary["flex"] or summary["custom"]) and not job.options.allow_flex:
        raise UnsupportedOpError(summary["flex"] + summary["custom"], stage="check")
    real = {}
    if not (summary["flex"] or summary["custom"]):  # plain LiteRT cannot open a model with Flex ops
        io = read_io(out)  # the stored dtypes and quantization parameters, for the app
        real = {s.name: s for s in io["inputs"] + io["outputs"]}
    for spec in template.inputs + template.outputs:
        if spec.name in real:
            spec.dtype, spec.quantization = real[spec.name].dtype, real[spec.name].quantization
    if quantization:
        from fwconv.convert.quant_repair import notes

        quant_notes += notes(quantization)
        template.extra = {**template.extra, "quantization": quantization}
    return dataclasses.replace(template, path=out, format="tflite", ops=summary, notes=template.notes + quant_notes)


def _selective_quantization(make_converter, flatbuffer: bytes, job: Job, template: Artifact):
    """Full int8 judged by the validator; if it fails, the most int8-sensitive ops stay float
    (convert/quant_repair.py). Returns (flatbuffer, record for the manifest or None)."""
    from fwconv.convert import quant_repair

    if not quant_repair.applies(job):
        return flatbuffer, None
    with job.stage("quantize:per-layer") as record, captured_output():
        flatbuffer, quantization = quant_repair.fit(make_converter(), flatbuffer, job, template)
        record.detail = f"{len(quantization['float_ops'])} float op(s), {len(quantization['attempts'])} attempt(s)"
    return flatbuffer, quantization


def _configure_quantization(converter, job: Job, template: Artifact) -> list[str]:
    """fp16 weights, dynamic-range int8 weights, or full int8 calibrated on the user's samples."""
    tf = require("tensorflow", "tflite")
    mode = job.options.quantize
    if not mode:
        return []
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return ["precision: fp16 weights"]
    if mode == "dynamic":
        return ["precision: dynamic-range int8 weights, float activations"]
    from fwconv.convert.calibration import load_calibration

    specs = [TensorSpec(n, list(a.shape), a.dtype.name) for n, a in job.sample.items()]
    samples = load_calibration(job.options.calibration, specs)
    def representative():
        for sample in samples:
            yield [a.astype(np.float32) for a in template.interface.feed(sample).values()]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    notes = [f"precision: full int8, calibrated on {len(samples)} samples from {os.path.basename(job.options.calibration)}"]
    if job.options.int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        notes.append("int8 input/output tensors (see each tensor's scale/zero_point)")
    return notes


EDGES = [
    Edge("onnx", "savedmodel", onnx_to_savedmodel, TOOLS, tool="onnx2tf"),
    Edge("onnx", "tflite", onnx_to_tflite, TOOLS, tool="onnx2tf"),
]
