"""Config values are checked by type and range when the config loads (before any data is built)."""

import dataclasses
import pathlib
import re
import typing

import pytest

from identity_tf import train, validation
from identity_tf.method import MethodConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
GLOBE = ROOT / "configs" / "globe_tsp" / "tsp5_identity_noise0.2.yaml"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"train.epochs": "ten"}, "`train.epochs` must be an integer >= 1. Received: epochs='ten' (str)"),
        ({"train.epochs": True}, "`train.epochs` must be an integer >= 1. Received: epochs=True (bool)"),
        ({"data.k": "five"}, "`data.k` must be an integer >= 1. Received: k='five' (str)"),
        ({"train.learning_rate": 0}, "`train.learning_rate` must be a number > 0. Received: learning_rate=0 (int)"),
        ({"train.learning_rate": -1}, "`train.learning_rate` must be a number > 0. Received: learning_rate=-1 (int)"),
        ({"train.jit_compile": "maybe"}, "`train.jit_compile` must be true, false or 'auto'. Received: jit_compile="),
        ({"data.label_corruption": -1}, "`data.label_corruption` must be a number >= 0. Received: label_corruption=-1"),
        ({"data.max_train": -5}, "`data.max_train` must be an integer >= 1 or null. Received: max_train=-5 (int)"),
        ({"data.max_test": 0}, "`data.max_test` must be an integer >= 1 or null. Received: max_test=0 (int)"),
        ({"train.lr_milestones": [0]}, "`train.lr_milestones` must be a list of integers >= 1. Received:"),
        ({"method.alpha": "lots"}, "`method.alpha` must be a number >= 0. Received: alpha='lots' (str)"),
        ({"data.val_fraction": 1.0}, "`data.val_fraction` must be a number in (0, 1). Received: val_fraction=1.0"),
        ({"train.learning_rate": float("nan")}, "`train.learning_rate` must be a number > 0. Received:"),
        # an empty validation split: 5 examples at val_fraction 0.1 round to 0 validation examples
        ({"data.max_train": 5}, "The validation split of 5 training examples at data.val_fraction=0.1 has 0"),
    ],
)
def test_bad_values_fail_at_load_time(override, message):
    with pytest.raises(train.ConfigError) as caught:
        train.load_config(GLOBE, override)
    assert message in str(caught.value)
    assert "Received:" in str(caught.value)


def test_integers_are_accepted_for_floats_and_strings_read_as_numbers():
    config = train.load_config(GLOBE, {"train.learning_rate": 1, "method.alpha": "2e-1", "train.jit_compile": False})
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.method.alpha == 0.2 and config.train.jit_compile is False
    assert train.load_config(GLOBE, train.parse_overrides(["train.learning_rate=1e-3"])).train.learning_rate == 1e-3


def _sections():
    """Every config dataclass a run config uses: (section, class, keys the trainer fills in)."""
    from identity_tf.tasks import registry

    for name in registry.names():
        task = registry.get(name)
        yield name, "data", task.data_config, set()
        yield name, "model", task.model_config, set(task.model_from_data)
    yield "globe_tsp", "method", MethodConfig, set()
    yield "globe_tsp", "train", train.TrainConfig, set()


def test_every_config_field_is_type_checked():
    """A value no annotation accepts (a mapping) is rejected for every field of every config dataclass."""
    checked = 0
    for task, section, cls, filled in _sections():
        for field in dataclasses.fields(cls):
            if field.name in filled:
                continue
            with pytest.raises(train.ConfigError, match=rf"`{section}\.{field.name}` must be .*Received: "):
                train.load_config({"task": task, section: {field.name: {"not": "a scalar"}}})
            checked += 1
    assert checked >= 60, checked


def test_range_rules_reject_out_of_range_numbers_everywhere():
    """Every numeric field with a range rule rejects a value just outside its range."""
    checked = 0
    for task, section, cls, filled in _sections():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            rule = validation.range_of(field.name)
            if field.name in filled or rule is None or rule.low is None:
                continue
            numeric = int if int in (typing.get_args(hints[field.name]) or (hints[field.name],)) else float
            below = rule.low if rule.low_open else rule.low - 1
            value = [numeric(below)] if typing.get_origin(hints[field.name]) is list else numeric(below)
            with pytest.raises(
                train.ConfigError, match=rf"`{section}\.{field.name}` must be .*{re.escape(rule.describe())}"
            ):
                train.load_config({"task": task, section: {field.name: value}})
            checked += 1
    assert checked >= 30, checked


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: globe_tsp\ntrain:\n  epochs: 3\n  batch_size: [50\n")
    with pytest.raises(train.ConfigError, match=r"Malformed YAML in .*bad\.yaml, line \d+, column \d+"):
        train.load_config(path)
    path.write_text("task: globe_tsp\ntrain:\n  epochs: 3: 4\n")
    with pytest.raises(train.ConfigError, match=r"bad\.yaml, line 3, column 12: .*Received: '  epochs: 3: 4'"):
        train.load_config(path)


def test_sections_and_quick_blocks_must_be_mappings():
    with pytest.raises(train.ConfigError, match="Section `train` must be a mapping. Received: 3"):
        train.load_config({"task": "globe_tsp", "train": 3})
    with pytest.raises(train.ConfigError, match="`quick` must be a mapping"):
        train.load_config({"task": "globe_tsp", "quick": [1]}, quick=True)
    assert train.load_config({"task": "globe_tsp", "train": None}, {"train.epochs": 2}).train.epochs == 2
