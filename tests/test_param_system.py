"""The one parameter system (core.params.Params): declared, validated once, form-building;
the CLI's NAME=VALUE parser; the selector, trainer and embedder registries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from core.errors import CoresetError, SelectionInputError
from core.params import Params, param, parse_assignments


@dataclass(frozen=True)
class _Toy(Params):
    """A parameter set declared only for these tests."""

    error: ClassVar[type[Exception]] = SelectionInputError
    rate: float = param(0.5, "A rate in (0, 1].", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    count: int = param(3, "A count.", minimum=1)
    mode: Literal["fast", "exact"] = param("fast", "How.")
    label: str | None = param(None, "An optional label.")

    @classmethod
    def subject(cls) -> str:
        return "toy 'x'"

    def validate(self) -> None:
        if self.mode == "fast" and self.count > 10:
            self.fail("count", "must be <= 10 in fast mode")


def test_strings_are_converted_by_the_declared_type():
    p = _Toy.from_mapping({"rate": "0.25", "count": " 7 ", "mode": "EXACT", "label": "x"})
    assert (p.rate, p.count, p.mode, p.label) == (0.25, 7, "exact", "x")
    assert type(p.rate) is float and type(p.count) is int
    assert _Toy().label is None and _Toy(label=None) == _Toy()


@pytest.mark.parametrize(
    "values, name, reason",
    [
        ({"rate": "0"}, "rate", "must be > 0.0"),
        ({"rate": 1.5}, "rate", "must be <= 1.0"),
        ({"count": 0}, "count", "must be >= 1"),
        ({"count": "2.5"}, "count", "must be an integer"),
        ({"mode": "slow"}, "mode", "must be one of fast, exact"),
        ({"count": 11}, "count", "must be <= 10 in fast mode"),  # validate(): a check across fields
    ],
)
def test_validation_errors_name_the_parameter_and_its_owner(values, name, reason):
    with pytest.raises(SelectionInputError, match=reason) as info:
        _Toy.from_mapping(values)
    assert f"Parameter {name!r} of toy 'x'" in str(info.value)


def test_unknown_names_are_refused_with_the_allowed_ones():
    with pytest.raises(
        SelectionInputError, match="Unknown parameter 'speed' for toy 'x'; allowed: rate, count, mode, label"
    ):
        _Toy.from_mapping({"speed": 1})


def test_the_form_spec_comes_from_the_declaration():
    info = {i.name: i for i in _Toy.describe()}
    assert list(info) == [f.name for f in dataclasses.fields(_Toy)]
    assert (info["rate"].type, info["rate"].default, info["rate"].minimum, info["rate"].maximum) == (
        "float",
        0.5,
        0.0,
        1.0,
    )
    assert info["rate"].exclusive_minimum and not info["rate"].exclusive_maximum
    assert (info["mode"].type, info["mode"].choices) == ("choice", ("fast", "exact"))
    assert (info["label"].type, info["label"].default) == ("str", None)
    assert info["count"].help == "A count."


def _families():
    from core.evaluation import EvalConfig
    from core.evaluation.probes import TRAINERS
    from core.selection import get_selector, list_selectors

    return [get_selector(n).params_cls for n in list_selectors()] + list(TRAINERS.values()) + [EvalConfig]


@pytest.mark.parametrize(
    "cls", _families(), ids=lambda c: getattr(c, "method", "") or getattr(c, "kind", "") or c.__name__
)
def test_every_family_is_one_system(cls):
    """Selectors, trainers and the evaluation config: the same base, every field documented,
    defaults that validate, and a declared bound that is enforced with the parameter's name."""
    assert issubclass(cls, Params)
    infos = cls.describe()
    assert all(i.help for i in infos)
    default = cls()
    assert default.to_dict() == cls.from_mapping({}).to_dict()
    bounded = [i for i in infos if i.minimum is not None and i.type in ("int", "float")]
    for i in bounded:
        with pytest.raises(CoresetError, match=f"'{i.name}'"):
            cls.from_mapping({i.name: i.minimum - 1})


def test_eval_config_and_trainers_use_the_declared_bounds():
    from core.evaluation import EvalConfig, make_trainer

    with pytest.raises(CoresetError, match="'holdout' of the evaluation must be > 0"):
        EvalConfig(holdout=0)
    with pytest.raises(CoresetError, match="'label_noise' of the evaluation must be < 1"):
        EvalConfig(label_noise=1.0)
    with pytest.raises(CoresetError, match="'seeds' of the evaluation must be distinct"):
        EvalConfig(seeds=(1, 1))
    with pytest.raises(CoresetError, match="'dropout' of trainer 'mlp' must be < 1"):
        make_trainer("mlp", {"dropout": "1"})
    with pytest.raises(CoresetError, match="'optimizer' of trainer 'finetune'.*one of sgd, adamw"):
        make_trainer("finetune", {"optimizer": "rmsprop"})
    assert EvalConfig(holdout="0.3", label_noise=0).holdout == 0.3


# --------------------------------------------------------------------------- NAME=VALUE
def test_parse_assignments():
    assert parse_assignments(["a=0.2", " k = 1 ", "s="], "--param") == {"a": "0.2", "k": "1", "s": ""}
    assert parse_assignments(["x=a=b"], "--param") == {"x": "a=b"}  # the first '=' splits
    assert parse_assignments(None, "--param") == {}
    with pytest.raises(CoresetError, match=r"--param 'a' must look like NAME=VALUE\."):
        parse_assignments(["a"], "--param")
    with pytest.raises(CoresetError, match="--param '=1' must look like"):
        parse_assignments(["=1"], "--param")
    with pytest.raises(CoresetError, match="--weights 'm=' must look like MODEL=PATH"):
        parse_assignments(["m="], "--weights", form="MODEL=PATH", require_value=True)
    with pytest.raises(SelectionInputError):
        parse_assignments(["a"], "--param", error=SelectionInputError)


def test_parse_scoped_assignments():
    got = parse_assignments(["ram_apl:a=0.2", "ram_apl:k=2", "auto:folds=4"], "--param", scope=":")
    assert got == {"ram_apl": {"a": "0.2", "k": "2"}, "auto": {"folds": "4"}}
    for bad in ("a=0.2", ":a=1", "ram_apl:=1", "ram_apl:a"):
        with pytest.raises(CoresetError, match="must look like METHOD:NAME=VALUE"):
            parse_assignments([bad], "--param", form="METHOD:NAME=VALUE", scope=":")


def test_the_cli_parsers_are_the_shared_one():
    from core.cli.embed import parse_weights
    from core.cli.run import parse_method_params
    from core.cli.select import parse_params

    assert parse_weights(["effnet-lite0=/w.pth"]) == {"effnet-lite0": "/w.pth"}
    with pytest.raises(CoresetError, match="MODEL=PATH"):
        parse_weights(["effnet-lite0"])
    assert parse_method_params(["ram_apl:a=0.2"]) == {"ram_apl": {"a": "0.2"}}
    assert parse_params(["a=0.3"], "ram_apl") == {"a": "0.3"}
    with pytest.raises(SelectionInputError, match="parameters of ram_apl: a, k, s, normalize"):
        parse_params(["a"], "ram_apl")


# --------------------------------------------------------------------------- registries
def _trainers():
    from core.evaluation.probes import list_trainers

    return list_trainers()


@pytest.mark.parametrize("kind", _trainers())
def test_trainer_registry_entries(kind):
    from core.evaluation.probes import get_trainer, make_trainer, trainer_uses_images

    cls = get_trainer(kind)
    assert cls.kind == kind and cls.summary
    trainer = make_trainer(kind)
    assert isinstance(trainer, cls) and callable(trainer.fit_predict)
    assert trainer_uses_images(kind) == cls.uses_images
    first = cls.describe()[0]
    with pytest.raises(CoresetError, match="no parameter nope"):
        make_trainer(kind, {"nope": 1, first.name: first.default})


def test_trainer_lists_feed_the_cli_and_the_app():
    from core.cli import build_parser
    from core.evaluation.probes import list_trainers

    assert list_trainers(images=False) == ["linear", "mlp"] and list_trainers(images=True) == ["finetune"]
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    eval_action = next(a for a in run._actions if a.dest == "eval")
    assert list(eval_action.choices) == list_trainers()


def _embedders():
    from core.embedders import embedder_names

    return embedder_names()


@pytest.mark.parametrize("name", _embedders())
def test_embedder_registry_entries(name):
    from core.embedders import embedder_names, get_embedder_info, weights_status

    info = get_embedder_info(name)
    assert info.name == name and info.description and info.dim and info.dim > 0
    assert info.availability in ("offline", "hub")
    assert (name in embedder_names(offline=True)) == (info.availability == "offline")
    assert weights_status(name) in ("offline", "cached", "needs download")


def test_default_embedder_is_registered_and_offline():
    from core.embedders import DEFAULT_EMBEDDER, embedder_names
    from core.evaluation.config import EVAL_MODEL_PREFERENCE

    assert DEFAULT_EMBEDDER in embedder_names(offline=True)
    assert set(EVAL_MODEL_PREFERENCE) <= set(embedder_names(offline=True))


@pytest.mark.parametrize(
    "name", [n for n in __import__("core.selection", fromlist=["list_selectors"]).list_selectors()]
)
def test_selector_registry_entries(name):
    from core.selection import get_selector

    spec = get_selector(name)
    assert spec.name == name and spec.summary and spec.params_cls.method == name
    assert spec.make_params().to_dict() == spec.params_cls().to_dict()
    with pytest.raises(SelectionInputError, match=f"Unknown parameter 'nope' for method '{name}'"):
        spec.make_params({"nope": 1})
