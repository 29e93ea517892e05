"""The official `openai` Python SDK against Junction: sync, async and streaming.

The gateway and the mock come from conftest.py. Run with: .venv/bin/pytest tests/sdk
"""

import asyncio
import json

import openai
import pytest
from conftest import KEY, Weather

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
    # Aliases are listed too.
    assert ids == [
        "always-429",
        "claude-haiku-4-5-20251001",
        "claude-sdk",
        "claude-sonnet-4-5",
        "claude-tool-sdk",
        "gemini-sdk",
        "gpt-sdk",
    ]


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


# The same experience from every provider kind: the gateway translates Anthropic and Gemini.
ALL_MODELS = ["gpt-sdk", "claude-sdk", "gemini-sdk"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_kind_streams_text_with_usage(gateway, model):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    chunks = list(
        client.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == EXPECTED
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage.completion_tokens == 8
    assert chunks[-1].usage.prompt_tokens > 0


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_every_kind_calls_tools_and_takes_results(gateway, model, stream):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        calls = {}
        finish = None
        for c in client.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True):
            if not c.choices:
                continue
            for tc in c.choices[0].delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                entry["id"] = tc.id or entry["id"]
                if tc.function and tc.function.name:
                    entry["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    entry["arguments"] += tc.function.arguments
            finish = c.choices[0].finish_reason or finish
        assert list(calls) == [0]
        call = calls[0]
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
        finish = r.choices[0].finish_reason
        (tc,) = r.choices[0].message.tool_calls
        call_id, name, arguments = tc.id, tc.function.name, tc.function.arguments
    assert finish == "tool_calls"
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}
    assert call_id
    # Send the result back: the provider gets a proper tool result and answers in text.
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
        },
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"temp_c": 18})},
    ]
    r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == EXPECTED


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_kind_sees_images(gateway, model):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    r = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )
    assert r.choices[0].message.content.startswith("I see 2 image(s).")


@pytest.mark.parametrize("model", ["claude-sdk", "gemini-sdk"])
def test_reasoning_comes_back_as_reasoning_content(gateway, model):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    r = client.chat.completions.create(model=model, messages=MESSAGES, reasoning_effort="low")
    assert r.choices[0].message.model_extra["reasoning_content"] == "Let me think about that."
    reasoning = ""
    for c in client.chat.completions.create(model=model, messages=MESSAGES, reasoning_effort="low", stream=True):
        if c.choices:
            reasoning += (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
    assert reasoning == "Let me think about that."


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_every_kind_answers_structured_output(gateway, model, stream):
    # The SDK's own parse: a strict json_schema from the Pydantic model, the answer read back
    # into it (to Anthropic as output_config.format, to Gemini as responseJsonSchema).
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    messages = [{"role": "user", "content": "Weather in Paris, as JSON"}]
    if stream:
        with client.chat.completions.stream(model=model, messages=messages, response_format=Weather) as s:
            r = s.get_final_completion()
    else:
        r = client.chat.completions.parse(model=model, messages=messages, response_format=Weather)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.parsed == Weather(city="Paris", temp_c=1)


@pytest.mark.parametrize("stream", [False, True])
def test_structured_output_by_a_tool_on_an_older_claude(gateway, stream):
    # claude-3-7-sonnet has no native structured output: the schema rides on a forced
    # `json_response` tool, whose input is the answer; the text the mock writes before the
    # call ("Let me check.") is not glued in front of the JSON.
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    messages = [{"role": "user", "content": "Weather in Paris, as JSON"}]
    if stream:
        with client.chat.completions.stream(model="claude-tool-sdk", messages=messages, response_format=Weather) as s:
            r = s.get_final_completion()
    else:
        r = client.chat.completions.parse(model="claude-tool-sdk", messages=messages, response_format=Weather)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.parsed == Weather(city="Paris", temp_c=1)
    assert not r.choices[0].message.tool_calls


def test_with_tools_of_its_own_an_older_claude_can_still_call_them(gateway):
    client = openai.OpenAI(base_url=gateway, api_key=KEY)
    r = client.chat.completions.create(
        model="claude-tool-sdk",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        response_format={"type": "json_object"},
    )
    assert r.choices[0].finish_reason == "tool_calls"
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
