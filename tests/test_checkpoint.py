"""Checkpoints: exact round trips with no pickle, and no torn state whatever moment a save is killed."""

import json

import pytest
import torch

from ganlab import checkpoint
from ganlab.errors import GanlabError
from ganlab.models import build_models


def trained_pair():
    torch.manual_seed(0)
    generator, discriminator = build_models("mlp")
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for _ in range(2):
        optimizer.zero_grad()
        generator(torch.randn(4, 100)).square().mean().backward()
        optimizer.step()
    return generator, optimizer


def state_of(generator, optimizer, epoch: int) -> checkpoint.State:
    optimizer_tensors, param_groups = checkpoint.optimizer_to_tensors("optimizer_g", optimizer)
    return {"epoch": epoch, "step_in_epoch": 3, "global_step": 10 * epoch + 3,
            **checkpoint.prefixed("generator", generator.state_dict()), **optimizer_tensors,
            "rng.order": torch.Generator().manual_seed(epoch).get_state(),
            "optimizer_g_param_groups": param_groups}


def test_round_trip_restores_weights_buffers_optimizer_and_rng(tmp_path):
    generator, optimizer = trained_pair()
    checkpoint.save_checkpoint(tmp_path, state_of(generator, optimizer, epoch=4))
    loaded = checkpoint.load_checkpoint(tmp_path)
    assert (loaded["epoch"], loaded["step_in_epoch"], loaded["global_step"]) == (4, 3, 43)

    torch.manual_seed(1)
    fresh_generator, _ = build_models("mlp")
    fresh_optimizer = torch.optim.Adam(fresh_generator.parameters(), lr=1e-3)
    fresh_generator.load_state_dict(checkpoint.unprefixed("generator", loaded))
    fresh_optimizer.load_state_dict(checkpoint.optimizer_from_tensors(
        "optimizer_g", loaded, loaded["optimizer_g_param_groups"]))
    for name, tensor in generator.state_dict().items():  # running stats of BatchNorm included
        assert torch.equal(tensor, fresh_generator.state_dict()[name]), name
    assert fresh_optimizer.param_groups[0]["betas"][0] == 0.5
    original_state = optimizer.state_dict()["state"]
    for index, param_state in fresh_optimizer.state_dict()["state"].items():
        for name, value in param_state.items():
            assert torch.equal(value, original_state[index][name])
    restored_rng = torch.Generator().set_state(loaded["rng.order"])
    assert torch.equal(torch.randperm(10, generator=restored_rng),
                       torch.randperm(10, generator=torch.Generator().manual_seed(4)))


def test_files_are_safetensors_and_json_only(tmp_path):
    generator, optimizer = trained_pair()
    checkpoint.save_checkpoint(tmp_path, state_of(generator, optimizer, epoch=1))
    checkpoint.save_checkpoint(tmp_path, state_of(generator, optimizer, epoch=2))
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint.json", "state_a.safetensors", "state_b.safetensors"]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["tensors_file"] == "state_b.safetensors"


def test_a_save_killed_while_writing_tensors_leaves_the_previous_checkpoint(tmp_path):
    generator, optimizer = trained_pair()
    checkpoint.save_checkpoint(tmp_path, state_of(generator, optimizer, epoch=1))
    # The next save writes the other slot; a kill half-way leaves it torn and the manifest untouched.
    (tmp_path / "state_b.safetensors").write_bytes(b"torn")
    (tmp_path / "state_b.safetensors.tmp").write_bytes(b"torn")
    assert checkpoint.load_checkpoint(tmp_path)["epoch"] == 1


def test_a_damaged_slot_in_use_is_an_error_not_silent_garbage(tmp_path):
    generator, optimizer = trained_pair()
    checkpoint.save_checkpoint(tmp_path, state_of(generator, optimizer, epoch=1))
    slot = tmp_path / "state_a.safetensors"
    slot.write_bytes(slot.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(GanlabError, match="does not match its sha256"):
        checkpoint.load_checkpoint(tmp_path)


def test_no_checkpoint_is_none(tmp_path):
    assert checkpoint.load_checkpoint(tmp_path) is None
