"""T-SAE (Bhalla et al. 2025, arXiv 2511.05541): a Matryoshka BatchTopK SAE whose first `high_level_fraction` of
latents (the high-level, semantic part) is pulled together across tokens of the same sequence by a contrastive loss.

Training follows the authors' trainer (github.com/AI4LIFE-GROUP/temporal-saes at 8daecb2,
dictionary_learning/dictionary_learning/trainers/temporal_sequence_top_k.py, TemporalMatryoshkaBatchTopKTrainer,
run by train_temporal.py with its defaults and --contrastive). Every counted token that has an earlier counted token
in its window is an anchor (their buffer makes each token after the first an anchor once) and gets a partner, by
default a uniformly random earlier token of the same window (their buffer's default `temporal="r"`), drawn afresh
every step from a generator seeded once from the training seed. Anchors and partners are batch-top-k encoded
separately (k per row each). Loss = mean over the two Matryoshka levels of (weight x squared error of the level's
prefix reconstruction of the anchors) + auxk_alpha x the auxiliary dead-latent loss + temp_alpha x the symmetric
InfoNCE on raw dot products of the anchors' and partners' high-level codes, the other pairs of the batch being the
negatives. Decoder gradients lose their component along the decoder rows and rows are renormalised after each step;
W_enc starts as W_dec^T and b_dec as the geometric median of the first batch. Deliberate deviations are options of
the recipe (TSAEOptions).

Inference: the batch top-k becomes a fixed threshold (an estimate of the smallest kept activation), like sae-lens's
BatchTopK -> JumpReLU, so encoding is per token and flattened input means plain tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from sae_lens import register_sae_class
from torch import nn

from custom_saes.base import TrainingOutput, TsaeConfig, TsaeSAE, as_sequences, kaiming_decoder, loss_share
from custom_saes.training.registry import TrainingJob, register_training_architecture

ARCHITECTURE = "tsae_t_sae"

Partner = Literal["random_earlier", "previous"]
Similarity = Literal["reference", "cosine"]
Directions = Literal["symmetric", "one_sided"]
SameWindowNegatives = Literal["kept", "masked"]
ThresholdEstimate = Literal["running_mean", "reference"]

REFERENCE_COEFFICIENTS: dict[str, float] = {
    "contrastive": 0.1,  # temp_alpha (train_temporal.py --temp_alpha default 0.1)
    "temperature": 1.0,  # none in theirs: logits are raw dot products
    "auxk": 1 / 32,  # auxk_alpha
    "high_level_weight": 0.2,  # group_weights[0]
    "full_weight": 0.8,  # group_weights[1]
}
"""The loss weights of the authors' published recipe; `coefficients` passed to training_forward override them."""

REFERENCE_THRESHOLD_START_STEP = 1000
"""Their threshold_start_step: the inference threshold is first estimated after this many steps."""
REFERENCE_THRESHOLD_BETA = 0.999
"""Their threshold_beta: EMA factor of the inference threshold."""
PAIR_SEED_OFFSET = 0x75AE
"""Added to the training seed for the pair generator, so its stream is not the data order's (same seed)."""


@dataclass
class TSAEConfig(TsaeConfig):
    """Matryoshka split and sparsity of a T-SAE."""

    k: float = 20.0
    """Mean active latents per token during training (batch top-k); the authors' 20."""
    high_level_fraction: float = 0.2
    """Leading share of latents that form the high-level (contrastive) group."""

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    @property
    def n_high_level(self) -> int:
        """Size of the high-level group, rounded down as the authors' `int(f * dict_size)`."""
        return max(1, int(self.d_sae * self.high_level_fraction))


@dataclass
class TSAETrainingSettings:
    """The non-numeric training choices of a T-SAE (the numeric weights come as `coefficients`); defaults: theirs."""

    partner: Partner = "random_earlier"
    """Positive of an anchor: a uniformly random earlier counted token of its window, or the previous one."""
    similarity: Similarity = "reference"
    """Contrastive logits from raw dot products of high-level codes (reference) or their cosines."""
    directions: Directions = "symmetric"
    """Cross-entropy over anchors->partners and partners->anchors averaged (reference), or anchors->partners only."""
    same_window_negatives: SameWindowNegatives = "kept"
    """Whether other pairs of the same window stay negatives (reference) or are masked out."""
    pairs_per_window: int | None = None
    """None: every anchor enters the contrastive term (reference); n: n anchors per window drawn afresh each step."""
    b_dec_init: Literal["geometric_median", "zero"] = "geometric_median"
    """b_dec at the first step: the geometric median of that batch's anchors (reference), or left at zero."""
    threshold: ThresholdEstimate = "running_mean"
    """Inference-threshold estimate: running mean then EMA from step 1, or theirs (from step 1000, EMA 0.999)."""
    dead_after_tokens: int = 10_000_000
    """Anchors seen without firing after which a latent counts as dead for the auxk loss (theirs: 10M)."""
    seed: int = 0
    """Seeds the generator of the contrastive pairs once; each step then draws fresh pairs."""


@dataclass
class PairDraw:
    """One step's anchors and contrastive pairs, as CPU index tensors into `[batch, seq]`."""

    rows: torch.Tensor
    """Window of each anchor `[n_anchors]`."""
    anchors: torch.Tensor
    """Position of each anchor `[n_anchors]` (all counted positions with an earlier counted one, row-major)."""
    contrast: torch.Tensor
    """Indices into the anchors of those in the contrastive term `[n_pairs]`."""
    partners: torch.Tensor
    """Position of each contrasted anchor's partner in the same window `[n_pairs]`."""

    @property
    def owners(self) -> torch.Tensor:
        """Window of each contrastive pair."""
        return self.rows[self.contrast]


@dataclass
class _TrainingState:
    steps: int = 0
    threshold_updates: int = 0
    generator: torch.Generator | None = None
    last_pairs: PairDraw | None = None
    tokens_since_fired: torch.Tensor | None = None
    """Anchors seen since each latent last fired (theirs: num_tokens_since_fired); training state, not saved."""


class TSAE(TsaeSAE[TSAEConfig]):
    mechanism: ClassVar[str] = "contrastive term / total training loss"
    b_enc: nn.Parameter
    threshold: torch.Tensor

    def initialize_parameters(self) -> None:
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        # Theirs (TemporalMatryoshkaBatchTopKSAE.__init__): kaiming-uniform decoder rows scaled to unit norm,
        # W_enc = W_dec^T (full scale), zero biases; b_dec is set to the geometric median at the first step.
        decoder = kaiming_decoder(d_sae, d_in, self.dtype, self.device)
        self.W_dec = nn.Parameter(decoder)
        self.W_enc = nn.Parameter(decoder.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=self.dtype, device=self.device))
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=self.dtype, device=self.device))
        self.register_buffer("threshold", torch.zeros((), dtype=self.dtype, device=self.device))
        self.training_settings = TSAETrainingSettings()
        self._state = _TrainingState()

    @property
    def tokens_since_fired(self) -> torch.Tensor:
        """Anchors seen since each latent last fired `[d_sae]` (the auxk loss's dead-latent count; not saved)."""
        if self._state.tokens_since_fired is None:
            self._state.tokens_since_fired = torch.zeros(self.cfg.d_sae, dtype=torch.long, device=self.W_dec.device)
        return self._state.tokens_since_fired

    @tokens_since_fired.setter
    def tokens_since_fired(self, value: torch.Tensor) -> None:
        self._state.tokens_since_fired = value

    @property
    def last_pairs(self) -> PairDraw | None:
        """The anchors and pairs of the latest training step (None before the first)."""
        return self._state.last_pairs

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_sae_acts_pre(torch.relu(self.scale_input(x) @ self.W_enc + self.b_enc))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        return self.hook_sae_acts_post(pre * (pre > self.threshold))

    def decode_high_level(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction from the high-level prefix alone (the inner Matryoshka level)."""
        h = self.cfg.n_high_level
        return self.unscale_output(feature_acts[..., :h] @ self.W_dec[:h] + self.b_dec)

    def pair_generator(self) -> torch.Generator:
        """CPU generator of the contrastive pairs, seeded once from `training_settings.seed` on first use."""
        if self._state.generator is None:
            self._state.generator = torch.Generator().manual_seed(self.training_settings.seed + PAIR_SEED_OFFSET)
        return self._state.generator

    def training_forward(self, x: torch.Tensor, mask: torch.Tensor, coefficients: dict[str, float]) -> TrainingOutput:
        sequences, _ = as_sequences(x, self.flat_input)
        settings, state = self.training_settings, self._state
        c = {**REFERENCE_COEFFICIENTS, **coefficients}
        draw = draw_pairs(mask, settings.partner, self.pair_generator(), settings.pairs_per_window)
        state.last_pairs = draw
        device = sequences.device
        rows, anchors = draw.rows.to(device), draw.anchors.to(device)
        contrast, partners = draw.contrast.to(device), draw.partners.to(device)
        x_anchor = sequences[rows, anchors]
        x_partner = sequences[rows[contrast], partners]
        scale = self.activation_scale
        target = x_anchor.to(self.dtype) * scale  # normalised units, the space the SAE works in

        if state.steps == 0 and settings.b_dec_init == "geometric_median" and len(target):
            with torch.no_grad():
                self.b_dec.copy_(geometric_median(target.detach()))

        w_dec = _TangentDecoderGradient.apply(self.W_dec)  # theirs: remove_gradient_parallel_to_decoder_directions
        post = self.pre_activations(x_anchor)
        codes = rows_batch_top_k(post, self.cfg.k)
        partner_codes = rows_batch_top_k(self.pre_activations(x_partner), self.cfg.k)
        self._update_threshold(codes)

        h = self.cfg.n_high_level
        reconstruction = torch.zeros_like(target) + self.b_dec
        reconstruction = reconstruction + codes[:, :h] @ w_dec[:h]
        high_error = ((target - reconstruction).pow(2).sum(dim=-1) * c["high_level_weight"]).mean()
        reconstruction = reconstruction + codes[:, h:] @ w_dec[h:]
        full_error = (target - reconstruction).pow(2).sum(dim=-1).mean() * c["full_weight"]

        contrastive = pair_contrastive(
            codes[contrast, :h],
            partner_codes[:, :h],
            draw.owners.to(device),
            similarity=settings.similarity,
            temperature=c["temperature"],
            directions=settings.directions,
            same_window_negatives=settings.same_window_negatives,
        )

        with torch.no_grad():
            since_fired = self.tokens_since_fired.to(codes.device)
            since_fired += len(target)
            since_fired[codes.sum(0) > 0] = 0
            state.tokens_since_fired = since_fired
            dead = since_fired >= settings.dead_after_tokens
        auxk = auxiliary_loss((target - reconstruction).detach(), post, w_dec, dead, top_k_aux=self.cfg.d_in // 2)

        losses = {
            # Their l2_losses.mean(): the two weighted level terms averaged.
            "mse_high": high_error / 2,
            "mse": full_error / 2,
            "auxk": c["auxk"] * auxk,
            "contrastive": c["contrastive"] * contrastive,
        }
        feature_acts, full_reconstruction = self._progress_view(sequences, mask, draw, codes, reconstruction)
        state.steps += 1
        metrics = {
            "threshold": float(self.threshold),
            "dead": float(dead.sum()),
            "mechanism_share": loss_share(losses, "contrastive"),
        }
        return TrainingOutput(losses, feature_acts, full_reconstruction, metrics)

    @torch.no_grad()
    def _progress_view(
        self,
        sequences: torch.Tensor,
        mask: torch.Tensor,
        draw: PairDraw,
        codes: torch.Tensor,
        anchor_recon: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and reconstruction `[batch, seq, ...]` for the progress line: the anchors' own; counted positions
        that are not anchors (a window's first token) encoded with this batch's smallest kept value as threshold."""
        device = codes.device
        rows, anchors = draw.rows.to(device), draw.anchors.to(device)
        feature_acts = codes.new_zeros((*sequences.shape[:2], codes.shape[-1]))
        normalised = self.b_dec.detach().expand(*sequences.shape[:2], -1).clone()
        feature_acts[rows, anchors] = codes.detach()
        normalised[rows, anchors] = anchor_recon.detach()
        others = mask.to(device=device, dtype=torch.bool).clone()
        others[rows, anchors] = False
        if others.any():
            kept = codes[codes > 0]
            cut = kept.min() if kept.numel() else codes.new_tensor(float("inf"))
            pre = self.pre_activations(sequences[others])
            feature_acts[others] = pre * (pre >= cut)
            normalised[others] = feature_acts[others] @ self.W_dec + self.b_dec
        return feature_acts, self.unscale_output(normalised)

    @torch.no_grad()
    def _update_threshold(self, codes: torch.Tensor, rate: float = 0.01) -> None:
        """Track the batch's smallest kept activation: the threshold that reproduces batch top-k on that batch.

        running_mean: a plain running mean for the first 1/rate updates, an exponential average after (an EMA from
        the first value lags for hundreds of steps, and short runs would then encode at several times k).
        reference: theirs (update_threshold): nothing for the first 1000 steps, then the first value and an EMA
        with beta 0.999 (a run shorter than 1000 steps keeps threshold 0: every positive pre-activation passes)."""
        state = self._state
        positive = codes[codes > 0]
        if self.training_settings.threshold == "reference":
            if state.steps <= REFERENCE_THRESHOLD_START_STEP:
                return
            smallest = positive.min().float() if positive.numel() else codes.new_zeros((), dtype=torch.float32)
            weight = 1.0 if state.threshold_updates == 0 else 1 - REFERENCE_THRESHOLD_BETA
        else:
            if not positive.numel():
                return
            smallest = positive.min()
            weight = max(rate, 1.0 / (state.threshold_updates + 1))
        state.threshold_updates += 1
        self.threshold.mul_(1 - weight).add_(weight * smallest.to(self.threshold.dtype))


class _TangentDecoderGradient(torch.autograd.Function):
    """Identity on W_dec `[d_sae, d_in]` whose backward removes each row's gradient component along that row
    (theirs: remove_gradient_parallel_to_decoder_directions, applied before clipping and the Adam step)."""

    @staticmethod
    def forward(ctx: Any, w_dec: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w_dec)
        return w_dec.view_as(w_dec)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (w_dec,) = ctx.saved_tensors
        normed = w_dec / (w_dec.norm(dim=-1, keepdim=True) + 1e-6)
        return grad - (grad * normed).sum(dim=-1, keepdim=True) * normed


def batch_top_k(pre: torch.Tensor, mask: torch.Tensor, k: float) -> torch.Tensor:
    """Keep the k * n_counted largest activations among counted positions of the batch; zero everything else."""
    counted = pre * mask[..., None]
    flat = counted.flatten()
    keep = min(flat.numel(), int(k * int(mask.sum())))
    top = torch.topk(flat, keep)
    return torch.zeros_like(flat).scatter(0, top.indices, top.values).reshape(pre.shape)


def rows_batch_top_k(acts: torch.Tensor, k: float) -> torch.Tensor:
    """Batch top-k over rows `[n, d_sae]`: the k * n largest values of the batch, everything else zero."""
    return batch_top_k(acts[None], torch.ones(1, acts.shape[0], dtype=torch.bool, device=acts.device), k)[0]


def geometric_median(points: torch.Tensor, max_iter: int = 100, tol: float = 1e-5) -> torch.Tensor:
    """Weiszfeld iterations from the mean (theirs: TemporalMatryoshkaBatchTopKTrainer.geometric_median)."""
    guess = points.mean(dim=0)
    for _ in range(max_iter):
        previous = guess
        weights = 1 / torch.norm(points - guess, dim=1)
        weights = weights / weights.sum()
        guess = (weights.unsqueeze(1) * points).sum(dim=0)
        if torch.norm(guess - previous) < tol:
            break
    return guess


def draw_pairs(
    mask: torch.Tensor, partner: Partner, generator: torch.Generator, pairs_per_window: int | None = None
) -> PairDraw:
    """Anchors (every counted position with an earlier counted position in its window) and their partners.

    random_earlier: a uniformly random earlier counted position of the same window, one draw per anchor (their
    buffer's temporal="r", which draws one offset per position shared by a refresh batch's rows; here per anchor).
    previous: the counted position just before. `pairs_per_window` n: only n anchors per window, drawn without
    replacement, enter the contrastive term. Draws run on the CPU so that every device trains on the same pairs."""
    counted = mask.detach().to("cpu", torch.bool)
    if counted.dim() == 1:
        counted = counted[None]
    rank = counted.long().cumsum(dim=1) - 1
    rows, anchors = (counted & (rank >= 1)).nonzero(as_tuple=True)
    if pairs_per_window is None:
        contrast = torch.arange(len(rows))
    else:
        chosen = []
        for row in range(counted.shape[0]):
            in_row = (rows == row).nonzero().flatten()
            chosen.append(in_row[torch.randperm(len(in_row), generator=generator)[:pairs_per_window]])
        contrast = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)
    anchor_rank = rank[rows[contrast], anchors[contrast]]
    if partner == "previous":
        partner_rank = anchor_rank - 1
    else:
        uniform = torch.rand(len(contrast), generator=generator, dtype=torch.float64)
        partner_rank = torch.minimum((uniform * anchor_rank).long(), anchor_rank - 1)
    position_of_rank = torch.full(counted.shape, -1, dtype=torch.long)
    counted_rows, counted_positions = counted.nonzero(as_tuple=True)
    position_of_rank[counted_rows, rank[counted_rows, counted_positions]] = counted_positions
    partners = position_of_rank[rows[contrast], partner_rank]
    return PairDraw(rows, anchors, contrast, partners)


def pair_contrastive(
    anchor: torch.Tensor,
    partner: torch.Tensor,
    owners: torch.Tensor,
    *,
    similarity: Similarity = "reference",
    temperature: float = 1.0,
    directions: Directions = "symmetric",
    same_window_negatives: SameWindowNegatives = "kept",
) -> torch.Tensor:
    """InfoNCE over `n` pairs: row i's positive is partner i, the other partners are its negatives.

    Reference (theirs, TemporalMatryoshkaBatchTopKTrainer.loss with contrastive=True): logits = anchor @ partner.T
    and the mean of the cross-entropies of logits and logits.T with labels arange(n)."""
    if anchor.shape[0] == 0:
        return anchor.new_zeros(())
    if similarity == "cosine":
        anchor = F.normalize(anchor, dim=-1, eps=1e-6)
        partner = F.normalize(partner, dim=-1, eps=1e-6)
    logits = anchor @ partner.T
    if temperature != 1.0:
        logits = logits / temperature
    if same_window_negatives == "masked":
        same_window = owners[:, None] == owners[None, :]
        diagonal = torch.eye(len(owners), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_window & ~diagonal, float("-inf"))
    labels = torch.arange(logits.shape[0], device=logits.device)
    if directions == "one_sided":
        return F.cross_entropy(logits, labels)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def auxiliary_loss(
    residual: torch.Tensor, post_relu: torch.Tensor, w_dec: torch.Tensor, dead: torch.Tensor, top_k_aux: int
) -> torch.Tensor:
    """The auxk loss (theirs: get_auxiliary_loss, after OpenAI's): the top `top_k_aux` dead latents of each anchor
    reconstruct the detached residual without bias, normalised by the residual's variance; 0 with no dead latent."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return residual.new_zeros(())
    k_aux = min(top_k_aux, n_dead)
    auxk_latents = torch.where(dead[None], post_relu, -torch.inf)
    auxk_acts, auxk_indices = auxk_latents.topk(k_aux, sorted=False)
    auxk_acts_full = torch.zeros_like(post_relu).scatter(-1, auxk_indices, auxk_acts)
    reconstruction_aux = auxk_acts_full @ w_dec
    l2_aux = (residual.float() - reconstruction_aux.float()).pow(2).sum(dim=-1).mean()
    residual_mu = residual.mean(dim=0)[None, :].broadcast_to(residual.shape)
    denominator = (residual.float() - residual_mu.float()).pow(2).sum(dim=-1).mean()
    return (l2_aux / denominator).nan_to_num(0.0)


def adjacent_info_nce(
    codes: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    pairs_per_sequence: int = 8,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Our earlier contrastive term on one code tensor `[batch, seq, h]`: InfoNCE on cosine similarity, anchor = code
    at t (`pairs_per_sequence` per sequence), positive = code at t-1, negatives = the t-1 codes of the other
    sequences. Pass one `generator` across steps: a fresh one seeded with `seed` draws the same positions each call."""
    draw = draw_pairs(mask, "previous", generator or torch.Generator().manual_seed(seed), pairs_per_sequence)
    rows = draw.owners.to(codes.device)
    anchor = codes[rows, draw.anchors[draw.contrast].to(codes.device)]
    partner = codes[rows, draw.partners.to(codes.device)]
    return pair_contrastive(
        anchor,
        partner,
        rows,
        similarity="cosine",
        temperature=temperature,
        directions="one_sided",
        same_window_negatives="masked",
    )


class TSAEOptions(BaseModel):
    """Training settings of the T-SAE (set with --set name=value); defaults are the authors' recipe."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    high_level_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of latents in the high-level group (their group_fractions [0.2, 0.8], rounded down as theirs)."""
    k: int | None = Field(default=20, gt=0)
    """Mean active latents per token in training (their --k default 20); null: take --k."""
    contrastive_coefficient: float = Field(default=REFERENCE_COEFFICIENTS["contrastive"], ge=0)
    """Weight of the contrastive term (their temp_alpha 0.1; ours was 1.0)."""
    temperature: float = Field(default=REFERENCE_COEFFICIENTS["temperature"], gt=0)
    """Contrastive logits are divided by this (theirs: 1, none; ours was 0.1 on cosines)."""
    similarity: Similarity = "reference"
    """Contrastive logits: raw dot products of high-level codes (reference) or cosine similarities (ours before)."""
    directions: Directions = "symmetric"
    """Symmetric InfoNCE, both cross-entropy directions averaged (reference), or anchor-to-partner only (ours before)."""
    partner: Partner = "random_earlier"
    """Positive of the token at t: a random earlier token of its window (their default temporal='r') or t-1 ('p', the paper's wording)."""
    same_window_negatives: SameWindowNegatives = "kept"
    """Pairs of the same window stay negatives (reference; their batches draw pairs from ~1000 documents, ours from a few windows) or are masked out (ours before)."""
    pairs_per_window: int | None = Field(default=None, gt=0)
    """null: every anchor is in the contrastive term (reference); n: n anchors per window, fresh each step (ours before: 8)."""
    high_level_weight: float = Field(default=REFERENCE_COEFFICIENTS["high_level_weight"], ge=0)
    """Weight of the high-level prefix's squared error (their group_weights[0]); the two weighted terms are averaged."""
    full_weight: float = Field(default=REFERENCE_COEFFICIENTS["full_weight"], ge=0)
    """Weight of the full reconstruction's squared error (their group_weights[1]; ours before: both 2 under the average)."""
    auxk_coefficient: float = Field(default=REFERENCE_COEFFICIENTS["auxk"], ge=0)
    """Weight of the auxiliary dead-latent loss (their auxk_alpha 1/32; ours had none)."""
    dead_after_tokens: int = Field(default=10_000_000, gt=0)
    """Anchors seen without firing after which a latent is dead for the auxk loss (their dead_feature_threshold)."""
    encoder_init_scale: float = Field(default=1.0, gt=0)
    """W_enc starts as this x W_dec^T (theirs 1; the other tsae_ SAEs and ours before 0.1)."""
    b_dec_init: Literal["geometric_median", "zero"] = "geometric_median"
    """b_dec at the first step: geometric median of the first batch (theirs) or zero (ours before)."""
    threshold: ThresholdEstimate = "running_mean"
    """Inference threshold: running mean from step 1 (ours; theirs starts at step 1000, so shorter runs would keep every positive latent) or theirs."""
    input_scale: Literal["normalised", "raw"] = "normalised"
    """normalised: inputs scaled to E|x| = sqrt(d_in) like every tsae_ SAE; raw: unscaled activations, as theirs."""


@register_training_architecture(ARCHITECTURE, options=TSAEOptions)
def train_t_sae(job: TrainingJob, options: TSAEOptions) -> TSAE:
    """Matryoshka BatchTopK + contrastive loss between tokens of a window on the high-level latents (authors' recipe)."""
    from custom_saes.training.loop import Phase, constant

    sae = TSAE(
        TSAEConfig(
            d_in=job.d_in,
            d_sae=job.d_sae,
            k=float(options.k if options.k is not None else job.k),
            high_level_fraction=options.high_level_fraction,
            metadata=job.metadata(),
        )
    )
    if options.encoder_init_scale != 1.0:
        with torch.no_grad():
            sae.W_enc.mul_(options.encoder_init_scale)
    sae.training_settings = TSAETrainingSettings(
        partner=options.partner,
        similarity=options.similarity,
        directions=options.directions,
        same_window_negatives=options.same_window_negatives,
        pairs_per_window=options.pairs_per_window,
        b_dec_init=options.b_dec_init,
        threshold=options.threshold,
        dead_after_tokens=options.dead_after_tokens,
        seed=job.seed,
    )
    coefficients = constant(
        contrastive=options.contrastive_coefficient,
        temperature=options.temperature,
        auxk=options.auxk_coefficient,
        high_level_weight=options.high_level_weight,
        full_weight=options.full_weight,
    )
    # The loop sets the input scale before the phase starts; raw input undoes it.
    on_start = (lambda model: model.activation_scale.fill_(1.0)) if options.input_scale == "raw" else None
    return job.train_phased(sae, [Phase("train", 1.0, coefficients, on_start=on_start)])


register_sae_class(ARCHITECTURE, TSAE, TSAEConfig)
