"""Faults with real processes: kill the annotator mid-training, restart it, lose nothing, block nothing."""

from __future__ import annotations

import time

import gymnasium as gym
import httpx
import numpy as np
import pytest
from llmguide.teachers.oni.client import AnnotatorClient
from llmguide.net import free_port
from llmguide.teachers.oni.process import start_annotator
from llmguide.teachers.oni.store import LabelStore

MESSAGES = [f"You kill the newt number {i}!" if i % 3 == 0 else f"It's wall {i}." for i in range(60)]
#: MessageEnv shows only the first half of MESSAGES until the fault test kills the annotator, so the
#: second half is surely unlabelled (pending) when it restarts, however fast this machine is
PHASE = {"killed": False}


class MessageEnv(gym.Env):
    """A cheap env whose every step carries a NetHack-like message in info["message"]."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.t, self.k = 0, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {"message": ""}

    def step(self, action):
        self.t += 1
        self.k = (self.k + 1) % (len(MESSAGES) if PHASE["killed"] else len(MESSAGES) // 2)
        return np.zeros(2, np.float32), 0.0, False, self.t >= 20, {"message": MESSAGES[self.k]}


def test_client_never_blocks_when_server_is_down(wait_until) -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", backoff_max=0.2)
    try:
        t0 = time.perf_counter()
        for i in range(2000):
            client.submit([f"message {i % 500}"])
            client.drain()
        elapsed = time.perf_counter() - t0
        stats = client.stats()
        assert elapsed < 1.0 and stats["client_overhead_s"] <= elapsed and stats["wait_s"] < 0.05
        # the client thread takes the captions in (dedup, pending) on its own time, server or not
        assert wait_until(lambda: client.stats()["incoming"] == 0, 5), client.stats()
        stats = client.stats()
        assert stats["new"] == 500 and stats["pending"] == 500 and not stats["connected"]
        assert wait_until(lambda: client.stats()["errors"] >= 2, 5)
    finally:
        client.close()


def test_outbox_is_bounded() -> None:
    client = AnnotatorClient(f"http://127.0.0.1:{free_port()}", outbox_size=10, start=False)
    client.submit([f"m{i}" for i in range(100)])
    client._ingest()  # what the client thread does with the caller's batch
    assert client.stats()["outbox"] == 10 and client.stats()["outbox_drops"] == 90 and client.stats()["pending"] == 100


@pytest.mark.slow
def test_kill_annotator_mid_training_then_recover(tmp_path, wait_until) -> None:
    from llmguide.teachers.oni.reward import HashReward
    from llmguide.teachers.oni.wrapper import ONIRewardWrapper
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    db, port = tmp_path / "labels.sqlite", free_port()
    PHASE["killed"] = False
    procs = [start_annotator("fake:rule:0.05", db, port=port, batch_size=4, prefs_per_batch=0)]
    client = AnnotatorClient(procs[0].url, poll_interval=0.05, backoff_max=0.3)
    wrapper = ONIRewardWrapper(VecMonitor(DummyVecEnv([MessageEnv, MessageEnv])), HashReward(), client, coef=1.0, beta=0.0)
    seen: dict[str, int] = {}

    class Chaos(BaseCallback):
        """Kill the annotator once some labels exist; restart it (same port, same db) a while later."""

        def _on_step(self) -> bool:
            if "killed_at" not in seen and client.stats()["labels"] >= 4:
                seen["labels_before_kill"] = LabelStore(db).counts()["labels"]
                procs[0].kill()
                PHASE["killed"] = True  # from now on the env also shows the second half of MESSAGES
                seen["killed_at"] = self.num_timesteps
                # unlabelled captions the learner collects while the annotator is down
            elif "killed_at" in seen and "restarted_at" not in seen and self.num_timesteps - seen["killed_at"] >= 400:
                seen["pending_at_restart"] = client.stats()["pending"]
                procs.append(start_annotator("fake:rule:0.05", db, port=port, batch_size=4, prefs_per_batch=0))
                seen["restarted_at"] = self.num_timesteps
            return True

    try:
        ppo = PPO("MlpPolicy", wrapper, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs={"net_arch": [8]}, seed=0)
        ppo.learn(2048, callback=Chaos())
        assert ppo.num_timesteps >= 2048  # training went on through the outage
        assert "killed_at" in seen and "restarted_at" in seen
        assert seen["pending_at_restart"] > 0
        assert wait_until(lambda: client.stats()["reconnects"] >= 1 and client.stats()["pending"] == 0, 60), client.stats()
        stats = client.stats()
        assert stats["resent"] > 0  # unlabelled captions were re-sent to the new process
        store = LabelStore(db).counts()
        assert store["labels"] >= seen["labels_before_kill"]  # nothing stored was lost
        assert store["labels"] == len(MESSAGES)  # and everything got labelled in the end
        assert stats["wait_s"] < 0.05  # the learner never blocked on the annotator
        assert stats["client_overhead_s"] < 2.0  # and submit/drain cost it little CPU
        assert wrapper.stats()["learner_wait_s"] == stats["wait_s"]
        labels_seen = httpx.get(f"{procs[-1].url}/labels", params={"since": 0}).json()["labels"]
        assert len(labels_seen) == len(MESSAGES)
        wrapper.apply_labels()  # labels that arrived after the last training step
        assert wrapper.stats()["labels_applied"] == len(MESSAGES)
    finally:
        client.close()
        for proc in procs:
            proc.stop()
    assert all(not p.alive() for p in procs)
