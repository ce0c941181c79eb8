"""FP8 training: which LLM linears convert, emulated runs track plain ones, exports stay plain, clear refusals."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import nvila
from nvila.cli import main
from nvila.errors import ConfigError
from nvila.train.fp8 import check_fp8, convert_to_fp8
from nvila.train.recipe import load_recipe
from nvila.train.trainer import Trainer
from tests.train.test_trainer import losses

#: Largest relative loss difference emulated FP8 vs plain measured over 12 steps of this recipe, 4 seeds: 0.31%.
LOSS_REL_TOL = 0.02


def qualifying_linears(llm: nn.Module) -> int:
    """The LLM linears FP8 should convert, counted independently of `nvila.train.fp8`."""
    return sum(
        isinstance(m, nn.Linear) and not name.endswith("lm_head") and m.in_features % 16 == m.out_features % 16 == 0
        for name, m in llm.named_modules()
    )


def test_emulated_run_converts_llm_linears_tracks_plain_losses_and_exports_a_plain_model(make_recipe, tmp_path):
    pytest.importorskip("torchao.float8")
    from torchao.float8.float8_linear import Float8Linear

    assert main(["train", "--recipe", make_recipe("plain")]) == 0
    trainer = Trainer(load_recipe(make_recipe("emulated", fp8="emulate")))
    trainer.setup()
    try:
        trainer.train()
        trainer.save_model()
    finally:
        trainer.cleanup()

    exported, _ = nvila.load(tmp_path / "emulated" / "model")
    expected = qualifying_linears(exported.llm)
    assert expected > 0 and not any(isinstance(m, Float8Linear) for m in exported.modules())
    assert trainer.fp8_layers == expected
    assert sum(isinstance(m, Float8Linear) for m in trainer.model.llm.modules()) == expected
    assert not isinstance(trainer.model.llm.lm_head, Float8Linear)

    plain, emulated = losses(tmp_path / "plain"), losses(tmp_path / "emulated")
    assert list(emulated) == list(range(1, 7))
    for step, loss in emulated.items():
        assert loss == pytest.approx(plain[step], rel=LOSS_REL_TOL), step
    assert max(abs(emulated[s] - plain[s]) for s in plain) > 1e-4  # float8 casts did happen (plain reruns: ~1e-7)

    trained, loaded = trainer.model.state_dict(), exported.state_dict()
    assert trained.keys() == loaded.keys()
    for key, value in trained.items():
        assert torch.equal(loaded[key], value.to(torch.bfloat16).to(loaded[key].dtype)), key


def test_emulated_run_resumes_with_the_same_losses(make_recipe, tmp_path):
    pytest.importorskip("torchao.float8")
    full, part = make_recipe("full", fp8="emulate"), make_recipe("part", fp8="emulate")
    assert main(["train", "--recipe", full]) == 0
    assert main(["train", "--recipe", part, "stop_after=3"]) == 0
    assert main(["train", "--recipe", part, "--resume"]) == 0
    a, b = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert list(b) == list(range(1, 7))
    for step in range(1, 7):
        assert a[step] == pytest.approx(b[step], rel=1e-6), step


def test_convert_skips_lm_head_odd_sizes_and_linear_subclasses():
    pytest.importorskip("torchao.float8")
    from torchao.float8.float8_linear import Float8Linear

    class Adapter(nn.Linear):
        pass

    llm = nn.ModuleDict({
        "proj": nn.Linear(32, 48), "odd_out": nn.Linear(32, 24), "odd_in": nn.Linear(20, 32),
        "lm_head": nn.Linear(32, 64), "adapter": Adapter(32, 32),
    })  # fmt: skip
    weight = llm["proj"].weight
    assert convert_to_fp8(llm, "emulate") == 1
    assert isinstance(llm["proj"], Float8Linear) and llm["proj"].weight is weight  # the optimiser's parameter
    assert [type(llm[k]) for k in ("odd_out", "odd_in", "lm_head", "adapter")] == [nn.Linear] * 3 + [Adapter]
    x = torch.randn(8, 32)
    out = llm["proj"](x)
    reference = x @ weight.t() + llm["proj"].bias
    assert not torch.equal(out, reference)  # e4m3 casts: ~2 significant digits
    torch.testing.assert_close(out, reference, rtol=0.1, atol=0.1)


def test_float8_matmuls_accept_token_counts_that_are_not_multiples_of_16():
    """The real (not emulated) path's `torch._scaled_mm` shape checks also run on the meta device."""
    pytest.importorskip("torchao.float8")
    with torch.device("meta"):
        llm = nn.ModuleDict({"up": nn.Linear(32, 48), "down": nn.Linear(48, 32)})
    assert convert_to_fp8(llm, True) == 2
    x = torch.randn(3, 5, 32, device="meta", requires_grad=True)  # 15 tokens: the weight gradients' inner dim
    llm["down"](llm["up"](x)).sum().backward()
    assert llm["up"].weight.grad.shape == (48, 32) and x.grad.shape == x.shape


def test_fp8_true_off_a_recent_gpu_is_refused(make_recipe, monkeypatch):
    trainer = Trainer(load_recipe(make_recipe("cpu", fp8=True)))
    with pytest.raises(ConfigError, match="compute capability >= 8.9.*fp8: emulate"):
        trainer.setup()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    with pytest.raises(ConfigError, match="compute capability >= 8.9.*A100 has 8.0"):
        check_fp8(True, torch.device("cuda", 0))


def test_missing_torchao_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.float8", None)  # import fails
    with pytest.raises(ConfigError, match=r"needs torchao: pip install 'nvila\[fp8\]'"):
        check_fp8("emulate", torch.device("cpu"))
    check_fp8(False, torch.device("cpu"))  # nothing to check


@pytest.mark.parametrize("value", ["bogus", 1, "true"])
def test_fp8_value_is_validated(make_recipe, value):
    with pytest.raises(ConfigError, match="fp8: expected false, true or emulate"):
        load_recipe(make_recipe("bad", fp8=value))


def test_fp8_values_load(make_recipe):
    path = make_recipe("ok")
    assert [load_recipe(path, [f"fp8={v}"]).fp8 for v in ("emulate", "true", "false")] == ["emulate", True, False]
