"""Prompt set files for real backbones: plain text and YAML lists, with one-line errors."""

from __future__ import annotations

import pytest

from bench.config import PromptSetConfig
from bench.preflight import check_command_line
from core.errors import ConfigError


def test_text_file_one_prompt_per_line(tmp_path):
    file = tmp_path / "set.txt"
    file.write_text("# comment\nA fox in the snow.\n\nA boat at sunset.\n")
    prompts = PromptSetConfig(name="mine", file=str(file)).prompts
    assert [(p.id, p.text) for p in prompts] == [("line2", "A fox in the snow."), ("line4", "A boat at sunset.")]


def test_yaml_list_with_strings_ids_and_schedules(tmp_path):
    file = tmp_path / "set.yaml"
    file.write_text("- A fox in the snow.\n- {id: boat, text: A boat at sunset., split: heldout}\n"
                    "- id: switch\n  schedule:\n    - {at: 0, text: A calm sea.}\n    - {at: 10, text: A storm.}\n")
    prompts = PromptSetConfig(name="mine", file=str(file), select=["boat", "switch"]).selected()
    assert [p.id for p in prompts] == ["boat", "switch"] and prompts[0].split == "heldout"
    assert prompts[1].timeline() == [(0.0, "A calm sea."), (10.0, "A storm.")]


@pytest.mark.parametrize("name, content, message", [
    ("none.txt", None, r"prompts.file=.*none.txt.*not found"),
    ("set.csv", "a,b", r"unknown format; allowed suffixes: .txt, .yaml, .yml"),
    ("empty.txt", "# only a comment\n", r"no prompts in the file"),
    ("bad.yaml", "- {id: x}\n", r"item 0 must be a string or a mapping with id and text or schedule"),
    ("keys.yaml", "- {id: x, text: y, seed: 3}\n", r"item 0 has unknown keys \['seed'\]"),
    ("map.yaml", "a: b\n", r"expected a list of prompts, got dict"),
])
def test_bad_prompt_files_are_one_line_errors(tmp_path, name, content, message):
    file = tmp_path / name
    if content is not None:
        file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        PromptSetConfig(name="mine", file=str(file))


def test_example_set_composes_for_the_real_backbone():
    (run,) = check_command_line(["model=wan_tiny", "prompts=real_example", "metrics=none"], multirun=False)
    assert [p.id for p in run.prompts.selected()] == ["line2", "line3", "line4", "line5"]
