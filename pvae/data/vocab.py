"""A vocabulary of characters or words: text to padded token ids and back.

Ids 0..3 are the special tokens ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``
(:data:`SPECIALS`); the text's own tokens follow, most frequent first (ties in
the order of the tokens' code points), so the same texts always give the same
ids. :meth:`Vocabulary.encode` writes only the ids of the real tokens, padded
with ``<pad>`` (a token not in the vocabulary becomes ``<unk>``); it adds no
``<bos>``/``<eos>``: a sequence model scores its own end-of-sequence event
after the last real token (``lengths`` says where). The special ids are there
for models and decoders that need a start or unknown input, and so that
``vocab_size = len(vocab)`` covers them. Encoded text holds ``<pad>``, ``<bos>``
or ``<eos>`` within its lengths only where a text spells them as words
(:attr:`Vocabulary.excluded_ids`): a
:class:`pvae.SequenceVAE` built with ``excluded_ids=vocab.excluded_ids`` gives
them probability 0, so its samples decode to text without them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable, Literal, Optional, Sequence, Union

import numpy as np
import torch

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
#: The special tokens, in the order of their ids 0..3.
SPECIALS = (PAD, UNK, BOS, EOS)


class Vocabulary:
    """Token <-> id maps for character-level or word-level text.

    Parameters
    ----------
    tokens
        The text's own tokens, in id order (ids ``4, 5, ...``); no duplicates and
        none of :data:`SPECIALS`.
    level
        ``"char"``: a token is one character, texts are joined with ``""``;
        ``"word"``: tokens are split on whitespace and joined with one space.

    Build one from texts with :meth:`build`; save it with a run as
    :meth:`to_dict` (plain JSON) and read it back with :meth:`from_dict`, or
    :meth:`save` / :meth:`load` a JSON file.
    """

    def __init__(self, tokens: Iterable[str], level: Literal["char", "word"] = "char") -> None:
        if level not in ("char", "word"):
            raise ValueError(f"level must be 'char' or 'word', got {level!r}")
        tokens = list(tokens)
        clash = [t for t in tokens if t in SPECIALS or not isinstance(t, str) or not t]
        if clash:
            raise ValueError(f"tokens must be non-empty strings other than {SPECIALS}; got "
                             f"{clash[:5]}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t, c in Counter(tokens).items() if c > 1)
            raise ValueError(f"token {dup!r} appears twice; give each token once")
        if level == "char" and any(len(t) != 1 for t in tokens):
            raise ValueError("a character vocabulary holds single characters; use level='word' "
                             "for longer tokens")
        if level == "word" and any(t != t.strip() or t.split() != [t] for t in tokens):
            raise ValueError("word tokens hold no whitespace")
        self.level = level
        self.itos: list[str] = list(SPECIALS) + tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    @property
    def excluded_ids(self) -> tuple[int, ...]:
        """``(pad_id, bos_id, eos_id)``: the ids :meth:`encode` never writes within a
        sequence's length, unless a word-level text holds the word ``<pad>``,
        ``<bos>`` or ``<eos>`` itself (``<unk>`` it writes for unknown tokens). Pass them to
        ``pvae.SequenceVAE(vocab_size=len(vocab), excluded_ids=vocab.excluded_ids)``
        so that the model never scores or samples them; add ``unk_id`` where no text
        holds an unknown token (as in ``pvae.data.load("words")``, whose vocabulary
        holds every letter of its words)."""
        return (self.pad_id, self.bos_id, self.eos_id)

    @classmethod
    def build(cls, texts: Iterable[str], level: Literal["char", "word"] = "char", *,
              min_count: int = 1, max_size: Optional[int] = None) -> "Vocabulary":
        """The vocabulary of ``texts``: tokens seen at least ``min_count`` times, at most
        ``max_size`` of them (the most frequent), ordered as the module docstring says."""
        if level not in ("char", "word"):
            raise ValueError(f"level must be 'char' or 'word', got {level!r}")
        counts = Counter(t for text in texts for t in _split(_check_text(text), level))
        for s in SPECIALS:
            counts.pop(s, None)
        kept = sorted((t for t, c in counts.items() if c >= min_count),
                      key=lambda t: (-counts[t], t))
        if not kept:
            raise ValueError("no token occurs often enough: give texts, or lower min_count")
        return cls(kept[:max_size] if max_size is not None else kept, level)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and (self.level, self.itos) == (other.level,
                                                                              other.itos)

    def __repr__(self) -> str:
        return f"Vocabulary(level={self.level!r}, size={len(self)})"

    def tokenize(self, text: str) -> list[str]:
        """The tokens of one text: its characters, or its whitespace-separated words."""
        return _split(_check_text(text), self.level)

    def encode(self, texts: Sequence[str], max_len: Optional[int] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts to ``(x, lengths)``: ids ``(N, T)`` int64 padded with ``<pad>`` (unknown
        tokens as ``<unk>``) and ``lengths`` ``(N,)`` int64; ``T`` is ``max_len`` or the
        longest text.

        Raises ``ValueError`` for no texts, an empty text (a sequence needs a token),
        or a text longer than ``max_len``; ``TypeError`` for a non-string.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts; wrap one text as [text]")
        tokens = [self.tokenize(t) for t in texts]
        if not tokens:
            raise ValueError("encode needs at least one text")
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        if lengths.min() == 0:
            raise ValueError(f"text {int(np.argmin(lengths))} has no tokens; a sequence needs at "
                             "least one: drop the empty texts")
        t = int(lengths.max()) if max_len is None else max_len
        if lengths.max() > t:
            i = int(np.argmax(lengths))
            raise ValueError(f"text {i} has {int(lengths[i])} tokens, more than max_len={t}; "
                             "raise max_len or shorten the texts")
        x = np.full((len(tokens), t), self.pad_id, dtype=np.int64)
        for i, toks in enumerate(tokens):
            x[i, : len(toks)] = [self.stoi.get(s, self.unk_id) for s in toks]
        return torch.from_numpy(x), torch.from_numpy(lengths)

    def decode(self, x, lengths=None) -> list[str]:
        """Ids ``(N, T)`` (and ``lengths`` ``(N,)``) back to texts.

        With ``lengths``, exactly the first ``lengths[i]`` ids of row ``i`` are
        read; without, row ``i`` ends before its first ``<pad>`` or ``<eos>``
        (else at ``T``), so that padded ids, as :meth:`encode` and a model's
        ``sample`` give them, decode to their texts. Special tokens read are
        written by name (``<unk>``). ``ValueError`` for an id outside
        ``0..len(self)-1`` or lengths that do not fit ``x``.
        """
        x = torch.as_tensor(x)
        if x.dim() == 1:
            x = x[None]
        if x.dim() != 2:
            raise ValueError(f"decode takes ids of shape (N, T), got {tuple(x.shape)}")
        if lengths is None:
            ends = (x == self.pad_id) | (x == self.eos_id)
            lengths = torch.where(ends.any(1), ends.long().argmax(1), x.shape[1])
        else:
            lengths = torch.as_tensor(lengths).reshape(-1)
        if lengths.shape[0] != x.shape[0] or (lengths < 0).any() or (lengths > x.shape[1]).any():
            raise ValueError(f"lengths {lengths.tolist()[:5]}... do not fit ids of shape "
                             f"{tuple(x.shape)}: one length in 0..T per row")
        out, join = [], "" if self.level == "char" else " "
        for row, n in zip(x.tolist(), lengths.tolist()):
            row = row[:n]
            bad = [i for i in row if not 0 <= i < len(self.itos)]
            if bad:
                raise ValueError(f"token id {bad[0]} is outside the vocabulary "
                                 f"(0..{len(self.itos) - 1})")
            out.append(join.join(self.itos[i] for i in row))
        return out

    def to_dict(self) -> dict:
        """Plain JSON-able state: ``{"level", "tokens"}`` (the tokens after the specials)."""
        return {"level": self.level, "tokens": self.itos[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, state: dict) -> "Vocabulary":
        """The vocabulary :meth:`to_dict` described."""
        if not isinstance(state, dict) or set(state) != {"level", "tokens"}:
            raise ValueError("a vocabulary's state is a dict with the keys 'level' and 'tokens' "
                             "(as Vocabulary.to_dict writes it)")
        return cls(state["tokens"], state["level"])

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write :meth:`to_dict` as a JSON file."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Vocabulary":
        """Read a vocabulary :meth:`save` wrote."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"texts must be strings, got {type(text).__name__}")
    return text


def _split(text: str, level: str) -> list[str]:
    return list(text) if level == "char" else text.split()
