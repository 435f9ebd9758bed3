"""Reward models: the expected reward of showing an arm in a context, for the direct method, DR and greedy policies.

Both models take joint (context, arm) feature rows from a :mod:`marquee.bandits.features` map and
predict a reward in [0, 1] (a play, a click). :class:`NeuralRewardModel` is a small MLP trained by a
LightningModule; :class:`LogisticRewardModel` is L2-regularized logistic regression fitted exactly,
the model of choice when rewards are few (OBD's 38 clicks in 10,000 rows).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping
from scipy.optimize import minimize
from scipy.special import expit
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from marquee.bandits.features import FeatureMap
from marquee.bandits.logs import BanditLog, Candidates


class RewardModel(Protocol):
    def fit(self, features: np.ndarray, rewards: np.ndarray) -> RewardModel: ...

    def predict(self, features: np.ndarray) -> np.ndarray: ...


class RewardNet(nn.Module):
    """An MLP from joint features to the reward's logit; ``encode`` gives the last hidden layer (NeuralLinear's)."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (64,)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.out_features = width
        self.head = nn.Linear(width, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (N, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x)).squeeze(-1)  # (N,) logits


class RewardModule(pl.LightningModule):
    """Trains a RewardNet by (optionally weighted) binary cross-entropy."""

    def __init__(self, net: RewardNet, lr: float = 1e-2, weight_decay: float = 1e-4):
        super().__init__()
        self.net, self.lr, self.weight_decay = net, lr, weight_decay

    def _loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, y, w = batch  # (B, F), (B,), (B,)
        return (F.binary_cross_entropy_with_logits(self.net(x), y, reduction="none") * w).sum() / w.sum()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class _KeepBest(pl.Callback):
    """Remember the weights of the epoch with the lowest validation loss and put them back when training ends."""

    def __init__(self) -> None:
        self.best, self.state = float("inf"), None

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        loss = float(trainer.callback_metrics.get("val/loss", float("inf")))
        if loss < self.best:
            self.best, self.state = loss, {k: v.detach().clone() for k, v in module.state_dict().items()}

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit banner and data-loader hints: a bandit refits many times."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*number of training batches.*")
            warnings.filterwarnings("ignore", ".*treespec.*LeafSpec.*")
            yield
    finally:
        logger.setLevel(level)


class NeuralRewardModel:
    """A RewardNet fitted with Lightning; refits start from fresh weights drawn from ``seed``.

    A random ``val_fraction`` of the rows is held out and the weights of the epoch with the lowest loss on
    it are kept (early stopping): rewards are noisy and a network this size overfits them within epochs.
    """

    def __init__(self, hidden: Sequence[int] = (64,), epochs: int = 30, batch_size: int = 256, lr: float = 1e-2,
                 weight_decay: float = 1e-4, val_fraction: float = 0.2, patience: int = 5, seed: int = 0):
        self.hidden, self.epochs, self.batch_size = tuple(hidden), epochs, batch_size
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        self.val_fraction, self.patience = val_fraction, patience
        self.net: RewardNet | None = None

    def initialize(self, in_features: int) -> RewardNet:
        """A fresh network with weights drawn from ``seed`` (what an untrained model predicts with)."""
        torch.manual_seed(self.seed)
        self.net = RewardNet(in_features, self.hidden).eval()
        return self.net

    def fit(self, features: np.ndarray, rewards: np.ndarray, weights: np.ndarray | None = None) -> NeuralRewardModel:
        self.initialize(features.shape[1]).train()
        x = torch.as_tensor(features, dtype=torch.float32)
        y = torch.as_tensor(rewards, dtype=torch.float32)
        w = torch.ones_like(y) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        generator = torch.Generator().manual_seed(self.seed)
        held = torch.randperm(len(y), generator=generator) < int(self.val_fraction * len(y))  # (N,) True = validation
        train = DataLoader(TensorDataset(x[~held], y[~held], w[~held]), batch_size=self.batch_size, shuffle=True,
                           generator=generator)
        val = DataLoader(TensorDataset(x[held], y[held], w[held]), batch_size=4096) if held.any() else None
        callbacks = [] if val is None else [_KeepBest(), EarlyStopping("val/loss", patience=self.patience)]
        with _quiet_lightning():
            trainer = pl.Trainer(max_epochs=self.epochs, accelerator="cpu", devices=1, logger=False,
                                 callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, num_sanity_val_steps=0)
            trainer.fit(RewardModule(self.net, self.lr, self.weight_decay), train, val)
        self.net.eval()
        return self

    @torch.no_grad()
    def logits(self, features: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("fit the reward model before predicting")
        x = torch.as_tensor(features, dtype=torch.float32)
        return self.net(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1]).numpy()

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Expected reward, shape ``features.shape[:-1]``."""
        return expit(self.logits(features))

    @torch.no_grad()
    def encode(self, features: np.ndarray) -> np.ndarray:
        """The last hidden layer, shape ``features.shape[:-1] + (H,)``."""
        x = torch.as_tensor(features, dtype=torch.float32)
        return self.net.encode(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1).numpy()


class LogisticRewardModel:
    """L2-regularized logistic regression (intercept unpenalized), fitted to convergence by a trust-region
    Newton method with exact Hessian-vector products (no Hessian is formed, so wide features stay cheap)."""

    def __init__(self, l2: float = 10.0):
        self.l2 = l2
        self.coef: np.ndarray | None = None  # (F + 1,), intercept last

    def fit(self, features: np.ndarray, rewards: np.ndarray) -> LogisticRewardModel:
        x, y = np.asarray(features, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
        penalty = np.append(np.full(x.shape[1], self.l2), 0.0)  # (F + 1,)

        def loss_and_grad(coef: np.ndarray) -> tuple[float, np.ndarray]:
            z = x @ coef[:-1] + coef[-1]
            # log(1 + e^z) - y z, written to stay finite for large |z|
            loss = (np.logaddexp(0.0, z) - y * z).sum() + 0.5 * (penalty * coef) @ coef
            residual = expit(z) - y
            return loss, np.append(x.T @ residual, residual.sum()) + penalty * coef

        def hessian_times(coef: np.ndarray, v: np.ndarray) -> np.ndarray:
            p = expit(x @ coef[:-1] + coef[-1])
            weighted = p * (1 - p) * (x @ v[:-1] + v[-1])  # (N,)
            return np.append(x.T @ weighted, weighted.sum()) + penalty * v

        mean = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        start = np.append(np.zeros(x.shape[1]), np.log(mean / (1 - mean)))
        self.coef = minimize(loss_and_grad, start, jac=True, hessp=hessian_times, method="trust-ncg").x
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("fit the reward model before predicting")
        return expit(np.asarray(features, dtype=np.float64) @ self.coef[:-1] + self.coef[-1])


def logged_features(log: BanditLog, feature_map: FeatureMap) -> np.ndarray:
    """(n, F) joint features of the arm each row showed."""
    shown = log.candidates.table[log.chosen_arm][:, None, :]  # (n, 1, f)
    return feature_map(log.context, shown)[:, 0]


def predict_candidates(model: RewardModel, context: np.ndarray, candidates: Candidates, feature_map: FeatureMap,
                       chunk_rows: int = 1024) -> np.ndarray:
    """(n, K) predicted reward of every candidate, built a chunk of rows at a time to bound memory."""
    out = np.zeros(candidates.ids.shape)
    for start in range(0, len(candidates), chunk_rows):
        rows = slice(start, start + chunk_rows)
        out[rows] = model.predict(feature_map(context[rows], candidates.take(rows).features))
    return out


def cross_fit_q_hat(make_model: Callable[[], RewardModel], log: BanditLog, feature_map: FeatureMap,
                    n_folds: int = 3, seed: int = 0) -> np.ndarray:
    """(n, K) predictions for every candidate, each row's from a model that never saw that row (cross-fitting).

    ``n_folds=1`` fits one model on every row and predicts the same rows.
    """
    features = logged_features(log, feature_map)
    if n_folds == 1:  # fit and predict on every row
        model = make_model().fit(features, log.reward)
        return predict_candidates(model, log.context, log.candidates, feature_map)
    fold = np.random.default_rng(seed).permutation(len(log)) % n_folds
    q_hat = np.zeros(log.candidates.ids.shape)
    for k in range(n_folds):
        train, held = fold != k, np.flatnonzero(fold == k)
        model = make_model().fit(features[train], log.reward[train])
        held_log = log.take(held)
        q_hat[held] = predict_candidates(model, held_log.context, held_log.candidates, feature_map)
    return q_hat
