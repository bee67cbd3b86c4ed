"""A GPU engine behind the router: `library export --format vllm` writes each expert as a peft LoRA that vLLM's
multi-LoRA serving loads, and `serve --backend vllm` routes here and lets an OpenAI-compatible upstream answer.
The upstream is a stub on loopback that records what it received (adapter names, prompts, images)."""
from __future__ import annotations

import json
import threading

import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from jinja2.sandbox import ImmutableSandboxedEnvironment
from safetensors.torch import load_file

from mllmcl.models.template import VICUNA_SYSTEM, ChatTemplate
from mllmcl.serve.library import Library
from mllmcl.serve.routed import RoutedModel
from mllmcl.serve.settings import ServeSettings
from mllmcl.serve.upstream import Upstream
from mllmcl.serve.vllm_export import MANIFEST, TEMPLATE, export_vllm, part_of
from fuzzkit import assert_one_line_error, cli
from test_serve import KEY, Server, inputs, message

BASE_NAME = "llava-base"
UPSTREAM_KEY = "upstream-key"


def quiet(_: str) -> None:
    pass


def render(template: str, messages: list[dict]) -> str:
    return ImmutableSandboxedEnvironment().from_string(template).render(messages=messages, add_generation_prompt=True)


# --- the chat template ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("system", ["", VICUNA_SYSTEM])
def test_the_vicuna_template_as_jinja_renders_the_prompts_the_experts_learned(system):
    template = ChatTemplate(system=system)
    text = template.jinja("</s>")
    for question in ("What colour is the square?", "  <image>\nCount the dots. Answer with a number.  "):
        parts = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}},
                                              {"type": "text", "text": question}]}]
        assert render(text, parts) == template.prompt(question)
        plain = [{"role": "user", "content": question}]
        assert render(text, plain) == template.prompt(question)
    answered = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which?"}]},
                {"role": "assistant", "content": " B "}]
    assert render(text, answered) == template.prompt("Which?") + template.target("B", "</s>")


def test_adapter_tensors_are_sorted_into_parts():
    assert part_of("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
                   "language_model") == ("language", "model.language_model.layers.0.self_attn.q_proj")
    assert part_of("base_model.model.lm_head.lora_B.weight", "language_model") == ("lm_head", "lm_head")
    assert part_of("base_model.model.model.vision_tower.vision_model.encoder.layers.1.mlp.fc1.lora_A.weight",
                   "language_model")[0] == "vision"
    assert part_of("base_model.model.model.multi_modal_projector.linear_1.weight", "language_model")[0] == "projector"
    assert part_of("base_model.model.model.text_model.layers.0.mlp.up_proj.lora_A.weight", "text_model")[0] == "language"


# --- the export -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(served, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm") / "adapters"
    return out, export_vllm(served["lib"], out, max_drop=float("inf"), log=quiet)


@pytest.mark.slow
def test_export_writes_peft_loras_without_the_parts_vllm_refuses(served, exported):
    out, manifest = exported
    library = Library(served["lib"])
    assert json.loads((out / MANIFEST).read_text()) == manifest
    for record in library.experts():
        folder = out / record.name
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["modules_to_save"] is None
        assert config["target_modules"] and all(".language_model." in m or m == "lm_head"
                                                for m in config["target_modules"])
        exported_weights = load_file(str(folder / "adapter_model.safetensors"))
        whole = load_file(str(served["lib"] / record.path / "adapter" / "adapter_model.safetensors"))
        assert exported_weights and all(".lora_A." in k or ".lora_B." in k for k in exported_weights)
        assert all(whole[k].equal(v) for k, v in exported_weights.items())  # the LoRA itself is unchanged
        dropped = {k for k in whole if k not in exported_weights}
        assert dropped and all("multi_modal_projector" in k for k in dropped)
        entry = manifest["experts"][record.name]
        assert entry["dropped"] == {"projector": sum(whole[k].numel() for k in dropped)}
        assert entry["parameters"] == sum(v.numel() for v in exported_weights.values())
        held = entry["heldout"]  # measured by answering through the exported adapter, loaded back through peft
        assert held["n"] == len(library.heldout(record)) and 0 <= held["exported"] <= 100
        assert held["change"] == pytest.approx(held["exported"] - held["whole"])
    command = manifest["command"]
    assert command.startswith("vllm serve ") and "--enable-lora" in command and "--max-loras 2" in command
    assert f"Colors={out / 'Colors'}" in command and f"Codes={out / 'Codes'}" in command
    assert f"--chat-template {out / TEMPLATE}" in command


@pytest.mark.slow
def test_the_exported_template_renders_the_backbones_prompt(served, exported):
    out, _ = exported
    backbone = RoutedModel.load(served["lib"]).backbone
    question = "What colour is it? Answer the question using a single word or phrase."
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}},
                                             {"type": "text", "text": question}]}]
    assert render((out / TEMPLATE).read_text(), messages) == backbone.template.prompt(question)


@pytest.mark.slow
def test_export_refuses_to_drop_what_costs_an_expert_more_than_max_drop(served, exported, tmp_path):
    _, manifest = exported
    costs = {name: -e["heldout"]["change"] for name, e in manifest["experts"].items()}
    worst = max(costs, key=costs.get)
    assert costs[worst] > 1.0  # the toy experts lean on their projector copies
    line = assert_one_line_error(cli(["library", "export", "--format", "vllm", "--library", served["lib"],
                                      "--out", tmp_path / "out"]), [served["lib"]])
    assert worst in line and "projector" in line and "--max-drop" in line
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())  # nothing half-written
    outcome = cli(["library", "export", "--format", "vllm", "--library", served["lib"], "--out", tmp_path / "out",
                   "--max-drop", str(costs[worst] + 0.01)])
    assert outcome.code == 0 and "vllm serve" in outcome.out and (tmp_path / "out" / MANIFEST).is_file()


@pytest.mark.slow
def test_export_refuses_a_folder_in_use_and_a_run_folder(served, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert_one_line_error(cli(["library", "export", "--format", "vllm", "--library", served["lib"],
                               "--out", tmp_path / "busy"]), [tmp_path / "busy"])
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert_one_line_error(cli(["library", "export", "--format", "vllm", "--library", served["run"],
                               "--out", tmp_path / "new"]), [served["run"]])
    assert not (tmp_path / "new").exists()


def test_the_cli_pairs_each_format_and_backend_with_its_options(tmp_path):
    assert_one_line_error(cli(["library", "export", "--format", "vllm", "--run", tmp_path, "--out", tmp_path / "o"]),
                          ["--library"])
    assert_one_line_error(cli(["library", "export", "--library", tmp_path, "--out", tmp_path / "o"]), ["--run"])
    assert_one_line_error(cli(["library", "export", "--run", tmp_path, "--out", tmp_path / "o", "--max-drop", "5"]),
                          ["--max-drop"])
    assert_one_line_error(cli(["serve", tmp_path, "--backend", "vllm"]), ["--upstream"])
    assert_one_line_error(cli(["serve", tmp_path, "--upstream", "http://127.0.0.1:9"]), ["--backend vllm"])
    assert_one_line_error(cli(["serve", tmp_path, "--backend", "vllm", "--upstream", "127.0.0.1:9"]), ["127.0.0.1:9"])


# --- serving with the upstream ----------------------------------------------------------------------------------

def stub_upstream(received: list, adapters: tuple[str, ...]) -> FastAPI:
    """An OpenAI-compatible engine in the shape vLLM serves adapters: it lists the base model and each adapter
    (with its parent), answers "<model> answers" for a known model, and records every request it gets."""
    app, lock = FastAPI(), threading.Lock()

    def authorised(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {UPSTREAM_KEY}"

    @app.get("/v1/models")
    async def models(request: Request):
        if not authorised(request):
            return JSONResponse({"error": {"message": "bad key", "type": "auth", "param": None, "code": 401}}, 401)
        return {"object": "list", "data": [{"id": BASE_NAME, "object": "model"},
                                           *({"id": a, "object": "model", "parent": BASE_NAME} for a in adapters)]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        with lock:
            received.append({"body": body, "authorised": authorised(request)})
        if body["model"] not in (BASE_NAME, *adapters):
            return JSONResponse({"error": {"message": f"The model `{body['model']}` does not exist.",
                                           "type": "NotFoundError", "param": None, "code": 404}}, 404)
        if "refuse me" in json.dumps(body["messages"]):
            return JSONResponse({"error": {"message": "upstream refuses this prompt", "type": "BadRequestError",
                                           "param": None, "code": 400}}, 400)
        text = f"{body['model']} answers"
        if body.get("stream"):
            def events():
                for delta in ({"role": "assistant", "content": ""}, {"content": text}):
                    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}

    return app


@pytest.mark.slow
def test_the_router_picks_the_adapter_and_the_upstream_answers(served):
    model = RoutedModel.load(served["lib"])
    received: list = []
    images, questions = [], []
    for task, n in (("Colors", 2), ("Codes", 2), ("Unseen", 2)):
        more_images, more_questions = inputs(task, n, seed=5)
        images += more_images
        questions += more_questions
    routes = model.route(images, questions).experts
    assert {"Colors", "Codes"} <= set(routes)

    def local_answer(*args, **kwargs):
        raise AssertionError("the server generated an answer itself; the upstream answers")

    model.answer_queries = local_answer  # routing only, here
    settings = ServeSettings(api_key=KEY, max_tokens=8, max_wait=0.02, watch=0)
    with Server(app=stub_upstream(received, tuple(model.names))) as up, \
            Server(model, settings, Upstream(up.url, api_key=UPSTREAM_KEY)) as front:
        client = front.client()
        for k, (image, question) in enumerate(zip(images, questions)):
            response = client.chat.completions.create(model="auto", messages=message(question, image), max_tokens=50,
                                                      temperature=0)
            adapter = BASE_NAME if routes[k] == "base" else routes[k]
            sent = received[-1]
            assert sent["body"]["model"] == adapter and sent["authorised"]
            assert sent["body"]["messages"] == message(question, image)  # the prompt and image as the client sent
            assert sent["body"]["max_tokens"] == 8 and sent["body"]["temperature"] == 0  # capped; passed on
            assert response.model == routes[k] and response.choices[0].message.content == f"{adapter} answers"
            assert response.usage.total_tokens == 5
        forced = client.chat.completions.create(model="Codes", messages=message(questions[0], images[0]))
        assert received[-1]["body"]["model"] == "Codes" and forced.model == "Codes"
        stream = client.chat.completions.create(model="auto", messages=message(questions[0], images[0]), stream=True)
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == f"{routes[0]} answers"
        assert all(c.model == routes[0] for c in chunks)
        with pytest.raises(openai.BadRequestError, match="upstream refuses this prompt"):
            client.chat.completions.create(model="auto", messages=message("refuse me", images[0]))
    assert len(received) == len(images) + 3


@pytest.mark.slow
def test_an_unreachable_upstream_is_a_502_and_a_wrong_adapter_passes_through(served):
    model = RoutedModel.load(served["lib"])
    images, questions = inputs("Colors", 1)
    settings = ServeSettings(api_key=KEY, max_tokens=8, max_wait=0.02, watch=0)
    with Server(model, settings, Upstream("http://127.0.0.1:9", base_model=BASE_NAME)) as front:
        with pytest.raises(openai.InternalServerError) as caught:
            front.client().chat.completions.create(model="Colors", messages=message(questions[0], images[0]))
        assert caught.value.status_code == 502 and "127.0.0.1:9" in caught.value.message
    received: list = []
    with Server(app=stub_upstream(received, ("Codes",))) as up, \
            Server(model, settings, Upstream(up.url, api_key=UPSTREAM_KEY)) as front:
        with pytest.raises(openai.NotFoundError, match="`Colors` does not exist"):
            front.client().chat.completions.create(model="Colors", messages=message(questions[0], images[0]))
