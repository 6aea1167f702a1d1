"""Training: the trainer and its configuration, generation, data files, and the helpers they share.

:mod:`~askd_ref.engine.trainer` (``ASKDTrainer``), :mod:`~askd_ref.engine.config` (``ASKDConfig``),
:mod:`~askd_ref.engine.items` (prompt items and their collation), :mod:`~askd_ref.engine.generation`
and :mod:`~askd_ref.engine.data` (spec §8 files) build on the helpers here: tokenisation and padding
(:mod:`~askd_ref.engine.tokens`), model forwards to log-probs (:mod:`~askd_ref.engine.forward`),
evaluation, model loading and paths, and run files (:mod:`~askd_ref.engine.run`). The losses
themselves stay in :mod:`askd_ref.losses` / :mod:`askd_ref.baselines`.
"""
