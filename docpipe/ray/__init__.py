"""docpipe on Ray: the cluster batch job and a Ray Data stage.

    import docpipe.ray as dray
    for row in dray.run_job(["s3://bucket/pdfs/"], "s3://bucket/out", backend="pipeline",
                            place=dray.RayOptions(address="auto")):
        print(row["name"], row["status"], row["error"])

    rows = dray.convert_dataset(ray.data.read_binary_files(...), backend="vlm", model=DIR)

This package imports without Ray installed; every function that needs it
raises RayNotInstalled ("ray is not installed: pip install 'docpipe[ray]'")
when called. Modules: `job` (plan, resume, run, lost documents), `datasets`
(`convert_dataset`, the CPU-task / GPU-actor stage), `documents` (one
document inside a worker), `actors` (VLM actor pool), `pd` (prefill/decode
actor pools for a disaggregated layout), `storage` (local and pyarrow
filesystems), `cli` (`docpipe convert --ray`).
"""
from docpipe.ray.datasets import RayOptions, convert_dataset
from docpipe.ray.job import plan_job, run_job
from docpipe.ray.require import INSTALL_HINT, RayNotInstalled, require_ray

__all__ = ["INSTALL_HINT", "RayNotInstalled", "RayOptions", "convert_dataset", "plan_job", "require_ray", "run_job"]
