"""Serving on the embedded tiny backbone and toy domains (tests/toy_serve.py): RoutedModel answers as the run
scored, the expert library's versions, gate and rollback, the open-world fallback, and the OpenAI-compatible
server driven by the official `openai` client on loopback."""
from __future__ import annotations

import base64
import io
import json
import random
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mllmcl.cl.routing.answer import BASE
from mllmcl.cli.main import main
from mllmcl.core.errors import UserError
from mllmcl.data import load_benchmark
from mllmcl.serve.app import create_app
from mllmcl.serve.library import Library, folder_sha256
from mllmcl.serve.openworld import auroc, calibrate, rejected
from mllmcl.serve.routed import RoutedModel
from mllmcl.serve.settings import ServeSettings
from fuzzkit import (assert_keeps_promise, assert_one_line_error, assert_user_error, cli, encode, fuzz, json_file,
                     jsonl_file, snapshot)
from toy_serve import QUESTIONS, draw, write_rows

KEY = "test-key"
BRIGHT_EPOCHS = 12  # the toy recipe's 2 epochs (4 steps) leave the Bright expert answering as the base model


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def model(served) -> RoutedModel:
    return RoutedModel.load(served["lib"])


def copy_library(served, tmp_path) -> Path:
    target = tmp_path / "lib"
    shutil.copytree(served["lib"], target)
    return target


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def inputs(task: str, n: int, seed: int = 7) -> tuple[list[Image.Image], list[str]]:
    rng = random.Random(seed)
    images = [draw(task, rng)[0] for _ in range(n)]
    return images, [QUESTIONS[task][i % len(QUESTIONS[task])] for i in range(n)]


def message(question: str, image: Image.Image) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": question},
                                         {"type": "image_url", "image_url": {"url": data_url(image)}}]}]


# --- RoutedModel and the shared route/answer step ---------------------------------------------------------------

@pytest.mark.slow
def test_a_run_folder_serves_the_answers_the_run_scored(served):
    """RoutedModel.load(run) and MR-LoRA's evaluation call the same route/answer step: same experts, same texts."""
    model = RoutedModel.load(served["run"])
    assert model.names == ["Colors", "Codes"] and model.threshold is None and model.version is None
    bench = load_benchmark(served["bench"])
    for task in bench.tasks:
        lines = [json.loads(line) for line in
                 (served["run"] / "predictions" / "mr-lora" / "step2" / f"{task.name}.jsonl").read_text().splitlines()]
        answers = model.answer([s.image for s in task.test], [s.question for s in task.test], max_new_tokens=4)
        assert answers.texts == [line["text"] for line in lines]
        assert answers.experts == [line["expert"] for line in lines]


@pytest.mark.slow
def test_route_answer_and_the_open_world_fallback(model):
    seen_images, seen_questions = inputs("Colors", 4)
    unseen_images, unseen_questions = inputs("Unseen", 4)
    routes = model.route(seen_images + unseen_images, seen_questions + unseen_questions)
    assert routes.experts[:4] == ["Colors"] * 4
    assert routes.experts[4:] == [BASE] * 4  # fits no expert: the base model, not a forced wrong expert
    picks = model.answer(unseen_images, unseen_questions, max_new_tokens=4).routed  # the router's own pick
    assert all(c < model.threshold[pick] for c, pick in zip(routes.confidence[4:], picks))
    auto = model.answer(unseen_images, unseen_questions, max_new_tokens=4)
    base = model.answer(unseen_images, unseen_questions, max_new_tokens=4, model="base")
    assert auto.experts == [BASE] * 4 and auto.texts == base.texts
    forced = model.answer(seen_images, seen_questions, max_new_tokens=4, model="Codes")
    assert forced.experts == ["Codes"] * 4 and forced.confidence == [1.0] * 4
    with pytest.raises(UserError, match="unknown model 'nope'"):
        model.answer(seen_images, seen_questions, model="nope")


def test_openworld_functions():
    assert calibrate([0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 1.0], 0.2) == 0.25  # rejects 0.1 and 0.2
    assert calibrate([0.1, 0.2, 0.2, 0.3], 0.5) == pytest.approx(0.15)  # a tie of the first kept score is kept whole
    assert rejected([0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.6, 0.4, 1.0], 0.3) == 20.0
    assert calibrate([0.5, 0.6], 0.0) is None and calibrate([], 0.05) is None
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0 and auroc([0.1], [0.9]) == 0.0 and auroc([0.5], [0.5]) == 0.5


def test_prototype_confidence_stays_ordered_beyond_the_farthest_buffer_sample():
    """An empirical p-value inside the buffers' range; beyond it, an exponential tail below the smallest share,
    so a threshold can still tell a near miss from a far-off input."""
    import torch

    from mllmcl.cl.routing.prototype import PrototypeRouter

    router = PrototypeRouter(None)
    router.reference = torch.tensor([1.0, 2.0, 3.0, 4.0])
    confidence = router.confidence(torch.tensor([0.5, 2.5, 4.0, 5.0, 9.0])).tolist()
    assert confidence[:3] == [1.0, 0.5, 0.25]
    assert 0 < confidence[4] < confidence[3] < 1 / 5
    # a distance equal to a buffer sample's up to float rounding (another batch shape) is a tie, not "farther"
    assert router.confidence(torch.tensor([3.0 * (1 + 1e-6), 3.0 * (1 - 1e-6)])).tolist() == [0.5, 0.5]


# --- the library --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_export_writes_a_versioned_library(served, model):
    library = Library(served["lib"])
    manifest = library.manifest
    assert manifest["backbone"] == "tiny" and manifest["current"] == 1 and len(manifest["versions"]) == 1
    version = manifest["version"]
    assert version == json.loads((served["lib"] / "versions" / "v0001" / "version.json").read_text())
    assert version["router"] == {"kind": "prototype", "state": "versions/v0001/router"}
    assert version["routing"] == 100.0 and version["target_frr"] == 0.05
    assert set(version["threshold"]) == {"Colors", "Codes"} and all(0 < t <= 1 for t in version["threshold"].values())
    for expert in version["experts"]:
        folder = served["lib"] / expert["path"]
        assert folder_sha256(folder / "adapter") == expert["sha256"]
        assert len(expert["data"]) == 64 and expert["heldout"] == 12
        assert set(expert["scores"]) == {"accuracy", "routed_accuracy", "routing", "fallback"}
        assert expert["scores"]["routing"] == 100.0
    assert model.version == 1 and model.names == ["Colors", "Codes"]
    assert [a["action"] for a in library.audit_lines()] == ["export"]
    assert main(["library", "export", "--run", str(served["run"]), "--out", str(served["lib"])]) == 2  # never overwritten


@pytest.mark.slow
def test_a_failed_commit_leaves_the_library_as_it_was(served, tmp_path):
    lib = copy_library(served, tmp_path)
    library = Library(lib)
    before = (lib / "library.json").read_bytes()

    def broken_disk(folder: Path) -> None:
        (folder / "half-written").parent.mkdir(parents=True, exist_ok=True)
        (folder / "half-written").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        library.commit(library.version(), broken_disk, {"action": "test"})
    assert (lib / "library.json").read_bytes() == before
    assert sorted(p.name for p in (lib / "versions").iterdir()) == ["v0001"]  # no version, not even a temp one


@pytest.mark.slow
def test_a_library_whose_router_needs_labels_is_refused(served, tmp_path, capsys):
    """The oracle router reads each input's true task, which a request does not carry: a library that names it
    does not load, and `mllmcl serve` says why, naming the library and the router."""
    lib = copy_library(served, tmp_path)
    manifest = json.loads((lib / "library.json").read_text())
    manifest["version"]["router"]["kind"] = "oracle"
    (lib / "library.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=f"{lib}: its router 'oracle' reads the true task of each input"):
        RoutedModel.load(lib)
    assert main(["serve", str(lib), "--port", "0"]) == 2
    assert "cannot serve" in capsys.readouterr().err


# --- a library damaged outside mllmcl (fuzzed manifests and audit log) ----------------------------------------------

@pytest.fixture(scope="module")
def scratch_library(served, tmp_path_factory) -> Path:
    """A copy of the served library whose library.json / audit.jsonl each fuzz example rewrites."""
    return copy_library(served, tmp_path_factory.mktemp("damaged"))


@pytest.mark.slow
@given(data=st.data())
@fuzz(60)
def test_a_damaged_library_manifest_is_one_line(scratch_library, data):
    """`expert ls` (which reads every field it prints), `expert rollback` (which rewrites the pointer) and
    loading the routed model either work or stop with one line naming library.json, writing nothing."""
    manifest, audit = scratch_library / "library.json", scratch_library / "audit.jsonl"
    valid, log = json.loads(manifest.read_bytes()), audit.read_bytes()
    content = data.draw(json_file(valid), label="library.json")
    command = data.draw(st.sampled_from(["ls", "rollback", "load"]), label="command")
    manifest.write_bytes(content)
    try:
        names = [manifest, scratch_library]
        before = snapshot(scratch_library)
        if command == "load":
            try:
                RoutedModel.load(scratch_library)
            except UserError as err:
                assert_user_error(err, names)
        else:
            extra = ["--to", "1"] if command == "rollback" else []
            outcome = cli(["expert", command, scratch_library, *extra])
            assert_keeps_promise(outcome, names, before=before, after=snapshot(scratch_library))
    finally:
        manifest.write_bytes(encode(valid))
        audit.write_bytes(log)


@given(content=jsonl_file([{"command": "library export", "action": "export", "version": 1, "gate": None},
                           {"action": "add", "gate": {"passed": False, "failures": []}}]))
@pytest.mark.slow
@fuzz(20)
def test_a_damaged_audit_log_is_one_line(scratch_library, content):
    audit = scratch_library / "audit.jsonl"
    valid = audit.read_bytes()
    audit.write_bytes(content)
    try:
        assert_keeps_promise(cli(["expert", "ls", scratch_library]), [audit])
    finally:
        audit.write_bytes(valid)


@pytest.mark.slow
def test_a_library_without_a_version_and_a_manifest_pointing_outside_are_refused(served, tmp_path):
    lib = copy_library(served, tmp_path)
    manifest = json.loads((lib / "library.json").read_text())
    escaping = {**manifest, "version": {**manifest["version"], "experts": [
        {**manifest["version"]["experts"][0], "path": "../../elsewhere"}]}}
    (lib / "library.json").write_text(json.dumps(escaping))
    line = assert_one_line_error(cli(["expert", "ls", lib]), [lib / "library.json"])
    assert "version.experts.0.path" in line and "inside the library" in line
    (lib / "library.json").write_text(json.dumps({**manifest, "current": 0, "version": None}))
    with pytest.raises(UserError, match="no version yet"):
        RoutedModel.load(lib)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut", "garbage", "missing tensor", "another expert count"])
def test_a_damaged_router_state_is_one_line(served, tmp_path, damage):
    from safetensors.torch import load_file, save_file

    lib = copy_library(served, tmp_path)
    state = next(lib.glob("versions/v0001/router/**/state.safetensors"))
    data = state.read_bytes()
    if damage == "cut":
        state.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        state.write_bytes(b"\xff" * 64)
    else:
        tensors = load_file(state)
        if damage == "missing tensor":
            del tensors["reference"]
        else:
            tensors["means"] = tensors["means"][:1]
        save_file(tensors, state)
    with pytest.raises(UserError) as err:
        RoutedModel.load(lib)
    assert_user_error(err.value, [state.parent])


@pytest.mark.slow
def test_add_gate_rollback_and_remove_through_the_cli(served, tmp_path, capsys):
    lib = copy_library(served, tmp_path)
    bright = served["bright"]
    assert main(["expert", "add", str(lib), "--name", "Bright", "--train", str(bright / "train.json"),
                 "--test", str(bright / "test.json"), "--description", "brightness: bright or dark",
                 "--epochs", str(BRIGHT_EPOCHS)]) == 0
    assert "gate passed: version 2" in capsys.readouterr().out
    library = Library(lib)
    assert library.current == 2 and [e.name for e in library.experts()] == ["Colors", "Codes", "Bright"]
    assert library.version()["parent"] == 1 and library.experts()[2].heldout == 12
    model = RoutedModel.load(lib)
    images, questions = inputs("Bright", 4)
    assert model.route(images, questions).experts == ["Bright"] * 4

    # a real gate failure: an expert trained on Colors' own data, which the router cannot tell from Colors
    before = {p: p.read_bytes() for p in lib.rglob("*") if p.is_file() and "reports" not in p.parts
              and p.name != "audit.jsonl"}
    assert main(["expert", "add", str(lib), "--name", "Colors2", "--train",
                 str(served["bench"] / "Colors" / "train.json")]) == 1
    out = capsys.readouterr().out
    assert "gate FAILED: version 2 stays current" in out and "routing" in out
    after = {p: p.read_bytes() for p in lib.rglob("*") if p.is_file() and "reports" not in p.parts
             and p.name != "audit.jsonl"}
    assert after == before  # the current version and its experts exactly as they were
    audit = Library(lib).audit_lines()
    assert [a["action"] for a in audit] == ["export", "add", "add"]
    assert audit[1]["gate"]["passed"] and not audit[2]["gate"]["passed"] and audit[2]["version"] is None
    assert len(audit[2]["data"]) == 64 and "Colors2" in audit[2]["command"]
    reports = sorted((lib / "reports").glob("*-add.json"))
    rejected_report = json.loads(reports[-1].read_text())
    colors2 = rejected_report["measured"]["experts"]["Colors2"]
    assert not rejected_report["passed"] and any(f.startswith("routing:") for f in rejected_report["failures"])
    assert colors2["routing"] <= 50 and set(colors2["confusion"]) == {"Colors", "Colors2"}  # split between twins

    assert main(["expert", "ls", str(lib)]) == 0
    listing = capsys.readouterr().out
    assert "current version 2" in listing and "Bright" in listing and "1 rejected by the gate" in listing
    assert main(["expert", "rollback", str(lib)]) == 0
    assert Library(lib).current == 1 and RoutedModel.load(lib).names == ["Colors", "Codes"]
    assert main(["expert", "rollback", str(lib), "--to", "2"]) == 0 and Library(lib).current == 2
    assert main(["expert", "remove", str(lib), "Codes"]) == 0
    library = Library(lib)
    assert library.current == 3 and [e.name for e in library.experts()] == ["Colors", "Bright"]
    assert [h["action"] for h in library.manifest["history"]] == ["export", "add", "rollback", "rollback", "remove"]
    assert main(["expert", "rollback", str(lib), "--to", "9"]) == 2
    assert "no version 9" in capsys.readouterr().err


@pytest.mark.slow
def test_the_gate_refuses_an_expert_that_learned_too_little_to_beat_the_base_model(served, tmp_path, capsys):
    lib = copy_library(served, tmp_path)
    bright = served["bright"]
    args = ["expert", "add", str(lib), "--name", "Bright", "--train", str(bright / "train.json"), "--test",
            str(bright / "test.json"), "--description", "brightness: bright or dark"]
    assert main([*args, "--epochs", "0.05"]) == 1  # two optimizer steps: it routes well, it answers as the base
    out = capsys.readouterr().out
    assert "gate FAILED" in out and "against the base model's" in out
    report = json.loads(sorted((lib / "reports").glob("*-add.json"))[-1].read_text())
    check = next(c for c in report["gate"]["checks"] if "gain" in c)
    assert check["gain"] < 5.0 and not check["passed"] and report["gate"]["min_gain"] == 5.0
    assert Library(lib).current == 1
    assert main([*args, "--epochs", "0.05", "--min-gain", "-100"]) == 0  # the margin is the only check it failed


# --- the server -----------------------------------------------------------------------------------------------------

class Server:
    """uvicorn on 127.0.0.1 (a free port) in a thread, stopped at the end: mllmcl's app for `model`, or `app`."""

    def __init__(self, model: RoutedModel | None = None, settings: ServeSettings = ServeSettings(), upstream=None,
                 app=None):
        import uvicorn

        self.app = app if app is not None else create_app(model, settings, upstream)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, key: str | None = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or "none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def server(model):
    with Server(model, ServeSettings(api_key=KEY, max_tokens=8, max_image_bytes=20_000, max_image_pixels=256 * 256,
                                     max_wait=0.02, watch=0)) as running:
        yield running


def ask(client: openai.OpenAI, model: str, question: str, image: Image.Image, **kw):
    return client.chat.completions.create(model=model, messages=message(question, image), max_tokens=4, **kw)


@pytest.mark.slow
def test_served_answers_equal_routed_model_answers(server, model):
    client = server.client()
    images, questions = inputs("Colors", 2)
    unseen_images, unseen_questions = inputs("Unseen", 1)
    images, questions = images + unseen_images, questions + unseen_questions
    for name in ("auto", "Codes", "base"):
        expected = model.answer(images, questions, max_new_tokens=4, model=name)
        for k, (image, question) in enumerate(zip(images, questions)):
            response = ask(client, name, question, image)
            assert response.choices[0].message.content == expected.texts[k]
            assert response.model == expected.experts[k]  # the expert that answered
            generation = expected.generations[k]
            assert response.usage.prompt_tokens == generation.prompt_tokens
            assert response.usage.completion_tokens == generation.completion_tokens
            assert response.usage.total_tokens == generation.prompt_tokens + generation.completion_tokens
            assert response.choices[0].finish_reason == ("stop" if generation.stopped else "length")
    assert [m.id for m in client.models.list().data] == ["auto", "base", "Colors", "Codes"]
    stream = ask(client, "auto", questions[0], images[0], stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        model.answer(images[:1], questions[:1], max_new_tokens=4).texts[0]
    assert chunks[0].model == "Colors" and chunks[-1].usage.completion_tokens >= 0
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["version"] == 1


@pytest.mark.slow
def test_fifty_concurrent_requests_are_batched_and_right(server, model):
    images, questions = [], []
    for task in ("Colors", "Codes", "Unseen"):
        more_images, more_questions = inputs(task, 17, seed=11)
        images += more_images
        questions += more_questions
    images, questions = images[:50], questions[:50]
    expected = model.answer(images, questions, max_new_tokens=4)
    client = server.client()
    batches_before = server.app.state.batcher.batches
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda k: ask(client, "auto", questions[k], images[k]), range(50)))
    assert [r.choices[0].message.content for r in responses] == expected.texts
    assert [r.model for r in responses] == expected.experts
    assert server.app.state.batcher.batches - batches_before < 50  # answered in shared generation calls


@pytest.mark.slow
def test_bad_input_gets_its_status_and_never_changes_a_later_answer(server):
    client = server.client()
    image, question = inputs("Colors", 1)[0][0], inputs("Colors", 1)[1][0]
    reference = ask(client, "auto", question, image).choices[0].message.content

    def status_of(content, model="auto", key=KEY, **kw) -> int:
        try:
            server.client(key).chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                                       max_tokens=4, **kw)
        except openai.APIStatusError as err:
            body = err.response.json()
            assert set(body["error"]) == {"message", "type", "param", "code"}  # the OpenAI error object
            return err.status_code
        return 200

    def with_url(url: str) -> list[dict]:
        return [{"type": "text", "text": question}, {"type": "image_url", "image_url": {"url": url}}]

    good = message(question, image)[0]["content"]
    big = Image.frombytes("RGB", (100, 100), random.Random(0).randbytes(30_000))  # noise: ~30 kB as PNG
    assert status_of(good) == 200
    assert status_of(with_url("http://127.0.0.1:9/x.png")) == 400    # never fetched
    assert status_of(with_url("https://example.com/x.png")) == 400
    assert status_of(with_url("file:///etc/passwd")) == 400
    assert status_of(with_url("data:image/png;base64,@@not base64@@")) == 400
    assert status_of(with_url("data:image/png;base64," + base64.b64encode(b"not an image").decode())) == 400
    assert status_of(with_url(data_url(big))) == 413                 # over the byte limit
    assert status_of(with_url(data_url(Image.new("RGB", (300, 300)), "PNG"))) == 413  # over the pixel limit
    assert status_of([{"type": "text", "text": question}]) == 400    # no image
    assert status_of(good, model="nope") == 404
    assert status_of(good, key=None) == 401 and status_of(good, key="wrong") == 401
    raw = httpx.post(f"{server.url}/v1/chat/completions", content=b"{not json",
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    huge = httpx.post(f"{server.url}/v1/chat/completions", content=b"x" * (2**21),
                      headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert huge.status_code == 413
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    capped = client.chat.completions.create(model="base", messages=message("Say many words.", image), max_tokens=10_000)
    assert capped.usage.completion_tokens <= 8  # max_tokens is capped by the server (8 here)
    assert ask(client, "auto", question, image).choices[0].message.content == reference
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"


@pytest.mark.slow
def test_add_serve_reload_rollback_end_to_end(served, tmp_path):
    """A server on a library swaps in each newly promoted (or rolled-back) version without a restart."""
    lib = copy_library(served, tmp_path)
    model = RoutedModel.load(lib)
    images, questions = inputs("Bright", 2)
    with Server(model, ServeSettings(api_key=None, watch=0.1)) as running:
        client = running.client()
        assert ask(client, "auto", questions[0], images[0]).model == BASE  # no expert fits yet
        assert main(["expert", "add", str(lib), "--name", "Bright", "--train", str(served["bright"] / "train.json"),
                     "--test", str(served["bright"] / "test.json"), "--epochs", str(BRIGHT_EPOCHS)]) == 0
        reloaded = httpx.post(f"{running.url}/v1/library/reload").json()
        assert reloaded["version"] == 2 and reloaded["experts"] == ["Colors", "Codes", "Bright"]
        response = ask(client, "auto", questions[0], images[0])
        assert response.model == "Bright" and response.system_fingerprint == "mllmcl-v2"
        assert ask(client, "Bright", questions[1], images[1]).model == "Bright"
        assert main(["expert", "rollback", str(lib)]) == 0
        deadline = time.monotonic() + 30  # the watcher sees the pointer move
        while httpx.get(f"{running.url}/health").json()["version"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(openai.NotFoundError):
            ask(client, "Bright", questions[0], images[0])
        assert ask(client, "auto", questions[0], images[0]).model == BASE


def test_generate_detailed_cuts_each_sample_at_its_own_limit(micro):
    """Requests of different max_tokens share one generation call: each answer is what its own limit gives."""
    from conftest import random_images
    from mllmcl.engine.generate import generate, generate_detailed

    images, questions = random_images(3), ["What color is the circle?", "Is there a star?", "How many squares?"]
    limits = [2, 5, 3]
    mixed = generate_detailed(micro, images, questions, max_new_tokens=limits)
    for k, limit in enumerate(limits):
        alone = generate_detailed(micro, images, questions, max_new_tokens=limit)[k]
        assert mixed[k] == alone and alone.completion_tokens <= limit
        assert alone.stopped or alone.completion_tokens == limit
    assert [g.text for g in generate_detailed(micro, images, questions, max_new_tokens=4)] == \
        generate(micro, images, questions, max_new_tokens=4)


class _Echo:
    """A stand-in for RoutedModel that answers each query with its question (the batcher reads no more)."""

    version = 1
    backbone = type("NoAdapters", (), {"model": object(), "adapter_names": []})()

    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate
        self.calls: list[list[str]] = []

    def route_queries(self, queries, models):
        """"auto" goes to the expert the question names before its colon."""
        from mllmcl.serve.routed import Routes

        return Routes([q.question.split(":")[0] if m == "auto" else m for q, m in zip(queries, models)],
                      [0.5 if m == "auto" else 1.0 for m in models])

    def answer_queries(self, queries, limits, models):
        """The question back; its token count: 9 for expert Long, 1 for the others."""
        from types import SimpleNamespace

        from mllmcl.engine.generate import Generation

        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append(list(models))
        return SimpleNamespace(generations=[Generation(q.question, 1, 9 if m == "Long" else 1, True)
                                            for q, m in zip(queries, models)],
                               experts=list(models), confidence=[1.0] * len(queries))


def test_a_batcher_on_the_calling_thread_answers_what_is_queued_then_refuses():
    """`mllmcl serve` runs the batcher on its main thread: a stop answers every request queued before it,
    and a request after it fails at once with ShuttingDown (a 503), never hangs."""
    from mllmcl.data.records import Query
    from mllmcl.serve.batcher import Batcher, ShuttingDown

    gate = threading.Event()
    batcher = Batcher(_Echo(gate), max_batch=2, max_wait=0.0)
    queued = [batcher.submit(Query(str(k), None, f"q{k}", ""), "auto", 4) for k in range(5)]
    batcher.stop()
    late = batcher.submit(Query("late", None, "late", ""), "auto", 4)
    assert isinstance(late.exception(timeout=1), ShuttingDown)
    gate.set()
    batcher.run()  # returns at the stop, after the five
    assert [f.result(timeout=1).text for f in queued] == [f"q{k}" for k in range(5)] and batcher.batches == 3


@pytest.mark.slow
def test_mllmcl_serve_answers_then_stops_on_sigterm_and_a_taken_port_is_one_line(served):
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "mllmcl", "serve", str(served["lib"]), "--port", str(port), "--watch", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        images, questions = inputs("Colors", 1)
        assert ask(client, "auto", questions[0], images[0]).model == "Colors"
        taken = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert taken.returncode != 0 and f"could not start on 127.0.0.1:{port}" in taken.stderr
        assert taken.stderr.strip().splitlines()[-1].startswith("mllmcl: error: the HTTP server could not start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0 and "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_a_batch_of_several_experts_is_answered_in_one_call():
    """Rows leave the decoding batch once they end (engine/generate.py), so a batch mixing experts of
    different answer lengths is one call; each answer still reaches its own request with the router's pick
    and confidence."""
    from mllmcl.data.records import Query
    from mllmcl.serve.batcher import Batcher

    model = _Echo()
    batcher = Batcher(model, max_batch=4, max_wait=0.0)
    questions = ["Long:a", "Short:b", "Long:c", "Short:d", "Short:e", "Long:f", "Short:g", "Long:h", "Short:i"]
    futures = [batcher.submit(Query(q, None, q, ""), "auto", 16) for q in questions]
    batcher.stop()
    batcher.run()
    assert model.calls == [["Long", "Short", "Long", "Short"], ["Short", "Long", "Short", "Long"], ["Short"]]
    done = [f.result(timeout=1) for f in futures]
    assert [d.text for d in done] == questions and [d.expert for d in done] == [q.split(":")[0] for q in questions]
    assert all(d.confidence == 0.5 for d in done) and batcher.batches == 3
