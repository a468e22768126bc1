"""``import pvae`` changes no global state: matplotlib's backend, pyplot, Pyro's
param store, torch's default dtype and random state are as they were."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent("""
    import sys
    import matplotlib
    import pyro
    import torch

    backend = matplotlib.get_backend()
    dtype = torch.get_default_dtype()
    rng = torch.get_rng_state().clone()
    params = set(pyro.get_param_store().keys())

    import pvae  # noqa: F401
    import pvae.cli  # noqa: F401  (the command line's modules too)

    assert matplotlib.get_backend() == backend, (backend, matplotlib.get_backend())
    assert "matplotlib.pyplot" not in sys.modules, "import pvae imported matplotlib.pyplot"
    assert torch.get_default_dtype() == dtype
    assert torch.equal(torch.get_rng_state(), rng), "import pvae drew from torch's generator"
    assert set(pyro.get_param_store().keys()) == params
    print("ok")
""")


def test_import_pvae_changes_no_global_state():
    env = {"PYTHONPATH": str(ROOT), "MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_figures_draw_without_pyplot(tmp_path):
    """Drawing a figure neither imports pyplot nor switches the backend."""
    code = textwrap.dedent(f"""
        import sys
        import matplotlib
        backend = matplotlib.get_backend()
        from pvae import plots
        import torch
        plots.image_grid(torch.rand(4, 64), (1, 8, 8), {str(tmp_path / 'g.png')!r})
        plots.latent_scatter(torch.randn(20, 2), {str(tmp_path / 's.png')!r},
                             labels=torch.arange(20) % 3)
        assert matplotlib.get_backend() == backend
        assert "matplotlib.pyplot" not in sys.modules
        print("ok")
    """)
    env = {"PYTHONPATH": str(ROOT), "MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.png").stat().st_size > 0 and (tmp_path / "s.png").stat().st_size > 0
