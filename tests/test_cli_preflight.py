"""Model settings checked before any model loads (``policies.preflight``): adapters, base
model, and what an OpenAI-compatible server actually serves."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from policies.preflight import check_adapter, check_base, check_model_settings
from tools.cli_errors import InputError


@pytest.fixture
def server():
    """A stub ``GET /v1/models`` serving the names put in ``served``."""
    served: list[str] = []

    class Models(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps({"data": [{"id": n} for n in served]}).encode()
            self.send_response(200 if self.path == "/v1/models" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/v1", served
    httpd.shutdown()


def test_openai_server_must_serve_the_adapters_and_base(server):
    url, served = server
    served += ["smollm2"]
    with pytest.raises(InputError, match=r"--reasoner-adapter .*serves no adapter named 'reasoner'"):
        check_model_settings("openai", "embedded", {"reasoner": ("--reasoner-adapter", None)}, base_url=url)
    check_model_settings("openai", "embedded", {"reasoner": ("--reasoner-adapter", "none")}, base_url=url)
    served += ["reasoner"]
    check_model_settings("openai", "embedded", {"reasoner": ("--reasoner-adapter", None)}, base_url=url)
    with pytest.raises(InputError, match="--base qwen: the server at .* serves no model of that name"):
        check_model_settings("openai", "qwen", {}, base_url=url)


def test_adapter_and_base_directories(tmp_path):
    check_adapter("--adapter", None)
    check_adapter("--adapter", "none")
    with pytest.raises(InputError, match="has no adapter_config.json"):
        check_adapter("--adapter", tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(InputError, match="adapter_config.json cannot be read"):
        check_adapter("--adapter", tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    check_adapter("--adapter", tmp_path)
    check_base("--base", "tiny-random")
    with pytest.raises(InputError, match="not an HF model directory"):
        check_base("--base", str(tmp_path))
