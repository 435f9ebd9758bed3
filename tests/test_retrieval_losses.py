"""The sampled-softmax switches of two-tower retrieval, each shown changing what is learned in the expected direction."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from marquee.retrieval.losses import StreamingFrequency, sampled_softmax_loss, uniform_log_q


def test_streaming_frequency_estimates_steps_between_appearances():
    freq = StreamingFrequency(n_items=3, alpha=0.1)
    for step in range(1, 401):
        items = [1] + ([2] if step % 4 == 0 else [])  # item 1 every step, item 2 every 4th, item 3 never
        freq.update(torch.tensor(items + [0]))  # padding is ignored
    assert freq.interval[1].item() == pytest.approx(1.0)
    assert freq.interval[2].item() == pytest.approx(4.0, rel=0.05)
    log_p = freq.log_probability(torch.tensor([1, 2, 3]))
    assert log_p[0] == pytest.approx(0.0) and log_p[1].item() == pytest.approx(-math.log(4), rel=0.05)
    assert log_p[2] == pytest.approx(-math.log(400))  # never seen: as if seen once in all the steps so far


def _learn_item_scores(p: torch.Tensor, log_q: bool, steps: int = 600, batch: int = 64) -> torch.Tensor:
    """Free per-item scores for one context, trained by in-batch softmax on positives drawn from ``p``."""
    torch.manual_seed(0)
    n = len(p) - 1
    scores = torch.zeros(n + 1, 1, requires_grad=True)  # an item's "vector" is its score; the query is 1
    freq = StreamingFrequency(n, alpha=0.05)
    opt = torch.optim.Adam([scores], lr=0.05)
    for _ in range(steps):
        ids = torch.multinomial(p, batch, replacement=True)  # (N,) positives, popular items often
        correction = freq.log_probability(ids) if log_q else None
        freq.update(ids)
        loss = sampled_softmax_loss(torch.ones(batch, 1), scores[ids], ids, 1.0, log_q=correction)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return scores.detach()[1:, 0]


def test_log_q_correction_recovers_the_popularity_that_in_batch_negatives_hide():
    # one context, Zipf-distributed positives: the full softmax of the true scores is p itself
    p = torch.cat([torch.zeros(1), 1.0 / torch.arange(1, 21, dtype=torch.float32)])
    p /= p.sum()
    truth = p[1:]
    plain, corrected = _learn_item_scores(p, log_q=False), _learn_item_scores(p, log_q=True)

    def kl(scores):  # KL(truth || softmax over the whole catalog), what serving ranks by
        return (truth * (truth.log() - F.log_softmax(scores, 0))).sum().item()

    def slope(scores):  # of the learned scores against log p: 1 when the popularity comes through whole
        return torch.cov(torch.stack([scores, truth.log()]))[0, 1].item() / truth.log().var().item()

    # in-batch negatives push popular items down, so the uncorrected scores come out too flat
    assert slope(plain) < 0.3 and 0.8 < slope(corrected) < 1.3
    assert kl(corrected) < 0.1 and kl(plain) > 0.25


def test_mixed_negatives_push_down_items_that_are_never_positives():
    torch.manual_seed(0)
    n, positives = 50, torch.arange(1, 11)  # only items 1..10 are ever positives
    results = {}
    for uniform in (0, 32):
        torch.manual_seed(1)
        scores = torch.randn(n + 1, 1).requires_grad_()  # random start: some tail items begin high
        opt = torch.optim.Adam([scores], lr=0.05)
        for _ in range(300):
            ids = positives[torch.randint(0, 10, (16,))]
            negative_ids = torch.randint(1, n + 1, (uniform,))
            extra = {"negatives": scores[negative_ids], "negative_ids": negative_ids} if uniform else {}
            loss = sampled_softmax_loss(torch.ones(16, 1), scores[ids], ids, 1.0, **extra)
            opt.zero_grad()
            loss.backward()
            opt.step()
        s = scores.detach()[:, 0]
        results[uniform] = (s[11:].max() - s[1:11].min()).item()  # > 0: some tail item outranks a positive
    assert results[0] > 0 > results[32]


def test_accidental_hits_are_masked_exactly():
    torch.manual_seed(0)
    queries, positives = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(4, 8), dim=1)
    ids = torch.tensor([7, 3, 7, 5])  # rows 0 and 2 share their positive item
    negatives, negative_ids = F.normalize(torch.randn(3, 8), dim=1), torch.tensor([3, 9, 7])
    candidates, candidate_ids = torch.cat([positives, negatives]), torch.cat([ids, negative_ids])
    logits = queries @ candidates.T / 0.1
    expected = []
    for row in range(4):  # by hand: drop every other column that carries this row's positive item
        keep = [j for j in range(7) if j == row or candidate_ids[j] != ids[row]]
        expected.append(-F.log_softmax(logits[row, keep], 0)[keep.index(row)])
    masked = sampled_softmax_loss(queries, positives, ids, 0.1, negatives, negative_ids)
    assert masked.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    kept = sampled_softmax_loss(queries, positives, ids, 0.1, negatives, negative_ids, remove_accidental_hits=False)
    assert kept.item() == pytest.approx(F.cross_entropy(logits, torch.arange(4)).item(), rel=1e-6)
    assert kept.item() > masked.item()  # a hit counted as a negative only adds to the loss


def test_uniform_log_q_is_the_expected_count_per_batch():
    assert uniform_log_q(100, 1000) == pytest.approx(math.log(0.1))


def _reference_in_batch(queries, positives, ids, temperature, negatives, negative_ids, log_q, remove_hits):
    """Per-row loss as the full in-batch softmax: row i's label is column i, the same item elsewhere masked."""
    candidates, candidate_ids = torch.cat([positives, negatives]), torch.cat([ids, negative_ids])
    logits = queries @ candidates.T / temperature - log_q[None, :]  # (N, N + M)
    rows = torch.arange(len(queries))
    if remove_hits:
        hits = candidate_ids[None, :] == ids[:, None]
        hits[rows, rows] = False
        logits = logits.masked_fill(hits, -math.inf)
    return F.cross_entropy(logits, rows, reduction="none")  # (N,)


@pytest.mark.parametrize("remove_hits", [True, False])
def test_the_wrapper_is_the_in_batch_softmax_and_weights_reweigh_rows(remove_hits):
    torch.manual_seed(0)
    queries, positives = torch.randn(5, 4), torch.randn(5, 4)
    ids = torch.tensor([2, 6, 2, 9, 6])  # two pairs of rows share their positive
    negatives, negative_ids = torch.randn(3, 4), torch.tensor([6, 1, 4])
    log_q = torch.randn(8)
    rows = _reference_in_batch(queries, positives, ids, 0.5, negatives, negative_ids, log_q, remove_hits)
    got = sampled_softmax_loss(queries, positives, ids, 0.5, negatives, negative_ids, log_q, remove_hits)
    assert got.item() == pytest.approx(rows.mean().item(), rel=1e-6)
    weights = torch.tensor([2.0, 0.0, 1.0, 1.0, 0.5])
    weighted = sampled_softmax_loss(queries, positives, ids, 0.5, negatives, negative_ids, log_q, remove_hits,
                                    weights=weights)
    assert weighted.item() == pytest.approx(((weights * rows).sum() / weights.sum()).item(), rel=1e-6)
    # weight 0 leaves a row out of the loss, not out of the batch: its positive is still a negative elsewhere
    assert weighted.item() != pytest.approx(
        sampled_softmax_loss(queries[[0, 2, 3, 4]], positives[[0, 2, 3, 4]], ids[[0, 2, 3, 4]], 0.5, negatives,
                             negative_ids, log_q[[0, 2, 3, 4, 5, 6, 7]], remove_hits,
                             weights=weights[[0, 2, 3, 4]]).item(), rel=1e-6)
