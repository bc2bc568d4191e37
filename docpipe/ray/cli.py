"""`docpipe convert ... --ray ADDRESS|local`: the Ray job behind the CLI.

Same contract as the single-process command: options already checked by
`convert_command`; a missing `ray` extra exits 2 with the install hint;
the plan (resume) runs on the driver; one progress tick per document; the
same summary table; exit code 1 when any document failed.
"""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from docpipe.config import ConvertOptions

LOCAL = "local"  # --ray local: start a Ray instance on this machine


def run_from_cli(inputs: list[str], out: str, opts: ConvertOptions, address: str, console: Console) -> int:
    """Runs the job; returns the exit code (see module doc)."""
    from docpipe.commands.convert import Tally, _fail, _print_summary
    from docpipe.ray.datasets import RayOptions
    from docpipe.ray.job import plan_job, run_plan
    from docpipe.ray.require import RayNotInstalled, require_ray

    try:
        require_ray()
    except RayNotInstalled as e:
        _fail(console, escape(str(e)))  # "[ray]" is not rich markup
    try:
        plan = plan_job(inputs, out, opts)
    except (OSError, ValueError) as e:
        _fail(console, escape(f"cannot read inputs: {e}"))
    if not plan.items and not plan.skipped and not plan.input_errors:
        _fail(console, f"no PDF files found in {' '.join(inputs)}", code=1)
    tally = Tally()
    place = RayOptions(address=LOCAL if address == LOCAL else address)
    total = len(plan.items) + len(plan.input_errors)
    num_skipped = len(plan.skipped)
    for done, row in enumerate(run_plan(plan, opts, place), start=1):
        num_skipped += _add(tally, row)
        console.print(f"[{done}/{total}] {row['name']}: {row['status']}  ({tally.rate()})",
                      highlight=False, markup=False, soft_wrap=True)
    _print_summary(Console(), tally, num_skipped, out)
    return 1 if tally.by_status.get("failure", 0) else 0


def _add(tally, row: dict) -> int:
    """Counts one summary row; returns 1 when it was skipped (content already converted)."""
    from docpipe.ray.documents import SKIPPED

    if row["status"] == SKIPPED:
        return 1
    tally.num_docs += 1
    tally.num_pages += row["num_pages_ok"]
    tally.num_failed_pages += row["num_pages_failed"]
    tally.num_pages_live += row["num_pages_ok"] + row["num_pages_failed"]
    tally.by_status[row["status"]] = tally.by_status.get(row["status"], 0) + 1
    if row["status"] != "success":
        tally.problems.append((row["status"], row["source_path"], row["error"]))
    return 0
