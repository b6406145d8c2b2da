"""Resumable state as safetensors + JSON: exact round trips, a commit point, nothing unpickled."""

import json
import math
import random

import numpy as np
import pytest
import torch

from freezetune.core.errors import FreezetuneError
from freezetune.io.state_file import load_tree, save_tree
from freezetune.training.resume import load_state


def test_a_tree_round_trips_exactly(tmp_path):
    tree = {"step": 7, "loss": 0.1 + 0.2, "inf": math.inf, "names": ["a", "b"], "betas": (0.9, 0.999),
            "optimizer": {0: {"exp_avg": torch.randn(3, 2), "step": torch.tensor(4.0)}},
            "bf16": torch.randn(4).to(torch.bfloat16), "python": random.getstate(),
            "numpy": np.random.get_state(), "none": None, "$odd": 1}
    save_tree(tmp_path, "state", tree, format=3)
    version, loaded = load_tree(tmp_path, "state")
    assert version == 3
    assert loaded["loss"] == 0.1 + 0.2 and loaded["inf"] == math.inf and loaded["betas"] == (0.9, 0.999)
    assert list(loaded["optimizer"]) == [0]  # an int key stays an int
    assert torch.equal(loaded["optimizer"][0]["exp_avg"], tree["optimizer"][0]["exp_avg"])
    assert torch.equal(loaded["bf16"], tree["bf16"]) and loaded["bf16"].dtype == torch.bfloat16
    random.setstate(loaded["python"])  # accepted as is: tuples stay tuples
    np.random.set_state(loaded["numpy"])
    assert loaded["python"] == tree["python"] and loaded["$odd"] == 1 and loaded["none"] is None


def test_the_json_is_the_commit_point_and_old_tensor_files_go(tmp_path):
    save_tree(tmp_path, "state", {"w": torch.zeros(2)}, format=3)
    first = json.loads((tmp_path / "state.json").read_text())["tensors"]
    save_tree(tmp_path, "state", {"w": torch.ones(2)}, format=3)
    second = json.loads((tmp_path / "state.json").read_text())["tensors"]
    assert first != second and sorted(p.name for p in tmp_path.iterdir()) == sorted(["state.json", second])
    assert torch.equal(load_tree(tmp_path, "state")[1]["w"], torch.ones(2))


def test_a_damaged_pair_is_a_clear_error(tmp_path):
    save_tree(tmp_path, "state", {"w": torch.zeros(2)}, format=3)
    tensors = json.loads((tmp_path / "state.json").read_text())["tensors"]
    (tmp_path / tensors).write_bytes(b"\x00" * 5)
    with pytest.raises(FreezetuneError, match="the state is corrupted"):
        load_tree(tmp_path, "state")


def test_an_old_pickled_state_is_refused_unread(tmp_path):
    (tmp_path / "state.pt").write_bytes(b"\x80\x04 any pickle here would run code")
    with pytest.raises(FreezetuneError, match="written by an older freezetune version.*start the run again"):
        load_state(tmp_path)
