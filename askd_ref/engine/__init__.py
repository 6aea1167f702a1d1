"""The distillation engine: tokenisation and padding, model forwards to log-probs, evaluation.

:mod:`askd_ref.trainer` (``ASKDTrainer``) and :mod:`askd_ref.generation` build on these helpers;
the losses themselves stay in :mod:`askd_ref.losses` / :mod:`askd_ref.baselines`.
"""
