"""The next-item losses against hand-computed values, and the SASRec building blocks they rely on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from marquee.data.catalog import Catalog
from marquee.models.sasrec import SASRec
from marquee.models.sequence_losses import LOSSES, NextItemLoss


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


def test_gbce_scores_a_small_catalog_whole_with_the_same_loss_and_gradients(monkeypatch):
    # 12 rows < 5 negatives * 3 dims: the loss scores the catalog whole and picks the negatives' columns
    items = _table(n_items=11).requires_grad_()
    states = torch.randn(4, 3, requires_grad=True)
    targets, negatives = torch.tensor([1, 7, 11, 2]), torch.randint(1, 12, (4, 5), generator=torch.Generator().manual_seed(1))
    loss = NextItemLoss("gbce", n_negatives=5, gbce_t=0.75, n_items=11)
    monkeypatch.setattr(loss, "sample", lambda shape, device: negatives)
    got = loss(states, targets, items)
    got_grads = torch.autograd.grad(got, (states, items))
    gathered = torch.einsum("nd,nkd->nk", states, items[negatives])  # (N, k): the per-position gather, by hand
    alpha = 5 / 10
    beta = alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha)
    pos = (states * items[targets]).sum(-1)
    expected = (-beta * F.logsigmoid(pos) + F.softplus(gathered).masked_fill(negatives == targets[:, None], 0).sum(1)).mean()
    assert torch.allclose(got, expected, atol=1e-6)
    for mine, theirs in zip(got_grads, torch.autograd.grad(expected, (states, items))):
        assert torch.allclose(mine, theirs, atol=1e-6)


def test_bad_loss_settings_are_refused():
    with pytest.raises(ValueError, match="loss must be one of"):
        NextItemLoss("hinge", n_items=5)
    with pytest.raises(ValueError, match="popularity sampling needs"):
        NextItemLoss("sampled_softmax", sampling="popularity", n_items=5)
    with pytest.raises(ValueError, match="unknown side inputs"):
        SASRec(Catalog(n_items=5), side_inputs=["weather"])
    with pytest.raises(ValueError, match="BERT4Rec hides"):
        SASRec(Catalog(n_items=5), bidirectional=True, side_inputs=["value"])


def test_a_causal_state_ignores_later_items_and_padding_does_not_leak():
    torch.manual_seed(0)
    model = SASRec(Catalog(n_items=20), max_len=6, hidden=16, layers=2, heads=2, dropout=0.0).eval()
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
    model = SASRec(Catalog(n_items=30), max_len=5, hidden=8, layers=1, heads=1, dropout=0.0).eval()
    batch = {"items": torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]), "user": torch.tensor([1, 2])}
    with torch.no_grad():
        full = model.score(batch)
        shared = model.score(batch, items=torch.tensor([3, 17, 29]))
        per_row = model.score(batch, items=torch.tensor([[3, 17], [29, 1]]))
    assert full.shape == (2, 31)
    assert torch.allclose(shared, full[:, [3, 17, 29]], atol=1e-6)
    assert torch.allclose(per_row, torch.stack([full[0, [3, 17]], full[1, [29, 1]]]), atol=1e-6)


def _ce_rows(states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Per-row full-softmax cross-entropy, by hand over the real items."""
    return -torch.log_softmax(states @ items[1:].T, 1)[torch.arange(len(targets)), targets - 1]


def test_weights_count_a_position_that_many_times_and_weight_0_drops_it(monkeypatch):
    items, states, targets = _table(), torch.randn(3, 3), torch.tensor([1, 4, 2])
    ce = NextItemLoss("ce", n_items=5)
    rows = _ce_rows(states, targets, items)
    got = ce(states, targets, items, weights=torch.tensor([2.0, 0.0, 1.0]))
    assert torch.allclose(got, (2 * rows[0] + rows[2]) / 3, atol=1e-6)
    copies = ce(states[[0, 0, 2]], targets[[0, 0, 2]], items)  # weight 2 = two copies, weight 0 = absent
    assert torch.allclose(got, copies, atol=1e-6)

    sampled = NextItemLoss("sampled_softmax", n_negatives=2, n_items=5)
    monkeypatch.setattr(sampled, "sample", lambda shape, device: torch.tensor([3, 5]))
    assert torch.allclose(sampled(states, targets, items, weights=torch.tensor([2.0, 0.0, 1.0])),
                          sampled(states[[0, 0, 2]], targets[[0, 0, 2]], items), atol=1e-6)

    nothing = torch.zeros(3)  # no weight at all: a zero that still backpropagates
    leaf = states.clone().requires_grad_()
    zero = ce(leaf, targets, items, weights=nothing)
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(leaf.grad, torch.zeros_like(states))


def test_not_positive_full_softmax_is_unlikelihood_of_the_target():
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # 3 items and padding
    states, targets = torch.tensor([[2.0, 0.5], [0.3, -1.0]]), torch.tensor([3, 2])
    loss = NextItemLoss("ce", n_items=3)
    # row 0 by hand: scores 2, 0.5, 2.5 -> p(item 3) = e^2.5 / (e^2 + e^0.5 + e^2.5)
    p = math.exp(2.5) / (math.exp(2.0) + math.exp(0.5) + math.exp(2.5))
    got = loss(states[:1], targets[:1], items, positive=torch.tensor([False]))
    assert got.item() == pytest.approx(-math.log(1 - p), rel=1e-6)
    # mixed: row 0 not positive, row 1 positive (plain cross-entropy), weighted 1 and 3
    mixed = loss(states, targets, items, weights=torch.tensor([1.0, 3.0]), positive=torch.tensor([False, True]))
    assert mixed.item() == pytest.approx((-math.log(1 - p) + 3 * _ce_rows(states, targets, items)[1].item()) / 4,
                                         rel=1e-6)
    # a target far ahead, scores 1, 0, 60: 1 - p rounds to 0 in float32, yet the term is exact, not inf
    far_items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [60.0, 0.0]])
    assert 1 - torch.softmax(torch.tensor([1.0, 0.0, 60.0]), 0)[2] == 0  # the naive form would give inf
    far = loss(torch.tensor([[1.0, 0.0]]), torch.tensor([3]), far_items, positive=torch.tensor([False]))
    assert far.item() == pytest.approx(60 - math.log(math.e + 1), rel=1e-6)


def test_not_positive_sampled_softmax_is_unlikelihood_among_target_and_negatives(monkeypatch):
    items, states, targets = _table(), torch.randn(2, 3), torch.tensor([2, 4])
    counts = torch.tensor([0.0, 9, 4, 1, 0, 5])
    loss = NextItemLoss("sampled_softmax", n_negatives=3, sampling="popularity", item_counts=counts, n_items=5)
    negatives = torch.tensor([1, 4, 5])  # 4 is row 1's target: an accidental hit, left out there too
    monkeypatch.setattr(loss, "sample", lambda shape, device: negatives)
    log_mq = torch.log(3 * (counts + 1) / (counts[1:] + 1).sum())
    expected = []
    for row in range(2):
        logits = torch.stack([states[row] @ items[j] - log_mq[j]
                              for j in [targets[row].item()] + [j for j in negatives.tolist() if j != targets[row]]])
        p = torch.softmax(logits, 0)[0]
        expected.append(-torch.log(1 - p))
    got = loss(states, targets, items, positive=torch.tensor([False, False]))
    assert torch.allclose(got, torch.stack(expected).mean(), atol=1e-6)

    # every negative is the target itself: no other candidate, the term is 0 and its gradient finite
    monkeypatch.setattr(loss, "sample", lambda shape, device: torch.tensor([4, 4, 4]))
    leaf = states.clone().requires_grad_()
    alone = loss(leaf[1:], targets[1:], items, positive=torch.tensor([False]))
    alone.backward()
    assert alone.item() == 0.0 and torch.isfinite(leaf.grad).all()


def test_not_positive_binary_losses_are_softplus_of_the_target_score(monkeypatch):
    items, states, targets = _table(n_items=11), torch.randn(3, 3), torch.tensor([1, 7, 11])
    negatives = torch.tensor([[2, 3], [4, 5], [6, 11]])
    score = (states * items[targets]).sum(-1)
    for name in ("bce", "gbce"):  # gBCE's beta calibrates the positive term only
        loss = NextItemLoss(name, n_negatives=2, gbce_t=0.75, n_items=11)
        monkeypatch.setattr(loss, "sample", lambda shape, device: negatives[:, : shape[1]])
        got = loss(states, targets, items, positive=torch.tensor([False, False, False]))
        assert torch.allclose(got, F.softplus(score).mean(), atol=1e-6)
        both = loss(states, targets, items, positive=torch.tensor([True, False, True]))
        k = 1 if name == "bce" else 2
        alpha = k / 10
        beta = 1.0 if name == "bce" else alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha)
        neg = torch.einsum("nd,nkd->nk", states, items[negatives[:, :k]])
        hit = negatives[:, :k] == targets[:, None]  # row 2's gBCE negative 11 is its own target
        positive_terms = -beta * F.logsigmoid(score) + F.softplus(neg).masked_fill(hit, 0.0).sum(1)
        expected = (positive_terms[0] + F.softplus(score[1]) + positive_terms[2]) / 3
        assert torch.allclose(both, expected, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_a_gradient_step_on_a_not_positive_target_lowers_its_score(name):
    states = torch.randn(4, 4, generator=torch.Generator().manual_seed(2))

    def score_change(row: int, target: int, positive: bool) -> float:
        """One SGD step on the item table for one position; how that position's target score moved.

        Only the table moves, so the score changes through the target's own row alone: no cross-terms.
        """
        items = torch.nn.Parameter(_table(n_items=10, dim=4, seed=1))
        loss = NextItemLoss(name, n_negatives=4, n_items=10)
        torch.manual_seed(row)  # the same negatives either way
        loss(states[[row]], torch.tensor([target]), items, positive=torch.tensor([positive])).backward()
        before = (states[row] @ items[target]).item()
        with torch.no_grad():
            items -= 0.1 * items.grad
        return (states[row] @ items[target]).item() - before

    for row, target in enumerate([3, 5, 1, 8]):
        assert score_change(row, target, positive=False) < 0
        assert score_change(row, target, positive=True) > 0  # the same event as a positive pushes the other way


def test_full_softmax_in_row_chunks_equals_one_block_with_gradients(monkeypatch):
    """The chunked loss (a chunk here holds 2 rows of 6 logits) gives the same loss and gradients as one block."""
    from marquee.models import sequence_losses

    items = _table(5, 3).requires_grad_()
    states = torch.randn(7, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
    targets, positive = torch.tensor([1, 2, 5, 3, 4, 4, 1]), torch.tensor([True, False, True, True, False, True, True])
    loss = NextItemLoss("ce", n_items=5)
    grads = []
    for elements in (10**6, 12):  # one block, then chunks of 2 rows (the last has 1)
        monkeypatch.setattr(sequence_losses, "CHUNK_ELEMENTS", elements)
        value = loss(states, targets, items, positive=positive)
        grads.append((value.detach(), *torch.autograd.grad(value, (states, items))))
    for one_block, chunked in zip(*grads):
        assert torch.allclose(one_block, chunked, atol=1e-6)
    # and the unlikelihood rows really counted: all-positive gives another loss
    assert not torch.allclose(loss(states, targets, items).detach(), grads[0][0])


def test_the_fused_catalog_cross_entropy_has_torchs_values_and_gradients_and_runs_backward_once():
    from marquee.models.sequence_losses import CatalogCrossEntropy

    generator = torch.Generator().manual_seed(3)
    items = torch.randn(40, 8, generator=generator, dtype=torch.float64).requires_grad_()
    states = torch.randn(6, 8, generator=generator, dtype=torch.float64).requires_grad_()
    targets = torch.tensor([1, 39, 7, 7, 20, 2])
    weights = torch.rand(6, generator=generator, dtype=torch.float64)  # a weighted sum: the incoming grad varies by row
    fused = (CatalogCrossEntropy.apply(states, items, targets) * weights).sum()
    got = (fused.detach(), *torch.autograd.grad(fused, (states, items)))
    logits = states @ items.T
    reference = (F.cross_entropy(logits[:, 1:], targets - 1, reduction="none") * weights).sum()  # padding column out
    expected = (reference.detach(), *torch.autograd.grad(reference, (states, items)))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    assert got[2][0].abs().max() == 0  # the padding row gets no gradient
    again = CatalogCrossEntropy.apply(states, items, targets).sum()
    again.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once"):
        again.backward()
