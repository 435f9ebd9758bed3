"""One network traced once by ``torch.export`` with dynamic sizes, saved as ``.pt2`` and as ONNX.

The ONNX file comes from the same ExportedProgram through torch's dynamo exporter (which needs
``onnxscript``); the legacy TorchScript-based exporter would bake the example's history length into
the graph, and TorchScript itself is deprecated. Weights go to ``<name>.onnx.data`` beside the graph.
Before a graph is kept, onnxruntime runs it on the tracing example and on a batch of one history of
one event, and its outputs must match the module's (rtol 1e-4, atol 1e-5).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn
from torch.export import Dim

from marquee.export.networks import Input

log = logging.getLogger(__name__)

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # ONNX against PyTorch
EXAMPLE_SIZES = (3, 5, 7, 11, 13)  # example batch and candidate counts: distinct from each other and the fixed sizes


def example_sizes(max_len: int, inputs: list[Input]) -> tuple[int, int, int]:
    """(batch, history length, candidates) for tracing, pairwise different and different from every fixed axis.

    Equal example sizes would let the tracer take two dynamic axes for one (and fix the batch to the
    hidden size, if they matched).
    """
    fixed = {a for i in inputs for a in i.axes if isinstance(a, int)} | {max_len}
    batch, candidates = [s for s in EXAMPLE_SIZES if s not in fixed][:2]
    return batch, max_len, candidates


def check_onnx(module: nn.Module, path: Path, examples: list[dict[str, torch.Tensor]]) -> None:
    """Refuse (RuntimeError) an ONNX graph whose output on any of ``examples`` differs from the module's."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for example in examples:
        with torch.no_grad():
            expected = module(example).numpy()
        found = session.run(None, {k: v.numpy() for k, v in example.items()})[0]
        if found.shape != expected.shape or not np.allclose(found, expected, **TOLERANCE):
            sizes = {k: tuple(v.shape) for k, v in example.items()}
            raise RuntimeError(f"export: {path.name} does not reproduce PyTorch on inputs of sizes {sizes} "
                               f"(largest difference {np.abs(found - expected).max():.3g})")


def export_network(module: nn.Module, inputs: list[Input], example: dict[str, torch.Tensor], max_len: int,
                   directory: Path, name: str, output: str, checks: tuple[dict[str, torch.Tensor], ...] = ()
                   ) -> dict[str, object]:
    """Write ``<name>.pt2``, ``<name>.onnx`` and ``<name>.onnx.data`` into ``directory``; return their names and opset.

    Batch and candidate counts are dynamic from 1 up, the history length from 1 to ``max_len``. The ONNX
    graph is checked against ``module`` on ``example`` and ``checks`` (:func:`check_onnx`).
    """
    dims = {"batch": Dim("batch", min=1), "seq": Dim("seq", min=1, max=max_len), "candidates": Dim("candidates", min=1)}
    dynamic = ({i.name: {axis: dims[a] for axis, a in enumerate(i.axes) if isinstance(a, str)} for i in inputs},)
    example = {i.name: example[i.name] for i in inputs}  # the graph's inputs, in the spec's order
    program = torch.export.export(module, (example,), dynamic_shapes=dynamic)
    torch.export.save(program, directory / f"{name}.pt2")
    onnx_program = torch.onnx.export(program, dynamo=True, input_names=[i.name for i in inputs], output_names=[output],
                                     verbose=False)
    onnx_program.save(directory / f"{name}.onnx", external_data=True)
    check_onnx(module, directory / f"{name}.onnx", [example, *({i.name: c[i.name] for i in inputs} for c in checks)])
    opset = next(o.version for o in onnx.load(directory / f"{name}.onnx", load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx"))
    log.info("exported %s/%s (.onnx, .pt2) reading %s", directory.name, name, [i.name for i in inputs])
    weights = f"{name}.onnx.data"  # absent when the network has no weights
    return {"onnx": f"{name}.onnx", "onnx_data": weights if (directory / weights).is_file() else None,
            "pt2": f"{name}.pt2", "opset": int(opset), "output": output}
