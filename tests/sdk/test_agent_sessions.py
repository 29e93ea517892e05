"""Multi-turn agent sessions with thinking and tools, replayed turn by turn through each front
door to each upstream kind, and across kinds mid-session. The mock refuses any thinking
signature it did not make itself (as Anthropic and Gemini do), so a signature Junction
replayed to the wrong backend fails the test. The gateway comes from conftest.py.
"""

import json

import anthropic
import openai
import pytest
from conftest import KEY
from google import genai
from google.genai import types

EXPECTED = "Hello from the Junction mock upstream, friend"
KINDS = ["claude-sdk", "gpt-sdk", "gemini-sdk"]
THINKING = {"type": "enabled", "budget_tokens": 2048}
A_TOOLS = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def anthropic_client(gateway):
    return anthropic.Anthropic(base_url=gateway.removesuffix("/v1"), api_key=KEY, max_retries=0)


def messages_turns(c, first, second):
    """Turn 1 on `first`: thinking then a tool call; turn 2 on `second` with the whole history
    (thinking block and its signature included) and the tool result."""
    history = [{"role": "user", "content": "Weather in Paris?"}]
    with c.messages.stream(model=first, max_tokens=4096, thinking=THINKING, tools=A_TOOLS, messages=history) as s:
        r = s.get_final_message()
    kinds = [b.type for b in r.content]
    assert kinds[0] == "thinking" and kinds[-1] == "tool_use", kinds
    call = r.content[-1]
    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": json.dumps({"temp_c": 18})}]},
    ]
    r2 = c.messages.create(model=second, max_tokens=4096, thinking=THINKING, tools=A_TOOLS, messages=history)
    assert r2.stop_reason == "end_turn"
    assert r2.content[-1].text == EXPECTED
    return r.content[0].signature


@pytest.mark.parametrize("first", KINDS)
@pytest.mark.parametrize("second", KINDS)
def test_messages_sessions_within_and_across_kinds(gateway, first, second):
    signature = messages_turns(anthropic_client(gateway), first, second)
    # Only Anthropic makes signatures; what Junction made from another backend's reasoning has
    # none, and is left out before a request reaches Anthropic.
    assert (signature == "mock-signature") == (first == "claude-sdk")


@pytest.mark.parametrize("model", KINDS)
def test_responses_sessions_with_reasoning_and_tools(gateway, model):
    c = openai.OpenAI(base_url=gateway, api_key=KEY, max_retries=0)
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    history = [{"role": "user", "content": "Weather in Paris?"}]
    r = c.responses.create(model=model, input=history, tools=tools, reasoning={"effort": "low"}, store=False)
    calls = [i for i in r.output if i.type == "function_call"]
    assert len(calls) == 1
    # The whole output goes back (reasoning items included), then the tool's output.
    history += [i.model_dump(exclude_none=True) for i in r.output]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C"})
    r2 = c.responses.create(model=model, input=history, tools=tools, reasoning={"effort": "low"}, store=False)
    assert r2.status == "completed"
    assert r2.output_text == EXPECTED


@pytest.mark.parametrize("first", KINDS)
@pytest.mark.parametrize("second", KINDS)
def test_gemini_sessions_within_and_across_kinds(gateway, first, second):
    c = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gateway.removesuffix("/v1"), retry_options=types.HttpRetryOptions(attempts=1)))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name="get_weather", parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}})])],
        thinking_config=types.ThinkingConfig(thinking_budget=2048, include_thoughts=True),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    history = [types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])]
    r = c.models.generate_content(model=first, contents=history, config=config)
    parts = r.candidates[0].content.parts
    (call,) = [p for p in parts if p.function_call]
    # Only Gemini makes thought signatures; none is invented for another backend's call.
    assert (call.thought_signature is not None) == (first == "gemini-sdk")
    history += [
        types.Content(role="model", parts=parts),
        types.Content(role="user", parts=[types.Part.from_function_response(name="get_weather", response={"temp_c": 18})]),
    ]
    r2 = c.models.generate_content(model=second, contents=history, config=config)
    assert r2.text == EXPECTED
