"""Typed configs: shipped files load, defaults match digits.yaml, bad keys/types/values refused."""

from pathlib import Path

import pytest

from pvae.config import Config, ConfigError, from_dict, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"digits.yaml", "mnist.yaml", "fashion_mnist.yaml",
                                         "mnist_cvae.yaml", "mnist_ssvae.yaml", "mnist_hvae.yaml",
                                         "mnist_iaf.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert from_dict(cfg.to_dict()) == cfg  # round trip through plain data


def test_defaults_are_the_digits_config():
    assert load_config(None) == load_config(Path(CONFIGS[0]).parent / "digits.yaml")


@pytest.mark.parametrize("values,message", [
    ({"train": {"epoch": 5}}, r"unknown config key 'train.epoch'; did you mean 'epochs'"),
    ({"modle": {}}, r"unknown config key 'modle'; did you mean 'model'"),
    ({"train": {"epochs": "ten"}}, r"'train.epochs' must be an integer, got 'ten'"),
    ({"train": {"epochs": 2.5}}, r"'train.epochs' must be an integer"),
    ({"train": {"epochs": -1}}, r"'train.epochs' must be a positive int"),
    ({"train": {"batch_size": 0}}, r"'train.batch_size' must be a positive int"),
    ({"train": {"lr": 0}}, r"'train.lr' must be positive"),
    ({"train": {"elbo": "elbo"}}, r"'train.elbo' must be one of .*iwae:K\), got 'elbo'$"),
    ({"model": {"likelihood": "gauss"}}, r"'model.likelihood' must be one of .*gaussian.*, got 'gauss'$"),
    ({"model": {"hidden_dims": 5}}, r"'model.hidden_dims' must be a list"),
    ({"model": {"hidden_dims": [5, "a"]}}, r"hidden_dims\[1\]' must be an integer"),
    ({"data": {"name": "cifar"}}, r"'data.name' must be one of"),
    ({"data": {"flatten": "yes"}}, r"'data.flatten' must be true or false"),
    ({"data": {"name": "array"}}, r"'data.path' is needed"),
    ({"train": 3}, r"section 'train' must be a mapping"),
    ({"model": {"likelihood": "gaussian", "likelihood_kwargs": {"sigma": 1}}},
     r"likelihood 'gaussian' has no option 'sigma'; its options are: scale"),
    ({"model": {"type": "gan"}}, r"'model.type' must be one of 'vae', 'cvae', 'ssvae', 'hvae', 'seqvae', got 'gan'$"),
    ({"model": {"guide": "sideways"}}, r"'model.guide' must be one of"),
    ({"model": {"balance_weight": -1}}, r"'model.balance_weight' must be >= 0 \(0 is off\)"),
    ({"train": {"epochs": 10, "lr_steps": [0, 5]}}, r"'train.lr_steps' must be strictly "
     r"increasing whole epochs >= 1"),
    ({"train": {"lr_steps": [50, 20]}}, r"'train.lr_steps' must be strictly increasing"),
    ({"train": {"lr_factor": 0}}, r"'train.lr_factor' must be positive"),
    ({"train": {"lr_factor": 0.3}}, r"'train.lr_factor' \(0.3\) multiplies the learning rate "
     r"at the epochs in train.lr_steps, and train.lr_steps is empty, so it would change "
     r"nothing: give train.lr_steps \(e.g. \[60, 85\]\) or drop train.lr_factor$"),
    ({"model": {"word_dropout": 1.0}}, r"'model.word_dropout' must be in \[0, 1\)"),
    ({"model": {"rnn": "transformer"}}, r"'model.rnn' must be one of 'gru', 'lstm', got 'transformer'$"),
    ({"data": {"name": "ucr_anomaly_135"}}, r"'data.window' is needed for name: ucr_anomaly_135"),
    ({"data": {"name": "words", "binarize": "static"}}, r"'data.binarize' is for images"),
    ({"data": {"name": "sequences"}}, r"'data.path' is needed for name: sequences"),
    ({"data": {"name": "ucr_anomaly_135", "window": 50, "test_stride": 60}},
     r"'data.test_stride' \(60\) must not exceed data.window \(50\)"),
    ({"data": {"name": "gunpoint", "window": 50}}, r"'data.window' is for an anomaly series"),
    ({"data": {"name": "words", "stride": 5}}, r"'data.stride' is for an anomaly series"),
    ({"data": {"test_stride": 5}}, r"'data.test_stride' is for an anomaly series.*not digits"),
    ({"data": {"name": "ucr_anomaly_135", "window": 50, "max_train": 10}},
     r"'data.max_train' does not apply to an anomaly series"),
])
def test_bad_configs(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(values)


def test_yaml_files_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 3\nmodel:\n  hidden_dims: [8]\n")
    cfg = load_config(p, ["train.lr=0.01", "model.z_dim=3", "train.clip_norm=null"])
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01 and cfg.model.z_dim == 3
    assert cfg.model.hidden_dims == (8,)
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(p, ["epochs=3"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "evil.yaml").write_text("train: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_exponent_floats_without_a_dot_are_numbers_in_files_and_overrides(tmp_path):
    # PyYAML (YAML 1.1) reads 3e-4 as the string '3e-4'; YAML 1.2 and users read a number
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 3e-4\n  adam_eps: 1E-4\n  clip_norm: 1e1\n  epochs: 5\n"
                 "data:\n  path: 1e5.csv\n")
    cfg = load_config(p, ["train.lr_factor=5e-1", "train.lr_steps=[3]"])
    assert [load_config(None, [f"train.lr={v}"]).train.lr for v in ("1.0e4", ".5e3", "+2E-3")
            ] == [1e4, 500.0, 2e-3]
    assert (cfg.train.lr, cfg.train.adam_eps, cfg.train.clip_norm) == (3e-4, 1e-4, 10.0)
    assert cfg.train.lr_factor == 0.5 and cfg.train.epochs == 5  # ints stay ints
    assert cfg.data.path == "1e5.csv"
    # a resolved config (a run folder's config.yaml) reads back as written
    (tmp_path / "resolved.yaml").write_text(cfg.to_yaml())
    assert load_config(tmp_path / "resolved.yaml") == cfg
    # a string that looks like such a number stays a string when quoted, and is written
    # back quoted, so that a run folder's config.yaml reads back as it was
    quoted = load_config(None, ["data.root='1e5'", "train.adam_eps=1e-4"])
    assert quoted.data.root == "1e5" and "root: '1e5'" in quoted.to_yaml()
    (tmp_path / "quoted.yaml").write_text(quoted.to_yaml())
    assert load_config(tmp_path / "quoted.yaml") == quoted
    with pytest.raises(ConfigError, match=r"'data.root' must be a string, got 100000.0"):
        load_config(None, ["data.root=1e5"])
    with pytest.raises(ConfigError, match=r"'train.epochs' must be an integer, got 1000.0"):
        load_config(None, ["train.epochs=1e3"])


@pytest.mark.parametrize("overrides,message", [
    (["model.z_dims=[64, 32]"], r"'model.z_dims' \(\[64, 32\]\) has no effect with model.type "
                                r"'vae' \(which uses z_dim, hidden_dims, .*\): remove it, use "
                                r"model.z_dim, or set model.type to 'hvae'$"),
    (["model.type=hvae", "model.z_dim=50"], r"'model.z_dim' \(50\) has no effect with "
                                            r"model.type 'hvae' .*use model.z_dims, or set"),
    (["model.type=seqvae", "model.hidden_dims=[64]"], r"'model.hidden_dims' \(\[64\]\) has "
                                                      r"no effect .*use model.hidden_dim"),
    (["model.guide=top_down"], r"'model.guide' \('top_down'\) has no effect with model.type "
                               r"'vae' .*: remove it, or set model.type to 'hvae'$"),
    (["model.rnn=lstm"], r"'model.rnn' .*set model.type to 'seqvae'$"),
    (["model.num_classes=10"], r"'model.num_classes' .*set model.type to 'cvae' or 'ssvae'$"),
    (["model.type=cvae", "model.arch=conv"], r"'model.arch' \('conv'\) has no effect with "
                                             r"model.type 'cvae'.*set model.type to 'vae'$"),
])
def test_a_key_the_model_type_would_ignore_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("kind,what", [("vae", "ignore it"), ("hvae", "ignore it"),
                                       ("cvae", "fail on the hidden labels")])
def test_num_labelled_is_for_the_semi_supervised_model(kind, what):
    with pytest.raises(ConfigError, match=rf"'data.num_labelled' \(50\) is for model.type "
                                          rf"ssvae, .*model.type '{kind}' would {what}: leave "
                                          rf"it unset$"):
        load_config(None, [f"model.type={kind}", "data.num_labelled=50"])
    assert load_config(None, ["model.type=ssvae", "data.num_labelled=50"]).data.num_labelled == 50


def test_anomaly_samples_is_for_the_anomaly_series():
    with pytest.raises(ConfigError, match=r"'evaluate.anomaly_samples' \(3\) is for an anomaly "
                                          r"series \(data.name: ucr_anomaly_135\), not digits"):
        load_config(None, ["evaluate.anomaly_samples=3"])


@pytest.mark.parametrize("kind", ["vae", "cvae", "ssvae", "hvae"])
def test_a_resolved_config_listing_every_key_reads_back(kind, tmp_path):
    # a run folder's config.yaml lists every key; those of other types are at their defaults
    cfg = load_config(None, [f"model.type={kind}"])
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    assert "rnn: gru" in cfg.to_yaml() and load_config(tmp_path / "config.yaml") == cfg


def test_the_config_defaults_are_fits():
    import inspect

    import pvae

    fit = inspect.signature(pvae.fit).parameters
    train = Config().train
    assert {k: getattr(train, k) for k in ("adam_eps", "lr", "lr_factor", "optimizer")} == {
        k: fit[k].default for k in ("adam_eps", "lr", "lr_factor", "optimizer")}


def test_train_section_is_fit_keyword_arguments():
    import inspect

    import pvae

    kwargs = load_config(None, ["train.epochs=3", "train.lr=0.01"]).train.fit_kwargs()
    assert set(kwargs) <= set(inspect.signature(pvae.fit).parameters)
    assert kwargs["epochs"] == 3 and kwargs["lr"] == 0.01 and "num_threads" not in kwargs


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_models_from_configs_match_the_command_line(path):
    import pvae.models
    from pvae.runs import build_model

    cfg = load_config(path)
    x_shape, vocab = ((1, 28, 28) if cfg.model.arch == "conv" else (64,)), None
    if cfg.model.type == "seqvae":  # padded sequences: text (T,) ids or series (T, D)
        x_shape, vocab = ((20,), 26) if cfg.data.name == "words" else ((150, 1), None)
    model = build_model(cfg, x_shape, num_classes=10, vocab_size=vocab)
    # the class the config names, with every setting the config gives that it takes
    assert type(model).config_name == cfg.model.type
    assert type(model) is type(pvae.models.get(cfg.model.type, **model.hparams))
    for key, value in vars(cfg.model).items():
        if (key == "likelihood_kwargs" and not value) or (key == "likelihood" and vocab):
            continue  # none given: the model records its defaults; text is categorical
        if key in model.hparams and value is not None and key not in ("num_classes", "y_dim"):
            saved = model.hparams[key]
            assert (tuple(saved) if isinstance(saved, list) else saved) == \
                (tuple(value) if isinstance(value, list) else value), key


def test_a_labelled_model_without_classes_is_a_config_error():
    from pvae.runs import build_model

    cfg = from_dict({"model": {"type": "ssvae"}})
    with pytest.raises(ConfigError, match="model.type ssvae needs labels: set model.num_classes"):
        build_model(cfg, (64,), num_classes=None)


def test_model_rules_are_the_constructors():
    import pvae

    with pytest.raises(ConfigError, match=r"'model.z_dim' must be a positive int"):
        from_dict({"model": {"z_dim": 0}})
    with pytest.raises(ValueError, match=r"z_dim must be a positive int, got 0"):
        pvae.VAE(4, z_dim=0)
    with pytest.raises(ConfigError, match=r"'model.num_classes' must be an int >= 2"):
        from_dict({"model": {"num_classes": 1}})


@pytest.mark.parametrize("train, message", [
    ({"elbo": "iwae:abc"}, r"'train.elbo' \('iwae:abc'.*'abc' is not a whole number"),
    ({"elbo": "renyi:x", "num_particles": 3}, r"'train.elbo' \('renyi:x'.*'x' is not a number"),
    ({"elbo": "renyi:0.5"}, r"'train.elbo'.*train.num_particles=1.*renyi needs num_particles >= 2"),
])
def test_an_elbo_argument_fit_would_refuse_is_a_config_error_naming_the_key(train, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"train": train})
    assert from_dict({"train": {"elbo": "renyi:0.5", "num_particles": 3}}).train.elbo == "renyi:0.5"
