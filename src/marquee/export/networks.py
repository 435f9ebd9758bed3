"""The networks a bundle serves, as plain modules of one dict of tensors, ready for ``torch.export``.

Each exportable stage gives two: an ``encoder`` (a history and its request context -> a (B, d)
state: SASRec/BERT4Rec's user state, the two-tower's user vector) and a ``scorer`` (that state and
candidate ids (B, C) -> (B, C) scores against the stage's item table). Both read only tensors the
bundle's feature spec names, with dynamic batch, history length (1..max_len) and candidate count.

The models' own code is traced wherever it can be; two things cannot be and are replaced here only,
never in training: ``nn.MultiheadAttention`` transposes batch-first inputs before its projections,
which puts guards on the batch size and the history length (neither may be 1) into the trace, so
:class:`ExportableTransformer` computes the same layers with ``scaled_dot_product_attention``; and
the two-tower's "has the metadata table trained" flag is read once, at export, instead of in the graph.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from marquee.data.catalog import Catalog
from marquee.data.context import HOURS, WEEKDAYS
from marquee.errors import ConfigError
from marquee.models.base import Recommender
from marquee.models.sasrec import SASRec
from marquee.retrieval.cascade import CascadeRecommender
from marquee.retrieval.two_tower import TwoTower

EXPORTABLE = "SASRec, BERT4Rec (SASRec with bidirectional=true), TwoTower and cascades of them"


@dataclass(frozen=True)
class Input:
    """One input of an exported network: its name, dtype and axes (``batch``, ``seq``, ``candidates`` or a size)."""

    name: str
    dtype: str
    axes: tuple[str | int, ...]


# what each input holds; the bundle's feature spec repeats it for the service
MEANING = {
    "items": "history item ids (internal), left-padded with 0, the latest last",
    "event": "event type id of each history event (event_names[id - 1]), 0 at padding",
    "value": "logged value of each history event (rating, watch fraction), 0 at padding",
    "hour": "local hour + 1 (1..24) of each history event, 0 at padding or unknown",
    "dow": "local weekday + 1 (1 = Monday .. 7) of each history event, 0 at padding or unknown",
    "gap": "seconds since the member's previous event, 0 for the first and at padding",
    "device": "device id (devices[id - 1]) of each history event, 0 at padding or unknown",
    "target_hour": "local hour + 1 of the request",
    "target_dow": "local weekday + 1 of the request",
    "target_device": "device id of the request (0: unknown)",
    "user": "member id (internal; 0: unknown, no metadata)",
    "state": "the encoder's output",
    "candidates": "item ids (internal) to score; 0 pads",
}
FLOAT_INPUTS = ("value", "gap", "state")


class ExportableTransformer(nn.Module):
    """A pre-norm, batch-first ``nn.TransformerEncoder`` computed again from its own parameters.

    ``forward(x, mask)`` takes the model's (B * heads, L, L) boolean mask (True: may not attend) and
    gives what the encoder gives in eval mode; it shares every parameter with ``encoder``.
    """

    def __init__(self, encoder: nn.TransformerEncoder, heads: int):
        super().__init__()
        for layer in encoder.layers:
            if not (layer.norm_first and layer.self_attn.batch_first and layer.self_attn._qkv_same_embed_dim):
                raise ValueError("export: the encoder layers must be pre-norm, batch-first self-attention")
        self.layers, self.norm, self.heads = encoder.layers, encoder.norm, heads

    def forward(self, x: torch.Tensor, mask: torch.Tensor, **_: object) -> torch.Tensor:
        batch, length, hidden = x.shape
        allowed = ~mask.view(batch, self.heads, length, length)  # (B, heads, L, L)
        for layer in self.layers:
            attention = layer.self_attn
            qkv = F.linear(layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias)  # (B, L, 3 * hidden)
            q, k, v = qkv.view(batch, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, heads, L, hidden / heads)
            x = x + attention.out_proj(heads.transpose(1, 2).reshape(batch, length, hidden))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return self.norm(x) if self.norm is not None else x


class SequenceEncoder(nn.Module):
    """SASRec/BERT4Rec's :meth:`~marquee.models.sasrec.SASRec.encode_window` with the exportable transformer."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = copy.copy(model)  # shallow: every parameter is the model's own
        self.model._modules = {**model._modules, "encoder": ExportableTransformer(model.encoder, model.heads)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_window(inputs)  # (B, hidden)


class UserEncoder(nn.Module):
    """The two-tower's user tower over a history no longer than ``max_len``: (B, d) unit vectors."""

    def __init__(self, model: TwoTower):
        super().__init__()
        self.tower = model.user_tower
        self.register_buffer("known_items", model.item_trained.clone())
        self.uses_meta = bool(self.tower.use_meta and self.tower.meta_trained)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        items = inputs["items"]  # (B, L)
        rows = torch.arange(items.shape[0], device=items.device)
        cols = torch.full_like(rows, items.shape[1] - 1)
        context = {c: inputs[f"target_{c}"] for c in self.tower.context}
        users = inputs["user"] if self.uses_meta else None
        # training=True only keeps _encode from reading the tower's meta_trained flag, which a graph cannot
        # branch on: the flag was read above (users is None when metadata is off); the tower is in eval mode
        return self.tower._encode(items, self.known_items, rows, cols, context, users, training=True)


class CandidateScorer(nn.Module):
    """(B, d) states and candidate ids (B, C) -> (B, C) dot products with a fixed item table."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table.detach().clone())  # (n_items + 1, d), row 0 padding

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.einsum("bd,bcd->bc", inputs["state"], self.table[inputs["candidates"]])


@dataclass
class StageNetworks:
    """One stage of a system as the bundle holds it: its networks and their inputs, item table, history length."""

    role: str  # "retriever" (two-tower) or "ranker" (sequence model)
    model: Recommender
    encoder: nn.Module
    encoder_inputs: list[Input]
    scorer: CandidateScorer
    scorer_inputs: list[Input]
    item_table: torch.Tensor  # (n_items + 1, d)
    max_len: int

    def spec(self) -> dict:
        """The feature spec of this stage's networks (JSON)."""
        def table(inputs: list[Input]) -> list[dict]:
            return [{**asdict(i), "axes": list(i.axes), "meaning": MEANING[i.name]} for i in inputs]

        return {"kind": type(self.model).__name__, "max_len": self.max_len, "dim": int(self.item_table.shape[1]),
                "encoder": {"inputs": table(self.encoder_inputs), "output": ["batch", int(self.item_table.shape[1])]},
                "scorer": {"inputs": table(self.scorer_inputs), "output": ["batch", "candidates"]}}


def _input(name: str) -> Input:
    dtype = "float32" if name in FLOAT_INPUTS else "int64"
    axes = ("batch", "seq") if name in ("items", "event", "value", "hour", "dow", "gap", "device") else ("batch",)
    return Input(name, dtype, axes)


def sequence_input_names(model: SASRec) -> list[str]:
    """What SASRec/BERT4Rec's encoder reads for its switched-on side inputs (BERT4Rec reads no gap)."""
    side = model.inputs.side
    names = ["items"] + [s for s in ("event", "value") if s in side]
    if "time" in side:
        names += ["hour", "dow"] + ([] if model.bidirectional else ["gap"])
    if "device" in side:
        names.append("device")
    if model.bidirectional:  # the mask position carries the request's context
        names += [f"target_{f}" for f in ("hour", "dow", "device") if f in names]
    else:
        names += [f"target_{f}" for f, _ in model.context.keys]
    return names


def stage_networks(role: str, model: Recommender) -> StageNetworks:
    """The exportable networks of one fitted stage; a model that has none stops with a ConfigError."""
    model.eval()
    if isinstance(model, SASRec):
        names = sequence_input_names(model)
        encoder, table = SequenceEncoder(model), model.item_table()
    elif isinstance(model, TwoTower):
        user = UserEncoder(model)
        names = ["items"] + [f"target_{c}" for c in model.user_tower.context] + (["user"] if user.uses_meta else [])
        encoder, table = user, model.item_vectors()
    else:
        raise ConfigError("run_dir", f"the {role} is {type(model).__name__}, which has no network to export; "
                          f"export serves {EXPORTABLE}")
    width = int(table.shape[1])
    scorer_inputs = [Input("state", "float32", ("batch", width)), Input("candidates", "int64", ("batch", "candidates"))]
    return StageNetworks(role, model, encoder.eval(), [_input(n) for n in names], CandidateScorer(table).eval(),
                         scorer_inputs, table.detach(), int(model.max_len))


def system_stages(system: Recommender) -> tuple[dict[str, StageNetworks], dict]:
    """Every stage of ``system`` (a single model or a cascade) and how the service composes them."""
    if isinstance(system, CascadeRecommender):
        if not isinstance(system.retriever, TwoTower) or system.ranker is None:
            ranker = type(system.ranker).__name__ if system.ranker is not None else "no ranker"
            raise ConfigError("run_dir", f"a cascade exports as two-tower retrieval and a sequence ranker; this one "
                              f"has {type(system.retriever).__name__} and {ranker}")
        stages = {"retriever": stage_networks("retriever", system.retriever),
                  "ranker": stage_networks("ranker", system.ranker)}
        return stages, {"kind": "cascade", "retriever": "retriever", "ranker": "ranker",
                        "n_candidates": system.n_candidates}
    role = "retriever" if isinstance(system, TwoTower) else "ranker"
    return {role: stage_networks(role, system)}, {"kind": "single", "stage": role}


def example_inputs(catalog: Catalog, inputs: list[Input], batch: int, length: int, seed: int = 0,
                   candidates: int = 7) -> dict[str, torch.Tensor]:
    """Random valid inputs of the given sizes: left-padded histories of varied lengths, ids in their ranges."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length  # one full row
    padding = torch.arange(length)[None, :] < (length - lengths)[:, None]  # (B, L) left padding
    highs = {"items": catalog.n_items, "event": catalog.n_events, "hour": HOURS, "dow": WEEKDAYS,
             "device": max(len(catalog.context.devices), 1), "user": max(catalog.n_users, 1)}
    out = {}
    for spec in inputs:
        name = spec.name.removeprefix("target_")
        if spec.name == "state":
            out[spec.name] = torch.randn(batch, spec.axes[1], generator=g)
        elif spec.name == "candidates":
            out[spec.name] = torch.randint(1, catalog.n_items + 1, (batch, candidates), generator=g)
        elif spec.axes == ("batch",):
            out[spec.name] = torch.randint(1, highs[name] + 1, (batch,), generator=g)
        else:
            values = (torch.rand(batch, length, generator=g) if name == "value" else
                      torch.rand(batch, length, generator=g) * 1e6 if name == "gap" else
                      torch.randint(1, highs[name] + 1, (batch, length), generator=g))
            out[spec.name] = values.masked_fill(padding, 0)
    return out
