"""Run the workbench's notebooks head-less with papermill, as recorded runs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import InvalidInput, NotFound, WorkbenchError

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _ipc_kernel_manager():
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        """Kernels talk over Unix sockets, not loopback TCP: on a shared
        workstation another account cannot reach them."""

        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            super().__init__(**kw)

        async def _async_interrupt_kernel(self):
            # jupyter_client interrupts a kernel before every shutdown request,
            # and a kernel that is inside a message handler at that moment
            # logs "KeyboardInterrupt caught in kernel" to our terminal. The
            # kernel is idle when papermill shuts it down (after the last cell
            # or the failing one), and the shutdown request stops it anyway.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return IPCKernelManager


class NotebookFailed(WorkbenchError):
    """A papermill run stopped at a failing cell."""

    exit_code = 10


def notebook_path(name: str) -> Path:
    """``30_build_cohort`` -> the notebook file in the project's ``notebooks/``."""
    path = NOTEBOOKS / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.exists():
        raise NotFound("no such notebook in notebooks/; see `ls notebooks`", notebook=name)
    return path


def parse_params(pairs: list[str]) -> dict:
    """``["sample_size=20", "name=forearms"]`` -> typed values (JSON where it parses)."""
    params = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInput("write a parameter as KEY=VALUE, e.g. --param sample_size=20")
        key, value = pair.split("=", 1)
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def run_notebook(name: str, parameters: dict, output: str | os.PathLike, *, cwd: str | os.PathLike | None = None) -> Path:
    """Execute a notebook with papermill into ``output``.

    The kernel inherits this process's environment (which is how a vault
    passphrase given at a prompt reaches it without being written anywhere).
    Papermill records the parameters in the executed notebook's metadata.
    When progress bars are forced on (``WORKBENCH_PROGRESS=1``, which the
    command line sets on a terminal), the kernel draws them as text on its
    stderr and they are relayed to this process's stderr as they come.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from ._progress import ENV

    output = Path(output)
    try:
        pm.execute_notebook(
            str(notebook_path(name)), str(output), parameters=parameters, kernel_name="python3",
            cwd=str(cwd or NOTEBOOKS), progress_bar=False, log_output=False,
            stderr_file=sys.stderr if os.environ.get(ENV) == "1" else None,
            kernel_manager_class=_ipc_kernel_manager(),
        )
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"notebook {name} failed at cell {exc.exec_count} ({exc.ename}); open {output} to see why",
            cell=exc.exec_count, ename=exc.ename,
        ) from None
    return output


def run_cohort_notebook(name: str, parameters: dict, out_dir: str | os.PathLike | None) -> Path:
    """Run a cohort-building notebook and keep the executed copy in the cohort folder."""
    params = dict(parameters)
    cohort = params.get("name")
    if not cohort:
        raise InvalidInput("name the cohort: --param name=my-cohort")
    out = Path(out_dir).resolve() if out_dir else (Path.cwd() / "datasets" / str(cohort))
    params["out"] = str(out)
    with tempfile.TemporaryDirectory(prefix="workbench-run-") as tmp:
        executed = Path(tmp) / f"{Path(name).stem}.ipynb"
        run_notebook(name, params, executed)
        shutil.copyfile(executed, out / executed.name)
    return out
