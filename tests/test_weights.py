"""loger3d.weights: sources, safe reading, preset inference and checks, loading, conversion."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import loger3d
from loger3d import weights
from loger3d.seeded import fill_seeded_
from loger3d.weights import WeightsError, check_compatible, convert, infer_preset, load_model, read_state_dict


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    model = fill_seeded_(loger3d.build_model("tiny", device="meta"), 1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def meta_sd(preset: str) -> dict[str, torch.Tensor]:
    return loger3d.build_model(preset, device="meta").state_dict()


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


# ----------------------------------------------------------------------------- layouts
LAYOUTS = {
    "plain.pt": lambda sd, p: torch.save(sd, p),
    "wrapped.pt": lambda sd, p: torch.save({"model_state_dict": sd, "epoch": 3, "optimizer_state_dict": {}}, p),
    "ddp.pth": lambda sd, p: torch.save({"model_state_dict": {f"module.{k}": v for k, v in sd.items()}}, p),
    "lightning.bin": lambda sd, p: torch.save({"state_dict": sd, "global_step": 10}, p),
    "legacy.pt": lambda sd, p: torch.save(sd, p, _use_new_zipfile_serialization=False),
    "model.safetensors": lambda sd, p: save_file(sd, str(p)),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_reads_and_loads_the_same_tensors(tmp_path, tiny_sd, name):
    path = tmp_path / name
    LAYOUTS[name](tiny_sd, path)
    assert_same(read_state_dict(path), tiny_sd)

    model = load_model(str(path))
    assert isinstance(model, loger3d.LoGeR) and model.config.name == "tiny" and not model.training
    loaded = model.state_dict()
    assert_same(loaded, tiny_sd)
    assert all(t.device.type == "cpu" for t in loaded.values())
    assert loger3d.load_model(path).config.name == "tiny"  # the package-level entry point delegates here


def test_loaded_model_runs_like_the_source(tmp_path, tiny_sd):
    source = fill_seeded_(loger3d.build_model("tiny", device="meta"), 1).eval()
    torch.save(tiny_sd, tmp_path / "w.pt")
    model = load_model(tmp_path / "w.pt")
    images = torch.rand(1, 3, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(images, window_size=0).points, source(images, window_size=0).points)


def _set_flag() -> None:  # what unpickling a payload below would run
    os.environ["LOGER3D_TEST_UNPICKLED"] = "1"


class _Payload:
    def __reduce__(self):
        return (_set_flag, ())


class _SystemPayload:
    def __reduce__(self):
        return (os.system, ("touch LOGER3D_PAYLOAD_RAN",))


@dataclass
class _Config:  # a training script's config object
    lr: float = 1e-4
    stages: tuple = (1, 2)


def _training_checkpoint(sd: dict[str, torch.Tensor], path, legacy: bool = False) -> None:
    """A checkpoint as training scripts write it: DDP keys, optimizer state, args, numpy values, a config."""
    import argparse

    import numpy as np

    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in sd.items()}, "optimizer": optimizer.state_dict(),
                "args": argparse.Namespace(lr=1e-4, name="run"), "epoch": np.int64(3), "loss": np.float32(0.25),
                "ema_decay": np.array([0.999]), "config": _Config(), "rng": np.random.get_state()},
               path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_training_checkpoints_with_metadata_load(tmp_path, tiny_sd, legacy):
    path = tmp_path / "latest.pt"
    _training_checkpoint(tiny_sd, path, legacy)
    assert_same(read_state_dict(path), tiny_sd)
    assert_same(load_model(path).state_dict(), tiny_sd)


def test_compiled_model_prefixes_are_stripped(tmp_path, tiny_sd):
    torch.save({"model": {f"module._orig_mod.{k}": v for k, v in tiny_sd.items()}}, tmp_path / "c.pt")
    assert_same(read_state_dict(tmp_path / "c.pt"), tiny_sd)


@pytest.mark.parametrize("payload", [_Payload(), _SystemPayload()], ids=["function", "os.system"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_payloads_never_run_and_are_refused_as_unsafe(tmp_path, tiny_sd, monkeypatch, payload, legacy):
    monkeypatch.delenv("LOGER3D_TEST_UNPICKLED", raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "unsafe.pt"
    torch.save({"model_state_dict": tiny_sd, "args": payload}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(WeightsError) as e:
        load_model(path)
    text = one_line(e)
    assert "is unsafe" in text and "nothing in it was run" in text
    assert ("_set_flag" if isinstance(payload, _Payload) else "system") in text
    assert "LOGER3D_TEST_UNPICKLED" not in os.environ and not (tmp_path / "LOGER3D_PAYLOAD_RAN").exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_plain_pickle_with_code_is_refused_as_unsafe(tmp_path, monkeypatch):
    monkeypatch.delenv("LOGER3D_TEST_UNPICKLED", raising=False)
    path = tmp_path / "raw.pt"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps({"w": _Payload()}, protocol=protocol))
        with pytest.raises(WeightsError) as e:
            read_state_dict(path)
        assert "is unsafe" in one_line(e) and "_set_flag" in str(e.value), protocol
    assert "LOGER3D_TEST_UNPICKLED" not in os.environ


def test_a_pickled_model_object_is_not_a_state_dict(tmp_path):
    torch.save(torch.nn.Linear(3, 2), tmp_path / "model.pt")
    with pytest.raises(WeightsError) as e:
        read_state_dict(tmp_path / "model.pt")
    assert "pickled torch.nn.modules.linear.Linear object" in one_line(e) and "state_dict()" in str(e.value)


def test_non_tensor_values_are_rejected(tmp_path, tiny_sd):
    torch.save({**tiny_sd, "step": 7}, tmp_path / "mixed.pt")
    with pytest.raises(WeightsError) as e:
        read_state_dict(tmp_path / "mixed.pt")
    assert "'step' is a int, not a tensor" in one_line(e)

    torch.save({"epoch": 1, "optimizer": {"lr": 0.1}}, tmp_path / "nosd.pt")
    with pytest.raises(WeightsError) as e:
        read_state_dict(tmp_path / "nosd.pt")
    assert "holds no state dict" in one_line(e) and "model_state_dict" in str(e.value)

    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04 truncated zip"])
def test_corrupt_files_give_one_line_errors(tmp_path, content):
    for name in ("bad.pt", "bad.safetensors"):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(WeightsError) as e:
            read_state_dict(tmp_path / name)
        assert "cannot read" in one_line(e)


def test_bad_paths(tmp_path):
    with pytest.raises(WeightsError) as e:
        load_model(str(tmp_path / "nope.pt"))
    text = one_line(e)
    assert "no such file" in text and "loger, loger_star, pi3" in text

    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(WeightsError) as e:
        load_model(tmp_path / "w.ckpt")
    assert all(s in one_line(e) for s in (".pt", ".pth", ".bin", ".safetensors"))

    with pytest.raises(WeightsError, match="is a directory"):
        load_model(tmp_path)
    with pytest.raises(WeightsError, match="alias or a path"):
        weights.resolve_source(3)


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", ["loger", "loger_star", "pi3", "tiny"])
def test_infer_preset_from_meta_state_dicts(preset):
    assert infer_preset(meta_sd(preset)) == preset
    check_compatible(preset, meta_sd(preset))  # no error


def test_pi3_checkpoint_into_loger():
    with pytest.raises(WeightsError) as e:
        check_compatible("loger", meta_sd("pi3"))
    text = one_line(e)
    assert "preset 'loger'" in text and "missing 299 keys" in text
    assert "(pe_token_*, ttt_layers.*, ttt_gate_projs.*, swa_layers.*, swa_gate_projs.*)" in text
    assert "use the pi3 preset" in text and "unexpected" not in text

    with pytest.raises(WeightsError, match="missing 281 keys .*use the pi3 preset"):
        check_compatible("loger_star", meta_sd("pi3"))


def test_loger_star_and_loger_hints():
    with pytest.raises(WeightsError) as e:
        check_compatible("loger", meta_sd("loger_star"))
    text = one_line(e)
    assert "missing 18 keys (ttt_layers.*.pre_norm.weight)" in text and "use the loger_star preset" in text

    with pytest.raises(WeightsError) as e:
        check_compatible("loger_star", meta_sd("loger"))
    text = one_line(e)
    assert "unexpected 18 keys (ttt_layers.*.pre_norm.weight)" in text and "use the loger preset" in text

    with pytest.raises(WeightsError, match="unexpected 299 keys .*use the loger preset"):
        check_compatible("pi3", meta_sd("loger"))


def test_shape_mismatch_and_unknown_checkpoints(tiny_sd):
    with pytest.raises(WeightsError) as e:
        check_compatible("loger", tiny_sd)
    text = one_line(e)
    assert "shape mismatches (e.g. register_token: checkpoint [1, 1, 5, 128] vs model [1, 1, 5, 1024])" in text
    assert "use the tiny preset" in text

    foreign = {"backbone.conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(8)}
    with pytest.raises(WeightsError) as e:
        infer_preset(foreign)
    assert "not a LoGeR/Pi3 checkpoint" in one_line(e)

    dropped = {k: v for k, v in tiny_sd.items() if k != "decoder.0.attn.qkv.weight"}
    with pytest.raises(WeightsError) as e:
        infer_preset(dropped)
    text = one_line(e)
    assert "preset 'tiny': missing 1 keys (decoder.*.attn.qkv.weight)" in text and "not a LoGeR/Pi3" in text

    broken = dict(tiny_sd)
    broken["decoder.0.attn.qkv.weight"] = torch.zeros(3, 3)
    with pytest.raises(WeightsError, match="1 shape mismatches .*decoder.0.attn.qkv.weight"):
        infer_preset(broken)

    model = loger3d.build_model("tiny", device="meta")
    check_compatible(model, tiny_sd)
    custom = loger3d.build_model(replace(loger3d.PRESETS["tiny"], name="small", swa_insert_after=(2,)), "meta")
    with pytest.raises(WeightsError) as e:
        check_compatible(custom, tiny_sd)
    text = one_line(e)
    assert "this model (custom config 'small'): unexpected" in text and "use the tiny preset" in text
    with pytest.raises(WeightsError, match="LoGeR model or a preset"):
        check_compatible(torch.nn.Linear(2, 2), tiny_sd)
    with pytest.raises(WeightsError, match="unknown preset 'huge'"):
        check_compatible("huge", tiny_sd)


def test_explicit_preset_wins_and_is_checked(tmp_path, tiny_sd):
    torch.save(tiny_sd, tmp_path / "w.pt")
    assert load_model(tmp_path / "w.pt", preset="tiny").config.name == "tiny"
    with pytest.raises(WeightsError) as e:
        load_model(tmp_path / "w.pt", preset="loger")
    assert "does not fit preset 'loger'" in one_line(e) and "use the tiny preset" in str(e.value)


# ----------------------------------------------------------------------------- aliases
@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    return cache / "hub"


@pytest.mark.parametrize("alias", ["loger", "loger_star", "pi3"])
def test_alias_offline_without_cache(empty_hf_cache, alias):
    repo, filename, _ = weights.ALIASES[alias]
    with pytest.raises(WeightsError) as e:
        load_model(alias)
    text = one_line(e)
    assert f"weights '{alias}' ({repo}/{filename})" in text
    assert "not in the Hugging Face cache" in text and "(offline: HF_HUB_OFFLINE=1)" in text
    assert "local .pt/.safetensors" in text and str(empty_hf_cache) in text


def test_alias_offline_from_cache(empty_hf_cache, tiny_sd):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = empty_hf_cache / "models--Junyi42--LoGeR"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    target = repo_dir / "snapshots" / commit / "LoGeR_star" / "latest.pt"
    target.parent.mkdir(parents=True)
    torch.save({"model_state_dict": tiny_sd}, target)

    path, preset = weights.resolve_source("loger_star")
    assert os.path.samefile(path, target) and preset == "loger_star"
    # The alias fixes the preset, so tiny weights under the loger_star name are caught.
    with pytest.raises(WeightsError, match="does not fit preset 'loger_star'.*use the tiny preset"):
        load_model("loger_star")


def test_alias_download_failures_online(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    monkeypatch.setattr(weights.hub, "_probe_hub", lambda endpoint, timeout=3.0: None)  # "reachable", no network used
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    error = LocalEntryNotFoundError("connection refused\nand more")
    with pytest.raises(WeightsError) as e:
        weights.resolve_source("pi3")
    assert "(no connection to the Hugging Face Hub at https://hub.example)" in one_line(e)
    assert calls == [("yyfz233/Pi3", "model.safetensors",
                      {"cache_dir": str(tmp_path / "cache"), "local_files_only": False,
                       "endpoint": "https://hub.example"})]
    error = OSError("read timed out\nsomewhere")
    with pytest.raises(WeightsError) as e:
        weights.resolve_source("loger")
    assert "could not be downloaded: read timed out somewhere" in one_line(e)


# ----------------------------------------------------------------------------- dtypes
def test_dtypes(tmp_path, tiny_sd):
    save_file({k: v.to(torch.bfloat16) if k not in ("image_mean", "image_std") else v for k, v in tiny_sd.items()},
              str(tmp_path / "bf16.safetensors"))
    for dtype in (None, "fp32", "float32", torch.float32):
        model = load_model(tmp_path / "bf16.safetensors", dtype=dtype)
        assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {torch.float32}
    with pytest.raises(WeightsError) as e:
        load_model(tmp_path / "bf16.safetensors", dtype="int8")
    assert "unknown dtype 'int8'" in one_line(e)


def test_bf16_load_uses_set_precision(tmp_path, tiny_sd):
    if not hasattr(loger3d.LoGeR, "set_precision"):
        pytest.skip("LoGeR.set_precision does not exist yet")
    torch.save(tiny_sd, tmp_path / "w.pt")
    for dtype in ("bf16", "bfloat16", torch.bfloat16):
        model = load_model(tmp_path / "w.pt", dtype=dtype)
        assert model.decoder[0].attn.qkv.weight.dtype == torch.bfloat16


# ----------------------------------------------------------------------------- conversion
def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


def test_convert_fp32_round_trip(tmp_path, tiny_sd):
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in tiny_sd.items()}}, tmp_path / "src.pt")
    out = tmp_path / "out.safetensors"
    assert convert(tmp_path / "src.pt", out) == "tiny"
    assert_same(dict(load_file(out)), tiny_sd)
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta == {"format": "pt", "loger3d_preset": "tiny", "loger3d_version": loger3d.__version__}
    assert_same(load_model(out).state_dict(), tiny_sd)
    assert leftovers(tmp_path) == []


def test_convert_bf16(tmp_path, tiny_sd):
    torch.save(tiny_sd, tmp_path / "src.pt")
    out = tmp_path / "bf16.safetensors"
    assert convert(str(tmp_path / "src.pt"), str(out), dtype="bf16") == "tiny"
    got = load_file(out)
    assert sorted(got) == sorted(tiny_sd)
    for k, v in tiny_sd.items():
        want = v if k in ("image_mean", "image_std") else v.to(torch.bfloat16)
        assert got[k].dtype == want.dtype and torch.equal(got[k], want), k
    assert got["image_mean"].dtype == torch.float32
    assert os.path.getsize(out) < 0.6 * os.path.getsize(tmp_path / "src.pt")

    convert(tmp_path / "src.pt", tmp_path / "fp16.safetensors", dtype=torch.float16)
    assert load_file(tmp_path / "fp16.safetensors")["decoder.0.attn.qkv.weight"].dtype == torch.float16


def test_convert_refuses_existing_output_and_leaves_no_temp_files(tmp_path, tiny_sd, monkeypatch):
    torch.save(tiny_sd, tmp_path / "src.pt")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    with pytest.raises(WeightsError) as e:
        convert(tmp_path / "src.pt", out)
    assert "already exists" in one_line(e) and "--force" in str(e.value)
    assert out.read_bytes() == b"keep me"

    # A failure half-way through writing leaves the old output and no temporary file.
    import safetensors.torch

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        convert(tmp_path / "src.pt", out, overwrite=True)
    assert out.read_bytes() == b"keep me" and leftovers(tmp_path) == []
    with pytest.raises(OSError, match="disk full"):
        convert(tmp_path / "src.pt", tmp_path / "new.safetensors")
    assert not (tmp_path / "new.safetensors").exists() and leftovers(tmp_path) == []
    monkeypatch.undo()

    assert convert(tmp_path / "src.pt", out, overwrite=True) == "tiny"
    assert_same(dict(load_file(out)), tiny_sd)
    assert leftovers(tmp_path) == []


def test_convert_checks_before_writing(tmp_path, tiny_sd):
    torch.save(tiny_sd, tmp_path / "src.pt")
    with pytest.raises(WeightsError, match="must end in .safetensors"):
        convert(tmp_path / "src.pt", tmp_path / "out.pt")
    with pytest.raises(WeightsError, match="does not exist"):
        convert(tmp_path / "src.pt", tmp_path / "no" / "out.safetensors")
    with pytest.raises(WeightsError, match="unknown dtype"):
        convert(tmp_path / "src.pt", tmp_path / "out.safetensors", dtype="fp8")
    with pytest.raises(WeightsError, match="use the tiny preset"):
        convert(tmp_path / "src.pt", tmp_path / "out.safetensors", preset="pi3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.pt"]


# ----------------------------------------------------------------------------- model cards
def test_every_model_name_has_one_card_that_the_tables_follow():
    from loger3d.weights import MODEL_CARDS

    assert set(MODEL_CARDS) == set(weights.ALIASES) | set(weights.SHIPPED)
    for name, (repo, file, preset) in weights.ALIASES.items():
        card = MODEL_CARDS[name]
        assert card.hub == f"{repo}/{file}" and card.preset == preset and card.window > card.overlap >= 0
    assert MODEL_CARDS["pi3"].window == 32 and MODEL_CARDS["pi3"].align == "sim3"  # not the preset's one window
    assert weights.preset_card("pi3").window == 32
    assert weights.preset_card("tiny").window == loger3d.PRESETS["tiny"].default_window


def test_a_converted_model_keeps_its_card(tmp_path):
    from loger3d.weights import MODEL_CARDS, card_for

    out = tmp_path / "copy.safetensors"
    convert("tiny_synthetic", out, dtype="bf16")
    assert card_for(out) == MODEL_CARDS["tiny_synthetic"]
    again = tmp_path / "again.safetensors"
    convert(out, again)  # a converted file passes its card on
    assert card_for(again) == MODEL_CARDS["tiny_synthetic"]
    assert load_model(again).config.name == "tiny"


def test_a_card_from_another_version_is_read_or_ignored():
    from loger3d.weights import ModelCard

    card = ModelCard("x", "tiny", 8, 2, "se3", training_size=(224, 126))
    meta = card.to_metadata()
    assert ModelCard.from_metadata(meta) == card
    text = json.loads(meta["loger3d_card"])
    text["future_field"] = 1
    assert ModelCard.from_metadata({"loger3d_card": json.dumps(text)}) == card
    assert ModelCard.from_metadata({"loger3d_card": "{not json"}) is None
    assert ModelCard.from_metadata({"loger3d_card": json.dumps({**text, "preset": "huge"})}) is None
    assert ModelCard.from_metadata(None) is None
