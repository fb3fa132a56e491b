"""tsae_t_sae trains as its authors train it: loss, gradients, pair drawing and initialisation against a transcription
of their trainer.

The transcription below is taken line by line from AI4LIFE-GROUP/temporal-saes at commit
8daecb2ab39be81b7bc0f26ae62160f5fb38e822: dictionary_learning/dictionary_learning/trainers/temporal_sequence_top_k.py
(TemporalMatryoshkaBatchTopKSAE lines 37-93, TemporalMatryoshkaBatchTopKTrainer lines 129-405, geometric_median
lines 435-449) and dictionary_learning/dictionary_learning/trainers/trainer.py (set_decoder_norm_to_unit_norm lines
65-81, remove_gradient_parallel_to_decoder_directions lines 84-111), with train_temporal.py's settings (lines 177-196:
group_fractions = group_weights = [0.2, 0.8], temp_alpha 0.1, k 20) and --contrastive. Only what the loss of one
step needs is kept: logging, wandb, the optimiser and the scheduler are left out; `temporal` is "r" or "p".
"""

from __future__ import annotations

import einops
import pytest
import torch as t
import torch.nn as nn
import torch.nn.functional as F
from sae_lens.saes.sae import SAEMetadata

from custom_saes.t_sae import (
    REFERENCE_COEFFICIENTS,
    TSAE,
    TSAEConfig,
    TSAEOptions,
    TSAETrainingSettings,
    draw_pairs,
    train_t_sae,
)
from tests import helpers

D_IN = 16
D_SAE = 128  # high-level group: int(0.2 * 128) = 25 latents
HIGH = 25
K = 2
SCALE = 1.7

# --- their code (transcription) --------------------------------------------------------------------------------


@t.no_grad()
def set_decoder_norm_to_unit_norm(W_dec_DF, activation_dim, d_sae):  # trainer.py:65-81
    assert tuple(W_dec_DF.shape) == (activation_dim, d_sae)  # their: D, F = shape; assert D == ..., F == ...
    eps = t.finfo(W_dec_DF.dtype).eps
    norm = t.norm(W_dec_DF.data, dim=0, keepdim=True)
    W_dec_DF.data /= norm + eps
    return W_dec_DF.data


@t.no_grad()
def remove_gradient_parallel_to_decoder_directions(W_dec_DF, W_dec_DF_grad, activation_dim, d_sae):  # :84-111
    assert tuple(W_dec_DF.shape) == (activation_dim, d_sae)  # their: D, F = shape; assert D == ..., F == ...
    normed_W_dec_DF = W_dec_DF / (t.norm(W_dec_DF, dim=0, keepdim=True) + 1e-6)
    parallel_component = einops.einsum(W_dec_DF_grad, normed_W_dec_DF, "d_in d_sae, d_in d_sae -> d_sae")
    W_dec_DF_grad -= einops.einsum(parallel_component, normed_W_dec_DF, "d_sae, d_in d_sae -> d_in d_sae")
    return W_dec_DF_grad


class TheirSAE(nn.Module):  # TemporalMatryoshkaBatchTopKSAE, temporal_sequence_top_k.py:37-93
    def __init__(self, activation_dim, dict_size, k, group_sizes, temporal):
        super().__init__()
        self.activation_dim = activation_dim
        self.dict_size = dict_size
        self.register_buffer("k", t.tensor(k, dtype=t.int))
        self.register_buffer("threshold", t.tensor(-1.0, dtype=t.float32))
        self.active_groups = len(group_sizes)
        group_indices = [0] + list(t.cumsum(t.tensor(group_sizes), dim=0))
        self.group_indices = group_indices
        self.register_buffer("group_sizes", t.tensor(group_sizes))
        self.W_enc = nn.Parameter(t.empty(activation_dim, dict_size))
        self.b_enc = nn.Parameter(t.zeros(dict_size))
        self.W_dec = nn.Parameter(t.nn.init.kaiming_uniform_(t.empty(dict_size, activation_dim)))
        self.b_dec = nn.Parameter(t.zeros(activation_dim))
        self.W_dec.data = set_decoder_norm_to_unit_norm(self.W_dec.data.T, activation_dim, dict_size).T
        self.W_enc.data = self.W_dec.data.clone().T
        self.temporal = temporal

    def encode(self, x, return_active=False, use_threshold=True):  # :68-90
        post_relu_feat_acts_BF = nn.functional.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        if use_threshold:
            encoded_acts_BF = post_relu_feat_acts_BF * (post_relu_feat_acts_BF > self.threshold)
        else:
            flattened_acts = post_relu_feat_acts_BF.flatten()
            post_topk = flattened_acts.topk(self.k * x.size(0), sorted=False, dim=-1)
            encoded_acts_BF = (
                t.zeros_like(post_relu_feat_acts_BF.flatten())
                .scatter_(-1, post_topk.indices, post_topk.values)
                .reshape(post_relu_feat_acts_BF.shape)
            )
        max_act_index = self.group_indices[self.active_groups]
        encoded_acts_BF[:, max_act_index:] = 0
        if return_active:
            return encoded_acts_BF, encoded_acts_BF.sum(0) > 0, post_relu_feat_acts_BF
        return encoded_acts_BF


class TheirTrainer:  # TemporalMatryoshkaBatchTopKTrainer, :129-405 (loss-related parts)
    def __init__(self, ae, activation_dim, dict_size, group_fractions, group_weights, temp_alpha, auxk_alpha=1 / 32):
        self.ae = ae
        self.k = int(ae.k)
        self.temporal = True
        self.contrastive = True  # train_temporal.py --contrastive
        self.threshold_beta = 0.999
        self.threshold_start_step = 1000
        group_sizes = [int(f * dict_size) for f in group_fractions[:-1]]  # :176-178
        group_sizes.append(dict_size - sum(group_sizes))
        self.group_sizes = group_sizes
        self.group_weights = group_weights
        self.device = "cpu"
        self.auxk_alpha = auxk_alpha
        self.dead_feature_threshold = 10_000_000
        self.top_k_aux = activation_dim // 2
        self.temp_alpha = temp_alpha
        self.num_tokens_since_fired = t.zeros(dict_size, dtype=t.long)

    def get_auxiliary_loss(self, residual_BD, post_relu_acts_BF):  # :222-253
        dead_features = self.num_tokens_since_fired >= self.dead_feature_threshold
        self.dead_features = int(dead_features.sum())
        if self.dead_features > 0:
            k_aux = min(self.top_k_aux, self.dead_features)
            auxk_latents = t.where(dead_features[None], post_relu_acts_BF, -t.inf)
            auxk_acts, auxk_indices = auxk_latents.topk(k_aux, sorted=False)
            auxk_buffer_BF = t.zeros_like(post_relu_acts_BF)
            auxk_acts_BF = auxk_buffer_BF.scatter_(dim=-1, index=auxk_indices, src=auxk_acts)
            x_reconstruct_aux = auxk_acts_BF @ self.ae.W_dec
            l2_loss_aux = (residual_BD.float() - x_reconstruct_aux.float()).pow(2).sum(dim=-1).mean()
            residual_mu = residual_BD.mean(dim=0)[None, :].broadcast_to(residual_BD.shape)
            loss_denom = (residual_BD.float() - residual_mu.float()).pow(2).sum(dim=-1).mean()
            normalized_auxk_loss = l2_loss_aux / loss_denom
            return normalized_auxk_loss.nan_to_num(0.0)
        return t.tensor(0, dtype=residual_BD.dtype, device=residual_BD.device)

    def loss(self, x, step=None):  # :272-358, contrastive branch, returning the terms
        f, active_indices_F, post_relu_acts_BF = self.ae.encode(x[:, 0], return_active=True, use_threshold=False)
        f_temp, active_indices_F_temp, post_relu_acts_BF_temp = self.ae.encode(
            x[:, 1], return_active=True, use_threshold=False
        )
        x_reconstruct = t.zeros_like(x[:, 0]) + self.ae.b_dec
        total_l2_loss = 0.0
        l2_losses = t.tensor([]).to(self.device)
        W_dec_chunks = t.split(self.ae.W_dec, self.ae.group_sizes.tolist(), dim=0)
        f_chunks = t.split(f, self.ae.group_sizes.tolist(), dim=1)
        f_temp_chunks = t.split(f_temp, self.ae.group_sizes.tolist(), dim=1)
        W_dec_slice = W_dec_chunks[0]
        acts_slice = f_chunks[0]
        x_reconstruct = x_reconstruct + acts_slice @ W_dec_slice
        l2_loss = ((x[:, 0] - x_reconstruct).pow(2).sum(dim=-1) * self.group_weights[0]).mean()
        total_l2_loss += l2_loss
        l2_losses = t.cat([l2_losses, l2_loss.unsqueeze(0)])
        logits_per_curr_t = f_chunks[0] @ f_temp_chunks[0].T
        logits_per_cumsum_t = logits_per_curr_t.T
        labels = t.arange(logits_per_curr_t.shape[0], device=self.device, dtype=t.long)
        temp_loss = (F.cross_entropy(logits_per_curr_t, labels) + F.cross_entropy(logits_per_cumsum_t, labels)) / 2
        start = 1
        for i in range(start, self.ae.active_groups):
            W_dec_slice = W_dec_chunks[i]
            acts_slice = f_chunks[i]
            x_reconstruct = x_reconstruct + acts_slice @ W_dec_slice
            l2_loss = (x[:, 0] - x_reconstruct).pow(2).sum(dim=-1).mean() * self.group_weights[i]
            total_l2_loss += l2_loss
            l2_losses = t.cat([l2_losses, l2_loss.unsqueeze(0)])
        x = x[:, 0]
        mean_l2_loss = l2_losses.mean()
        num_tokens_in_step = x.size(0)
        did_fire = t.zeros_like(self.num_tokens_since_fired, dtype=t.bool)
        did_fire[active_indices_F] = True
        self.num_tokens_since_fired += num_tokens_in_step
        self.num_tokens_since_fired[did_fire] = 0
        auxk_loss = self.get_auxiliary_loss((x - x_reconstruct).detach(), post_relu_acts_BF)
        loss = mean_l2_loss + self.auxk_alpha * auxk_loss + self.temp_alpha * temp_loss
        return loss, {"l2": mean_l2_loss, "auxk": auxk_loss, "temp": temp_loss}

    def update(self, step, x):  # :378-393, up to the gradient projection (clipping and Adam are shared)
        if step == 0:
            median = self.geometric_median(x[:, 0])
            self.ae.b_dec.data = median
        loss, terms = self.loss(x, step=step)
        loss.backward()
        self.ae.W_dec.grad = remove_gradient_parallel_to_decoder_directions(
            self.ae.W_dec.T, self.ae.W_dec.grad.T, self.ae.activation_dim, self.ae.dict_size
        ).T
        return loss, terms

    @staticmethod
    def geometric_median(points, max_iter=100, tol=1e-5):  # :435-449
        guess = points.mean(dim=0)
        prev = t.zeros_like(guess)
        weights = t.ones(len(points), device=points.device)
        for _ in range(max_iter):
            prev = guess
            weights = 1 / t.norm(points - guess, dim=1)
            weights /= weights.sum()
            guess = (weights.unsqueeze(1) * points).sum(dim=0)
            if t.norm(guess - prev) < tol:
                break
        return guess


# --- helpers ---------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a second intra-op thread only adds waits (seconds per test on a busy machine)."""
    threads = t.get_num_threads()
    t.set_num_threads(1)
    yield
    t.set_num_threads(threads)


def _metadata() -> SAEMetadata:
    return SAEMetadata(hook_name=helpers.HOOK, model_name=helpers.TINY_MODEL_NAME)


def _sae(seed: int = 0, **settings) -> TSAE:
    t.manual_seed(seed)
    sae = TSAE(TSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, high_level_fraction=0.2, metadata=_metadata()))
    sae.training_settings = TSAETrainingSettings(seed=seed, **settings)
    with t.no_grad():
        sae.activation_scale.fill_(SCALE)
    return sae.train()


def _batch(seed: int, batch: int = 3, seq: int = 10) -> tuple[t.Tensor, t.Tensor]:
    x = t.randn(batch, seq, D_IN, generator=t.Generator().manual_seed(seed))
    mask = t.ones(batch, seq, dtype=t.bool)
    mask[:, 0] = False  # BOS
    return x, mask


def _theirs_from(sae: TSAE, temporal: str) -> TheirTrainer:
    ae = TheirSAE(D_IN, D_SAE, K, [HIGH, D_SAE - HIGH], temporal)
    with t.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(ae, name).copy_(getattr(sae, name))
    trainer = TheirTrainer(ae, D_IN, D_SAE, [0.2, 0.8], [0.2, 0.8], temp_alpha=0.1)
    trainer.num_tokens_since_fired = sae.tokens_since_fired.clone()
    return trainer


# --- loss and gradients ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("partner", "temporal"), [("random_earlier", "r"), ("previous", "p")])
def test_one_step_matches_the_authors_loss_and_gradients(partner, temporal):
    sae = _sae(seed=1, partner=partner)
    with t.no_grad():
        sae.tokens_since_fired[:] = 10_000_000  # every latent that does not fire in the step is dead: auxk > 0
    x, mask = _batch(seed=2)
    for step in range(2):  # step 0 also initialises b_dec to the geometric median
        theirs = _theirs_from(sae, temporal)
        sae.zero_grad()
        out = sae.training_forward(x, mask, {})
        draw = sae.last_pairs
        assert draw is not None and t.equal(draw.contrast, t.arange(len(draw.rows)))
        if partner == "previous":
            assert t.equal(draw.partners, draw.anchors - 1)
        else:
            assert (draw.partners < draw.anchors).all() and (draw.partners >= 1).all()
        pairs = t.stack([x[draw.rows, draw.anchors], x[draw.rows, draw.partners]], dim=1) * SCALE
        their_loss, terms = theirs.update(step, pairs)
        ours = out.losses
        t.testing.assert_close(sae.b_dec, theirs.ae.b_dec, rtol=1e-5, atol=1e-5)
        t.testing.assert_close(ours["mse_high"] + ours["mse"], terms["l2"], rtol=1e-5, atol=1e-5)
        t.testing.assert_close(ours["contrastive"], 0.1 * terms["temp"], rtol=1e-5, atol=1e-5)
        t.testing.assert_close(ours["auxk"], terms["auxk"] / 32, rtol=1e-5, atol=1e-5)
        assert terms["auxk"] > 0 and terms["temp"] > 0
        total = sum(ours.values())
        t.testing.assert_close(total, their_loss, rtol=1e-5, atol=1e-5)
        total.backward()
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            t.testing.assert_close(getattr(sae, name).grad, getattr(theirs.ae, name).grad, rtol=1e-4, atol=1e-5)
        t.testing.assert_close(sae.tokens_since_fired, theirs.num_tokens_since_fired)
        # The decoder gradient has no component along its rows (their remove_gradient_parallel...).
        along = (sae.W_dec.grad * sae.W_dec).sum(-1)
        assert along.abs().max() < 1e-5


# --- pairs: fresh every step, every position, reproducible -----------------------------------------------------


def _signal_counts(sae: TSAE, steps: int = 20, batch: int = 4, seq: int = 12) -> tuple[t.Tensor, list]:
    """How often each position was an anchor or a partner in the contrastive term over `steps` training steps."""
    counts = t.zeros(seq, dtype=t.long)
    draws = []
    for step in range(steps):
        x, mask = _batch(seed=100 + step, batch=batch, seq=seq)
        sae.training_forward(x, mask, {})
        draw = sae.last_pairs
        assert draw is not None
        draws.append((draw.anchors[draw.contrast].clone(), draw.partners.clone()))
        counts += t.bincount(draw.anchors[draw.contrast], minlength=seq) + t.bincount(draw.partners, minlength=seq)
    return counts, draws


@pytest.mark.parametrize("pairs_per_window", [None, 2])
def test_every_position_gets_a_contrastive_signal_within_20_steps(pairs_per_window):
    counts, draws = _signal_counts(_sae(seed=3, pairs_per_window=pairs_per_window))
    assert counts[0] == 0  # BOS never
    assert (counts[1:] > 0).all(), counts
    # Positions are drawn afresh each step: no two consecutive steps draw the same pairs.
    assert all(not t.equal(a[1], b[1]) or not t.equal(a[0], b[0]) for a, b in zip(draws, draws[1:], strict=False))


def test_reseeding_every_call_as_before_leaves_positions_without_signal():
    """What the fix is for: a generator seeded with 0 on every call draws the same positions at every step."""
    mask = _batch(seed=0, batch=4, seq=12)[1]
    counts = t.zeros(12, dtype=t.long)
    for _ in range(20):
        draw = draw_pairs(mask, "previous", t.Generator().manual_seed(0), pairs_per_window=2)
        counts += t.bincount(draw.anchors[draw.contrast], minlength=12) + t.bincount(draw.partners, minlength=12)
    assert (counts[1:] == 0).any()


@pytest.mark.parametrize("pairs_per_window", [None, 2])
def test_same_seed_draws_the_same_pairs_and_another_seed_others(pairs_per_window):
    first = _signal_counts(_sae(seed=5, pairs_per_window=pairs_per_window))[1]
    again = _signal_counts(_sae(seed=5, pairs_per_window=pairs_per_window))[1]
    other = _signal_counts(_sae(seed=6, pairs_per_window=pairs_per_window))[1]
    assert all(t.equal(a[0], b[0]) and t.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert any(not t.equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


def test_random_earlier_partners_cover_every_earlier_position():
    mask = t.ones(1, 6, dtype=t.bool)
    generator = t.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        draw = draw_pairs(mask, "random_earlier", generator)
        seen |= {(int(a), int(p)) for a, p in zip(draw.anchors, draw.partners, strict=True)}
    assert seen == {(a, p) for a in range(1, 6) for p in range(a)}


# --- initialisation --------------------------------------------------------------------------------------------


def test_initialisation_is_theirs():
    t.manual_seed(11)
    theirs = TheirSAE(D_IN, D_SAE, K, [HIGH, D_SAE - HIGH], "r")
    sae = _sae(seed=11)
    # Same random stream, same kaiming-uniform draw: the same unit-norm decoder, encoder its transpose, zero biases.
    t.testing.assert_close(sae.W_dec, theirs.W_dec, rtol=0, atol=1e-6)
    assert t.equal(sae.W_enc, sae.W_dec.T)
    t.testing.assert_close(sae.W_dec.norm(dim=-1), t.ones(D_SAE), rtol=0, atol=1e-6)
    assert not sae.b_enc.any() and not sae.b_dec.any()
    assert sae.cfg.n_high_level == HIGH and TSAEConfig(d_in=8, d_sae=16384).n_high_level == int(0.2 * 16384) == 3276
    # b_dec becomes the geometric median of the first batch's anchors (normalised units).
    x, mask = _batch(seed=12)
    sae.training_forward(x, mask, {})
    draw = sae.last_pairs
    assert draw is not None
    expected = TheirTrainer.geometric_median(x[draw.rows, draw.anchors] * SCALE)
    t.testing.assert_close(sae.b_dec.detach(), expected, rtol=1e-5, atol=1e-5)


class _Job:
    """Enough of custom_saes.training.registry.TrainingJob for the recipe to build its SAE; no training."""

    d_in, d_sae, k, seed, hook_name = D_IN, D_SAE, 32, 9, helpers.HOOK

    def metadata(self, **extra):
        return _metadata()

    def train_phased(self, sae, phases):
        self.phases = phases
        return sae


def test_recipe_defaults_are_the_authors():
    job = _Job()
    sae = train_t_sae(job, TSAEOptions())
    assert sae.cfg.k == 20 and sae.cfg.high_level_fraction == 0.2
    assert sae.training_settings == TSAETrainingSettings(seed=9)
    assert t.equal(sae.W_enc, sae.W_dec.T)
    (phase,) = job.phases
    assert (
        phase.coefficients(0.0)
        == REFERENCE_COEFFICIENTS
        == {
            "contrastive": 0.1,
            "temperature": 1.0,
            "auxk": 1 / 32,
            "high_level_weight": 0.2,
            "full_weight": 0.8,
        }
    )
    options = TSAEOptions(k=None, encoder_init_scale=0.1, similarity="cosine", input_scale="raw")
    scaled = train_t_sae(job, options)
    assert scaled.cfg.k == 32 and scaled.training_settings.similarity == "cosine"
    t.testing.assert_close(scaled.W_enc, 0.1 * scaled.W_dec.T)
    job.phases[0].on_start(scaled)
    assert scaled.activation_scale.item() == 1.0


def test_options_reproduce_our_earlier_contrastive_term():
    """cosine / one_sided / masked / previous / pairs_per_window=8 is the loss we had (adjacent_info_nce)."""
    from custom_saes.t_sae import adjacent_info_nce, pair_contrastive

    codes = t.rand(3, 10, 8)
    mask = _batch(seed=0)[1]
    old = adjacent_info_nce(codes, mask, temperature=0.1, generator=t.Generator().manual_seed(4))
    draw = draw_pairs(mask, "previous", t.Generator().manual_seed(4), pairs_per_window=8)
    anchors = codes[draw.owners, draw.anchors[draw.contrast]]
    new = pair_contrastive(
        anchors,
        codes[draw.owners, draw.partners],
        draw.owners,
        similarity="cosine",
        temperature=0.1,
        directions="one_sided",
        same_window_negatives="masked",
    )
    t.testing.assert_close(old, new)


def test_inference_threshold_estimates():
    """running_mean (default): the batch's smallest kept value from the first step. reference (theirs,
    update_threshold :255-270): untouched up to step 1000, then that value, then an EMA with beta 0.999."""
    x, mask = _batch(seed=13)
    ours = _sae(seed=13)
    ours.training_forward(x, mask, {})
    assert ours.threshold.item() > 0
    theirs = _sae(seed=13, threshold="reference")
    theirs.training_forward(x, mask, {})
    assert theirs.threshold.item() == 0.0
    theirs._state.steps = 1001
    theirs.training_forward(x, mask, {})
    first = theirs.threshold.item()
    assert first > 0
    theirs.training_forward(x * 3, mask, {})
    assert theirs.threshold.item() > first and theirs.threshold.item() < 1.01 * first
