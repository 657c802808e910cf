"""The mutation check: each small deliberate bug of tests/mutations.py, planted alone, must
make the tests that guard it FAIL (by an assertion, not by an error).

Each case runs a subset of this suite in a subprocess with ``MCNET_MUTATION`` set, under the
``mutation`` hypothesis profile (the ``ci`` examples, no shrinking), and stops at the first
failure.  tests/README.md
lists the mutations and the tests that catch them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mutations import MUTATIONS

TESTS = Path(__file__).parent

# mutation: the tests (node ids under tests/) that must catch it
CAUGHT_BY = {
    "conv2d_hv_1e-7": [
        "test_references.py::test_hvp_and_third_derivative_through_each_layer[conv2d-0]"
    ],
    "conv2d_hv_1e-10": ["test_nn_layers.py::test_conv2d_backward_matches_directional_derivatives"],
    "sigmoid_hv_1e-10": [
        "test_nn_modules.py::test_elementwise_backward_is_the_transpose_of_the_forward_derivative"
        "[sigmoid-1]",
        "test_models.py::test_lenet5_every_activation_gives_exact_hvp[sigmoid]",
    ],
    "batchnorm_hv_1e-10": [
        "test_nn_layers.py::test_batchnorm_backward_matches_directional_derivatives"
    ],
    "maxpool_hv_1e-7": [
        "test_references.py::test_hvp_and_third_derivative_through_each_layer[maxpool2d-0]"
    ],
    "squared_hinge_hv_1e-8": [
        "test_references.py::test_hvp_and_third_derivative_of_each_loss[squared_hinge-0]"
    ],
    "product_order3_term_dropped": ["test_algebra.py::test_product_matches_unit_rule[3]"],
    "one_direction_product_order3_term_dropped": [
        "test_one_direction.py::test_product_matches_the_unit_multiplication_table"
    ],
    "tanh_order3_coefficient_1e-9": [
        "test_general_layout.py::test_directional_with_distinct_directions_is_the_mixed_partial"
        "[tanh-3]"
    ],
    "sigmoid_taylor_order3_1e-9": [
        "test_functions.py::test_analytic_derivatives_match_hand_formulas[sigmoid-3]"
    ],
    "exp_kernel_order2_1e-9": [
        "test_kernels.py::test_fused_derivatives_match_hand_written_formulas[float64-2-exp]"
    ],
    "gauss_newton_product_1e-9": [
        "test_objective.py::test_gauss_newton_product_matches_the_hand_written_jacobians"
    ],
    "imaginary_part_1e-9": ["test_objective.py::test_logistic_regression_closed_forms"],
    "softplus_loop_1e-9": [
        "test_references.py::test_hvp_and_third_derivative_of_each_loss[bce_with_logits-2]",
        "test_functions.py::test_softplus_on_the_cpu_matches_mpmath_to_a_few_ulps[float64]",
    ],
    "recorded_product_hv_1e-10": [
        "test_composites.py::test_recorded_binary_operations_backpropagate[product-1]",
        "test_composites.py::test_swish_skip_block_hvp_matches_differences_of_the_numpy_gradient",
    ],
    "elementwise_hv_1e-10": [
        "test_composites.py::test_recorded_unary_operations_backpropagate[swish-1]",
        "test_composites.py::test_elementwise_derivative_is_the_holomorphic_derivative",
    ],
}


def test_every_mutation_has_guarding_tests():
    assert set(CAUGHT_BY) == set(MUTATIONS)


def run_with(mutation: str | None, node_ids: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYPOTHESIS_PROFILE="mutation")
    env.pop("MCNET_MUTATION", None)
    if mutation:
        env["MCNET_MUTATION"] = mutation
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-rf",
        "-p",
        "no:cacheprovider",
        *[str(TESTS / node) for node in node_ids],
    ]
    return subprocess.run(command, env=env, cwd=TESTS.parent, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("mutation", sorted(CAUGHT_BY))
def test_the_suite_fails_on_each_mutation(mutation):
    done = run_with(mutation, CAUGHT_BY[mutation])
    output = done.stdout + done.stderr
    assert f"mcnet mutation planted: {mutation}" in output, output
    assert done.returncode == 1, f"mutation {mutation} was not caught:\n{output}"
    assert any(line.startswith("FAILED") for line in done.stdout.splitlines()), output
    # failed by an assertion about numbers, not by an exception the mutation raised
    assert "AssertionError" in done.stdout, output
    other = re.search(r"^E\s+(\w+Error|\w+Exception)\b", done.stdout, re.MULTILINE)
    assert other is None or other.group(1) == "AssertionError", output
