"""The references of benchmarks/sequences.py, written here without pvae.

- :class:`CharLM`: a plain recurrent character-level language model (Mikolov et
  al. 2010 style; an embedding, a GRU or LSTM, a softmax), the size of a
  sequence VAE's decoder, scoring every character and the end-of-word event;
- :func:`knn_accuracy`: 1-nearest-neighbour classification (Euclidean,
  scikit-learn), the classic baseline of the UCR archive (Dau et al. 2019);
- :func:`aeon_detectors`: aeon's own anomaly detectors (STOMP's matrix-profile
  discords, Yeh et al. 2016; MERLIN, Nakamura et al. 2020; KMeansAD, Yairi et
  al. 2001) on a UCR anomaly series, judged by the archive's criterion
  (Wu & Keogh 2021, :func:`ucr_hit`).

Imported by ``benchmarks/sequences.py``; not a script of its own.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np
import torch
from torch import nn


class CharLM(nn.Module):
    """p(x) = prod_t p(x_t | x_<t) p(end | x), a recurrent language model over ids 0..V-1.

    Inputs are a start symbol (id V) followed by the characters; outputs are
    V + 1 classes, the last one the end of the word. Padding (steps at or past
    a sequence's length) is replaced before it is read and never scored. Ids in
    ``excluded_ids`` (special tokens no word holds) get probability 0, as in the
    VAE it is compared with.
    """

    def __init__(self, vocab_size: int, *, hidden_dim: int, embed_dim: int, num_layers: int = 1,
                 rnn: str = "gru", excluded_ids: tuple = ()) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        mask = torch.zeros(vocab_size + 1, dtype=torch.bool)
        mask[list(excluded_ids)] = True
        self.register_buffer("excluded", mask)
        self.embed = nn.Embedding(vocab_size + 1, embed_dim)
        cell = {"gru": nn.GRU, "lstm": nn.LSTM}[rnn]
        self.rnn = cell(embed_dim, hidden_dim, num_layers=num_layers, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size + 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of each sequence, nats, shape (N,); x (N, T) ids."""
        n, t = x.shape
        steps = torch.arange(t + 1, device=x.device)
        real = steps[:t] < lengths[:, None]
        x = torch.where(real, x, torch.zeros_like(x))  # padding never enters the network
        start = torch.full((n, 1), self.vocab_size, dtype=x.dtype, device=x.device)
        inputs = torch.cat([start, x], 1)  # (N, T + 1)
        targets = torch.cat([x, torch.zeros_like(start)], 1)
        targets[torch.arange(n), lengths] = self.vocab_size  # the end event after the last id
        h, _ = self.rnn(self.embed(inputs))
        logits = self.out(h).masked_fill(self.excluded, float("-inf"))
        logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
        scored = steps[None] <= lengths[:, None]  # the characters and the end event
        # where(), not a product: padding's targets may be excluded ids, of log-probability -inf
        return -torch.where(scored, logp, torch.zeros_like(logp)).sum(1)


def train_lm(model: CharLM, x: torch.Tensor, lengths: torch.Tensor, *, epochs: int,
             batch_size: int, lr: float, seed: int = 0) -> float:
    """Adam on the mean NLL per word; returns the training seconds."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            loss = model(x[idx], lengths[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return time.perf_counter() - t0


@torch.no_grad()
def lm_nll(model: CharLM, x: torch.Tensor, lengths: torch.Tensor,
           batch_size: int = 2000) -> torch.Tensor:
    """Per-word NLL in nats, (N,)."""
    return torch.cat([model(x[i:i + batch_size], lengths[i:i + batch_size])
                      for i in range(0, len(x), batch_size)])


def bits_per_char(nll_nats: torch.Tensor, lengths: torch.Tensor) -> float:
    """Total NLL over total scored steps, in bits: each word's characters and its end
    event (so a model that ignores where words end cannot look better)."""
    return float(nll_nats.detach().sum() / (lengths.sum() + len(lengths)) / math.log(2))


def knn_accuracy(train: np.ndarray, train_y: np.ndarray, test: np.ndarray,
                 test_y: np.ndarray) -> float:
    """Test accuracy of a 1-nearest-neighbour classifier (Euclidean) on flat features."""
    from sklearn.neighbors import KNeighborsClassifier

    clf = KNeighborsClassifier(n_neighbors=1).fit(np.reshape(train, (len(train), -1)), train_y)
    return float(clf.score(np.reshape(test, (len(test), -1)), test_y))


def estimate_period(series: np.ndarray, min_lag: int = 5) -> int:
    """The series' period in steps: the first peak of its autocorrelation above 0.2."""
    x = np.asarray(series, dtype=float).reshape(-1)
    x = x - x.mean()
    ac = np.correlate(x, x, "full")[len(x) - 1:]
    ac = ac / ac[0]
    for lag in range(min_lag, len(x) // 2):
        if ac[lag] > 0.2 and ac[lag] >= ac[lag - 1] and ac[lag] >= ac[lag + 1]:
            return lag
    raise ValueError("the series has no clear period (no autocorrelation peak above 0.2)")


def ucr_hit(top: int, region: tuple[int, int], margin: int = 100) -> bool:
    """The UCR anomaly archive's criterion: ``top`` inside ``[start - margin, stop - 1 +
    margin]`` for the labelled steps ``start..stop-1``."""
    return region[0] - margin <= top <= region[1] - 1 + margin


def aeon_detectors(train: np.ndarray, test: np.ndarray, region: tuple[int, int], period: int,
                   *, only: Optional[tuple[str, ...]] = None) -> list[dict]:
    """aeon 1.6's detectors on ``test`` (KMeansAD fitted on the anomaly-free ``train``),
    window length ``period``; each row: detector, settings, top step, hit, seconds.
    MERLIN marks discords (binary): its location is the middle flagged step."""
    from aeon.anomaly_detection.series.distance_based import MERLIN, STOMP, KMeansAD

    train, test = (np.asarray(a, dtype=np.float64) for a in (train, test))  # stumpy's dtype
    runs = {
        "STOMP": (lambda: STOMP(window_size=period).fit_predict(test),
                  f"window_size={period}"),
        "MERLIN": (lambda: MERLIN(min_length=period // 2, max_length=period).fit_predict(test),
                   f"min_length={period // 2}, max_length={period}"),
        "KMeansAD": (lambda: KMeansAD(window_size=period, random_state=0).fit(train)
                     .predict(test), f"window_size={period}, fitted on the training series"),
    }
    rows = []
    for name, (run, settings) in runs.items():
        if only is not None and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            scores = np.asarray(run(), dtype=float)
        except Exception as e:  # e.g. STOMP needs stumpy, a soft dependency of aeon
            rows.append({"detector": name, "settings": settings,
                         "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"})
            continue
        seconds = time.perf_counter() - t0
        if name == "MERLIN":
            flagged = np.flatnonzero(scores)
            top = int(flagged[len(flagged) // 2]) if len(flagged) else -1
        else:
            top = int(np.argmax(scores))
        rows.append({"detector": name, "settings": settings, "top": top,
                     "hit": top >= 0 and ucr_hit(top, region), "seconds": seconds})
    return rows
