"""The official `openai` SDK's Responses API (`client.responses`) against Junction's
/v1/responses front door (and its response store), routed to each upstream kind of the mock (OpenAI,
Anthropic and Gemini; translated through chat completions). The gateway comes from conftest.py.
"""

import json

import openai
import pytest
from conftest import KEY

EXPECTED = "Hello from the Junction mock upstream, friend"
ALL_MODELS = ["gpt-sdk", "claude-sdk", "gemini-sdk"]
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
]


def client(gateway, key=KEY):
    return openai.OpenAI(base_url=gateway, api_key=key, max_retries=0)


@pytest.mark.parametrize("model", ALL_MODELS)
def test_response(gateway, model):
    r = client(gateway).responses.create(model=model, input="hello", store=False)
    assert r.status == "completed"
    assert r.output_text == EXPECTED
    assert r.usage.output_tokens == 8
    assert r.usage.input_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


@pytest.mark.parametrize("model", ALL_MODELS)
def test_stream_ends_with_completed_and_usage(gateway, model):
    events = list(
        client(gateway).responses.create(model=model, input="hello", store=False, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == EXPECTED
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert done[-1].type == "message" and done[-1].content[0].text == EXPECTED
    final = events[-1].response
    assert final.output_text == EXPECTED
    assert final.usage.output_tokens == 8


@pytest.mark.parametrize("model", ALL_MODELS)
def test_helper_stream(gateway, model):
    with client(gateway).responses.stream(model=model, input="hello", store=False) as s:
        final = s.get_final_response()
    assert final.output_text == EXPECTED


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_and_their_outputs(gateway, model, stream):
    c = client(gateway)
    history = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        events = list(c.responses.create(model=model, input=history, tools=TOOLS, store=False, stream=True))
        assert events[-1].type == "response.completed"
        args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        r = events[-1].response
        (call,) = [i for i in r.output if i.type == "function_call"]
        assert args == call.arguments
    else:
        r = c.responses.create(model=model, input=history, tools=TOOLS, store=False)
        (call,) = [i for i in r.output if i.type == "function_call"]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id
    # Stateless: the full history goes back, with the call and its output.
    history += [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temp_c": 18})},
    ]
    r = c.responses.create(model=model, input=history, tools=TOOLS, store=False)
    assert r.output_text == EXPECTED


@pytest.mark.parametrize("model", ["claude-sdk", "gemini-sdk"])
def test_reasoning_comes_back_as_a_reasoning_item(gateway, model):
    r = client(gateway).responses.create(
        model=model, input="hello", reasoning={"effort": "low"}, store=False
    )
    kinds = [i.type for i in r.output]
    assert kinds == ["reasoning", "message"], kinds
    assert r.output[0].summary[0].text == "Let me think about that."
    assert r.output_text == EXPECTED


def test_errors(gateway):
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-wrong").responses.create(model="gpt-sdk", input="hi")
    with pytest.raises(openai.NotFoundError):
        client(gateway).responses.create(model="no-such-model", input="hi")
    with pytest.raises(openai.BadRequestError) as e:
        client(gateway).responses.create(model="gpt-sdk", input="hi", previous_response_id="resp_1")
    assert e.value.code == "previous_response_not_found"
    with pytest.raises(openai.RateLimitError):
        client(gateway).responses.create(model="always-429", input="hi")


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_continues_a_stored_response(gateway, model, stream):
    c = client(gateway)

    def ask(**kw):
        if not stream:
            return c.responses.create(model=model, **kw)
        events = list(c.responses.create(model=model, stream=True, **kw))
        assert events[-1].type == "response.completed"
        return events[-1].response

    first = ask(input="What is 2+2?")
    assert first.store is True
    alone = ask(input="And 3+3?", store=False)
    second = ask(input="And 3+3?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert second.output_text == EXPECTED
    # The upstream was sent the first turn too (the mock bills a quarter token per byte).
    assert second.usage.input_tokens > alone.usage.input_tokens
    third = ask(input=[{"role": "user", "content": "And 4+4?"}], previous_response_id=second.id)
    assert third.usage.input_tokens > second.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as e:
        ask(input="x", previous_response_id="resp_unknown")
    assert e.value.code == "previous_response_not_found"
    assert e.value.param == "previous_response_id"
