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
def inspect_command(model, print_json, trust_pickle):
    """Describe MODEL (.tflite, .onnx, SavedModel, .pt, .pt2, .pte): I/O names, shapes, dtypes, layouts,
    quantization, signatures, ops, size and sha256."""
    import json

    from fwconv.models.describe import describe, to_text

    info = describe(model, trust_pickle=trust_pickle)
    click.echo(json.dumps(info, indent=2, default=str) if print_json else to_text(info))
