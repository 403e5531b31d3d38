"""`fwconv inspect MODEL`: what a model file is, for people and (--json) for programs."""

from __future__ import annotations

import click

from fwconv.cli.base import handle_errors, main
from fwconv.cli.doors import options_for
from fwconv.options import INSPECT


@main.command("inspect")
@click.argument("model")
@options_for(INSPECT)
@handle_errors
def inspect_command(model, print_json, **kw):
    """Describe MODEL (.tflite, .onnx, SavedModel, .pt, .pt2, .pte): I/O names, shapes, dtypes, layouts,
    quantization, signatures, ops, size and sha256. For a TorchScript .pt given --input-shape: TS2EP
    tried at that sample and the routes it leaves open."""
    import json

    from fwconv.models.describe import describe, to_text
    from fwconv.options import Options

    info = describe(model, trust_pickle=kw["trust_pickle"])
    if info.get("kind") == "torchscript" and kw["input_shape"]:
        from fwconv.convert.ts2ep import open_routes, route_lines

        probe = open_routes(model, Options(**kw))
        info.update(ts2ep=probe["ts2ep"], open_routes=probe["open"], routes=route_lines(probe))
        if info.get("note"):
            info["note"] += f" (routes tried at the given {probe['ts2ep']['sample']})"
    click.echo(json.dumps(info, indent=2, default=str) if print_json else to_text(info))
