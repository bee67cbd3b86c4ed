"""The MLLM-CL loader and `mllmcl data check` on tiny fixture roots: both folder namings, both settings,
router/replay files, the manifest, and every kind of bad input (named by file and row)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mllmcl.cli.main import build_parser, main
from mllmcl.core.errors import UserError
from mllmcl.data import BUILTIN, ExtraFile, Sample, TaskSpec, load_benchmark, write_manifest
from mllmcl.data.check import check_benchmark
from mllmcl.data.official_router import official_prompt
from mllmcl.data.tasks import FIN_LETTER, FIN_YES_NO

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


def png(path: Path, colour=(128, 128, 128)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def dump(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))


def conv_row(rid, image, question="What is shown?", answer="a square") -> dict:
    return {"id": rid, "image": image, "conversations": [
        {"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]}


def qa_row(rid, image, text="Is it red?", answer="yes", **extra) -> dict:
    return {"question_id": rid, "image": image, "text": text, "answer": answer, **extra}


def make_task(root: Path, name: str, folder: str, test_folder: str | None = None, *, n_train: int = 3,
              n_test: int = 2, train_file: str = "train.json", answers=None, test_extra=None) -> None:
    """`n_train` training rows and `n_test` test rows; images relative to their folder."""
    test_folder = test_folder or folder
    for i in range(n_train):
        png(root / folder / "images" / f"tr{i}.png", COLOURS[i % 4])
    for i in range(n_test):
        png(root / test_folder / "images" / f"te{i}.png", COLOURS[i % 4])
    answers = answers or ["yes"] * n_test
    dump(root / folder / train_file, [conv_row(f"{name}-tr{i}", f"images/tr{i}.png") for i in range(n_train)])
    dump(root / test_folder / "test.json", [qa_row(f"{name}-te{i}", f"images/te{i}.png", answer=answers[i],
                                                     **(test_extra or {})) for i in range(n_test)])


def dcl_root(root: Path, naming: str = "readme") -> Path:
    folders = {"readme": {"RS": "RS", "Med": "Med", "AD": "AD", "Sci": "Sci", "Fin": "Fin"},
               "scripts": {"RS": "RemoteSensing", "Med": "Medical/data", "AD": "AD/DriveLM", "Sci": "Sci",
                           "Fin": "Fin"}}[naming]
    for name, folder in folders.items():
        make_task(root, name, folder, answers=["Yes", "B"] if name == "Fin" else None)
    return root


def acl_root(root: Path, naming: str = "readme") -> Path:
    if naming == "readme":
        layout = {"OCR": ("OCR", "OCR_test", "train.json"), "Math": ("Math", "Math_test", "train.json"),
                  "VP": ("VP", "VP_test", "train.json"), "APP": ("APP", "APP_test", "train.json")}
    else:
        layout = {"OCR": ("OCR", "OCR_test", "train_without_dense_caption.json"),
                  "Math": ("math2", "math_test", "train.json"), "VP": ("tallyqa150k", "CV-Benchv2", "ty_cl_sft.json"),
                  "APP": ("App", "APP_test", "train.json")}
    for name, (folder, test_folder, train_file) in layout.items():
        make_task(root, name, folder, test_folder, train_file=train_file)
    return root


def problems_text(report) -> str:
    return "\n".join(map(str, report.problems))


# --- loading ------------------------------------------------------------------------------------------

def test_dcl_readme_layout(tmp_path):
    bench = load_benchmark(dcl_root(tmp_path), "dcl")
    assert bench.setting == "dcl" and bench.names == ["RS", "Med", "AD", "Sci", "Fin"]
    rs = bench.task("RS")
    assert rs.folder == tmp_path / "RS" and rs.train_file == tmp_path / "RS" / "train.json"
    assert len(rs.train) == 3 and len(rs.test) == 2
    sample = rs.train[0]
    assert sample.id == "RS-tr0" and sample.task == "RS"
    assert sample.image == tmp_path / "RS" / "images" / "tr0.png" and sample.image.is_absolute()
    assert sample.question == "What is shown?" and sample.answer == "a square"
    assert sample.turns == (("What is shown?", "a square"),)
    test = rs.test[0]
    assert test.question == "Is it red?" and test.answer == "yes" and test.turns == (("Is it red?", "yes"),)
    assert test.row["question_id"] == "RS-te0" and test.row["text"] == "Is it red?"
    assert bench.router == () and bench.replay == () and bench.manifest is None
    assert rs.spec.max_new_tokens == 128 and rs.spec.scorer == "rs"


def test_fin_prompt_suffix_follows_the_ground_truth(tmp_path):
    fin = load_benchmark(dcl_root(tmp_path), "dcl", tasks=["Fin"]).task("Fin")
    yes_no, letter = fin.test
    assert yes_no.question == "Is it red?" + FIN_YES_NO and yes_no.answer == "Yes"
    assert letter.question == "Is it red?" + FIN_LETTER and letter.answer == "B"
    assert yes_no.row["text"] == "Is it red?"  # the raw row is untouched
    assert FIN_YES_NO == " Only answer with yes or no directly."
    assert fin.train[0].question == "What is shown?"  # training rows are used as written


def test_dcl_released_script_folder_names(tmp_path):
    bench = load_benchmark(dcl_root(tmp_path, "scripts"), "dcl")
    assert bench.task("RS").folder == tmp_path / "RemoteSensing"
    assert bench.task("Med").folder == tmp_path / "Medical" / "data"  # nested
    assert bench.task("AD").train[0].image == tmp_path / "AD" / "DriveLM" / "images" / "tr0.png"


def test_dcl_mixed_naming_train_in_script_folder_test_in_readme_folder(tmp_path):
    # the official scripts train from Medical/data/train.json but evaluate Med/test.json
    make_task(tmp_path, "Med", "Medical/data", "Med")
    med = load_benchmark(tmp_path, "dcl", tasks=["Med"]).task("Med")
    assert med.folder == tmp_path / "Medical" / "data" and med.test_folder == tmp_path / "Med"
    assert med.test[0].image == tmp_path / "Med" / "images" / "te0.png"


@pytest.mark.parametrize("naming", ["readme", "scripts"])
def test_acl_layouts(tmp_path, naming):
    bench = load_benchmark(acl_root(tmp_path, naming), "acl")
    assert bench.names == ["OCR", "Math", "VP", "APP"]
    assert all(len(t.train) == 3 and len(t.test) == 2 for t in bench.tasks)
    assert bench.task("OCR").test_folder == tmp_path / "OCR_test"
    assert bench.task("VP").spec.max_new_tokens == 64


def test_tasks_subset_keeps_benchmark_order_and_unknown_task_is_an_error(tmp_path):
    dcl_root(tmp_path)
    assert load_benchmark(tmp_path, "dcl", tasks=["Fin", "RS"]).names == ["RS", "Fin"]
    with pytest.raises(UserError, match="unknown task 'OCR'"):
        load_benchmark(tmp_path, "dcl", tasks=["OCR"])


def test_multi_turn_conversation_keeps_every_turn(tmp_path):
    make_task(tmp_path, "RS", "RS", n_train=1)
    row = {"id": "mt", "image": "images/tr0.png", "conversations": [
        {"from": "human", "value": "How many?\n<image>"}, {"from": "gpt", "value": "3"},
        {"from": "human", "value": "Any water?"}, {"from": "gpt", "value": "no"}]}
    dump(tmp_path / "RS" / "train.json", [row])
    (sample,) = load_benchmark(tmp_path, "dcl", tasks=["RS"]).task("RS").train
    assert sample.turns == (("How many?", "3"), ("Any water?", "no"))
    assert sample.question == "How many?" and sample.answer == "3"


def test_ocr_list_answers_and_read_only_raw_row(tmp_path):
    acl_root(tmp_path)
    dump(tmp_path / "OCR_test" / "test.json", [qa_row(7, "images/te0.png", "Read it.", ["STOP", "stop sign"],
                                                        answer_type="Regular Text Recognition")])
    (sample,) = load_benchmark(tmp_path, "acl", tasks=["OCR"]).task("OCR").test
    assert sample.id == "7" and sample.answer == "STOP"
    assert sample.row["answer"] == ["STOP", "stop sign"]
    assert sample.meta == {"answer_type": "Regular Text Recognition"}
    with pytest.raises(TypeError):
        sample.row["answer"] = "x"  # type: ignore[index]


def test_app_test_rows_may_lack_answers(tmp_path):
    acl_root(tmp_path)
    rows = [{"question_id": "ALL_0", "image": "images/te0.png", "text": "Which button? A. Ok B. Cancel"}]
    dump(tmp_path / "APP_test" / "test.json", rows)
    (sample,) = load_benchmark(tmp_path, "acl", tasks=["APP"]).task("APP").test
    assert sample.answer == "" and sample.turns == (("Which button? A. Ok B. Cancel", ""),)


def test_loading_opens_no_image(tmp_path, monkeypatch):
    dcl_root(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("the loader opened an image")

    monkeypatch.setattr(Image, "open", refuse)
    bench = load_benchmark(tmp_path, "dcl")
    assert sum(len(t.train) for t in bench.tasks) == 15


def test_sample_works_as_an_engine_example(tmp_path):
    from mllmcl.data import load_image
    from mllmcl.engine.train import conversation

    sample = load_benchmark(dcl_root(tmp_path), "dcl", tasks=["RS"]).task("RS").train[0]
    assert load_image(sample.image).size == (8, 8)
    assert conversation(sample) == sample.turns
    assert hash(sample) == hash(Sample(sample.id, "RS", sample.image, sample.question, sample.answer, sample.turns))


# --- router and replay --------------------------------------------------------------------------------

def test_router_and_replay_paths_are_root_relative_and_carry_their_task(tmp_path):
    dcl_root(tmp_path)
    dump(tmp_path / "router" / "train.json", [
        conv_row("r0", "Med/images/tr0.png", "Which expert?", "C"), conv_row("r1", "Fin/images/tr1.png", "Which?", "A")])
    dump(tmp_path / "replay" / "train.json", [conv_row("p0", "RS/images/tr2.png", "What?", "a field")])
    bench = load_benchmark(tmp_path, "dcl")
    assert bench.router_file == tmp_path / "router" / "train.json"
    assert [s.image for s in bench.router] == [tmp_path / "Med/images/tr0.png", tmp_path / "Fin/images/tr1.png"]
    assert [s.task for s in bench.router] == ["Med", "Fin"] and bench.router[0].answer == "C"
    assert bench.replay[0].task == "RS" and bench.replay[0].image == tmp_path / "RS/images/tr2.png"


def official_row(rid, image, question, letter, setting="dcl") -> dict:
    """A row as the release's router files hold it: the whole official router prompt, then one letter."""
    return conv_row(rid, image, official_prompt(question, setting), letter)


def test_official_router_and_replay_file_names(tmp_path):
    dcl_root(tmp_path, "scripts")
    # README names: the router file's images live in num5sample_images20/ (the official --image_folder)
    png(tmp_path / "num5sample_images20" / "x.png")
    dump(tmp_path / "task5Router_train20.json", [official_row("r0", "x.png", "Which?", "E")])
    dump(tmp_path / "task5replay20_train.json", [conv_row("p0", "Medical/data/images/tr0.png")])
    bench = load_benchmark(tmp_path, "dcl")
    assert bench.router[0].image == tmp_path / "num5sample_images20" / "x.png"
    assert (bench.router[0].task, bench.router[0].question, bench.router[0].answer) == ("RS", "Which?", "E")
    assert bench.replay[0].task == "Med"
    assert check_benchmark(tmp_path, "dcl", progress=False).ok
    # the HF release MLLM-CL-ReplayData (router_DCL/task5.json) is preferred over the README name
    dump(tmp_path / "router_DCL" / "task5.json", [official_row("r9", "AD/DriveLM/images/tr0.png", "Which?", "D")])
    assert load_benchmark(tmp_path, "dcl").router[0].task == "AD"


DCL_QUESTIONS = {"Fin": "Will the stock rise tomorrow? Only answer with yes or no directly.",
                 "Sci": "Which label marks the larva stage?\nA. B\nB. D",
                 "Med": "Is this a section of lung tissue?",
                 "AD": "What are the important objects in the current scene? Answer with coordinates.",
                 "RS": "How many buildings are there in the image?"}


@pytest.mark.parametrize("setting, file, images, letters", [
    ("dcl", "task5Router_train20.json", "num5sample_images20", {"A": "Fin", "B": "Sci", "C": "Med", "D": "AD",
                                                                "E": "RS"}),
    ("acl", "Router_train20.json", "sample_images20", {"A": "OCR", "B": "VP", "C": "Math", "D": "APP"}),
])
def test_official_router_rows_load_with_their_task_and_bare_question(tmp_path, setting, file, images, letters):
    (dcl_root if setting == "dcl" else acl_root)(tmp_path)
    rows, expected = [], []
    for k, (letter, task) in enumerate(letters.items()):
        for j in range(2):  # image folders of the release's router pool say nothing about the task
            question = DCL_QUESTIONS.get(task, f"What does the {task} image {j} show?")
            png(tmp_path / images / f"{k}_{j}.png", COLOURS[k % 4])
            rows.append(official_row(f"{task}-{j}", f"{k}_{j}.png", question, letter, setting))
            expected.append((task, question, letter))
    dump(tmp_path / file, rows)
    bench = load_benchmark(tmp_path, setting)
    assert bench.router_file == tmp_path / file
    assert [(s.task, s.question, s.answer) for s in bench.router] == expected
    assert all(s.turns == ((s.question, s.answer),) and s.image.parent == tmp_path / images for s in bench.router)
    assert bench.router[0].row["conversations"][0]["value"].startswith("<image>\nYou are a helpful assistant router.")
    report = check_benchmark(tmp_path, setting, progress=False)
    assert report.ok, problems_text(report)
    assert {t.name: t.router for t in report.tasks} == {task: 2 for task in letters.values()}


def test_official_router_rows_with_bad_letter_or_prompt_are_problems(tmp_path):
    dcl_root(tmp_path)
    png(tmp_path / "num5sample_images20" / "x.png")
    path = tmp_path / "task5Router_train20.json"
    cut = official_prompt("Is it a road?", "dcl").replace("Here is the user's question: ", "")
    dump(path, [official_row("good", "x.png", "Is it a road?", "C"),
                official_row("f", "x.png", "Is it a road?", "F"),
                official_row("long", "x.png", "Is it a road?", "The answer is A"),
                conv_row("plain", "x.png", "Is it a road?", "B"),
                conv_row("cut", "x.png", cut, "B"),
                official_row("acl", "x.png", "Is it a road?", "B", "acl"),
                official_row("empty", "x.png", "", "A")])
    report = check_benchmark(tmp_path, "dcl", progress=False)
    text = problems_text(report)
    assert len(report.problems) == 6, text
    assert (f"{path}: row 1 (id 'f'): router answer 'F' is not a letter of the official DCL router "
            "(A=Fin, B=Sci, C=Med, D=AD, E=RS)") in text
    assert f"{path}: row 2 (id 'long'): router answer 'The answer is A' is not a letter" in text
    for row, rid in ((3, "plain"), (4, "cut"), (5, "acl"), (6, "empty")):
        assert f"{path}: row {row} (id '{rid}'): not an official DCL router prompt" in text
    assert [(p.row, p.id) for p in report.problems] == [(1, "f"), (2, "long"), (3, "plain"), (4, "cut"), (5, "acl"),
                                                         (6, "empty")]
    assert {t.name: t.router for t in report.tasks}["Med"] == 1  # the good row
    with pytest.raises(UserError, match="6 problem"):
        load_benchmark(tmp_path, "dcl")


def test_project_router_rows_keep_working(tmp_path):
    dcl_root(tmp_path)
    # this project's format: a `task` field wins over the image folder; rows without one take the folder's
    # task; an official router prompt is recognised in any router file by its wording
    dump(tmp_path / "router" / "train.json", [
        {**conv_row("r0", "Med/images/tr0.png", "Which expert?", "C"), "task": "Sci"},
        conv_row("r1", "Fin/images/tr1.png", "Which?", "A"),
        official_row("r2", "RS/images/tr0.png", "How many cars?", "B")])
    bench = load_benchmark(tmp_path, "dcl")
    assert [(s.task, s.question) for s in bench.router] == [("Sci", "Which expert?"), ("Fin", "Which?"),
                                                           ("Sci", "How many cars?")]
    dump(tmp_path / "router" / "train.json", [{**conv_row("r0", "Med/images/tr0.png"), "task": "Nope"},
                                              {**official_row("r1", "Med/images/tr0.png", "Q?", "A"), "task": "Med"}])
    text = problems_text(check_benchmark(tmp_path, "dcl", progress=False))
    assert "row 0 (id 'r0'): 'task' must name a task of this benchmark (AD, Fin, Med, RS, Sci), got 'Nope'" in text
    assert "row 1 (id 'r1'): 'task' is 'Med' but the router answer 'A' names 'Fin'" in text


def test_router_override_from_python(tmp_path):
    dcl_root(tmp_path)
    png(tmp_path / "pool" / "a.png")
    dump(tmp_path / "elsewhere.json", [conv_row("r0", "a.png", "Which?", "B")])
    bench = load_benchmark(tmp_path, "dcl", router=ExtraFile("elsewhere.json", "pool"))
    assert bench.router[0].image == tmp_path / "pool" / "a.png"


# --- overrides and the manifest -----------------------------------------------------------------------

def test_python_folder_override(tmp_path):
    dcl_root(tmp_path)
    (tmp_path / "RS").rename(tmp_path / "MyRS")
    with pytest.raises(UserError, match="task RS: no training file; looked for RS/train.json"):
        load_benchmark(tmp_path, "dcl")
    bench = load_benchmark(tmp_path, "dcl", folders={"RS": "MyRS"})
    assert bench.task("RS").folder == bench.task("RS").test_folder == tmp_path / "MyRS"
    with pytest.raises(UserError, match="unknown task 'XX'"):
        load_benchmark(tmp_path, "dcl", folders={"XX": "MyRS"})


def test_manifest_describes_own_tasks(tmp_path):
    make_task(tmp_path, "Shapes", "shapes", "shapes_test")
    make_task(tmp_path, "RS", "MyRS")
    dump(tmp_path / "pool.json", [conv_row("r0", "shapes/images/tr0.png", "Which?", "A")])
    manifest = {"setting": "mine", "router": "pool.json", "tasks": [
        {"name": "Shapes", "folder": "shapes", "test_folder": "shapes_test", "scorer": "vp",
         "description": "shapes: count and name simple shapes", "max_new_tokens": 16},
        {"name": "RS", "folder": "MyRS"}]}
    dump(tmp_path / "mllmcl.json", manifest)
    bench = load_benchmark(tmp_path)
    assert bench.setting == "mine" and bench.names == ["Shapes", "RS"] and bench.manifest == tmp_path / "mllmcl.json"
    shapes, rs = bench.tasks
    assert shapes.spec.max_new_tokens == 16 and shapes.test_folder == tmp_path / "shapes_test"
    assert rs.spec.scorer == "rs" and rs.spec.description == BUILTIN["dcl"][0].description  # built-in defaults
    assert rs.test_folder == tmp_path / "MyRS"
    assert bench.router[0].task == "Shapes"
    with pytest.raises(UserError, match="setting 'mine', not 'dcl'"):
        load_benchmark(tmp_path, "dcl")


@pytest.mark.parametrize("manifest, message", [
    ({"setting": "dcl", "taks": []}, "unknown key 'taks'"),
    ({"setting": "dcl", "tasks": [{"name": "RS", "folders": "X"}]}, r"tasks\[0\] \(RS\): unknown key 'folders'"),
    ({"setting": "mine", "tasks": [{"name": "New", "folder": "new"}]}, "needs 'scorer', 'description'"),
    ({"setting": "dcl", "tasks": [{"name": "RS", "prompt_rule": "nope"}]}, "unknown prompt_rule 'nope'"),
    ({"setting": "dcl", "tasks": [{"name": "RS"}, {"name": "RS"}]}, "'RS' is defined twice"),
])
def test_bad_manifest_is_an_error_naming_the_key(tmp_path, manifest, message):
    dcl_root(tmp_path)
    dump(tmp_path / "mllmcl.json", manifest)
    with pytest.raises(UserError, match=message):
        load_benchmark(tmp_path)


def test_write_manifest_round_trips(tmp_path):
    spec = TaskSpec("Shapes", "mine", "vp", "shapes: simple shapes", ("shapes",), ("shapes_test",), max_new_tokens=8,
                    val_files=("dev.json",))
    make_task(tmp_path, "Shapes", "shapes", "shapes_test")
    write_manifest(tmp_path, "mine", [spec], router="r.json")
    dump(tmp_path / "r.json", [conv_row("r0", "shapes/images/tr0.png", "Which?", "A")])
    bench = load_benchmark(tmp_path)
    assert bench.task("Shapes").spec == spec and len(bench.router) == 1
    assert json.loads((tmp_path / "mllmcl.json").read_text())["tasks"][0]["val_file"] == ["dev.json"]


def test_validation_file_is_optional_and_read_like_a_test_file(tmp_path):
    acl_root(tmp_path)
    bench = load_benchmark(tmp_path, "acl")
    assert all(t.val == () and t.val_file is None for t in bench.tasks)  # the release has none
    dump(tmp_path / "OCR_test" / "val.json", [qa_row("v0", "images/te0.png", answer="7"),
                                              qa_row("v1", "images/te1.png", text="Read it.", answer="8")])
    ocr = load_benchmark(tmp_path, "acl").task("OCR")
    assert ocr.val_file == tmp_path / "OCR_test" / "val.json" and [s.id for s in ocr.val] == ["v0", "v1"]
    assert ocr.val[1].question == "Read it." and ocr.val[1].image == tmp_path / "OCR_test" / "images" / "te1.png"
    report = check_benchmark(tmp_path, "acl", progress=False)
    assert report.ok and report.tasks[0].val.rows == 2 and report.tasks[1].val is None
    dump(tmp_path / "OCR_test" / "val.json", [qa_row("v0", "images/te0.png"), qa_row("v0", "images/gone.png", text="")])
    text = problems_text(check_benchmark(tmp_path, "acl", progress=False))
    assert f"{tmp_path / 'OCR_test' / 'val.json'}: row 1 (id 'v0'): empty 'text'" in text
    with pytest.raises(UserError, match="val.json"):
        load_benchmark(tmp_path, "acl")


def test_setting_is_required_without_a_manifest(tmp_path):
    dcl_root(tmp_path)
    with pytest.raises(UserError, match="give the setting"):
        load_benchmark(tmp_path)
    with pytest.raises(UserError, match="unknown setting 'xyz'"):
        load_benchmark(tmp_path, "xyz")
    with pytest.raises(UserError, match="data root not found"):
        load_benchmark(tmp_path / "missing", "dcl")


# --- malformed data -----------------------------------------------------------------------------------

BAD_TRAIN_ROWS = [
    ({"image": "images/tr0.png", "conversations": []}, "missing key 'question_id' or 'id'"),
    ({"id": "a", "image": "images/tr0.png"}, "missing key 'conversations'"),
    ({"id": "a", "image": "images/tr0.png", "conversations": [{"from": "gpt", "value": "x"}]},
     "conversations\\[0\\] is from 'gpt', expected 'human'"),
    ({"id": "a", "image": "images/tr0.png", "conversations": [{"from": "human", "value": "<image>\nQ"}]},
     "ends with a human turn"),
    ({"id": "a", "image": "images/tr0.png", "conversations": [
        {"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "  "}]}, "conversations\\[1\\]: empty answer"),
    ({"id": "a", "image": "images/tr0.png", "conversations": [
        {"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": 3}]}, "string 'value'"),
    ({"id": "a", "image": ["images/tr0.png", "images/tr1.png"], "conversations": [
        {"from": "human", "value": "<image>\n<image>\nQ"}, {"from": "gpt", "value": "x"}]}, "2 images in one row"),
    ({"id": "a", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "x"}]}, "text-only rows"),
    (["not", "an", "object"], "a row must be a JSON object"),
]


@pytest.mark.parametrize("bad, message", BAD_TRAIN_ROWS)
def test_malformed_training_row_names_file_row_and_problem(tmp_path, bad, message):
    dcl_root(tmp_path)
    path = tmp_path / "RS" / "train.json"
    rows = json.loads(path.read_text())
    dump(path, rows[:1] + [bad] + rows[1:])
    with pytest.raises(UserError, match=message) as err:
        load_benchmark(tmp_path, "dcl")
    assert f"{path}: row 1" in str(err.value)


@pytest.mark.parametrize("bad, message", [
    ({"question_id": "q", "image": "images/te0.png", "text": "Q?"}, "missing key 'answer'"),
    ({"question_id": "q", "image": "images/te0.png", "answer": "yes"}, "missing key 'text'"),
    ({"question_id": "q", "image": "images/te0.png", "text": "Q?", "answer": ""}, "empty answer"),
    ({"question_id": "q", "image": "images/te0.png", "text": "Q?", "answer": {"a": 1}}, "'answer' must be a string"),
    ({"question_id": True, "image": "images/te0.png", "text": "Q?", "answer": "y"}, "'question_id' must be"),
    ({"id": "q", "image": "images/te0.png", "text": "Q?", "answer": "y"}, "missing key 'question_id'"),
])
def test_malformed_test_row(tmp_path, bad, message):
    dcl_root(tmp_path)
    path = tmp_path / "Sci" / "test.json"
    dump(path, json.loads(path.read_text()) + [bad])
    with pytest.raises(UserError, match=message) as err:
        load_benchmark(tmp_path, "dcl")
    assert f"{path}: row 2" in str(err.value)


def test_duplicate_test_id_is_an_error_duplicate_training_id_is_renamed(tmp_path):
    dcl_root(tmp_path)
    test_path = tmp_path / "AD" / "test.json"
    dump(test_path, [qa_row("same", "images/te0.png"), qa_row("same", "images/te1.png")])
    with pytest.raises(UserError, match="row 1 \\(id 'same'\\): duplicate question_id \\(first at row 0\\)"):
        load_benchmark(tmp_path, "dcl")
    make_task(tmp_path, "AD", "AD")
    dump(tmp_path / "AD" / "train.json", [conv_row("img7", "images/tr0.png"), conv_row("img7", "images/tr1.png")])
    ad = load_benchmark(tmp_path, "dcl", tasks=["AD"]).task("AD")
    assert [s.id for s in ad.train] == ["img7", "img7#1"]
    report = check_benchmark(tmp_path, "dcl", progress=False)
    assert report.ok and any("repeat an earlier id" in n for n in report.notes)


def test_invalid_json_and_wrong_top_level(tmp_path):
    dcl_root(tmp_path)
    (tmp_path / "RS" / "train.json").write_text("[{")
    dump(tmp_path / "Med" / "test.json", {"rows": []})
    report = check_benchmark(tmp_path, "dcl", progress=False)
    text = problems_text(report)
    assert f"{tmp_path / 'RS' / 'train.json'}: not valid JSON" in text
    assert f"{tmp_path / 'Med' / 'test.json'}: must be a JSON list of rows, found a JSON dict" in text


# --- checking -----------------------------------------------------------------------------------------

def test_check_counts_rows_and_images(tmp_path):
    dcl_root(tmp_path)
    dump(tmp_path / "replay" / "train.json", [conv_row("p0", "RS/images/tr0.png"), conv_row("p1", "RS/images/tr0.png")])
    report = check_benchmark(tmp_path, "dcl", progress=False)
    assert report.ok, problems_text(report)
    rs = report.tasks[0]
    assert (rs.name, rs.train.rows, rs.train.images, rs.test.rows, rs.test.images) == ("RS", 3, 3, 2, 2)
    assert report.replay.rows == 2 and report.replay.images == 1 and report.router is None
    assert report.images_checked == 5 * 5  # replay reuses an RS image


def test_check_collects_every_problem(tmp_path):
    dcl_root(tmp_path)
    (tmp_path / "RS" / "images" / "tr1.png").unlink()
    (tmp_path / "Med" / "images" / "te0.png").write_bytes(b"not a png at all")
    broken = tmp_path / "AD" / "images" / "tr0.png"
    broken.write_bytes(broken.read_bytes()[:30])  # truncated: header only
    path = tmp_path / "Sci" / "train.json"
    dump(path, json.loads(path.read_text()) + [{"id": "bad"}])
    report = check_benchmark(tmp_path, "dcl", progress=False)
    text = problems_text(report)
    assert not report.ok and len(report.problems) == 4, text
    assert f"{tmp_path / 'RS' / 'train.json'}: row 1 (id 'RS-tr1'): image not found" in text
    assert f"{tmp_path / 'Med' / 'test.json'}: row 0 (id 'Med-te0'): cannot decode image" in text
    assert f"{tmp_path / 'AD' / 'train.json'}: row 0 (id 'AD-tr0'): cannot decode image" in text
    assert f"{path}: row 3 (id 'bad'):" in text
    # the loader itself does not open images; it still refuses the malformed row
    with pytest.raises(UserError, match="1 problem"):
        load_benchmark(tmp_path, "dcl")


def test_decode_mode_loads_pixels(tmp_path):
    dcl_root(tmp_path)
    assert check_benchmark(tmp_path, "dcl", decode=True, progress=False).ok


# --- the command line ---------------------------------------------------------------------------------

def test_data_check_command_good_root(tmp_path, capsys):
    acl_root(tmp_path, "scripts")
    assert main(["data", "check", "--root", str(tmp_path), "--setting", "acl", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "OCR" in out and "train_without_dense_caption.json" in out and "CV-Benchv2/test.json" in out
    assert out.rstrip().endswith("OK")


def test_data_check_command_bad_root_exits_1_and_names_file_and_row(tmp_path, capsys):
    dcl_root(tmp_path)
    for i in range(3):
        (tmp_path / "RS" / "images" / f"tr{i}.png").unlink()
    code = main(["data", "check", "--root", str(tmp_path), "--setting", "dcl", "--tasks", "RS,Med",
                 "--limit", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: 3 problem(s), first 2 shown:" in out and "… and 1 more" in out
    assert f"{tmp_path / 'RS' / 'train.json'}: row 0 (id 'RS-tr0'): image not found" in out
    assert "\nAD" not in out  # --tasks limits the check


def test_data_check_json_good_root(tmp_path, capsys):
    dcl_root(tmp_path)
    png(tmp_path / "num5sample_images20" / "a.png")
    dump(tmp_path / "task5Router_train20.json", [official_row("r0", "a.png", "How many cars?", "E"),
                                                  official_row("r1", "a.png", "Is it benign?", "C"),
                                                  official_row("r2", "a.png", "Any tumour?", "C")])
    dump(tmp_path / "replay" / "train.json", [conv_row("p0", "RS/images/tr0.png"), conv_row("p1", "Fin/images/tr1.png"),
                                              conv_row("p2", "elsewhere/x.png")])
    png(tmp_path / "elsewhere" / "x.png")
    code = main(["data", "check", "--root", str(tmp_path), "--setting", "dcl", "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)  # stdout is the one JSON object and nothing else
    assert code == 0 and report["ok"] is True and report["problems"] == []
    assert report["tasks"] == {"RS": {"train": 3, "test": 2, "val": 0, "router": 1, "replay": 1},
                               "Med": {"train": 3, "test": 2, "val": 0, "router": 2, "replay": 0},
                               "AD": {"train": 3, "test": 2, "val": 0, "router": 0, "replay": 0},
                               "Sci": {"train": 3, "test": 2, "val": 0, "router": 0, "replay": 0},
                               "Fin": {"train": 3, "test": 2, "val": 0, "router": 0, "replay": 1}}
    assert report["unseen"] == 0
    assert report["unassigned"] == {"router": 0, "replay": 1}  # p2's image lies in no task's folder
    assert report["setting"] == "dcl" and report["root"] == str(tmp_path)


def test_data_check_json_bad_root_exits_1_with_every_problem(tmp_path, capsys):
    dcl_root(tmp_path)
    for i in range(3):
        (tmp_path / "RS" / "images" / f"tr{i}.png").unlink()
    png(tmp_path / "num5sample_images20" / "a.png")
    router = tmp_path / "task5Router_train20.json"
    dump(router, [official_row("r0", "a.png", "How many cars?", "E"), official_row("r1", "a.png", "Q?", "Z")])
    (tmp_path / "Med" / "test.json").write_text('[{"question_id": "x, "text')  # broken JSON
    code = main(["data", "check", "--root", str(tmp_path), "--setting", "dcl", "--tasks", "RS,Med", "--json",
                 "--limit", "1", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False
    assert list(report["tasks"]) == ["RS", "Med"]
    assert report["tasks"]["RS"] == {"train": 3, "test": 2, "val": 0, "router": 1, "replay": 0}
    assert report["tasks"]["Med"] == {"train": 3, "test": 0, "val": 0, "router": 0, "replay": 0}
    problems = report["problems"]
    assert len(problems) == 5  # all of them, whatever --limit says
    assert {"file": str(router), "row": 1, "id": "r1",
            "message": "router answer 'Z' is not a letter of the official DCL router "
                       "(A=Fin, B=Sci, C=Med, D=AD, E=RS)"} in problems
    assert {"file": str(tmp_path / "RS" / "train.json"), "row": 0, "id": "RS-tr0",
            "message": f"image not found: {tmp_path / 'RS' / 'images' / 'tr0.png'}"} in problems
    broken = next(p for p in problems if p["file"] == str(tmp_path / "Med" / "test.json"))
    assert broken["row"] is None and broken["id"] is None
    assert broken["message"] == "not valid JSON: Expecting ',' delimiter (line 1, column 23)"


def test_invalid_json_message_has_no_doubled_word(tmp_path):
    dcl_root(tmp_path)
    (tmp_path / "RS" / "train.json").write_text('[{"id": "a')
    text = problems_text(check_benchmark(tmp_path, "dcl", progress=False))
    assert "Unterminated string starting at (line 1, column 9)" in text and "at at" not in text


def test_data_check_command_user_errors_exit_2(tmp_path, capsys):
    assert main(["data", "check", "--root", str(tmp_path / "nope"), "--setting", "dcl"]) == 2
    assert "data root not found" in capsys.readouterr().err
    dcl_root(tmp_path)
    assert main(["data", "check", "--root", str(tmp_path)]) == 2
    assert "give the setting" in capsys.readouterr().err
    assert main(["data", "check", "--root", str(tmp_path), "--setting", "dcl", "--folder", "RS"]) == 2
    assert "TASK=FOLDER" in capsys.readouterr().err


def test_data_check_folder_option(tmp_path, capsys):
    dcl_root(tmp_path)
    (tmp_path / "RS").rename(tmp_path / "MyRS")
    args = ["data", "check", "--root", str(tmp_path), "--setting", "dcl", "--no-progress"]
    assert main(args) == 1
    assert "task RS: no training file" in capsys.readouterr().out
    assert main(args + ["--folder", "RS=MyRS"]) == 0


def test_data_subcommands_have_help_for_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "check", "--help"])
    assert exit_.value.code == 0
    data = build_parser()._subparsers._group_actions[0].choices["data"]
    for name, sub in data._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            assert action.help, f"data {name} {action.option_strings or action.dest} has no help"


def test_the_answer_derived_fin_suffix_is_cut_from_what_routers_read():
    from mllmcl.data.tasks import FIN_LETTER, FIN_YES_NO, LETTER_INSTRUCTION, PROMPT_RULES, without_rule_suffix

    text = "Is the stock rising?"
    for answer in ("Yes", "B"):
        prompt = PROMPT_RULES["fin"](text, answer)
        assert prompt != text and without_rule_suffix(prompt) == text
    assert without_rule_suffix(text + FIN_YES_NO + "  ") == text and without_rule_suffix(text + FIN_LETTER) == text
    plain = f"Which option?\nA. up\nB. down\n{LETTER_INSTRUCTION}"
    assert without_rule_suffix(plain) == plain  # the row's own instruction is its text: kept
