"""ExperienceMemory on a real Chroma server (`chroma run`): two processes share one memory; errors are readable."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from llmguide.memory import Experience, ExperienceMemory

from llmguide.errors import BackendUnavailableError, ConfigError
from llmguide.processes import stop_process

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fakes import BagOfWords

CLOSE = "You drive in the second lane, at 25 m/s. vehicle 1: in your lane, 8 m ahead, 5 m/s slower."
CLEAR = "You drive in the first lane, at 20 m/s. No vehicle nearby. Open road ahead."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `chroma run` server process on a free port, with its data in a tmp dir."""
    exe = shutil.which("chroma", path=os.path.dirname(sys.executable)) or shutil.which("chroma")
    if exe is None:
        pytest.fail("the `chroma` CLI (chromadb) is not installed beside this Python")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma")
    log = (data / "server.log").open("w")
    proc = subprocess.Popen([exe, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma run did not come up: {(data / 'server.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        stop_process(proc, 10)
        log.close()


def test_two_clients_share_one_memory_on_the_server(chroma_url: str) -> None:
    a = ExperienceMemory(url=chroma_url, embeddings=BagOfWords(), collection="pair")
    b = ExperienceMemory(url=chroma_url, embeddings=BagOfWords(), collection="pair")
    assert a.add([Experience(CLOSE, "SLOWER", "too close", episode="a")]) == 1
    assert b.search(CLOSE, k=1)[0].decision == "SLOWER"  # b reads what a wrote
    assert b.add([Experience(CLEAR, "FASTER", episode="b"), Experience(CLOSE, "SLOWER")]) == 1  # a's is not stored twice
    assert len(a) == len(b) == 2 and a.search(CLEAR, k=1)[0].episode == "b"
    assert b.clear() == 2 and len(a) == 0  # emptied, not dropped: a's handle still works
    assert a.add([Experience(CLEAR, "FASTER")]) == 1 and len(b) == 1


@pytest.mark.slow
def test_two_processes_share_one_memory_on_the_server(chroma_url: str) -> None:
    here = ExperienceMemory(url=chroma_url, embeddings=BagOfWords(), collection="shared")
    here.clear()
    assert here.add([Experience(CLOSE, "SLOWER", "too close", episode="node-a")]) == 1
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from fakes import BagOfWords
        from llmguide.memory import Experience, ExperienceMemory
        m = ExperienceMemory(url={chroma_url!r}, embeddings=BagOfWords(), collection="shared")
        print("seen", m.search({CLOSE!r}, k=1)[0].decision)   # what the other node wrote
        print("added", m.add([Experience({CLEAR!r}, "FASTER", "clear road", episode="node-b"),
                             Experience({CLOSE!r}, "SLOWER", "too close")]))   # the second is already there
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "seen SLOWER" in out.stdout and "added 1" in out.stdout
    assert len(here) == 2
    assert here.search(CLEAR, k=1)[0].episode == "node-b"
    assert {e.decision for e in here.all()} == {"SLOWER", "FASTER"}
    assert here.stats()["url"] == chroma_url


def test_server_collection_refuses_other_embeddings(chroma_url: str) -> None:
    ExperienceMemory(url=chroma_url, embeddings=BagOfWords(), collection="embedded")

    class Other(BagOfWords):
        name = "other-embeddings"

    with pytest.raises(ConfigError, match="other-embeddings"):
        ExperienceMemory(url=chroma_url, embeddings=Other(), collection="embedded")


def test_unreachable_server_is_one_readable_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(BackendUnavailableError) as err:
        ExperienceMemory(url=url, embeddings=BagOfWords())
    text = str(err.value)
    assert url in text and "chroma run" in text and "memory.url" in text


@pytest.mark.parametrize("bad", ["localhost:8000", "ftp://host:1", "http://host:99999", "http://host:1/db"])
def test_bad_server_urls_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        ExperienceMemory(url=bad, embeddings=BagOfWords())


def test_path_and_url_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        ExperienceMemory(tmp_path / "m", url="http://127.0.0.1:8000", embeddings=BagOfWords())


def test_dilu_config_selects_the_server_memory(chroma_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from llmguide.core import prepare

    monkeypatch.setattr("llmguide.memory.embeddings.default_embeddings", BagOfWords)
    llm = FakeListChatModel(responses=['{"choice": "IDLE"}'])
    prepared = prepare({"method": "dilu", "memory": {"url": chroma_url, "collection": "dilu"}}, {"llm": llm})
    assert prepare({"method": "dilu", "memory": chroma_url}).config.memory.url == chroma_url  # URL shorthand
    method = prepared.method_cls(prepared.config, prepared.settings, tmp_path, prepared.objects)
    method.build()
    assert method.agent.memory.url == chroma_url and method.agent.memory.collection == "dilu"
    with pytest.raises(ConfigError, match="HOST:PORT"):
        prepare({"method": "dilu", "memory": {"url": "chroma:8000"}})
    down = f"http://127.0.0.1:{_free_port()}"
    dead = prepare({"method": "dilu", "memory": {"url": down}}, {"llm": llm})
    with pytest.raises(BackendUnavailableError, match=down):
        dead.method_cls(dead.config, dead.settings, tmp_path, dead.objects).build()


def test_a_sweep_accepts_a_server_memory_from_a_network_fs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial's memory URL is not a path: it is never refused as 'on a network file system'."""
    from llmguide import sweep

    monkeypatch.setattr(sweep, "on_network_fs", lambda path: True)  # as if every path were on NFS
    sweep._check_node_local({"memory": "http://10.0.0.5:8001"})
    with pytest.raises(ConfigError, match="network file system"):
        sweep._check_node_local({"memory": "/shared/dilu-mem"})
