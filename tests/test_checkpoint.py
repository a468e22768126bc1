"""Save/load round trips; corrupt, foreign and unsafe files are refused with clear errors."""

import os
import pickle

import pytest
import torch

import pvae
from pvae.checkpoint import CheckpointError


def trained(binary_digits, **kw):
    vae = pvae.VAE(64, 3, hidden_dims=(16,), **kw)
    pvae.fit(vae, binary_digits.train.x[:200], epochs=1, seed=0)
    return vae


@pytest.mark.parametrize("kwargs", [{}, {"likelihood": "gaussian", "likelihood_kwargs": {"scale": 0.2}},
                                    {"likelihood": "categorical", "likelihood_kwargs": {"num_levels": 2}},
                                    {"beta": 2.0, "activation": "tanh"}])
def test_save_load_round_trip(binary_digits, tmp_path, kwargs):
    vae = trained(binary_digits, **kwargs)
    vae.save(tmp_path / "m.pt")
    back = pvae.load(tmp_path / "m.pt")
    assert type(back) is pvae.VAE and back.hparams == vae.hparams
    for (k, v), w in zip(vae.state_dict().items(), back.state_dict().values()):
        assert torch.equal(v, w), k
    x = binary_digits.test.x[:5]
    assert torch.equal(back.reconstruct(x), vae.reconstruct(x))


def test_training_checkpoint_loads_as_a_model(binary_digits, tmp_path):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    pvae.fit(vae, binary_digits.train.x[:200], epochs=1, checkpoint_dir=tmp_path)
    back = pvae.load(tmp_path / "checkpoint.pt")
    assert torch.equal(back.reconstruct(binary_digits.test.x[:3]), vae.reconstruct(binary_digits.test.x[:3]))


def test_custom_networks_need_the_model_passed_in(tmp_path):
    vae = pvae.VAE(5, 2, decoder=torch.nn.Linear(2, 5), likelihood="gaussian")
    vae.save(tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="custom networks.*model="):
        pvae.load(tmp_path / "c.pt")
    other = pvae.VAE(5, 2, decoder=torch.nn.Linear(2, 5), likelihood="gaussian")
    back = pvae.load(tmp_path / "c.pt", model=other)
    assert torch.equal(back.decoder.weight, vae.decoder.weight)


def test_crafted_pickle_payload_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "pvae-checkpoint-1", "class": "VAE", "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load.*arbitrary code"):
        pvae.load(path)
    assert not marker.exists()
    with open(tmp_path / "raw.pt", "wb") as f:  # a bare pickle, not a torch zip
        pickle.dump(Payload(), f)
    with pytest.raises(CheckpointError):
        pvae.load(tmp_path / "raw.pt")
    assert not marker.exists()


def test_truncated_and_missing_files(binary_digits, tmp_path):
    vae = trained(binary_digits)
    vae.save(tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable pvae checkpoint: it is truncated, corrupt"):
            pvae.load(tmp_path / "cut.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable pvae checkpoint: it is truncated, corrupt"):
        pvae.load(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        pvae.load(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable pvae checkpoint"):
        pvae.load(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="is a folder"):
        pvae.load(tmp_path)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pvae checkpoint"):
        pvae.load(tmp_path / "other.pt")


def test_checkpoint_from_a_different_model(binary_digits, tmp_path):
    trained(binary_digits).save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="differently configured.*z_dim"):
        pvae.load(tmp_path / "m.pt", model=pvae.VAE(64, 5, hidden_dims=(16,)))


def test_failed_save_leaves_the_old_file(binary_digits, tmp_path, monkeypatch):
    vae = trained(binary_digits)
    vae.save(tmp_path / "m.pt")
    before = (tmp_path / "m.pt").read_bytes()

    def boom(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        vae.save(tmp_path / "m.pt")
    assert (tmp_path / "m.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_a_damaged_settings_entry_is_a_checkpoint_error(tmp_path):
    # the corruption a fuzzed byte produced: one hparam key renamed (" idden_dims")
    vae = pvae.VAE(4, 2, hidden_dims=(8,))
    vae.save(tmp_path / "m.pt")
    record = torch.load(tmp_path / "m.pt", weights_only=True)
    record["hparams"][" idden_dims"] = record["hparams"].pop("hidden_dims")
    torch.save(record, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="damaged pvae checkpoint.*do not build a VAE"):
        pvae.load(tmp_path / "bad.pt")
    del record["hparams"]
    torch.save(record, tmp_path / "worse.pt")
    with pytest.raises(CheckpointError, match="damaged pvae checkpoint.*hparams"):
        pvae.load(tmp_path / "worse.pt")
