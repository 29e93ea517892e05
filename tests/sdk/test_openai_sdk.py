"""The official `openai` Python SDK against Junction: sync, async and streaming.

Starts `junction mock` and `junction serve` (the binary from JUNCTION_BIN, default
target/debug/junction) on free ports. Run with: .venv/bin/pytest tests/sdk
"""

import asyncio
import hashlib
import os
import socket
import subprocess
import tempfile
import time

import openai
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("JUNCTION_BIN", os.path.join(ROOT, "target", "debug", "junction"))
KEY = "sk-sdk-test-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} never opened")


@pytest.fixture(scope="module")
def gateway():
    mock_port, gw_port = free_port(), free_port()
    procs = []
    try:
        mock = subprocess.Popen(
            [BIN, "mock", "--listen", f"127.0.0.1:{mock_port}", "--threads", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(mock)
        wait_listening(mock_port, mock)
        key_hash = hashlib.sha256(KEY.encode()).hexdigest()
        conf = f"""
[server]
listen = "127.0.0.1:{gw_port}"
threads = 1

[[keys]]
name = "sdk"
sha256 = "{key_hash}"

[providers.mock]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"

[providers.limited]
kind = "openai"
base_url = "http://127.0.0.1:{mock_port}/v1"
headers = {{ "x-mock-status" = "429", "x-mock-retry-after" = "1" }}

[models.gpt-sdk]
provider = "mock"
model = "gpt-4o-mini"

[models.always-429]
provider = "limited"
"""
        path = os.path.join(tempfile.mkdtemp(), "junction.toml")
        with open(path, "w") as f:
            f.write(conf)
        gw = subprocess.Popen(
            [BIN, "serve", "--config", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(gw)
        wait_listening(gw_port, gw)
        yield f"http://127.0.0.1:{gw_port}/v1"
    finally:
        for p in procs:
            p.kill()
            p.wait()


EXPECTED = "Hello from the Junction mock upstream, friend"
MESSAGES = [{"role": "user", "content": "hello"}]


def test_sync_completion(gateway):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    r = client.chat.completions.create(model="gpt-sdk", messages=MESSAGES)
    assert r.choices[0].message.content == EXPECTED
    assert r.model == "gpt-4o-mini"
    assert r.usage.completion_tokens == 8
    assert r.choices[0].finish_reason == "stop"


def test_sync_stream_without_usage(gateway):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    chunks = list(client.chat.completions.create(model="gpt-sdk", messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_sync_stream_with_usage(gateway):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    chunks = list(
        client.chat.completions.create(
            model="gpt-sdk",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 8


def test_async_completion_and_stream(gateway):
    async def run():
        client = openai.AsyncOpenAI(base_url=gateway, api_key=KEY)
        r = await client.chat.completions.create(model="gpt-sdk", messages=MESSAGES)
        assert r.choices[0].message.content == EXPECTED
        stream = await client.chat.completions.create(model="gpt-sdk", messages=MESSAGES, stream=True)
        text = ""
        async for c in stream:
            if c.choices:
                text += c.choices[0].delta.content or ""
        assert text == EXPECTED
        # Many at once over the client's pool.
        results = await asyncio.gather(
            *[client.chat.completions.create(model="gpt-sdk", messages=MESSAGES) for _ in range(20)]
        )
        assert all(r.choices[0].message.content == EXPECTED for r in results)
        await client.close()

    asyncio.run(run())


def test_models_list(gateway):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["always-429", "gpt-sdk"]


def test_errors_are_typed(gateway):
    client = openai.OpenAI(base_url=gateway, api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway, api_key="sk-wrong", max_retries=0).chat.completions.create(
            model="gpt-sdk", messages=MESSAGES
        )
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="always-429", messages=MESSAGES)
    assert e.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-sdk", messages=[])
