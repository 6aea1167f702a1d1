"""The method registry (askd_ref/methods.py) agrees with the loss functions it names."""

import inspect

import pytest

from askd_ref import ASKDOptions
from askd_ref.divergences import Divergence
from askd_ref.methods import LOSS_FUNCTIONS, METHOD_NEEDS, METHOD_PARAMS, METHODS, REGISTRY, method_spec


def test_views_are_the_registry() -> None:
    assert tuple(REGISTRY) == METHODS
    assert METHODS[0] == "askd"
    assert {name: spec.loss for name, spec in REGISTRY.items()} == LOSS_FUNCTIONS
    assert {name: spec.needs for name, spec in REGISTRY.items()} == METHOD_NEEDS
    assert METHOD_PARAMS == {
        "gkd": ("beta",),
        "distillm": ("alpha",),
        "distillm2": ("alpha", "beta", "loss_type"),
        "advantage_kd": ("eps_a",),
    }


@pytest.mark.parametrize("name", METHODS)
def test_parameter_defaults_are_the_loss_functions_defaults(name: str) -> None:
    spec = REGISTRY[name]
    signature = inspect.signature(spec.loss).parameters
    for param in spec.params:
        assert signature[param.name].default == param.default, (name, param.name)
    assert ("options" in signature) == spec.takes_options


@pytest.mark.parametrize("name", METHODS)
def test_needs_match_the_terms(name: str) -> None:
    spec = REGISTRY[name]
    dense = spec.dense_terms(spec.defaults(), ASKDOptions())
    assert bool(dense) == spec.needs.full
    assert (spec.sequence is not None) == spec.needs.token
    assert spec.needs_teacher == (name != "seqkd")
    rows = {t.rows for t in dense} | ({spec.sequence.rows} if spec.sequence else set())
    assert spec.needs.tgo == bool(rows & {"tgo", "all"})
    assert spec.needs.sgo == bool(rows & {"sgo", "all"})


def test_askd_needs_full_log_probs_only_with_a_dense_term() -> None:
    spec = method_spec("askd")
    assert not spec.needs_with(ASKDOptions()).full
    assert spec.needs_with(ASKDOptions(lambda_dense=0.5)).full
    terms = spec.dense_terms({}, ASKDOptions(lambda_dense=0.5, mixture_grad="stop"))
    assert [t.divergence for t in terms] == [Divergence.SKL, Divergence.SRKL_STOP]
    assert all(t.adaptive and t.weight == 0.5 for t in terms)


def test_distillm2_terms_follow_its_parameters() -> None:
    spec = method_spec("distillm2")
    tgo, sgo = spec.dense_terms({**spec.defaults(), "beta": 1.5, "loss_type": "distillm_v1"}, ASKDOptions())
    assert (tgo.divergence, tgo.weight, sgo.divergence, sgo.weight) == (
        Divergence.SRKL_STOP, 0.5, Divergence.SRKL_STOP, 1.5
    )


def test_unknown_method_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"method must be one of \('askd'"):
        method_spec("askd2")
