"""The pydantic-validated configs: `pvae config --schema`, shipped files as written, messages."""

import json
from pathlib import Path

import pytest

from pvae.cli import main
from pvae.config import Config, ConfigError, _load_yaml, from_dict, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
SECTIONS = {"data", "model", "train", "evaluate"}


def _schema(capsys) -> dict:
    assert main(["config", "--schema"]) == 0
    return json.loads(capsys.readouterr().out)


def _section(schema: dict, name: str) -> dict:
    """A section's schema, following its $ref into $defs."""
    node = schema["properties"][name]
    ref = node.get("$ref") or node["allOf"][0]["$ref"]
    return schema["$defs"][ref.rsplit("/", 1)[1]]


def test_schema_is_json_naming_every_section_and_key(capsys):
    schema = _schema(capsys)
    assert set(schema["properties"]) == SECTIONS
    assert schema["additionalProperties"] is False
    defaults = Config().to_dict()
    for name in SECTIONS:
        section = _section(schema, name)
        assert set(section["properties"]) == set(defaults[name]), name
        assert section["additionalProperties"] is False, name  # editors flag unknown keys too
        for key, prop in section["properties"].items():
            if "default" in prop:  # the schema's defaults are the loader's
                assert prop["default"] == defaults[name][key], f"{name}.{key}"
    model = _section(schema, "model")["properties"]
    assert model["z_dim"]["type"] == "integer" and model["z_dim"]["default"] == 8
    assert "latent" in model["z_dim"]["description"]
    assert model["hidden_dims"] == {**model["hidden_dims"], "type": "array",
                                    "items": {"type": "integer"}}
    assert model["type"]["enum"] == ["vae", "cvae", "ssvae", "hvae", "seqvae"]
    assert model["rnn"]["enum"] == ["gru", "lstm"]
    assert model["word_dropout"]["minimum"] == 0 and model["word_dropout"]["exclusiveMaximum"] == 1
    data = _section(schema, "data")["properties"]
    assert data["val_fraction"]["minimum"] == 0 and data["val_fraction"]["exclusiveMaximum"] == 1
    assert {"words", "gunpoint", "ucr_anomaly_135"} <= set(data["name"]["enum"])
    train = _section(schema, "train")["properties"]
    assert train["epochs"]["minimum"] == 1 and train["lr"]["exclusiveMinimum"] == 0
    assert train["logger"]["enum"] == ["tensorboard", "none"]
    assert train["logger"]["default"] == "none"
    assert "TensorBoard" in train["logger"]["description"]


def test_config_without_schema_is_a_usage_error(capsys):
    assert main(["config"]) == 2
    assert "--schema" in capsys.readouterr().err


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_as_written(path):
    """Every value a shipped file sets is loaded as written; every other is the default."""
    written = _load_yaml(path.read_text())  # as load_config reads it
    cfg, defaults = load_config(path), Config()
    for section in SECTIONS:
        for key, default in getattr(defaults, section).model_dump().items():
            got = getattr(getattr(cfg, section), key)
            want = written.get(section, {}).get(key, default)
            assert _plain(got) == _plain(want), f"{section}.{key}"
            if isinstance(default, (float, tuple)):  # a float field holds floats (lr: 1 is 1.0)
                assert type(got) is type(default), f"{section}.{key}"
    assert load_config(path) == from_dict(_load_yaml(cfg.to_yaml()))  # round trip


@pytest.mark.parametrize("name,z_dim,epochs,likelihood", [
    ("digits", 8, 100, "continuous_bernoulli"),
    ("mnist", 50, 50, "bernoulli"),
    ("fashion_mnist", 16, 20, "continuous_bernoulli"),
    ("mnist_m1m2", 10, 90, "gaussian"),
])
def test_shipped_configs_hold_their_known_values(name, z_dim, epochs, likelihood):
    cfg = load_config(CONFIGS[0].parent / f"{name}.yaml")
    assert (cfg.model.z_dim, cfg.train.epochs, cfg.model.likelihood) == (z_dim, epochs, likelihood)
    assert cfg.train.logger == "none"


@pytest.mark.parametrize("values,message", [
    ({"train": {"num_threads": 0}}, r"^config key 'train.num_threads' must be a positive int "
                                    r"or null, got 0$"),
    ({"train": {"clip_norm": -1.0}}, r"'train.clip_norm' must be positive or null, got -1.0$"),
    ({"train": {"lr": float("nan")}}, r"'train.lr' must be a finite number, got nan$"),
    ({"train": {"lr_factor": float("inf")}}, r"'train.lr_factor' must be a finite number, "
                                             r"got inf$"),
    ({"train": {"adam_eps": float("inf")}}, r"'train.adam_eps' must be a finite number, "
                                            r"got inf$"),
    ({"model": {"z_dim": 0}}, r"'model.z_dim' must be a positive int, got 0$"),
    ({"model": {"hidden_dims": [0]}}, r"'model.hidden_dims' must be positive ints, got "
                                      r"\(0,\)$"),
    ({"data": {"num_labelled": -1}}, r"'data.num_labelled' must be >= 0 or null, got -1$"),
    ({"data": {"test_fraction": 1}}, r"'data.test_fraction' must be in \[0, 1\), got 1$"),
    ({"train": {"kl_warmup": -1}}, r"'train.kl_warmup' must be >= 0, got -1$"),
    ({"train": {"adam_eps": 0}}, r"'train.adam_eps' must be positive, got 0$"),
    ({"train": {"optimizer": "sgd", "adam_eps": 1e-4}},
     r"'train.adam_eps' \(0.0001\) applies to train.optimizer 'adam' or 'adamw', and "
     r"train.optimizer is 'sgd' \(which has no epsilon\): drop train.adam_eps or choose "
     r"'adam' or 'adamw'$"),
    ({"train": {"epochs": 2.0}}, r"'train.epochs' must be an integer, got 2.0$"),
    ({"train": {"seed": True}}, r"'train.seed' must be an integer, got True$"),
    ({"train": {"lr": "0.1"}}, r"'train.lr' must be a number, got '0.1'$"),
    ({"data": {"download": 1}}, r"'data.download' must be true or false, got 1$"),
    ({"train": {"device": 0}}, r"'train.device' must be a string, got 0$"),
    ({"model": {"likelihood_kwargs": None}}, r"'model.likelihood_kwargs' must be a mapping"),
    ({"train": {"lr_steps": [1.5]}}, r"'train.lr_steps\[0\]' must be an integer, got 1.5$"),
    ({"data": {"binarize": "sometimes"}}, r"'data.binarize' must be one of 'static', "
                                          r"'dynamic', or null, got 'sometimes'$"),
    ({"train": {"logger": "wandb"}}, r"'train.logger' must be one of 'tensorboard', 'none', "
                                     r"got 'wandb'$"),
    ({"train": {"logger": None}}, r"'train.logger' must be one of 'tensorboard', "
                                     r"'none', got None$"),
    ({"train": {7: 1}}, r"unknown config key 'train.7' Valid keys: elbo, epochs"),
    ({"train": {"lr": "x", "epoch": 5}}, r"unknown config key 'train.epoch'; did you mean"),
    ({"evaluate": []}, r"config section 'evaluate' must be a mapping, got \[\]$"),
    ([1, 2], r"a config must be a mapping of sections"),
])
def test_type_and_range_messages_name_key_value_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(values)


def test_logger_and_empty_sections(tmp_path):
    assert from_dict(None) == from_dict({"train": None}) == Config()
    cfg = from_dict({"train": {"logger": "tensorboard"}})
    assert cfg.train.logger == "tensorboard" and from_dict(cfg.to_dict()) == cfg
    p = tmp_path / "c.yaml"
    p.write_text("train:\nmodel:\n  z_dim: 3\n")  # an empty section, then an override into it
    cfg = load_config(p, ["train.epochs=4"])
    assert (cfg.train.epochs, cfg.model.z_dim) == (4, 3)
