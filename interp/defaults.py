"""Default settings shared by the library's signatures, the experiment configs and the command line.

One source for every default that more than one layer states, so the CLI's ``--help`` shows what
the function does when called without the flag. Torch-free: the command line reads it at start-up.
"""

from typing import Final

CACHE_BATCH_SIZE = 16  # prompts per forward pass when caching activations

# ---- models ------------------------------------------------------------------------------------
MODEL = "organism"  # the model a command runs when none is named: the bundled organism

# ---- logit lens (interp.lens.logit_lens, LensResult.figure; interp lens) -------------------------
LENS_SITES = ("resid_pre", "resid_post")  # residual sites decoded
LENS_POSITIONS: Final = "last"  # token positions read
LENS_TOP_K = 5  # top tokens kept per cell
LENS_METRICS = ("prob", "logprob", "rank", "kl")  # what a lens figure can show (interp.lens.Metric)
LENS_METRIC: Final = "prob"  # what the figure shows

# ---- direct logit attribution (interp.mechanisms.dla.direct_logit_attribution, DLAResult.top; interp dla) ---
DLA_POSITIONS: Final = "last"  # token positions attributed
DLA_TOP_K = 10  # heads / components listed by DLAResult.top and `interp dla`

# ---- tuned lens (interp.lens: generate_texts, train_tuned_lens, lens_kl; interp lens train) --
TUNED_LENS_PROMPTS = "assets/prompts/lens_prompts.jsonl"  # prompts the model continues to make its training text
TUNED_LENS_NEW_TOKENS = 64  # tokens generated per prompt
TUNED_LENS_TEMPERATURE = 0.8  # sampling temperature of the generated text (0: greedy)
TUNED_LENS_TOP_P = 0.95  # nucleus sampling threshold of the generated text
TUNED_LENS_GENERATE_BATCH_SIZE = 64  # prompts generated at once (a step costs little more for more rows)
TUNED_LENS_INITS = ("least_squares", "identity")  # where training starts (interp.lens.Init)
TUNED_LENS_INIT: Final = "least_squares"  # closed-form weighted least-squares fit, then Adam on the KL
TUNED_LENS_RIDGE = 1e-3  # least-squares ridge towards the identity, relative to the mean input variance
TUNED_LENS_STEPS = 30  # Adam steps on the KL
TUNED_LENS_LR = 2e-4  # Adam learning rate
TUNED_LENS_BATCH_TOKENS = 32  # tokens per Adam step (each decoded at every layer through the whole unembedding)
TUNED_LENS_SEED = 0  # seed of the generated text and of the Adam batches
TUNED_LENS_HELDOUT = 0.2  # fraction of texts held out for the evaluation when the prompts carry no "split"

# ---- patching (interp.patching: activation_patching, attribution_patching; interp patch) ---------
PATCH_SITE = "resid_pre"  # the site patched
PATCH_DIRECTIONS = ("denoising", "noising")  # clean into the corrupt run / corrupt into the clean run
PATCH_DIRECTION: Final = "denoising"  # which run is patched from which
PATCH_BY_POSITION = True  # one cell per position (False: each cell patches every position)
PATCH_MEMORY_BUDGET_BYTES = 1 << 30  # the default rows per forward (cells x prompts) fit in this much

# ---- probes (interp.probes.train_probes, ProbeResult.evaluate; interp probe) ---------------------
LABEL_FIELD = "label"  # the prompt record field holding the class label
PROBE_LAYERS = "all"  # every cached resid_post, after the embeddings if cached
PROBE_CV = 5  # stratified cross-validation folds
PROBE_HOLDOUT = 0.2  # held-out fraction, stratified (0: none)
PROBE_C = 1.0  # inverse L2 strength, as scikit-learn's C
PROBE_SEED = 0  # seed of the folds and the held-out split
PROBE_MAX_ITER = 500  # L-BFGS iterations at most

# ---- chain-of-thought resampling (interp.resampling: SamplingConfig, VLLMBackend, analyze) -------
RESAMPLE_N = 50  # rollouts per prefix (the paper uses 100)
RESAMPLE_TEMPERATURE = 0.6  # sampling temperature (paper: 0.6)
RESAMPLE_TOP_P = 0.95  # nucleus sampling threshold (paper: 0.95)
RESAMPLE_MAX_NEW_TOKENS = 1024  # tokens per rollout
RESAMPLE_SEED = 0  # base seed; each prefix derives its own
RESAMPLE_FORCED_MAX_NEW_TOKENS = 16  # tokens per forced-answer rollout
VLLM_TENSOR_PARALLEL_SIZE = 1  # GPUs the vLLM backend shards the model over
EMBEDDER = "all-MiniLM-L6-v2"  # sentence-transformers model of the similarity filter
SIMILARITY_THRESHOLD = 0.8  # counterfactual filter: cosine below which a resampled sentence counts as different
MATCH_THRESHOLD = 0.7  # sentence-to-sentence matrix: cosine at which a rollout sentence counts as a base sentence

# ---- demo (interp.demo.run_demo; interp demo) ---------------------------------------------------
DEMO_OUT = "out/demo"  # the report's directory

# ---- harm pruning (interp.pruning: importance_scores, PruningEvaluator, run_sweep; interp prune, interp run) -
PRUNE_METHODS = ("snip", "signed_snip", "wanda")  # importance scores (interp.pruning.scores)
PRUNE_METHOD = "signed_snip"  # the score of the set difference (Orgad et al. 2026)
PRUNE_BATCH_SIZE = 8  # examples per forward/backward pass when scoring (the scores do not depend on it)
PRUNE_CPU_PASS_ELEMENTS = (
    512 * 3072
)  # on the CPU, a gradient pass holds at most this many tokens x widest linear output
# (512 tokens of GPT-2-small's MLP): larger passes leave the cache and re-fault their memory (measured in
# bench/pruning.py)
PRUNE_N_SAMPLES = 128  # examples per score in an experiment (the reference uses 128)
PRUNE_P = 0.01  # benign fraction protected per matrix
PRUNE_Q = 0.01  # harm fraction selected per matrix
PRUNE_RANDOM_SEEDS = (0,)  # one random control mask of the same size per seed
PRUNE_MAX_NEW_TOKENS = 64  # new tokens generated per evaluation chat prompt
PRUNE_TASK_MAX_NEW_TOKENS = 128  # new tokens generated per evaluation task problem
PRUNE_EVAL_BATCH_SIZE = 32  # prompts per generation batch when evaluating

# ---- refusal directions (interp.directions.find_directions; interp direction find; analysis = "directions") ----
DIRECTION_REFUSAL_STARTS = ("I", "Sorry", "As")  # words whose first tokens count as a refusal start (Arditi et al.)
DIRECTION_MAX_KL = 0.1  # selection filter: KL on benign prompts under ablation
DIRECTION_MAX_LAYER_FRACTION = 0.8  # selection filter: layer < this fraction of the layers
DIRECTION_BATCH_SIZE = 16  # prompts per forward pass
