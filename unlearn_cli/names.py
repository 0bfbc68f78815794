"""The names the registries hold, as plain tuples: what `--help` lists and what a flag accepts, without importing
the torch-using modules that register them. Each tuple is checked against its registry by tests/test_startup.py,
so a registered name missing here fails the suite.

Usage:
    from unlearn_cli.names import DATASETS, MODELS, STRATEGIES
"""

DATASETS = ("digits", "fashion-mnist", "cifar10", "svhn", "imagenet100", "synthetic")  # data.DATASETS
MODELS = ("mlp", "cnn", "resnet18", "resnet50", "vit")  # models.MODELS
# The last part of the state_dict names of the models' buffers (BatchNorm's statistics): a checkpoint's tensors less
# these are the model's parameters, so `info` counts them without building the model.
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
STRATEGIES = {  # localize.STRATEGIES: name -> the line `localize --help` shows for it
    "del": "DEL: |θ⊙g| per neuron (top-k mean), whole neurons up to the budget",
    "salun": "SalLoc (Fan et al. 2023): |g| per parameter up to the budget",
    "critmem": "CritMem (Maini et al. 2023): per example, zero the most critical channel until misclassified",
    "deepest": "whole layers from the output side while they fit (Goel et al. 2022)",
    "shallowest": "whole layers from the input side while they fit (control for deepest)",
    "random": "control: random units up to the budget, or --like MASK's per-tensor counts at random",
    "msg": "MSG (NeurIPS 2023 challenge): per layer, the weights with the smallest |g_retain − g_forget|",
    "del-reference": "the authors' released rule: row scores, scalars ranked, channels may split",
}
CRITERIA = ("grad", "weighted-grad", "weight", "weighted-grad-train")  # localize.CRITERIA
GRANULARITIES = ("parameter", "neuron", "layer")  # localize.GRANULARITIES
METHODS = {  # methods.METHODS: name -> the line `apply --help` shows for it (their configs: method_configs.py)
    "finetune": "cross-entropy on the retain set, cosine schedule",
    "neggrad": "gradient ascent (-CE) on the forget set, constant lr",
    "neggrad+": "beta*CE(retain) - (1-beta)*CE(forget), forget batches cycled",
    "random-label": "forget set relabelled to random wrong classes, trained with the retain set",
    "l1-sparse": "CE(retain) + linearly decaying L1 penalty, cosine schedule",
    "rft": "Reset + Finetune: reset masked parameters, finetune them and the head (DEL with a del mask)",
    "scrub": "teacher-student: max KL on the forget set, min KL + CE on the retain set",
    "ssd": "Selective Synaptic Dampening: shrink parameters far more important to the forget set (training-free)",
    "iu": "influence unlearning: theta + alpha * H^-1 (g_forget - g_retain), WoodFisher H^-1 (training-free)",
    "retrain": "train from scratch on the retain set (the oracle; ignores --mask)",
    "ct": "Conv Transpose (NeurIPS 2023 challenge): transpose every conv kernel, finetune on the retain set",
    "msg": "MSG (NeurIPS 2023 challenge): reset the conv weights least needed, finetune (ignores --mask)",
}
# The parts of `tune`'s oracle-free objective, each a weight of tune.OracleFreeWeights (declared here for --help).
ORACLE_FREE_PARTS = ("forget_gap", "distribution", "validation_drop", "damage", "trigger", "retain_fit", "confidence")
