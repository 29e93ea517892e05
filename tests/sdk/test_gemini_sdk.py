"""Google's official `google-genai` SDK against Junction's Gemini front door
(/v1beta/models/{model}:generateContent and :streamGenerateContent), routed to each upstream
kind of the mock: a Gemini upstream (passed through), and an OpenAI and an Anthropic upstream
(translated both ways). The gateway comes from conftest.py.
"""

import pytest
from conftest import KEY, Weather
from google import genai
from google.genai import errors, types

EXPECTED = "Hello from the Junction mock upstream, friend"
# gemini-sdk: Gemini upstream (pass-through); gpt-sdk: OpenAI; claude-sdk: Anthropic.
ALL_MODELS = ["gemini-sdk", "gpt-sdk", "claude-sdk"]
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Weather in a city",
            parameters=types.Schema(
                type="OBJECT",
                properties={"city": types.Schema(type="STRING")},
                required=["city"],
            ),
        )
    ]
)


def client(gateway, key=KEY):
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=gateway.removesuffix("/v1"),
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


@pytest.mark.parametrize("model", ALL_MODELS)
def test_generate_content(gateway, model):
    c = client(gateway)
    r = c.models.generate_content(model=model, contents="hello")
    assert r.text == EXPECTED
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count > 0
    assert r.usage_metadata.candidates_token_count + (r.usage_metadata.thoughts_token_count or 0) == 8


@pytest.mark.parametrize("model", ALL_MODELS)
def test_stream(gateway, model):
    c = client(gateway)
    chunks = list(c.models.generate_content_stream(model=model, contents="hello"))
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == EXPECTED
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count > 0


@pytest.mark.parametrize("model", ALL_MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_function_calls_and_responses(gateway, model, stream):
    c = client(gateway)
    config = types.GenerateContentConfig(
        tools=[WEATHER],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    history = [types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])]
    if stream:
        chunks = list(c.models.generate_content_stream(model=model, contents=history, config=config))
        calls = [p.function_call for ch in chunks for p in (ch.candidates[0].content.parts or []) if p.function_call]
        model_parts = [p for ch in chunks for p in (ch.candidates[0].content.parts or [])]
    else:
        r = c.models.generate_content(model=model, contents=history, config=config)
        calls = r.function_calls
        model_parts = r.candidates[0].content.parts
    (call,) = calls
    assert call.name == "get_weather"
    assert call.args == {"city": "Paris"}
    history += [
        types.Content(role="model", parts=model_parts),
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name=call.name, response={"temp_c": 18})],
        ),
    ]
    r = c.models.generate_content(model=model, contents=history, config=config)
    assert r.text == EXPECTED


def test_errors_are_google_status_objects(gateway):
    # (The SDK closes its HTTP client when the Client object goes away: keep references.)
    wrong, c = client(gateway, key="sk-wrong"), client(gateway)
    with pytest.raises(errors.ClientError) as e:
        wrong.models.generate_content(model="gpt-sdk", contents="hi")
    assert e.value.code == 401 and e.value.status == "UNAUTHENTICATED"
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="no-such-model", contents="hi")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as e:
        c.models.generate_content(model="always-429", contents="hi")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"


def test_count_tokens(gateway):
    c = client(gateway)
    short = c.models.count_tokens(model="gpt-sdk", contents="hello").total_tokens
    longer = c.models.count_tokens(model="gpt-sdk", contents="hello " * 50).total_tokens
    assert 0 < short < longer


def test_models_are_listed_and_read_in_googles_format(gateway):
    c = client(gateway)
    names = [m.name for m in c.models.list()]
    assert {"models/gemini-sdk", "models/gpt-sdk", "models/claude-sdk"} <= set(names), names
    m = c.models.get(model="gpt-sdk")
    assert m.name == "models/gpt-sdk"
    assert "generateContent" in m.supported_actions
    with pytest.raises(errors.ClientError) as e:
        c.models.get(model="no-such-model")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"


@pytest.mark.parametrize("model", ALL_MODELS)
def test_structured_output_on_every_kind(gateway, model):
    c = client(gateway)
    r = c.models.generate_content(
        model=model,
        contents="Weather in Paris, as JSON",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Weather),
    )
    assert r.parsed == Weather(city="Paris", temp_c=1)
