"""Moderator formulas, names, predictions and the checks that keep them honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edueffects import InputError, meta

BCG = pd.read_csv(Path(__file__).resolve().parents[1] / "reference" / "data" / "bcg.csv")


def test_list_and_formula_give_the_same_model() -> None:
    by_list = meta(BCG, "yi", "vi", mods=["alloc", "ablat"])
    by_formula = meta(BCG, "yi", "vi", mods="~ alloc + ablat")
    assert by_list.coefficients.names == by_formula.coefficients.names
    assert by_list.coefficients.names == ("intrcpt", "allocrandom", "allocsystematic", "ablat")
    np.testing.assert_allclose(by_list.coefficients.estimate, by_formula.coefficients.estimate, rtol=1e-12)


def test_single_string_is_a_column_not_letters() -> None:
    res = meta(BCG, "yi", "vi", mods="ablat")
    assert res.coefficients.names == ("intrcpt", "ablat")


@pytest.mark.parametrize(
    ("formula", "names"),
    [
        ("~ ablat * year", ("intrcpt", "ablat", "year", "ablat:year")),
        ("~ C(alloc) + ablat", ("intrcpt", "allocrandom", "allocsystematic", "ablat")),
        ("~ 0 + alloc", ("allocalternate", "allocrandom", "allocsystematic")),
        ("~ alloc - 1", ("allocalternate", "allocrandom", "allocsystematic")),
        ("~ I(year - 1960) + center(ablat)", ("intrcpt", "I(year - 1960)", "center(ablat)")),
        ("~ `ablat`", ("intrcpt", "ablat")),
    ],
)
def test_names_follow_metafor(formula: str, names: tuple[str, ...]) -> None:
    assert meta(BCG, "yi", "vi", mods=formula).coefficients.names == names


def test_terms_group_the_columns_of_a_factor() -> None:
    res = meta(BCG, "yi", "vi", mods="~ C(alloc) * ablat")
    terms = dict(res.terms.terms)
    assert [res.terms.coef_names[i] for i in terms["alloc"]] == ["allocrandom", "allocsystematic"]
    assert [res.terms.coef_names[i] for i in terms["alloc:ablat"]] == ["allocrandom:ablat", "allocsystematic:ablat"]
    assert res.wald("alloc").df1 == 2
    assert [t.df1 for t in res.term_tests()] == [2, 1, 2]


def test_no_intercept_model_tests_every_coefficient() -> None:
    res = meta(BCG, "yi", "vi", mods="~ 0 + alloc")
    assert res.QMdf == (3, None)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("~ __import__('os').getcwd()", "only columns"),
        ("~ ablat.real", "only columns"),
        ("~ open(ablat)", "'open' is not a column"),
        ("~ nosuch", "'nosuch' is not a column"),
        ("~ ablat +* year", "cannot be read"),
        ("yi ~ ablat", "one right-hand side"),
    ],
)
def test_bad_formulas_are_one_line_errors(formula: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        meta(BCG, "yi", "vi", mods=formula)
    assert "\n" not in str(info.value)


def test_collinear_formula_is_refused() -> None:
    with pytest.raises(InputError, match="collinear"):
        meta(BCG, "yi", "vi", mods="~ ablat + I(2 * ablat)")


def test_predict_dict_equals_metafor_matrix_and_fitted_values() -> None:
    res = meta(BCG, "yi", "vi", mods="~ ablat")
    by_dict = res.predict({"ablat": [10, 30, 50]}).tidy()
    by_matrix = res.predict(np.array([10.0, 30.0, 50.0])).tidy()
    np.testing.assert_allclose(by_dict[["pred", "se", "pi_lb"]], by_matrix[["pred", "se", "pi_lb"]], rtol=1e-12)
    np.testing.assert_allclose(res.predict().tidy().pred, res.fitted(), rtol=1e-12)
    exp = res.predict({"ablat": [10]}, transf="exp").tidy()
    assert exp.pred[0] == pytest.approx(np.exp(by_dict.pred[0])) and np.isnan(exp.se[0])


def test_predict_refuses_unseen_levels_and_unknown_transforms() -> None:
    res = meta(BCG, "yi", "vi", mods="~ alloc")
    with pytest.raises(InputError, match="cannot be coded"):
        res.predict({"alloc": ["nonsense"]})
    with pytest.raises(InputError, match="transform 'log'"):
        res.predict({"alloc": ["random"]}, transf="log")
    with pytest.raises(InputError, match="transform"):
        meta(BCG, "yi", "vi").back_transform("log")


def test_back_transform_exp_is_exp_not_tanh() -> None:
    res = meta(BCG, "yi", "vi")
    assert res.back_transform("exp").pred == pytest.approx(np.exp(res.coefficients.estimate[0]))
    assert res.back_transform("tanh").pred == pytest.approx(np.tanh(res.coefficients.estimate[0]))


def test_labels_follow_the_level() -> None:
    res = meta(BCG, "yi", "vi", level=0.9)
    assert res.level == 90.0
    text = res.summary()
    assert "90% CI" in text and "95% CI" not in text and "0.9%" not in text
    assert res.to_dict()["level"] == 90.0


def test_wald_inputs_are_checked() -> None:
    res = meta(BCG, "yi", "vi", mods="~ alloc + ablat")
    with pytest.raises(InputError, match="not both or neither"):
        res.wald()
    with pytest.raises(InputError, match="neither a coefficient nor a term"):
        res.wald("latitude")
    with pytest.raises(InputError, match="L has 3 column"):
        res.wald(L=[[0, 1, 0]])


@settings(max_examples=15, deadline=None)
@given(st.permutations(list(range(len(BCG)))))
def test_predictions_do_not_depend_on_row_order(order: list[int]) -> None:
    base = meta(BCG, "yi", "vi", mods="~ C(alloc) * ablat", variance_ci=False)
    shuffled = meta(BCG.iloc[order], "yi", "vi", mods="~ C(alloc) * ablat", variance_ci=False)
    new = {"alloc": ["random", "systematic"], "ablat": [20, 40]}
    np.testing.assert_allclose(shuffled.predict(new).tidy().pred, base.predict(new).tidy().pred, rtol=1e-9)
    assert shuffled.wald("alloc").statistic == pytest.approx(base.wald("alloc").statistic, rel=1e-8)


def test_numeric_columns_without_formula_machinery_match_the_formula() -> None:
    plain = meta(BCG, "yi", "vi", mods=["ablat", "year"])
    formula = meta(BCG, "yi", "vi", mods="~ ablat + year")
    assert plain.terms.spec is None and formula.terms.spec is not None
    assert plain.coefficients.names == formula.coefficients.names
    np.testing.assert_allclose(plain.coefficients.estimate, formula.coefficients.estimate, rtol=1e-12)
    new = {"ablat": [10, 40], "year": [1950, 1970]}
    np.testing.assert_allclose(plain.predict(new).tidy().pred, formula.predict(new).tidy().pred, rtol=1e-12)
    with pytest.raises(InputError, match="not found"):
        plain.predict({"ablat": [10]})
