"""ONI inside Stable-Baselines3: the intrinsic-reward VecEnv wrapper, its logging callback,
and a compact observation + feature extractor for PPO on NLE.

Exports ``ONIRewardWrapper``, ``ONILogCallback``, ``NLEObsWrapper``,
``NLEFeatures``, ``caption_of``.

``ONIRewardWrapper`` sits on top of the vectorised env (above ``VecMonitor``,
so SB3's ``rollout/ep_rew_mean`` stays the extrinsic return). Each step it
hands the step's captions (``info["message"]``) to the annotator client
(lock-free: the client only queues them for its own thread), drains whatever
labels have arrived into the reward model, and adds
``coef * score(caption) / N(caption)^beta`` to the reward, ONI's count-based decay (``N`` counted per episode or over the run). Extrinsic and
intrinsic parts are logged separately (``info["oni_extrinsic"]``,
``info["oni_intrinsic"]``, and ``oni/*`` keys through ``ONILogCallback``).

What ONI costs the learner is measured inside ``step_wait``: ``overhead_s``
is the wall time of ONI's part of the step, ``blocked_s`` the part of it
the learner's thread was not running (wall time minus the thread's CPU
time, ``time.thread_time``): waits on a lock, on the GIL held by another
thread of the process, or on the CPU taken by another process. That is the
learner's real blocking time, whatever causes it, not the cost of one call.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from llmguide.envs.nethack import NetHackText
from llmguide.teachers.oni.reward import IntrinsicReward
from llmguide.teachers.oni.store import caption_hash
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn

__all__ = ["MAX_GLYPH", "NLEFeatures", "NLEObsWrapper", "ONILogCallback", "ONIRewardWrapper", "caption_of"]

MAX_GLYPH = 5976  # nle.nethack.MAX_GLYPH, fixed by NetHack 3.6 (checked in tests)


def caption_of(info: dict[str, Any], key: str = "message") -> str:
    """The step's caption: the text under ``key`` (bytes are decoded), stripped."""
    value = info.get(key, "")
    if isinstance(value, (bytes, bytearray, np.ndarray)):
        value = bytes(value).split(b"\0", 1)[0].decode("latin-1")
    return str(value).strip()


class ONIRewardWrapper(VecEnvWrapper):
    """Add ``coef * intrinsic`` from an ONI reward model to a VecEnv's reward.

    ``client`` is an ``AnnotatorClient`` (or None: the reward model is used
    as it is, e.g. pre-filled or off). ``beta`` is the count-decay exponent
    (0 = no decay); ``count_scope`` is ``"episode"`` or ``"global"``.
    """

    def __init__(
        self,
        venv: VecEnv,
        reward_model: IntrinsicReward | None,
        client: Any | None = None,
        *,
        coef: float = 0.1,
        beta: float = 0.5,
        count_scope: str = "episode",
        caption_key: str = "message",
    ) -> None:
        super().__init__(venv)
        if count_scope not in ("episode", "global"):
            raise ValueError(f"count_scope must be 'episode' or 'global', not {count_scope!r}")
        self.model, self.client = reward_model, client
        self.coef, self.beta, self.count_scope, self.caption_key = coef, beta, count_scope, caption_key
        n = self.num_envs
        self._counts = [Counter() for _ in range(n)] if count_scope == "episode" else [Counter()] * n
        self._ep_ext = np.zeros(n)
        self._ep_int = np.zeros(n)
        self.episodes: deque[dict[str, float]] = deque(maxlen=100)
        self.overhead_s = 0.0
        self.blocked_s = 0.0  # wall minus this thread's CPU time inside ONI's part of step_wait
        self.steps = 0
        self.labels_applied = 0
        self.intrinsic_sum = 0.0
        self.extrinsic_sum = 0.0

    def reset(self) -> Any:
        obs = self.venv.reset()
        if self.count_scope == "episode":
            for c in self._counts:
                c.clear()
        self._ep_ext[:] = 0.0
        self._ep_int[:] = 0.0
        return obs

    def apply_labels(self) -> int:
        """Move labels the client has fetched into the reward model (never blocks); returns how many."""
        if self.model is None or self.client is None:
            return 0
        labels, prefs = self.client.drain()
        if labels or prefs:
            self.model.update(labels, prefs)
            self.labels_applied += len(labels)
        return len(labels)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        t0, cpu0 = time.perf_counter(), time.thread_time()
        captions = [caption_of(info, self.caption_key) for info in infos]
        intrinsic = np.zeros(self.num_envs, dtype=np.float32)
        if self.model is not None:
            if self.client is not None:
                self.client.submit([c for c in captions if c])
                self.apply_labels()
            scores = self.model.reward(captions)
            for i, text in enumerate(captions):
                if not text or scores[i] == 0.0:
                    if text:
                        self._counts[i][caption_hash(text)] += 1
                    continue
                key = caption_hash(text)
                self._counts[i][key] += 1
                intrinsic[i] = scores[i] / (self._counts[i][key] ** self.beta) if self.beta else scores[i]
        extrinsic = np.asarray(rewards, dtype=np.float32).copy()
        rewards = extrinsic + self.coef * intrinsic
        self._ep_ext += extrinsic
        self._ep_int += intrinsic
        for i, info in enumerate(infos):
            info["oni_extrinsic"] = float(extrinsic[i])
            info["oni_intrinsic"] = float(intrinsic[i])
            if dones[i]:
                episode = {"extrinsic": float(self._ep_ext[i]), "intrinsic": float(self._ep_int[i])}
                info["oni_episode"] = episode
                self.episodes.append(episode)
                self._ep_ext[i] = self._ep_int[i] = 0.0
                if self.count_scope == "episode":
                    self._counts[i].clear()
        self.steps += self.num_envs
        self.intrinsic_sum += float(intrinsic.sum())
        self.extrinsic_sum += float(extrinsic.sum())
        wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
        self.overhead_s += wall
        self.blocked_s += max(0.0, wall - cpu)
        return obs, rewards, dones, infos

    def stats(self) -> dict[str, Any]:
        """Figures for logs and metrics: learner wait and client overhead, labels applied, intrinsic/extrinsic totals.

        ``overhead_s`` is all the time this wrapper adds to a step (captions, submit/drain, reward lookup,
        counts); ``client_overhead_s`` is the part spent inside the client's ``submit``/``drain``;
        ``learner_wait_s`` is the time the learner was blocked on the annotator (no blocking call is left
        on that path, so ~0; measured by the client); ``blocked_s`` is all the time the learner's thread
        was not running inside ONI's part of the step (see the module docstring).
        """
        out: dict[str, Any] = {
            "steps": self.steps,
            "labels_applied": self.labels_applied,
            "intrinsic_per_step": self.intrinsic_sum / max(self.steps, 1),
            "extrinsic_per_step": self.extrinsic_sum / max(self.steps, 1),
            "overhead_s": self.overhead_s,
            "blocked_s": self.blocked_s,
        }
        if self.episodes:
            out["ep_extrinsic_mean"] = float(np.mean([e["extrinsic"] for e in self.episodes]))
            out["ep_intrinsic_mean"] = float(np.mean([e["intrinsic"] for e in self.episodes]))
        if self.client is not None:
            client = self.client.stats()
            # learner_wait_s: time blocked on the annotator (~0 by design); client_overhead_s: time inside
            # submit/drain (part of overhead_s); see teachers/oni/client.py
            out.update(learner_wait_s=client["wait_s"], client_overhead_s=client["client_overhead_s"],
                       client_pending=client["pending"], client_incoming=client["incoming"],
                       client_incoming_drops=client["incoming_drops"], connected=client["connected"],
                       reconnects=client["reconnects"])
        if self.model is not None:
            out.update({f"model_{k}": v for k, v in self.model.stats().items() if isinstance(v, (int, float, bool))})
        return out


class ONILogCallback(BaseCallback):
    """Write the ONI wrapper's figures under ``oni/`` on the model's own logger each rollout."""

    def __init__(self, wrapper: ONIRewardWrapper, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.wrapper = wrapper

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        for key, value in self.wrapper.stats().items():
            self.logger.record(f"oni/{key}", float(value))


def _nethack_view(env: gym.Env) -> NetHackText | None:
    """The NetHack language view in `env`'s wrapper chain, if there is one."""
    while True:
        if isinstance(env, NetHackText):
            return env
        if not isinstance(env, gym.Wrapper):
            return None
        env = env.env


class NLEObsWrapper(gym.ObservationWrapper):
    """NLE dict obs -> ``glyphs`` (a crop around the hero), ``blstats``, ``message`` bytes.

    It sits on the envs' NetHack view (`llmguide.envs.nethack.NetHackText`,
    added when `env` has none), so ``info["message"]``, ONI's caption, is the
    view's: decoded only when read, like the rest of the view's entries (the
    view copies a few small arrays a step; the crop writes into a buffer
    padded once, not a fresh `np.pad` a step, so the wrapper costs less than
    it did with its own message handling). The view's reset also seeds
    NetHack itself when given a seed, so a seeded run replays the same games.
    """

    def __init__(self, env: gym.Env, crop: int = 9) -> None:
        from nle import nethack

        super().__init__(env if _nethack_view(env) is not None else NetHackText(env))
        self.crop = crop
        space = env.observation_space
        rows, cols = space["glyphs"].shape
        half = crop // 2
        self._padded = np.full((rows + 2 * half, cols + 2 * half), MAX_GLYPH, np.int16)
        self._inner = (slice(half, half + rows), slice(half, half + cols))
        self._x, self._y = nethack.NLE_BL_X, nethack.NLE_BL_Y
        self.observation_space = gym.spaces.Dict({
            "glyphs": gym.spaces.Box(0, MAX_GLYPH, (crop, crop), np.int16),
            "blstats": gym.spaces.Box(-np.inf, np.inf, (space["blstats"].shape[0],), np.float32),
            "message": gym.spaces.Box(0, 255, (256,), np.uint8),
        })

    def observation(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        bl = obs["blstats"]
        padded = self._padded
        padded[self._inner] = obs["glyphs"]
        x, y = int(bl[self._x]), int(bl[self._y])
        crop = padded[y : y + self.crop, x : x + self.crop].copy()
        return {"glyphs": crop, "blstats": bl.astype(np.float32), "message": obs["message"].astype(np.uint8)}


class NLEFeatures(BaseFeaturesExtractor):
    """Glyph-crop embedding + small CNN, log-scaled blstats MLP, byte-level message CNN."""

    def __init__(self, observation_space: gym.spaces.Dict, features_dim: int = 256, glyph_dim: int = 16) -> None:
        super().__init__(observation_space, features_dim)
        crop = observation_space["glyphs"].shape[0]
        n_bl = observation_space["blstats"].shape[0]
        self.glyph_emb = nn.Embedding(MAX_GLYPH + 1, glyph_dim)
        self.glyph_cnn = nn.Sequential(
            nn.Conv2d(glyph_dim, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten()
        )
        self.bl = nn.Sequential(nn.Linear(n_bl, 64), nn.ReLU())
        self.msg_emb = nn.Embedding(256, 16, padding_idx=0)
        self.msg_cnn = nn.Sequential(nn.Conv1d(16, 32, 5, padding=2), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(32 * crop * crop + 64 + 32, features_dim), nn.ReLU())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        g = self.glyph_emb(obs["glyphs"].long().clamp(0, MAX_GLYPH)).permute(0, 3, 1, 2)
        bl = obs["blstats"]
        m = self.msg_emb(obs["message"].long().clamp(0, 255)).permute(0, 2, 1)
        parts = [self.glyph_cnn(g), self.bl(torch.sign(bl) * torch.log1p(bl.abs())), self.msg_cnn(m).amax(dim=2)]
        return self.head(torch.cat(parts, dim=1))


def _policy_kwargs(features_dim: int = 256, net_arch: Sequence[int] = (128,)) -> dict[str, Any]:
    return {"features_extractor_class": NLEFeatures, "features_extractor_kwargs": {"features_dim": features_dim},
            "net_arch": list(net_arch)}
