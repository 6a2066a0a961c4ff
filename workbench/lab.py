"""JupyterLab for an air-gapped workstation: ``workbench lab`` and ``make lab``.

The notebooks are the workbench's user interface. Started from here,
JupyterLab

- opens with the project's kernel (``workbench``, this environment's Python)
  already chosen: the notebooks name it in their metadata and it is the
  server's default, so no "Select Kernel" dialog comes up;
- never reaches the network: no news feed, no update check (server and
  browser side), and the extension manager is off and read-only (the default
  one searches and installs from PyPI);
- listens on 127.0.0.1 only, behind a random token (printed in the URL to
  open).

The kernel spec and JupyterLab's settings overrides are written into this
environment (``sys.prefix``), where JupyterLab looks for them, so a plain
``.venv/bin/jupyter lab`` started later gets the same quiet settings.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .errors import AlreadyExists
from .runs import NOTEBOOKS

#: the project's kernel: this environment's Python with the workbench installed
KERNEL_NAME = "workbench"
KERNEL_DISPLAY_NAME = "Workbench (Python 3)"

#: JupyterLab settings for a machine without a network (JupyterLab 4 setting names)
SETTINGS_OVERRIDES = {
    # "none" asks the user, in a popup, whether to be "notified about official Jupyter news"
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension:plugin": {"enabled": False},
    # start the notebook's kernel (the project's) without asking
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
}

#: server options; none of them can be left out without reaching the network
#: or opening the server to other hosts
SERVER_ARGS = [
    "--ServerApp.ip=127.0.0.1",
    f"--MappingKernelManager.default_kernel_name={KERNEL_NAME}",
    "--LabApp.news_url=None",  # None (not a URL) turns the news handler off
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    "--LabApp.extension_manager=readonly",  # lists what is installed, never asks PyPI
]


def install_kernel(prefix: str | os.PathLike | None = None) -> Path:
    """Install the ``workbench`` kernel spec for this Python under ``prefix``.

    Parameters
    ----------
    prefix : path, optional
        Default ``sys.prefix`` (the project's ``.venv``).

    Returns
    -------
    Path
        The kernel spec's folder.
    """
    from ipykernel.kernelspec import install

    # The kernel starts with onnxruntime's telemetry off even when a notebook
    # loads onnxruntime before it imports workbench (see workbench/__init__.py).
    return Path(install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME,
                        prefix=str(prefix or sys.prefix), env={"ORT_DISABLE_TELEMETRY": "1"}))


def write_settings(prefix: str | os.PathLike | None = None) -> Path:
    """Merge :data:`SETTINGS_OVERRIDES` into JupyterLab's ``overrides.json`` under ``prefix``.

    Settings the file holds for other plugins (or other settings of the same
    plugins) are kept.

    Returns
    -------
    Path
        The ``overrides.json`` written.

    Raises
    ------
    AlreadyExists
        An ``overrides.json`` that is not a JSON object (it is left alone).
    """
    path = Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    current: dict = {}
    if path.exists():
        try:
            current = json.loads(path.read_text("utf-8"))
            if not isinstance(current, dict):
                raise ValueError
        except ValueError:
            raise AlreadyExists(
                "JupyterLab's overrides.json is not a JSON object; fix or remove it, then start "
                "again", path=str(path)) from None
    merged = {plugin: {**current.get(plugin, {}), **values} for plugin, values in SETTINGS_OVERRIDES.items()}
    merged = {**current, **merged}
    if merged != current:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", "utf-8")
    return path


def lab_argv(*, port: int | None = None, open_browser: bool = True, allow_root: bool = False,
             notebook_dir: str | os.PathLike | None = None) -> list[str]:
    """The ``jupyter lab`` arguments :func:`run_lab` starts the server with."""
    argv = [*SERVER_ARGS, f"--ServerApp.root_dir={Path(notebook_dir or NOTEBOOKS).resolve()}"]
    if port is not None:
        argv += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if not open_browser:
        argv.append("--no-browser")
    if allow_root:
        argv.append("--allow-root")
    return argv


def run_lab(*, port: int | None = None, open_browser: bool = True, allow_root: bool = False,
            vault: str | os.PathLike | None = None, user: str | None = None,
            notebook_dir: str | os.PathLike | None = None) -> int:
    """Install the kernel and settings, then run JupyterLab until it is stopped.

    Parameters
    ----------
    port : int, optional
        Default: JupyterLab's (8888, or the next free one).
    open_browser : bool, default True
        Open the URL (with its token) in the browser.
    allow_root : bool, default False
        JupyterLab refuses to run as root; pass this only where root is the
        only account (a container).
    vault, user : optional
        Given to the notebooks' kernels as ``WORKBENCH_VAULT`` and
        ``WORKBENCH_USER`` (the notebooks' defaults otherwise).
    notebook_dir : path, optional
        The folder to serve; default the project's ``notebooks/``.

    Returns
    -------
    int
        The server's exit status.
    """
    install_kernel()
    write_settings()
    if vault is not None:
        os.environ["WORKBENCH_VAULT"] = str(Path(vault).resolve())
    if user is not None:
        os.environ["WORKBENCH_USER"] = user
    from jupyterlab.labapp import LabApp

    LabApp.launch_instance(argv=lab_argv(port=port, open_browser=open_browser, allow_root=allow_root,
                                         notebook_dir=notebook_dir))
    return 0
