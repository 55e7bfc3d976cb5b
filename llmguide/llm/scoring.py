"""Likelihood of listed continuations in one llama.cpp batch: ``OptionScorer``.

Why a context of its own: ``llama_cpp.Llama`` runs one sequence, so scoring
N options on it means one ``eval`` per option token (42 evals, ~1.4 s for
Crafter's 17 actions on 2 CPU cores). llama.cpp itself can decode many
sequences in one batch over a shared prompt: the prompt's KV cells are
tagged with every option's sequence id (``llama_memory_seq_cp`` on a unified
cache copies no data), and the option tokens, laid out as a trie (a prefix
shared by several options is one token tagged with all their ids), go in
one ``llama_decode``. That is one forward pass of a few dozen tokens instead
of dozens of passes of one.

The context is made from the ``Llama``'s own model, so the weights are
shared; it costs one more KV cache of ``n_ctx`` cells. Sequence 0 keeps the
last prompt, so the next call evaluates only the part of its prompt that
changed (a game's manual and fixed instructions stay evaluated). When the
generation context already holds more of the prompt (an agent that reasons,
then chooses on its own reasoning), ``adopt`` copies that KV state across
instead of evaluating the prompt a second time.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

__all__ = ["OptionScorer"]


def _log_norm(logits: np.ndarray) -> float:
    """log(sum(exp(logits))), computed stably in float64."""
    x = logits.astype(np.float64)
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum()))


def _common(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class OptionScorer:
    """Scores continuations of a prompt on a second llama.cpp context of ``llama``'s model.

    Not thread-safe: the caller holds the ``Llama``'s lock (one scorer per ``Llama``).
    """

    def __init__(self, llama: Any, max_sequences: int = 64) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._lib = llama_cpp
        params = llama_cpp.llama_context_default_params()
        for field, _ in llama_cpp.llama_context_params._fields_:
            setattr(params, field, getattr(llama.context_params, field))
        self.max_sequences = min(max_sequences, llama_cpp.llama_max_parallel_sequences())
        params.n_seq_max = self.max_sequences
        params.kv_unified = True  # sequences share the prompt's cells instead of copying them
        params.embeddings = False
        self._context = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self.ctx = self._context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx = int(params.n_ctx)
        self.n_batch = int(params.n_batch)
        self.n_vocab = llama.n_vocab()
        self._prompt: list[int] = []  # tokens held by sequence 0

    def close(self) -> None:
        self._context.close()

    def reset(self) -> None:
        """Forget the held prompt (the next call evaluates its whole prompt)."""
        self._lib.llama_memory_clear(self.memory, True)
        self._prompt = []

    def adopt(self, source_ctx: Any, held: list[int], prompt: list[int], min_gain: int = 16) -> int:
        """Take sequence 0's KV state from ``source_ctx`` (a context of the same model holding
        the tokens ``held``) when it covers at least ``min_gain`` more of ``prompt`` than
        this scorer holds; returns the prompt tokens gained (0: nothing copied).

        Copying a sequence's cells costs milliseconds; evaluating them again costs
        ~5 ms a token on 2 CPU cores (a 900-token DiLu prompt: seconds).
        """
        lib = self._lib
        ours, theirs = _common(self._prompt, prompt), _common(held, prompt)
        if theirs - ours < min_gain:
            return 0
        size = lib.llama_state_seq_get_size(source_ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        if lib.llama_state_seq_get_data(source_ctx, buffer, size, 0) != size:
            return 0
        lib.llama_memory_seq_rm(self.memory, 0, -1, -1)
        if lib.llama_state_seq_set_data(self.ctx, buffer, size, 0) == 0:  # 0 = could not restore: start empty
            lib.llama_memory_seq_rm(self.memory, 0, -1, -1)
            self._prompt = []
            return 0
        self._prompt = list(held)
        return theirs - ours

    def _decode(self, tokens: list[int], positions: list[int], seq_ids: list[list[int]], outputs: list[bool]) -> None:
        lib = self._lib
        batch = lib.llama_batch_init(len(tokens), 0, max(len(s) for s in seq_ids))
        try:
            for i, (token, pos, seqs, out) in enumerate(zip(tokens, positions, seq_ids, outputs)):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = len(seqs)
                for j, seq in enumerate(seqs):
                    batch.seq_id[i][j] = seq
                batch.logits[i] = out
            batch.n_tokens = len(tokens)
            code = lib.llama_decode(self.ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode failed ({code}) while scoring options")
        finally:
            lib.llama_batch_free(batch)

    def _logits(self, index: int) -> np.ndarray:
        row = self._lib.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ctypes.cast(row, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def _hold(self, prefix: list[int]) -> int:
        """Sequence 0 holds ``prefix`` (no logits); returns the tokens evaluated for it."""
        reuse = _common(self._prompt, prefix)
        self._lib.llama_memory_seq_rm(self.memory, 0, reuse, -1)
        self._prompt = prefix[:reuse]
        for start in range(reuse, len(prefix), self.n_batch):
            chunk = prefix[start : start + self.n_batch]
            self._decode(chunk, list(range(start, start + len(chunk))), [[0]] * len(chunk), [False] * len(chunk))
            self._prompt = prefix[: start + len(chunk)]
        return len(prefix) - reuse

    def score(self, prompt: list[int], continuations: list[list[int]]) -> tuple[list[float], int]:
        """Mean log-probability per token of each continuation after ``prompt``, and the tokens evaluated.

        The same set of continuations gets the same scores in any order: they
        are laid out in the batch sorted, not as listed (llama.cpp's results move
        by up to ~0.2 nats with the batch's layout). Raises ``ValueError`` when
        the prompt and the option tokens do not fit in the context.
        """
        if not prompt or not continuations or not all(continuations):
            raise ValueError("score needs a prompt and non-empty continuations")
        order = sorted(range(len(continuations)), key=lambda i: continuations[i])
        ranked = [continuations[i] for i in order]
        scores = [0.0] * len(continuations)
        evaluated = 0
        for start in range(0, len(ranked), self.max_sequences - 1):
            group, n = self._score_group(prompt, ranked[start : start + self.max_sequences - 1])
            for i, score in zip(order[start:], group):
                scores[i] = score
            evaluated += n
        return scores, evaluated

    def _score_group(self, prompt: list[int], continuations: list[list[int]]) -> tuple[list[float], int]:
        # Trie nodes that need a forward pass: every proper prefix of a continuation
        # (its last token's probability is read from the logits before it).
        seqs = list(range(1, len(continuations) + 1))
        nodes: dict[tuple[int, ...], list[int]] = {}
        for seq, tokens in zip(seqs, continuations):
            for depth in range(1, len(tokens)):
                nodes.setdefault(tuple(tokens[:depth]), []).append(seq)
        if len(prompt) + len(nodes) > self.n_ctx:
            raise ValueError(f"a prompt of {len(prompt)} tokens plus its options does not fit in n_ctx={self.n_ctx}")
        # The prompt but its last token is held by sequence 0; the last token goes in the
        # options' batch, so what is computed for the options never depends on the cache.
        evaluated = self._hold(prompt[:-1])
        lib = self._lib
        for seq in seqs:
            lib.llama_memory_seq_rm(self.memory, seq, -1, -1)
            lib.llama_memory_seq_cp(self.memory, 0, seq, -1, -1)
        last = len(prompt) - 1
        order = sorted(nodes, key=lambda n: (len(n), n))  # parents first: positions grow along each branch
        tokens = [prompt[-1]] + [n[-1] for n in order]
        positions = [last] + [last + len(n) for n in order]
        owners = [[0, *seqs]] + [nodes[n] for n in order]
        logits: list[np.ndarray] = []
        try:
            for start in range(0, len(tokens), self.n_batch):
                end = start + self.n_batch
                self._decode(tokens[start:end], positions[start:end], owners[start:end], [True] * len(tokens[start:end]))
                logits.extend(self._logits(i).copy() for i in range(len(tokens[start:end])))
            self._prompt = list(prompt)
            evaluated += len(tokens)
            after = dict(zip([()] + order, logits))  # the next-token logits after each trie node
            norms = {node: _log_norm(row) for node, row in after.items()}
            totals = []
            for reply in continuations:
                total = sum(float(after[tuple(reply[:d])][t]) - norms[tuple(reply[:d])] for d, t in enumerate(reply))
                totals.append(total / len(reply))
        finally:
            for seq in seqs:
                lib.llama_memory_seq_rm(self.memory, seq, -1, -1)
        return totals, evaluated
