"""Serving bundles: the writer (:mod:`marquee.export.writer`, torch side) and the loader (:mod:`marquee.export.bundle`).

A bundle is one folder a service answers from: ``manifest.json`` (versions, config, data fingerprint,
metrics, the sha256 of every other file), each stage's networks as ONNX and ``torch.export`` ``.pt2``,
item vectors and the FAISS index, vocabularies, the feature spec, item metadata and, when given, the
artwork policy's parameters. ``python -m marquee.export run_dir=RUN out=BUNDLE`` writes one.

This package imports nothing itself, so ``marquee.export.bundle`` loads in a process without torch.
"""
