"""Smoke test of ``python -m mcnet.demo`` and checks of the Fig. 1 numbers it is built on."""

import builtins
import re

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcnet import demo


@given(st.floats(-5.0, 12.0))
def test_closed_form_derivatives_match_mpmath(x):
    func = lambda t: mpmath.exp(t) / (t * t + 1)  # noqa: E731
    for k, closed in enumerate(demo.exact_derivatives(x), start=1):
        with mpmath.workdps(40):
            reference = float(mpmath.diff(func, x, k))
        # abs: f' and f'' vanish at x = 1, where mpmath's numerical diff leaves ~1e-40
        assert closed == pytest.approx(reference, rel=1e-14, abs=1e-25)


def test_logsumexp_curvature_matches_finite_differences_of_the_gradient():
    rng = np.random.default_rng(1)
    w, u, v = rng.standard_normal((3, 4))

    def grad(p):  # softmax: the gradient of logsumexp, by hand
        e = np.exp(p - p.max())
        return e / e.sum()

    step = 1e-6
    hv = (grad(w + step * v) - grad(w - step * v)) / (2 * step)
    assert demo.logsumexp_curvature(w, u, v) == pytest.approx(u @ hv, rel=1e-7)


def test_step_error_table_shows_fd_failing_and_complex_steps_at_roundoff():
    table = demo.step_error_table(exponents=range(1, 201, 3))
    small = table["h"] <= 1e-8
    errors = table["errors"]
    assert errors["complex step"][small].max() <= demo.ROUNDOFF
    in_range = small & (table["h"] >= 1e-150)  # h^2 still a normal float64
    assert errors["bicomplex step"][in_range].max() <= demo.ROUNDOFF
    tiny = table["h"] < 1e-17  # x + h == x: every FD quotient is 0 or 0/0
    for name in ("forward FD", "central FD", "FD second difference"):
        assert np.all(errors[name][tiny] == demo.ERROR_CLIP)
        assert errors[name].min() > 1e-12  # never at roundoff
    assert errors["bicomplex step"][table["h"] < 1e-170].min() == demo.ERROR_CLIP


@pytest.mark.slow
def test_demo_prints_exact_derivatives_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    demo.main(["--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    errors = [float(e) for e in re.findall(r"relative error (\S+)", printed)]
    assert len(errors) == 4 and max(errors) < 1e-14
    # the training section: the line search accepts only decreasing steps, and ten
    # Newton-CG steps on the digits bring the loss from log(10) ~ 2.3 to a fraction of it
    losses = [float(v) for v in re.findall(r"iteration \d+: training loss (\S+),", printed)]
    assert len(losses) >= 5, printed
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.25 * losses[0], losses
    png = tmp_path / "out" / "fig1_step_error.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob("*.tmp"))


@pytest.mark.slow
def test_demo_without_matplotlib_still_prints_the_derivatives(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    demo.main(["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "matplotlib is not installed" in printed
    assert "order 3:" in printed
    assert not (tmp_path / "fig1_step_error.png").exists()


def test_demo_refuses_a_file_as_output_folder(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("")
    with pytest.raises(SystemExit):
        demo.main(["--out", str(target)])
    assert "--out must be a folder" in capsys.readouterr().err
