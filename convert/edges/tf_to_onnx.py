"""TensorFlow SavedModel / Keras / TFLite -> ONNX with tf2onnx, names and order kept.

- SavedModel: the `serving_default` signature; ONNX inputs/outputs take the signature's keys.
- Keras (.keras): loaded with safe_mode (a Lambda layer's Python code is refused unless the
  user trusts the file), exported to a SavedModel in the scratch dir, then as above.
- TFLite: tf2onnx reads the flatbuffer; its raw tensor names ("serving_default_image:0") are
  renamed to the .tflite signature's keys.
TensorFlow models are channel-last: by default the ONNX (and so the PyTorch) model keeps NHWC;
`--layout nchw` makes 4-D inputs/outputs channel-first (tf2onnx inputs_as_nchw/outputs_as_nchw),
and the interface map records the transposes.
"""

from __future__ import annotations

import os
import re

from fwconv.convert.edges import Capabilities, Edge
from fwconv.convert.job import Artifact, Job
from fwconv.interface import Binding, Interface
from fwconv.models.onnx import io_specs, load_onnx
from fwconv.models.keras import load_keras
from fwconv.errors import ConversionError, UnsupportedOpError, first_line, require
from fwconv.manifest import tool_versions
from fwconv.quiet import captured_output

TOOLS = ("tf2onnx", "tensorflow", "keras", "onnx")
MAX_OPSET = 18  # tf2onnx 1.17 rejects newer opsets
TO_NCHW = (0, 3, 1, 2)


def _opset(job: Job) -> int:
    return job.opset(MAX_OPSET)


def _nchw_names(specs, want: bool) -> list[str]:
    return [s.name for s in specs if want and len(s.shape) == 4]


def _convert(job: Job, run, what: str):
    tf2onnx = require("tf2onnx", "tf")
    from fwconv.convert.tf2onnx_compat import register

    register()
    with job.stage("convert:tf2onnx") as record, captured_output() as cap:
        try:
            return run(tf2onnx)
        except Exception as exc:
            record.detail = first_line(exc)
            ops = re.findall(r"[Uu]nsupported ops?: .*?Counter\(\{'?([A-Za-z0-9_]+)", str(exc) + cap.text)
            if ops:
                raise UnsupportedOpError(ops, stage="convert") from exc
            raise ConversionError("convert", f"tf2onnx could not convert the {what}: {first_line(exc)}",
                                  hint="--debug shows its log") from exc


def _finish(proto, job: Job, prev: Artifact, out: str, nchw_in: list[str], nchw_out: list[str]) -> Artifact:
    onnx = require("onnx", "tf")
    unsupported = sorted({n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if unsupported:
        raise UnsupportedOpError(unsupported, stage="convert", hint="tf2onnx left ops with no ONNX equivalent")
    onnx.save(proto, out)
    model = load_onnx(out)
    inputs, outputs = io_specs(model)
    layouts = {s.name: s.layout for s in prev.inputs + prev.outputs}
    for spec in inputs + outputs:
        transposed = spec.name in nchw_in or spec.name in nchw_out
        spec.layout = "NCHW" if transposed else layouts.get(spec.name)
    interface = Interface(*(tuple(Binding(s.name, s.name, TO_NCHW if s.name in names else None) for s in specs)
                            for specs, names in ((inputs, nchw_in), (outputs, nchw_out))))
    return Artifact(path=out, format="onnx", inputs=inputs, outputs=outputs, tools=tool_versions(*TOOLS),
                    notes=[f"tf2onnx opset {_opset(job)}", f"layout: {'NCHW (transposed)' if nchw_in or nchw_out else 'as the source'}"],
                    extra={"opset": _opset(job)}, interface=interface)


def _from_savedmodel(path: str, job: Job, prev: Artifact, out: str) -> Artifact:
    want = job.options.layout == "nchw"
    nchw_in, nchw_out = _nchw_names(prev.inputs, want), _nchw_names(prev.outputs, want)

    def run(tf2onnx):
        from tf2onnx import tf_loader
        from tf2onnx.convert import _convert_common

        graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
            path, None, None, None, ["serving_default"], None, False,
            return_initialized_tables=True, return_tensors_to_rename=True)
        back = {v: k for k, v in renames.items()}
        # The sample's shapes (TF leaves the batch open; onnx2tf and tracing need it fixed), except
        # the dims that stay dynamic: None there, so the ONNX input has a symbolic dim.
        shapes = {back[n]: [None if i in job.dynamic.get(n, {}) else size for i, size in enumerate(a.shape)]
                  for n, a in job.sample.items() if n in back}
        proto, _ = _convert_common(graph_def, name=os.path.basename(path), opset=_opset(job), input_names=inputs,
                                   output_names=outputs, tensors_to_rename=renames, initialized_tables=tables,
                                   shape_override=shapes,
                                   inputs_as_nchw=[back[n] for n in nchw_in], outputs_as_nchw=[back[n] for n in nchw_out])
        return proto

    return _finish(_convert(job, run, "SavedModel"), job, prev, out, nchw_in, nchw_out)


def savedmodel_to_onnx(artifact: Artifact, job: Job, out: str) -> Artifact:
    return _from_savedmodel(artifact.path, job, artifact, out)


def keras_to_onnx(artifact: Artifact, job: Job, out: str) -> Artifact:
    model = load_keras(artifact.path, trust=job.options.trust_pickle)
    saved = os.path.join(job.workdir, "keras_saved_model")
    with job.stage("export:keras->savedmodel"), captured_output():
        model.export(saved, verbose=False)
    return _from_savedmodel(saved, job, artifact, out)


def tflite_to_onnx(artifact: Artifact, job: Job, out: str) -> Artifact:
    from fwconv.models.tflite import read_io

    rename = {raw: key for key, raw in read_io(artifact.path)["tensor_names"].items()}  # raw tensor name -> key
    want = job.options.layout == "nchw"
    back = {v: k for k, v in rename.items()}
    nchw_in, nchw_out = _nchw_names(artifact.inputs, want), _nchw_names(artifact.outputs, want)

    def run(tf2onnx):
        proto, _ = tf2onnx.convert.from_tflite(artifact.path, opset=_opset(job),
                                               inputs_as_nchw=[back.get(n, n) for n in nchw_in],
                                               outputs_as_nchw=[back.get(n, n) for n in nchw_out])
        return proto

    proto = _convert(job, run, ".tflite")
    _rename(proto, rename)
    return _finish(proto, job, artifact, out, nchw_in, nchw_out)


def _rename(proto, mapping: dict[str, str]) -> None:
    """Rename tensors everywhere in an ONNX graph (graph I/O, node inputs and outputs)."""
    if not mapping:
        return
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.name = mapping.get(value.name, value.name)
    for node in proto.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


EDGES = [
    Edge("savedmodel", "onnx", savedmodel_to_onnx, TOOLS),
    Edge("keras", "onnx", keras_to_onnx, TOOLS),
    Edge("tflite", "onnx", tflite_to_onnx, TOOLS, tool="tf2onnx", caps=Capabilities(
        dynamic="no", why=(("dynamic", "keeps shapes static: fwconv drives tf2onnx's TFLite reader at the sample's "
                                       "shapes"),))),
]
