"""CUDA MPS for the roles of a layout that docpipe spawns on one GPU.

Without MPS, two processes on one GPU time-slice it: a decode step waits
whenever the prefill process holds the GPU. With an MPS server their
kernels run side by side, each client limited to its share of the SMs
(CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, the layout's per-worker `sm_percent`).

Lifecycle (GpuSharing.start -> env_for(role) per spawned worker -> stop):
  mode "none": nothing, env_for gives {}.
  mode "mps":
  - a daemon already reachable (CUDA_MPS_PIPE_DIRECTORY in this environment,
    or the system's default pipe directory) is used as is and never stopped;
  - else `nvidia-cuda-mps-control -d` is started with a private
    CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY under a temporary
    directory; it is ours: stop() sends it `quit` and removes the directory
    (first copying its logs to $DOCPIPE_MPS_KEEP_LOGS when that names a folder);
  - when the binary is missing or the daemon does not come up (exit status,
    no control pipe within startup_timeout_s) a warning says why and the
    roles run without MPS (time-sliced), with no MPS variables.
env_for(role) is what a spawned worker adds to its environment before CUDA
starts: the pipe and log directories, its SM percentage and DOCPIPE_DEVICE_SMS,
the GPU's SM count as the hardware has it. Inside an MPS client limited to a
share of the SMs the runtime reports only that share as the device's
multiprocessor count, so kernels that size their grids or split their work by
it (decode attention's split plan) would choose differently from the same
code in an unlimited process, and fp32 results would no longer match bit for
bit; DOCPIPE_DEVICE_SMS, read here in the parent through the driver API
(no context created), lets them plan with the physical count instead. cuBLAS
still picks its kernels by the visible count (measured on the H200: fp32 PD
0/26 identical at 60/40, 26/26 at 100/100). A role's `mps_priority`
("below_normal" for prefill) sets CUDA_MPS_CLIENT_PRIORITY instead: every
role keeps all SMs, and the decode role's kernels are scheduled first.
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
import time

from inference.layouts import MPS_PRIORITIES

log = logging.getLogger("inference.disagg.mps")

CONTROL = "nvidia-cuda-mps-control"
DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"  # where a system-wide daemon listens when no directory is set
PIPE_ENV, LOG_ENV, SHARE_ENV = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
KEEP_LOGS_ENV = "DOCPIPE_MPS_KEEP_LOGS"  # folder: the session daemon's logs are copied there on stop()
PRIORITY_ENV = "CUDA_MPS_CLIENT_PRIORITY"  # 0 normal, 1 below normal: kernels of higher-priority clients go first
DEVICE_SMS_ENV = "DOCPIPE_DEVICE_SMS"  # physical SM count of the role's GPU (see the module docstring)
_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16  # CUdevice_attribute value in cuda.h


def physical_sm_count(index: int = 0) -> int | None:
    """SMs of CUDA device `index` (after CUDA_VISIBLE_DEVICES), through the
    driver API: cuInit, cuDeviceGet, cuDeviceGetAttribute; no context is
    created, so no GPU memory is taken. None without a driver or device."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    dev, value = ctypes.c_int(), ctypes.c_int()
    if (lib.cuInit(0) or lib.cuDeviceGet(ctypes.byref(dev), index)
            or lib.cuDeviceGetAttribute(ctypes.byref(value), _CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)):
        return None
    return value.value if value.value > 0 else None


def _device_index(device: str) -> int | None:
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return None
    return int(index) if index.isdigit() else 0


def _tail(path: str, num_chars: int = 300) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-num_chars:].strip()
    except OSError:
        return ""


def _has_control_pipe(pipe_dir: str) -> bool:
    return os.path.exists(os.path.join(pipe_dir, "control"))


class GpuSharing:
    def __init__(self, layout):
        self.layout = layout
        self.mode = layout.gpu_sharing.mode
        self.active = False  # True when roles get MPS settings
        self.owned = False  # True when this object started the daemon (and stops it)
        self.pipe_dir: str | None = None
        self.log_dir: str | None = None
        self._tmp: str | None = None
        self._sms: dict[int, int | None] = {}  # device index -> physical SM count (None: unknown)

    def start(self) -> "GpuSharing":
        if self.mode != "mps":
            return self
        if not any(w.device.startswith("cuda") for w in self.layout.workers):
            log.info("layout %s: gpu_sharing mps ignored, no worker is on a GPU", self.layout.name)
            return self
        env_pipe = os.environ.get(PIPE_ENV)
        for pipe_dir in ([env_pipe] if env_pipe else []) + [DEFAULT_PIPE_DIR]:
            if _has_control_pipe(pipe_dir):
                log.info("MPS: using the running daemon at %s", pipe_dir)
                self.pipe_dir, self.log_dir, self.active = pipe_dir, os.environ.get(LOG_ENV), True
                return self
        binary = shutil.which(CONTROL)
        if binary is None:
            log.warning("layout %s asks for MPS but %s is not on PATH: prefill and decode will time-slice the "
                        "GPU (decode TPOT suffers under prefill load)", self.layout.name, CONTROL)
            return self
        self._tmp = tempfile.mkdtemp(prefix="docpipe-mps-")
        self.pipe_dir, self.log_dir = os.path.join(self._tmp, "pipe"), os.path.join(self._tmp, "log")
        os.makedirs(self.pipe_dir)
        os.makedirs(self.log_dir)
        env = {**os.environ, PIPE_ENV: self.pipe_dir, LOG_ENV: self.log_dir}
        err_path = os.path.join(self._tmp, "start.err")
        try:
            # stdio to files, not pipes: the daemonised child keeps them open, a pipe would never see EOF
            with open(err_path, "w") as err:
                proc = subprocess.run([binary, "-d"], env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                      timeout=self.layout.gpu_sharing.startup_timeout_s)
            failed = f"exit status {proc.returncode}: {_tail(err_path)}" if proc.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as e:
            failed = f"{type(e).__name__}: {e}"
        deadline = time.monotonic() + self.layout.gpu_sharing.startup_timeout_s
        while not failed and not _has_control_pipe(self.pipe_dir):
            if time.monotonic() > deadline:
                failed = f"no control pipe in {self.pipe_dir} after {self.layout.gpu_sharing.startup_timeout_s} s"
            time.sleep(0.05)
        if failed:
            log.warning("MPS control daemon did not start (%s; its log: %s): prefill and decode will time-slice "
                        "the GPU", failed, _tail(os.path.join(self.log_dir, "control.log")) or "empty")
            self._cleanup()
            return self
        self.active = self.owned = True
        log.info("MPS: started a control daemon for this session (pipe %s)", self.pipe_dir)
        return self

    def env_for(self, role: str) -> dict[str, str]:
        """Environment a spawned `role` worker sets before CUDA initialises."""
        if not self.active:
            return {}
        env = {PIPE_ENV: self.pipe_dir}
        if self.log_dir:
            env[LOG_ENV] = self.log_dir
        if role == "router":
            return env
        spec = self.layout.role(role)
        if spec.sm_percent is not None:
            env[SHARE_ENV] = str(spec.sm_percent)
        if spec.mps_priority is not None:
            env[PRIORITY_ENV] = str(MPS_PRIORITIES[spec.mps_priority])
        index = _device_index(spec.device)
        if index is not None:
            if index not in self._sms:
                self._sms[index] = physical_sm_count(index)  # here, in the parent: not an MPS client
            if self._sms[index]:
                env[DEVICE_SMS_ENV] = str(self._sms[index])
        return env

    def stop(self) -> None:
        """Quit the daemon this object started (after its clients have exited)."""
        if not self.owned:
            return
        env = {**os.environ, PIPE_ENV: self.pipe_dir, LOG_ENV: self.log_dir}
        try:
            proc = subprocess.run([shutil.which(CONTROL) or CONTROL], input="quit\n", env=env, capture_output=True,
                                  text=True, timeout=30)
            if proc.returncode:
                log.warning("MPS quit exited %d: %s", proc.returncode, proc.stderr.strip()[:300])
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("MPS quit failed: %s (daemon pipe %s)", e, self.pipe_dir)
        self.active = self.owned = False
        self._keep_logs()
        self._cleanup()

    def _keep_logs(self) -> None:
        """With KEEP_LOGS_ENV naming a folder, copy the daemon's control and
        server logs there before the session directory goes (client faults and
        server errors are only written there)."""
        keep = os.environ.get(KEEP_LOGS_ENV)
        if not keep or not self.log_dir or not os.path.isdir(self.log_dir):
            return
        try:
            shutil.copytree(self.log_dir, keep, dirs_exist_ok=True)
        except OSError as e:
            log.warning("MPS: could not keep the daemon logs in %s: %s", keep, e)

    def _cleanup(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
