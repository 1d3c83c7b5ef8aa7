"""Brace templates for ``keras-policy tune``: expansion, and errors placed in the template."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy import PolicyError
from policy.variants import MAX_VARIANTS, expand, has_braces, parse_variants


def texts(template: str) -> list[str]:
    return [v.text for v in expand(template)]


def test_a_list_gives_one_variant_per_item_in_order() -> None:
    assert texts("stop when val_loss not improving for {2,3, 5,8}") == [
        f"stop when val_loss not improving for {n}" for n in (2, 3, 5, 8)
    ]


def test_ranges_ascending_descending_and_with_a_step() -> None:
    assert [v.values for v in expand("x {2..5}")] == [("2",), ("3",), ("4",), ("5",)]
    assert [v.values[0] for v in expand("x {5..2}")] == ["5", "4", "3", "2"]
    assert [v.values[0] for v in expand("x {2..10..4}")] == ["2", "6", "10"]
    assert [v.values[0] for v in expand("x {10..2..4}")] == ["10", "6", "2"]


def test_several_braces_give_the_product_first_brace_slowest() -> None:
    variants = expand("stop when {val_loss,loss} not improving for {2..3}")
    assert [v.label for v in variants] == ["val_loss, 2", "val_loss, 3", "loss, 2", "loss, 3"]
    assert variants[2].text == "stop when loss not improving for 2"


def test_braces_in_quoted_paths_and_comments_belong_to_the_policy() -> None:
    template = 'save best on val_loss to "ck/{epoch:03d}.keras"  # keep {it}\nstop when val_loss not improving for {2,3}'
    assert has_braces(template)
    assert texts(template) == [template.replace("{2,3}", n) for n in ("2", "3")]
    assert not has_braces('save best on val_loss to "ck/{epoch}.keras"')
    assert texts('save every epoch to "e{epoch}.keras"') == ['save every epoch to "e{epoch}.keras"']


@pytest.mark.parametrize(
    ("template", "column", "message"),
    [
        ("stop when val_loss not improving for {2,{3}}", 41, "braces cannot be nested"),
        ("stop when val_loss not improving for {2,3", 38, "this '{' is never closed"),
        ("stop when val_loss not improving for 2}", 39, "a '}' without its '{'"),
        ("stop when val_loss not improving for {2,,3}", 38, "an empty choice in braces"),
        ("stop when val_loss not improving for {}", 38, "an empty choice in braces"),
        ("stop when val_loss not improving for {0.5..2}", 38, "{0.5..2} is not a range of whole numbers"),
        ("stop when val_loss not improving for {1..9..0}", 38, "a range's step must not be 0"),
    ],
)
def test_malformed_braces_are_policy_errors_at_the_brace(template: str, column: int, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        expand(template)
    assert (info.value.line, info.value.column, info.value.message) == (1, column, message)
    assert info.value.source_line == template


def test_too_many_variants_is_an_error_before_anything_is_parsed() -> None:
    with pytest.raises(PolicyError, match=f"at most {MAX_VARIANTS:,}"):
        expand("stop when val_loss not improving for {1..100}; save top {1..20} on val_loss to 'a{epoch}.keras'")


def test_a_bad_value_points_at_its_brace_and_names_the_value_once() -> None:
    template = "stop when val_loss not improving for {0..3}\nsave best on val_loss min"
    with pytest.raises(PolicyError) as info:
        parse_variants(template)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (1, 38)
    assert problem.message == "patience must be at least 1, got 0 (the value '0')"
    assert problem.source_line == "stop when val_loss not improving for {0..3}"


def test_an_error_in_the_literal_text_points_into_the_template_after_the_braces() -> None:
    template = "stop when val_loss not improving for {2,30}; save bestt on val_loss min"
    with pytest.raises(PolicyError) as info:
        parse_variants(template)
    (problem,) = info.value.problems  # the same problem in both variants, reported once
    assert (problem.line, problem.column) == (1, template.index("bestt") + 1)
    assert "bestt" in problem.message


def test_every_variant_parses_to_the_policy_of_its_text() -> None:
    from policy import parse_policy

    for variant, parsed in parse_variants("multiply lr by {0.5,0.1} when val_loss not improving for {1..2}"):
        assert parsed == parse_policy(variant.text)


@given(st.lists(st.lists(st.integers(1, 99).map(str), min_size=1, max_size=4), min_size=1, max_size=3))
def test_expansion_is_the_product_of_the_braces_in_order(choices: list[list[str]]) -> None:
    template = " x ".join("{" + ",".join(c) + "}" for c in choices)
    variants = expand(template)
    assert [v.values for v in variants] == list(itertools.product(*choices))
    assert [v.text for v in variants] == [" x ".join(values) for values in itertools.product(*choices)]
    for variant in variants:  # every offset of the text maps back into the template
        assert all(0 <= variant.template_offset(i) < len(template) for i in range(len(variant.text)))
