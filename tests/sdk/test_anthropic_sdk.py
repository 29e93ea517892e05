"""The official `anthropic` Python SDK against Junction's Messages front door (/v1/messages),
routed to each upstream kind of the mock: an Anthropic upstream (passed through), and an
OpenAI and a Gemini upstream (translated both ways). The gateway comes from conftest.py.
"""

import json

import anthropic
import httpx2
import pytest
from anthropic import beta_tool
from conftest import KEY, Weather

EXPECTED = "Hello from the Junction mock upstream, friend"
MESSAGES = [{"role": "user", "content": "hello"}]
# claude-sdk: Anthropic upstream (pass-through); gpt-sdk: OpenAI; gemini-sdk: Gemini.
ALL_MODELS = ["claude-sdk", "gpt-sdk", "gemini-sdk"]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def client(gateway, key=KEY):
    return anthropic.Anthropic(base_url=gateway.removesuffix("/v1"), api_key=key, max_retries=0)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_message(gateway, model):
    r = client(gateway).messages.create(model=model, max_tokens=100, messages=MESSAGES)
    assert r.type == "message" and r.role == "assistant"
    assert [b.type for b in r.content] == ["text"]
    assert r.content[0].text == EXPECTED
    assert r.stop_reason == "end_turn"
    assert r.usage.output_tokens == 8
    assert r.usage.input_tokens > 0


@pytest.mark.parametrize("model", ALL_MODELS)
def test_stream(gateway, model):
    with client(gateway).messages.stream(model=model, max_tokens=100, messages=MESSAGES) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == EXPECTED
    assert final.content[0].text == EXPECTED
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 8
    assert final.usage.input_tokens > 0


@pytest.mark.parametrize("model", ALL_MODELS)
def test_raw_events_follow_anthropics_grammar(gateway, model):
    events = list(
        client(gateway).messages.create(model=model, max_tokens=100, messages=MESSAGES, stream=True)
    )
    kinds = [e.type for e in events if e.type != "ping"]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    open_block = None
    next_index = 0
    for e in events:
        if e.type == "content_block_start":
            assert open_block is None and e.index == next_index
            open_block = e.index
            next_index += 1
        elif e.type == "content_block_delta":
            assert e.index == open_block
        elif e.type == "content_block_stop":
            assert e.index == open_block
            open_block = None
    assert open_block is None and next_index >= 1


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_and_results(gateway, model, stream):
    c = client(gateway)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with c.messages.stream(model=model, max_tokens=100, messages=messages, tools=TOOLS) as s:
            r = s.get_final_message()
    else:
        r = c.messages.create(model=model, max_tokens=100, messages=messages, tools=TOOLS)
    assert r.stop_reason == "tool_use"
    (call,) = [b for b in r.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    assert call.input == {"city": "Paris"}
    assert call.id
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": json.dumps({"temp_c": 18})}
            ],
        },
    ]
    r = c.messages.create(model=model, max_tokens=100, messages=messages, tools=TOOLS)
    assert r.stop_reason == "end_turn"
    assert r.content[-1].text == EXPECTED


@pytest.mark.parametrize("model", ALL_MODELS)
def test_thinking_then_a_second_turn(gateway, model):
    c = client(gateway)
    thinking = {"type": "enabled", "budget_tokens": 2048}
    with c.messages.stream(model=model, max_tokens=4096, messages=MESSAGES, thinking=thinking) as s:
        r = s.get_final_message()
    kinds = [b.type for b in r.content]
    assert kinds == ["thinking", "text"], kinds
    assert r.content[0].thinking == "Let me think about that."
    assert r.content[1].text == EXPECTED
    # The whole answer goes back as history, thinking block and signature included.
    history = MESSAGES + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": "and again"},
    ]
    r2 = c.messages.create(model=model, max_tokens=4096, messages=history, thinking=thinking)
    assert r2.content[-1].text == EXPECTED


def test_a_hard_coded_claude_id_reaches_the_model_it_is_aliased_to(gateway):
    # claude-haiku-4-5-20251001 is an alias of gpt-sdk (an OpenAI upstream).
    r = client(gateway).messages.create(
        model="claude-haiku-4-5-20251001", max_tokens=100, messages=MESSAGES
    )
    assert r.content[0].text == EXPECTED
    assert r.model == "gpt-4o-mini"


def test_errors_are_typed(gateway):
    with pytest.raises(anthropic.AuthenticationError):
        client(gateway, key="sk-wrong").messages.create(model="gpt-sdk", max_tokens=10, messages=MESSAGES)
    with pytest.raises(anthropic.NotFoundError) as e:
        client(gateway).messages.create(model="no-such-model", max_tokens=10, messages=MESSAGES)
    assert e.value.body["type"] == "error"
    with pytest.raises(anthropic.RateLimitError) as e:
        client(gateway).messages.create(model="always-429", max_tokens=10, messages=MESSAGES)
    assert e.value.response.headers["retry-after"] == "1"


def test_models_and_count_tokens(gateway):
    c = client(gateway)
    ids = [m.id for m in c.models.list()]
    assert "claude-sdk" in ids and "gpt-sdk" in ids
    n = c.messages.count_tokens(model="gpt-sdk", messages=MESSAGES).input_tokens
    longer = c.messages.count_tokens(
        model="gpt-sdk", messages=[{"role": "user", "content": "hello " * 50}]
    ).input_tokens
    assert 0 < n < longer


@beta_tool
def get_weather_tool(city: str) -> str:
    """Weather in a city"""
    return json.dumps({"city": city, "temp_c": 18})


@pytest.mark.parametrize("model", ALL_MODELS)
def test_the_tool_runner_with_message_threads(gateway, model):
    # The SDK's tool runner keeps the conversation on the server (beta message threads): a
    # `thread` on every request, continuations that carry only the new tool_result. An
    # Anthropic upstream takes them as sent; a translated route refuses them with the error
    # the SDK falls back on (it then resends the whole history, without `thread`).
    seen = []

    def log(request):
        seen.append(json.loads(request.content or b"{}"))

    c = anthropic.Anthropic(
        base_url=gateway.removesuffix("/v1"),
        api_key=KEY,
        max_retries=0,
        http_client=httpx2.Client(event_hooks={"request": [log]}),
    )
    runner = c.beta.messages.tool_runner(
        model=model,
        max_tokens=100,
        tools=[get_weather_tool],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    final = runner.until_done()
    assert final.stop_reason == "end_turn"
    assert final.content[-1].text == EXPECTED
    assert seen[0].get("thread") == {"type": "create"}
    if model == "claude-sdk":
        # Threaded throughout: the continuation holds only the tool result.
        assert seen[-1]["thread"]["type"] == "continue", seen
        assert len(seen[-1]["messages"]) == 1
    else:
        # Refused once, then the whole history without a thread.
        assert "thread" not in seen[1] and seen[1]["messages"] == seen[0]["messages"], seen
        assert "thread" not in seen[-1] and len(seen[-1]["messages"]) == 3, seen


def test_a_thread_on_a_translated_route_is_refused_as_the_sdk_expects(gateway):
    r = httpx_post(gateway, {"model": "gpt-sdk", "max_tokens": 10, "messages": [], "thread": {"type": "continue", "previous_message_id": "msg_1"}})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["details"] == {"error_code": "thread_unsupported_request"}
    assert "thread" in body["error"]["message"]


def httpx_post(gateway, body):
    return httpx2.post(
        gateway + "/messages",
        json=body,
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "anthropic-beta": "message-threads-2026-08-12"},
    )


@pytest.mark.parametrize("model", ALL_MODELS)
def test_structured_output_on_every_kind(gateway, model):
    # output_format: passed through to Anthropic, as response_format to OpenAI, as a response
    # schema to Gemini.
    r = client(gateway).messages.parse(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris, as JSON"}],
        output_format=Weather,
    )
    assert r.stop_reason == "end_turn"
    assert r.parsed_output == Weather(city="Paris", temp_c=1)
