"""Repeated encodes answered from memory (evals/saebench/encode_memo.py): the same tensors, never a stale one, and
SAE-Bench's SCR numbers bit-identical with and without it."""

from __future__ import annotations

import pytest
import torch

from tests import helpers
from tsae_evals.evals.saebench.encode_memo import memoized_encodes


@pytest.fixture
def sae():
    return helpers.tiny_sae(d_sae=64).eval()


def test_a_repeated_encode_is_answered_from_memory_and_equal(sae):
    x = torch.randn(4, 5, helpers.D_MODEL)
    with torch.no_grad():
        expected, expected_whole = sae.encode(x[:2]), sae.encode(x)
    with torch.no_grad(), memoized_encodes(sae) as memo:
        first, second, third = (sae.encode(x[:2]) for _ in range(3))
        assert memo.hits == 2
        for code in (first, second, third):
            assert torch.equal(code, expected)
        assert torch.equal(sae.encode(x), expected_whole) and memo.hits == 2  # another view: another batch


def test_changing_a_handed_out_code_in_place_never_reaches_the_memory(sae):
    x = torch.randn(3, 4, helpers.D_MODEL)
    with torch.no_grad(), memoized_encodes(sae) as memo:
        for _ in range(2):
            sae.encode(x)
        code = sae.encode(x)
        reference = code.clone()
        code[..., :10] = 0.0
        again = sae.encode(x)
        assert memo.hits == 3 and torch.equal(again, reference)


def test_a_code_still_held_is_never_refilled_and_a_dropped_one_is(sae):
    """Codes from memory are written into reused buffers: one the caller still holds (a view of it is enough)
    keeps its values through later hits, and a buffer is reused once the caller lets go."""
    x, y = torch.randn(3, 4, helpers.D_MODEL), torch.randn(3, 4, helpers.D_MODEL)
    with torch.no_grad():
        expected_x, expected_y = sae.encode(x), sae.encode(y)
    with torch.no_grad(), memoized_encodes(sae) as memo:
        sae.encode(x), sae.encode(y)
        held = sae.encode(x)[1:]  # only a view survives
        addresses = set()
        for _ in range(4):
            code = sae.encode(y)
            assert torch.equal(code, expected_y)
            addresses.add(code.data_ptr())
            del code
        assert torch.equal(held, expected_x[1:])
        assert memo.hits == 5 and len(addresses) == 1


def test_signed_zeros_and_nans_come_back_bit_for_bit():
    code = torch.zeros(2, 3, 40)
    code[0, 1, 3], code[1, 2, 7], code[0, 0, 0], code[1, 0, 39] = -0.0, float("nan"), 1.5, -2.0

    class Stub:
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return code.clone()

        def decode(self, f: torch.Tensor) -> torch.Tensor:
            return f.sum(-1)

    stub, x = Stub(), torch.randn(2, 3, 5)
    with memoized_encodes(stub) as memo:
        stub.encode(x)
        answered = stub.encode(x)
        assert memo.hits == 1
        assert torch.equal(answered.view(torch.int32), code.view(torch.int32))


def test_an_input_changed_in_place_is_encoded_again(sae):
    x = torch.randn(3, 4, helpers.D_MODEL)
    with torch.no_grad(), memoized_encodes(sae) as memo:
        for _ in range(3):
            sae.encode(x)
        x.mul_(2.0)
        changed = sae.encode(x)
        assert memo.hits == 2
    with torch.no_grad():
        assert torch.equal(changed, sae.encode(x))


def test_decode_of_an_unmodified_handed_out_code_is_remembered_and_a_modified_one_is_decoded(sae):
    x = torch.randn(3, 4, helpers.D_MODEL)
    with torch.no_grad():
        clean = sae.decode(sae.encode(x))
        code = sae.encode(x)
        code[..., :5] = 0.0
        ablated = sae.decode(code)
    with torch.no_grad(), memoized_encodes(sae) as memo:
        for _ in range(4):
            code = sae.encode(x)
            assert torch.equal(sae.decode(code), clean)
            code[..., :5] = 0.0
            assert torch.equal(sae.decode(code), ablated)
        assert memo.hits == 3 + 3  # encodes 2-4 and their clean decodes


def test_an_entry_goes_when_the_tensor_it_views_is_freed(sae):
    with torch.no_grad(), memoized_encodes(sae) as memo:
        base = torch.randn(6, 4, helpers.D_MODEL)
        for start in (0, 3):
            sae.encode(base[start : start + 3])  # fresh views, as SAE-Bench slices its batches
        assert memo.n_remembered == 2
        del base
        assert memo.n_remembered == 0
        other = torch.randn(3, 4, helpers.D_MODEL)
        sae.encode(other)
        assert memo.hits == 0 and memo.n_remembered == 1


def test_nothing_is_remembered_beyond_the_budget_and_the_methods_come_back(sae):
    x = torch.randn(3, 4, helpers.D_MODEL)
    with torch.no_grad(), memoized_encodes(sae, budget_bytes=0) as memo:
        for _ in range(3):
            sae.encode(x)
        assert memo.hits == 0
    assert "encode" not in vars(sae) and "decode" not in vars(sae)


def test_scr_numbers_are_bit_identical_with_and_without_the_memory(tmp_path, monkeypatch):
    """SAE-Bench's own SCR, twice on the same cached activations and probes: the memory changes no number."""
    from sae_bench.evals.scr_and_tpp import main as scr_main
    from sae_bench.sae_bench_utils import general_utils

    from tsae_evals.evals.saebench.adapter import contained
    from tsae_evals.evals.saebench.scr_and_tpp.config import ScrConfig
    from tsae_evals.evals.saebench.scr_and_tpp.eval import saebench_config, templated_bios

    model = helpers.tiny_model(n_ctx=80)
    _, sae, _ = general_utils.load_and_format_sae("custom", helpers.tiny_sae(d_sae=64), "cpu")
    pairs = [("professor", "nurse")]
    # several SAE batches per class, as at real sizes
    ours = ScrConfig(train_set_size=40, test_set_size=24, probe_epochs=2, sae_batch_size=5, profession_pairs=pairs)
    cfg = saebench_config(ours, 0, [2, 5, 10, 20], pairs, llm_batch_size=8, model_name=str(model.cfg.model_name))

    def scr_results(remember: bool):
        with contained("scr"), templated_bios(0, ours, []):
            if not remember:
                return scr_main.run_eval_single_sae(cfg, sae, model, "cpu", str(tmp_path))
            with memoized_encodes(sae) as memo:
                results = scr_main.run_eval_single_sae(cfg, sae, model, "cpu", str(tmp_path))
            assert memo.hits > 0
            return results

    without = scr_results(remember=False)
    with_memory = scr_results(remember=True)
    assert with_memory == without
    results, _ = without
    scores = [value for key, value in results.items() if key.startswith("scr_dir")]
    assert scores and all(isinstance(value, float) for value in scores), results
