"""LocalChatModel on tiny-random: generation, LoRA adapters, switching, coalescing."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from policies.backends import make_chat_model
from policies.backends.local import LocalChatModel
from policies.models import load_base
from policies.prompts import encode, make_request
from tests.test_prompts import make_task

PROMPTS = [encode(make_request(role, make_task(seed=s)))
           for s in range(3) for role in ("reasoner", "optimizer")]


def _make_adapter(path, seed):
    from peft import LoraConfig, get_peft_model

    model, _ = load_base("tiny-random", cache=False)  # private copy: PEFT edits in place
    torch.manual_seed(seed)
    cfg = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    pm.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapters")
    return {"reasoner": _make_adapter(d / "reasoner", 1), "optimizer": _make_adapter(d / "optimizer", 2)}


@pytest.fixture(scope="module")
def plain():
    return LocalChatModel(base="tiny-random", max_new_tokens=8, coalesce=False)


@pytest.fixture(scope="module")
def with_adapters(adapters):
    return make_chat_model("local", "tiny-random", adapters, max_new_tokens=8)


def test_generates_batched_and_single(plain):
    texts = plain.generate_texts(PROMPTS[:4])
    assert len(texts) == 4 and all(isinstance(t, str) and t for t in texts)
    assert plain.invoke(PROMPTS[0]).content == texts[0]
    assert [m.content for m in plain.batch(PROMPTS[:4])] == texts


def test_sampling_is_seeded(plain):
    a = plain.generate_texts(PROMPTS[:2], temperature=1.0, seed=7)
    b = plain.generate_texts(PROMPTS[:2], temperature=1.0, seed=7)
    assert a == b


def test_a_seeded_sample_does_not_depend_on_its_batch(plain):
    """The same prompt and seed give the same sample alone, with neighbours, in any order."""
    alone = plain.generate_texts(PROMPTS[1:2], temperature=1.0, seed=3, max_new_tokens=12)[0]
    mixed = plain.generate_texts([PROMPTS[3], PROMPTS[1], PROMPTS[0]], temperature=1.0, seed=3, max_new_tokens=12)
    assert mixed[1] == alone
    assert plain.generate_texts(PROMPTS[:2], temperature=1.0, seed=3, max_new_tokens=12)[1] == alone


def test_adapter_changes_output_and_switches(with_adapters, plain):
    base = with_adapters.generate_texts(PROMPTS[:4], adapter=None)
    r = with_adapters.generate_texts(PROMPTS[:4], adapter="reasoner")
    o = with_adapters.generate_texts(PROMPTS[:4], adapter="optimizer")
    assert r != base and o != base and r != o
    # switching back and forth is stable; no adapter == the plain base model
    assert with_adapters.generate_texts(PROMPTS[:4], adapter="reasoner") == r
    assert with_adapters.generate_texts(PROMPTS[:4], adapter=None) == base
    assert plain.generate_texts(PROMPTS[:4]) == base
    # bind kwarg selects the adapter through LangChain
    assert with_adapters.bind(adapter="optimizer").invoke(PROMPTS[0]).content == o[0]
    assert [m.content for m in with_adapters.bind(adapter="reasoner").batch(PROMPTS[:4])] == r


def test_unknown_adapter_is_clear(with_adapters):
    with pytest.raises(ValueError, match="not loaded"):
        with_adapters.generate_texts(PROMPTS[:1], adapter="nope")


def test_coalescer_merges_concurrent_calls(adapters):
    chat = LocalChatModel(base="tiny-random", adapters={k: str(v) for k, v in adapters.items()},
                          max_new_tokens=6, batch_size=16, coalesce_ms=1000)  # wide: robust on a loaded box
    expected = chat.generate_texts(PROMPTS, adapter="optimizer")
    n0, s0 = chat.generate_calls, len(chat.coalescer.sizes)
    results: dict[int, str] = {}
    barrier = threading.Barrier(len(PROMPTS))

    def work(i):
        barrier.wait()
        results[i] = chat.invoke(PROMPTS[i], adapter="optimizer").content

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [results[i] for i in range(len(PROMPTS))] == expected
    assert chat.generate_calls - n0 <= 2 < len(PROMPTS)
    assert chat.coalesced_calls <= 2
    assert sum(chat.coalescer.sizes[s0:]) == len(PROMPTS)  # the public view of the batches run


def test_stop_at_answer_tag(plain):
    from policies.backends.common import cut_at

    assert cut_at("<answer>[1]</answer> junk", ["</answer>"], keep=True) == "<answer>[1]</answer>"
    assert cut_at("abc STOP def", ["STOP"], keep=False) == "abc "
    text = plain.invoke(PROMPTS[0]).content
    word = text.split()[1] if len(text.split()) > 1 else text[1:]
    assert plain.invoke(PROMPTS[0], stop=[word]).content == text[: text.index(word)]


def test_per_call_max_new_tokens(plain):
    """``max_new_tokens`` per call through invoke / bind / batch / generate_texts."""
    short = plain.generate_texts(PROMPTS[:2], max_new_tokens=3)
    assert short != plain.generate_texts(PROMPTS[:2])  # the default cap is 8
    assert plain.invoke(PROMPTS[0], max_new_tokens=3).content == short[0]
    assert plain.bind(max_new_tokens=3).invoke(PROMPTS[0]).content == short[0]
    assert [m.content for m in plain.batch(PROMPTS[:2], max_new_tokens=3)] == short
    assert [m.content for m in plain.bind(max_new_tokens=3).batch(PROMPTS[:2])] == short
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_new_tokens"):
            plain.invoke(PROMPTS[0], max_new_tokens=bad)


def test_coalescer_groups_requests_by_cap():
    chat = LocalChatModel(base="tiny-random", max_new_tokens=8, batch_size=16, coalesce_ms=300)
    caps = [3 if i % 2 else 6 for i in range(len(PROMPTS))]
    expected = {cap: dict(zip([i for i, c in enumerate(caps) if c == cap],
                              chat.generate_texts([p for p, c in zip(PROMPTS, caps) if c == cap],
                                                  max_new_tokens=cap)))
                for cap in (3, 6)}
    n0 = chat.generate_calls
    results: dict[int, str] = {}
    barrier = threading.Barrier(len(PROMPTS))

    def work(i):
        barrier.wait()
        results[i] = chat.invoke(PROMPTS[i], max_new_tokens=caps[i]).content

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: expected[caps[i]][i] for i in range(len(PROMPTS))}
    assert chat.generate_calls - n0 == 2  # one batched generate per cap


def test_request_coalescer_batches_by_key_and_hands_back_errors():
    from policies.backends.coalescer import RequestCoalescer

    seen: list[tuple] = []

    def fn(key, items):
        seen.append((key, list(items)))
        if key == "boom":
            raise RuntimeError("backend down")
        return [f"{key}:{x}" for x in items]

    co = RequestCoalescer(fn, max_batch=8, window_s=0.3)
    futs = [co.submit("a" if i % 2 else "b", i) for i in range(6)]
    assert [f.result(10) for f in futs] == [f"{'a' if i % 2 else 'b'}:{i}" for i in range(6)]
    assert sorted(seen) == [("a", [1, 3, 5]), ("b", [0, 2, 4])] and co.sizes == [3, 3]
    with pytest.raises(RuntimeError, match="backend down"):
        co.run("boom", [1, 2])
    assert co.run("a", [7]) == ["a:7"]  # the worker survives a failed batch


def test_request_coalescer_waits_for_the_last_batchs_stragglers():
    """Callers of one batch come back spread out (graph nodes run in between); the next
    batch must gather them all instead of running the first few alone."""
    from policies.backends.coalescer import RequestCoalescer

    def fn(key, items):
        if key == "slow":
            time.sleep(2.0)  # a batch long enough that its straggler wait is 0.5 s
        return list(items)

    co = RequestCoalescer(fn, max_batch=16, window_s=0.1)
    start = threading.Barrier(8)

    def caller(i):
        start.wait()
        time.sleep(0.03 * i)  # the first wave arrives over 210 ms, 30 ms apart (> the window in all)
        for r in range(3):
            co.run("slow", [(i, r)])
            time.sleep(0.04 * i)  # the i-th caller comes back 40*i ms after the batch

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert co.sizes == [8, 8, 8]
    time.sleep(0.6)  # past the straggler wait: a lone request waits only the window
    t0 = time.monotonic()
    assert co.run("fast", ["x"]) == ["x"]
    assert time.monotonic() - t0 < 0.4 and co.sizes[-1] == 1


@pytest.mark.slow
def test_embedded_lora_changes_output(tmp_path):
    """The embedded model generates offline, and a (random, untrained) LoRA changes it."""
    from peft import LoraConfig, get_peft_model

    model, _ = load_base("embedded", cache=False)
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, cfg).save_pretrained(str(tmp_path / "opt"))
    del model
    chat = LocalChatModel(base="embedded", adapters={"optimizer": str(tmp_path / "opt")},
                          max_new_tokens=12)
    base = chat.generate_texts(PROMPTS[:2])
    tuned = chat.generate_texts(PROMPTS[:2], adapter="optimizer")
    assert all(base) and base != tuned
    fast = LocalChatModel(base="embedded", max_new_tokens=12, bf16=True)
    assert all(fast.generate_texts(PROMPTS[:2]))


def test_policy_calls_from_many_threads_share_generates(adapters):
    from policies.llm import LLMPolicy

    chat = LocalChatModel(base="tiny-random", adapters={"optimizer": str(adapters["optimizer"])},
                          max_new_tokens=4, batch_size=16, coalesce_ms=300)
    pol = LLMPolicy("optimizer", chat)
    assert pol.adapter == "optimizer"
    reqs = [make_request("optimizer", make_task(seed=s)) for s in range(6)]
    expected = [d.text for d in pol.propose(reqs)]  # one call, one batched generate
    assert chat.generate_calls == 1
    out: dict[int, str] = {}
    barrier = threading.Barrier(len(reqs))

    def work(i):
        barrier.wait()
        out[i] = pol.propose([reqs[i]])[0].text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [out[i] for i in range(len(reqs))] == expected
    assert chat.generate_calls <= 3


def test_stop_criteria_are_built_once_and_stop_like_stop_strings():
    """generate(stop_strings=...) rebuilt the vocabulary tables on every call (0.4-0.6 s);
    the cached criterion must stop exactly where stop_strings stops."""
    from policies.backends.common import stop_criteria

    model, tok = load_base("tiny-random")
    first = stop_criteria(tok, ["</answer>", "b"])
    assert stop_criteria(tok, ["</answer>", "b"])[0] is first[0]
    ids = tok(["<answer>[1.0,2.0]", "hello"], return_tensors="pt", padding=True)
    kw = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    a = model.generate(**ids, stop_strings=["</answer>", "b"], tokenizer=tok, **kw)
    b = model.generate(**ids, stopping_criteria=first, **kw)
    assert torch.equal(a, b)
