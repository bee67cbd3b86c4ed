"""Encoding of training batches and prompts: the label mask covers exactly the assistant's tokens."""
import torch

from conftest import random_images
from mllmcl.models.backbone import IGNORE_INDEX


def test_labels_cover_exactly_the_assistant_tokens(micro):
    questions = ["What color is the circle?", "How many squares are there?", "Is there a star?"]
    answers = ["red", "3", "yes it is"]
    batch = micro.encode_train(random_images(3), questions, answers)
    tok = micro.tokenizer
    for row, answer in enumerate(answers):
        ids, labels, mask = batch["input_ids"][row], batch["labels"][row], batch["attention_mask"][row]
        kept = labels != IGNORE_INDEX
        # the supervised tokens decode to exactly the assistant's turn and sit at the end of the real text
        assert tok.decode(labels[kept]) == f" {answer}</s>"
        assert torch.equal(labels[kept], ids[kept])
        last_real = int(mask.nonzero().max())
        supervised = kept.nonzero().flatten()
        assert int(supervised.max()) == last_real
        assert torch.equal(supervised, torch.arange(int(supervised.min()), last_real + 1))
        # nothing of the prompt, image or padding is supervised
        prompt = tok.decode(ids[: int(supervised.min())])
        assert prompt.endswith("ASSISTANT:") and "<image>" in prompt
        assert not kept[mask == 0].any()
        assert not kept[ids == micro.image_token_id].any()


def test_multi_turn_labels_cover_every_assistant_turn_and_nothing_else(micro):
    conversations = [[("What color is the circle?", "red"), ("How many squares are there?", "3")],
                     [("Is there a star?", "yes")]]
    batch = micro.encode_conversations(random_images(2), conversations)
    tok = micro.tokenizer
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    kept = torch.cat([(labels != IGNORE_INDEX).int(), torch.zeros(1, dtype=torch.int)])  # a run may end the row
    # two separate supervised runs, decoding to the two answers in order
    starts = ((kept[1:] == 1) & (kept[:-1] == 0)).nonzero().flatten() + 1
    ends = ((kept[1:] == 0) & (kept[:-1] == 1)).nonzero().flatten() + 1
    runs = [tok.decode(ids[s:e]) for s, e in zip(starts.tolist(), ends.tolist())]
    assert runs == [" red</s>", " 3</s>"]
    text = tok.decode(ids[kept[:-1] == 0])
    assert "USER: How many squares are there? ASSISTANT:" in text and "red" not in text
    single = micro.encode_train(random_images(1), ["Is there a star?"], ["yes"])
    assert tok.decode(batch["labels"][1][batch["labels"][1] != IGNORE_INDEX]) == " yes</s>"
    assert tok.decode(single["labels"][0][single["labels"][0] != IGNORE_INDEX]) == " yes</s>"


def test_training_batches_are_right_padded_and_prompts_left_padded(micro):
    images = random_images(2)
    train = micro.encode_train(images, ["a", "a much longer question than the other one"], ["x", "y"])
    assert train["attention_mask"][0, 0] == 1 and train["attention_mask"][0, -1] == 0
    prompts = micro.encode_prompts(images, ["a", "a much longer question than the other one"])
    assert prompts["attention_mask"][0, 0] == 0 and prompts["attention_mask"][0, -1] == 1
    assert micro.tokenizer.decode(prompts["input_ids"][0, -3:]).endswith("ASSISTANT:")


def test_each_image_becomes_the_configured_number_of_image_tokens(micro):
    batch = micro.encode_prompts(random_images(2), ["q", "q"])
    counts = (batch["input_ids"] == micro.image_token_id).sum(dim=1)
    assert counts.tolist() == [16, 16]  # 32 px, patch 8
