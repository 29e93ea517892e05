"""Shared by the SDK tests: starts `junction mock` and `junction serve` (the binary from
JUNCTION_BIN, default target/debug/junction) on free ports, once per test module.
"""

import hashlib
import os
import socket
import subprocess
import tempfile
import time

import pydantic
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("JUNCTION_BIN", os.path.join(ROOT, "target", "debug", "junction"))
KEY = "sk-sdk-test-key"


class Weather(pydantic.BaseModel):
    """What the structured-output tests ask every SDK for."""

    city: str
    temp_c: int


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

[providers.mock-anthropic]
kind = "anthropic"
base_url = "http://127.0.0.1:{mock_port}/v1"

[providers.mock-gemini]
kind = "gemini"
base_url = "http://127.0.0.1:{mock_port}/v1beta"

[models.gpt-sdk]
provider = "mock"
model = "gpt-4o-mini"
aliases = ["claude-haiku-4-5-20251001"]

[models.claude-sdk]
provider = "mock-anthropic"
model = "claude-sonnet-4-5"
aliases = ["claude-sonnet-4-5"]

[models.claude-tool-sdk]
provider = "mock-anthropic"
model = "claude-3-7-sonnet-20250219"

[models.gemini-sdk]
provider = "mock-gemini"
model = "gemini-2.5-flash"

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
