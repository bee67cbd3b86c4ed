"""What exists, said once: every method and router in its catalog (torch-free) has its code, with the same
card; a method entry's card is its method's; and what routers and methods are given to answer carries no
label (`Query`)."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from mllmcl.cl.methods.build import IMPLEMENTATIONS as METHOD_CLASSES
from mllmcl.cl.methods.catalog import METHODS, MethodCard, card_of
from mllmcl.cl.methods.replay import with_replay
from mllmcl.cl.routing.build import IMPLEMENTATIONS as ROUTER_CLASSES
from mllmcl.cl.routing.catalog import ROUTERS
from mllmcl.core.errors import UserError
from mllmcl.data.records import Query, split_instruction
from mllmcl.data.tasks import FORMAT_INSTRUCTIONS
from mllmcl.models.catalog import BACKBONES
from mllmcl.models.load import LOADERS
from mllmcl.serve.routed import servable


def test_every_method_has_its_code_and_its_card():
    assert sorted(METHOD_CLASSES) == METHODS.names()
    for name, method in METHOD_CLASSES.items():
        assert method.card == METHODS.get(name), name


def test_every_router_and_backbone_has_its_code():
    assert sorted(ROUTER_CLASSES) == ROUTERS.names()
    for name, router in ROUTER_CLASSES.items():
        assert router.kind == name and router.card == ROUTERS.get(name)
    assert sorted(LOADERS) == BACKBONES.names()


def test_only_the_oracle_router_needs_labels_and_it_cannot_serve():
    assert [name for name in ROUTERS.names() if ROUTERS.get(name).needs_labels] == ["oracle"]
    with pytest.raises(UserError, match="lib: its router 'oracle' reads the true task of each input.*cannot serve"):
        servable("oracle", Path("lib"))
    servable("prototype", Path("lib"))


def test_a_method_entry_has_its_methods_card():
    assert card_of("mr-lora[mllm]") == METHODS.get("mr-lora") and card_of("mr-lora[mllm]").routed
    assert card_of("ewc+replay") == MethodCard(replayable=False)
    assert with_replay(METHOD_CLASSES["ewc"]).card == card_of("ewc+replay")
    assert not card_of("zero-shot").learns and not card_of("oracle").sequential and card_of("oracle").uses_experts


def test_a_query_carries_no_label():
    assert [f.name for f in fields(Query)] == ["id", "image", "question", "instruction"]


def test_the_format_instruction_is_split_off_the_prompt():
    letter = "Answer with the option's letter from the given choices directly."
    assert split_instruction(f"Which one?\nA. x\nB. y\n{letter}", FORMAT_INSTRUCTIONS) == ("Which one?\nA. x\nB. y", letter)
    assert split_instruction("Is it up? Only answer with yes or no directly.", FORMAT_INSTRUCTIONS) == \
        ("Is it up?", "Only answer with yes or no directly.")
    assert split_instruction("What is this?", FORMAT_INSTRUCTIONS) == ("What is this?", "")
