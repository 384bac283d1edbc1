"""State-dict keys and shapes of every preset equal the official checkpoints' (meta device)."""

import json
from pathlib import Path

import pytest

import loger3d

DATA = Path(__file__).parent / "data"
MEMORY_PREFIXES = ("pe_token_", "ttt_layers.", "ttt_gate_projs.", "swa_layers.", "swa_gate_projs.")


def manifest(name):
    return json.loads((DATA / name).read_text())


@pytest.mark.parametrize("preset,file", [("loger", "loger_state_dict.json"),
                                         ("loger_star", "loger_star_state_dict.json")])
def test_matches_manifest(preset, file):
    ref = manifest(file)
    sd = loger3d.build_model(preset, device="meta").state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == [(k, s) for k, (s, _) in ref["state_dict"].items()]
    assert len(sd) == ref["num_state_dict_keys"]
    model = loger3d.build_model(preset, device="meta")
    assert sum(p.numel() for p in model.parameters()) == ref["total_params"]


def test_pi3_is_loger_without_memory():
    ref = manifest("loger_state_dict.json")
    expected = {k: s for k, (s, _) in ref["state_dict"].items() if not k.startswith(MEMORY_PREFIXES)}
    sd = loger3d.build_model("pi3", device="meta").state_dict()
    assert len(sd) == 1210
    assert {k: list(v.shape) for k, v in sd.items()} == expected
    model = loger3d.build_model("pi3", device="meta")
    assert sum(p.numel() for p in model.parameters()) == ref["plain_pi3_relation"]["pi3_total_params"]


def test_tiny_is_the_same_family():
    tiny = set(loger3d.build_model("tiny", device="meta").state_dict())
    full = set(loger3d.build_model("loger", device="meta").state_dict())

    def pattern(k):
        return ".".join("*" if part.isdigit() else part for part in k.split("."))

    assert {pattern(k) for k in tiny} == {pattern(k) for k in full}
