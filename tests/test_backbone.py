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
