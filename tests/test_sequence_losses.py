"""The next-item losses against hand-computed values, and the SASRec building blocks they rely on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from marquee.models.sasrec import SASRec
from marquee.models.sequence_losses import NextItemLoss


def _table(n_items: int = 5, dim: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n_items + 1, dim, generator=torch.Generator().manual_seed(seed))


def test_full_softmax_is_cross_entropy_over_real_items_only():
    items, states, targets = _table(), torch.randn(4, 3), torch.tensor([1, 2, 5, 3])
    got = NextItemLoss("ce", n_items=5)(states, targets, items)
    logits = states @ items[1:].T  # padding row left out by hand
    assert torch.allclose(got, F.cross_entropy(logits, targets - 1))


def test_sampled_softmax_subtracts_log_mq_and_drops_accidental_hits(monkeypatch):
    items, states, targets = _table(), torch.randn(2, 3), torch.tensor([2, 4])
    counts = torch.tensor([0.0, 9, 4, 1, 0, 5])
    loss = NextItemLoss("sampled_softmax", n_negatives=3, sampling="popularity", item_counts=counts, n_items=5)
    negatives = torch.tensor([1, 4, 5])  # 4 is row 1's own positive: an accidental hit there
    monkeypatch.setattr(loss, "sample", lambda shape, device: negatives)
    q = (counts + 1) / (counts[1:] + 1).sum()  # +1 smoothing, padding excluded
    log_mq = torch.log(3 * q)
    expected = []
    for row in range(2):
        pos = states[row] @ items[targets[row]] - log_mq[targets[row]]
        negs = [states[row] @ items[j] - log_mq[j] for j in negatives.tolist() if j != targets[row]]
        logits = torch.stack([pos, *negs])
        expected.append(-torch.log_softmax(logits, 0)[0])
    assert torch.allclose(loss(states, targets, items), torch.stack(expected).mean(), atol=1e-6)


def test_gbce_at_t_0_is_bce_and_its_positive_weight_follows_the_paper(monkeypatch):
    items, states, targets = _table(n_items=11), torch.randn(3, 3), torch.tensor([1, 7, 11])
    negatives = torch.tensor([[2, 3], [4, 5], [6, 11]])  # row 2's second negative is its positive: dropped
    plain = NextItemLoss("gbce", n_negatives=2, gbce_t=0.0, n_items=11)
    monkeypatch.setattr(plain, "sample", lambda shape, device: negatives)
    pos = (states * items[targets]).sum(-1)
    neg = torch.einsum("nd,nkd->nk", states, items[negatives]).masked_fill(negatives == targets[:, None], -math.inf)
    bce = (-F.logsigmoid(pos) - F.logsigmoid(-neg).nan_to_num(neginf=0.0).masked_fill(neg == -math.inf, 0).sum(1))
    assert torch.allclose(plain(states, targets, items), bce.mean(), atol=1e-6)

    calibrated = NextItemLoss("gbce", n_negatives=2, gbce_t=0.75, n_items=11)
    monkeypatch.setattr(calibrated, "sample", lambda shape, device: negatives)
    alpha = 2 / 10
    beta = alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha)  # gSASRec, eq. for beta
    expected = -beta * F.logsigmoid(pos) + (bce + F.logsigmoid(pos))
    assert torch.allclose(calibrated(states, targets, items), expected.mean(), atol=1e-6)


def test_bad_loss_settings_are_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        NextItemLoss("hinge", n_items=5)
    with pytest.raises(ValueError, match="popularity sampling needs"):
        NextItemLoss("sampled_softmax", sampling="popularity", n_items=5)
    with pytest.raises(ValueError, match="unknown side inputs"):
        SASRec(n_items=5, side_inputs=["weather"])
    with pytest.raises(ValueError, match="BERT4Rec hides"):
        SASRec(n_items=5, bidirectional=True, side_inputs=["value"])


def test_a_causal_state_ignores_later_items_and_padding_does_not_leak():
    torch.manual_seed(0)
    model = SASRec(n_items=20, max_len=6, hidden=16, layers=2, heads=2, dropout=0.0).eval()
    items = torch.tensor([[0, 0, 3, 4, 5, 6]])
    changed = items.clone()
    changed[0, -1] = 9
    with torch.no_grad():
        a = model.sequence_states({"items": items})
        b = model.sequence_states({"items": changed})
        # earlier positions cannot see the last item; the last position can
        assert torch.allclose(a[0, :5], b[0, :5], atol=1e-6) and not torch.allclose(a[0, 5], b[0, 5])
        # more left padding changes nothing at the real positions
        wider = model.sequence_states({"items": torch.tensor([[0, 0, 0, 0, 3, 4, 5, 6]])[:, -6:]})
        assert torch.allclose(a[0, 2:], wider[0, 2:], atol=1e-6)
        assert not torch.isnan(a).any()


def test_candidate_scores_equal_the_matching_full_catalog_columns():
    torch.manual_seed(0)
    model = SASRec(n_items=30, max_len=5, hidden=8, layers=1, heads=1, dropout=0.0).eval()
    batch = {"items": torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]), "user": torch.tensor([1, 2])}
    with torch.no_grad():
        full = model.score(batch)
        shared = model.score(batch, items=torch.tensor([3, 17, 29]))
        per_row = model.score(batch, items=torch.tensor([[3, 17], [29, 1]]))
    assert full.shape == (2, 31)
    assert torch.allclose(shared, full[:, [3, 17, 29]], atol=1e-6)
    assert torch.allclose(per_row, torch.stack([full[0, [3, 17]], full[1, [29, 1]]]), atol=1e-6)
