"""GPU sharing with CUDA MPS, without a GPU: the layout option is typed and
checked; with a fake `nvidia-cuda-mps-control` on PATH the session daemon is
started with private pipe/log directories, each spawned role gets its MPS
environment (SM share per role), and stop() quits the daemon; a missing
binary, a failing daemon and an already running daemon take their paths."""
from __future__ import annotations

import os
import stat

import pytest

from inference.disagg import mps
from inference.disagg.cluster import Cluster
from inference.disagg.mps import GpuSharing
from inference.layouts import load_layout, parse_layout

FAKE = """#!/bin/sh
PATH=/usr/bin:/bin  # for touch and rm: the caller's PATH holds only this fake
# records each call: arguments, pipe and log directories, what came on stdin
echo "call $* pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY" >> "{record}"
if [ "$1" = "-d" ]; then
  {start}
  touch "$CUDA_MPS_PIPE_DIRECTORY/control"
  exit 0
fi
read cmd
echo "stdin $cmd" >> "{record}"
rm -f "$CUDA_MPS_PIPE_DIRECTORY/control"
"""


@pytest.fixture
def fake_control(tmp_path, monkeypatch):
    """Install a fake control binary as the only one on PATH; returns (record file, install(start_snippet))."""
    bindir, record = tmp_path / "bin", tmp_path / "calls.txt"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.delenv(mps.PIPE_ENV, raising=False)
    monkeypatch.setattr(mps, "DEFAULT_PIPE_DIR", str(tmp_path / "no-system-daemon"))

    def install(start: str = "") -> None:
        path = bindir / mps.CONTROL
        path.write_text(FAKE.format(record=record, start=start))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    return record, install


def test_layout_option_is_typed_and_checked():
    layout = load_layout("gpu-1p1d-mps")
    assert layout.gpu_sharing.mode == "mps"
    assert (layout.role("prefill").sm_percent, layout.role("decode").sm_percent) == (60, 40)
    workers = [{"role": "prefill", "sm_percent": 70}, {"role": "decode"}]
    with pytest.raises(ValueError, match='needs \\[gpu_sharing\\] mode = "mps"'):
        parse_layout({"workers": workers})
    with pytest.raises(ValueError, match="gpu_sharing.mode"):
        parse_layout({"workers": workers, "gpu_sharing": {"mode": "green"}})
    with pytest.raises(ValueError, match="unknown keys.*sm_pct"):
        parse_layout({"workers": workers, "gpu_sharing": {"mode": "mps", "sm_pct": 3}})
    for bad in (0, 101, "50"):
        with pytest.raises(ValueError, match="sm_percent must be an int"):
            parse_layout({"workers": [{"role": "prefill", "sm_percent": bad}, {"role": "decode"}],
                          "gpu_sharing": {"mode": "mps"}})
    assert load_layout("local-cpu-1p1d").gpu_sharing.mode == "none"


def test_client_priority_is_typed_checked_and_reaches_the_roles(fake_control, monkeypatch):
    layout = load_layout("gpu-1p1d-mps-priority")
    assert (layout.role("prefill").mps_priority, layout.role("decode").mps_priority) == ("below_normal", "normal")
    assert layout.role("prefill").sm_percent is None  # every role keeps all SMs
    with pytest.raises(ValueError, match="mps_priority must be one of"):
        parse_layout({"workers": [{"role": "prefill", "mps_priority": "high"}, {"role": "decode"}],
                      "gpu_sharing": {"mode": "mps"}})
    with pytest.raises(ValueError, match='mps_priority of .* needs \\[gpu_sharing\\] mode = "mps"'):
        parse_layout({"workers": [{"role": "prefill", "mps_priority": "normal"}, {"role": "decode"}]})
    _, install = fake_control
    install()
    monkeypatch.setattr(mps, "physical_sm_count", lambda index=0: None)
    sharing = mps.GpuSharing(layout).start()
    try:
        assert sharing.env_for("prefill")[mps.PRIORITY_ENV] == "1"
        assert sharing.env_for("decode")[mps.PRIORITY_ENV] == "0"
        assert mps.SHARE_ENV not in sharing.env_for("prefill")
    finally:
        sharing.stop()


def test_session_daemon_started_given_to_each_role_and_quit(fake_control, monkeypatch):
    record, install = fake_control
    install()
    monkeypatch.setattr(mps, "physical_sm_count", lambda index=0: None)  # as on a machine without a driver
    cluster = Cluster("dummy:tiny", "gpu-1p1d-mps")
    spawned = []

    class Recorder:  # stands in for the spawn context's Process
        def __init__(self, target, name, daemon, args, kwargs):
            spawned.append((args[0], kwargs["env"]))

        def start(self):
            pass

        def is_alive(self):
            return False

        def join(self, timeout=None):
            pass

    monkeypatch.setattr(cluster._ctx, "Process", Recorder)
    sharing = cluster.gpu_sharing.start()
    assert sharing.active and sharing.owned
    tmp = os.path.dirname(sharing.pipe_dir)
    assert os.path.exists(os.path.join(sharing.pipe_dir, "control"))
    cluster._spawn_worker("prefill", 0)
    cluster._spawn_worker("decode", 0)
    env = {"CUDA_MPS_PIPE_DIRECTORY": sharing.pipe_dir, "CUDA_MPS_LOG_DIRECTORY": sharing.log_dir}
    assert spawned == [("prefill", {**env, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "60"}),
                       ("decode", {**env, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "40"})]
    assert mps.PIPE_ENV not in os.environ  # only the workers become MPS clients, not this process
    cluster.stop()  # no processes really started; quits the daemon
    calls = record.read_text().splitlines()
    assert calls == [f"call -d pipe={env['CUDA_MPS_PIPE_DIRECTORY']} log={env['CUDA_MPS_LOG_DIRECTORY']}",
                     f"call  pipe={env['CUDA_MPS_PIPE_DIRECTORY']} log={env['CUDA_MPS_LOG_DIRECTORY']}",
                     "stdin quit"]
    assert not os.path.exists(tmp) and not sharing.active and cluster.gpu_sharing.env_for("decode") == {}


def test_missing_binary_falls_back_with_a_message(fake_control, caplog):
    with caplog.at_level("WARNING", logger="inference.disagg.mps"):
        sharing = GpuSharing(load_layout("gpu-1p1d-mps")).start()
    assert not sharing.active and sharing.env_for("prefill") == {}
    assert any("nvidia-cuda-mps-control is not on PATH" in r.getMessage() for r in caplog.records)
    sharing.stop()  # nothing to stop


def test_failing_daemon_falls_back_and_cleans_up(fake_control, caplog):
    record, install = fake_control
    install(start='echo "cannot open the GPU" >&2; exit 3')
    with caplog.at_level("WARNING", logger="inference.disagg.mps"):
        sharing = GpuSharing(load_layout("gpu-1p1d-mps")).start()
    assert not sharing.active and not sharing.owned and sharing.env_for("decode") == {}
    (msg,) = [r.getMessage() for r in caplog.records if "did not start" in r.getMessage()]
    assert "exit status 3" in msg and "cannot open the GPU" in msg
    assert not os.path.exists(os.path.dirname(sharing.pipe_dir))


def test_daemon_without_control_pipe_times_out(fake_control, caplog):
    record, install = fake_control
    install(start='exit 0')  # "starts" but never opens its pipe
    layout = load_layout("gpu-1p1d-mps")
    layout.gpu_sharing.startup_timeout_s = 0.3
    with caplog.at_level("WARNING", logger="inference.disagg.mps"):
        sharing = GpuSharing(layout).start()
    assert not sharing.active and any("no control pipe" in r.getMessage() for r in caplog.records)


def test_running_daemon_is_used_not_started_nor_stopped(fake_control, tmp_path, monkeypatch):
    record, install = fake_control
    install()
    pipe = tmp_path / "existing"
    pipe.mkdir()
    (pipe / "control").touch()
    monkeypatch.setenv(mps.PIPE_ENV, str(pipe))
    sharing = GpuSharing(load_layout("gpu-1p1d-mps")).start()
    assert sharing.active and not sharing.owned
    assert sharing.env_for("decode")[mps.PIPE_ENV] == str(pipe)
    assert sharing.env_for("decode")[mps.SHARE_ENV] == "40"
    sharing.stop()
    assert not record.exists()  # never called: not ours to start or quit


def test_worker_applies_its_env_before_anything_else(monkeypatch):
    from inference.disagg.process import run_worker

    monkeypatch.delenv(mps.SHARE_ENV, raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the test's changes stay in the test
    with pytest.raises(ValueError, match="unknown worker role"):
        run_worker("bogus", "dummy:tiny", "gpu-1p1d-mps", env={mps.SHARE_ENV: "40"})
    assert os.environ[mps.SHARE_ENV] == "40"


def test_roles_get_the_physical_sm_count_read_once_in_the_parent(fake_control, monkeypatch):
    """Under MPS a client sees only its SM share as the device's SM count; the
    parent reads the real one (once per device) and hands it to each role."""
    record, install = fake_control
    install()
    asked = []
    monkeypatch.setattr(mps, "physical_sm_count", lambda index=0: asked.append(index) or 132)
    sharing = GpuSharing(load_layout("gpu-1p1d-mps")).start()
    assert sharing.env_for("prefill")[mps.DEVICE_SMS_ENV] == "132"
    assert sharing.env_for("decode")[mps.DEVICE_SMS_ENV] == "132"
    assert asked == [0]  # both roles on cuda:0: one query
    assert mps.DEVICE_SMS_ENV not in sharing.env_for("router")
    sharing.stop()


class FakeDriver:
    def __init__(self, init_status=0, sms=132):
        self.init_status, self.sms, self.device = init_status, sms, None

    def cuInit(self, flags):
        return self.init_status

    def cuDeviceGet(self, dev_ref, index):
        self.device = index
        dev_ref._obj.value = 7  # an opaque device handle
        return 0

    def cuDeviceGetAttribute(self, value_ref, attribute, dev):
        assert attribute == 16 and dev.value == 7
        value_ref._obj.value = self.sms
        return 0


def test_physical_sm_count_through_the_driver_api(monkeypatch):
    driver = FakeDriver()
    monkeypatch.setattr(mps.ctypes, "CDLL", lambda name: driver)
    assert mps.physical_sm_count(1) == 132 and driver.device == 1
    driver.init_status = 100  # CUDA_ERROR_NO_DEVICE
    assert mps.physical_sm_count() is None

    def no_driver(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(mps.ctypes, "CDLL", no_driver)
    assert mps.physical_sm_count() is None
    assert [mps._device_index(d) for d in ("cuda:2", "cuda", "cpu")] == [2, 0, None]


def test_daemon_logs_kept_on_request(fake_control, tmp_path, monkeypatch):
    record, install = fake_control
    install(start='echo "client 42 hit a fatal GPU error" > "$CUDA_MPS_LOG_DIRECTORY/server.log"')
    keep = tmp_path / "kept"
    monkeypatch.setenv(mps.KEEP_LOGS_ENV, str(keep))
    sharing = GpuSharing(load_layout("gpu-1p1d-mps")).start()
    assert sharing.active
    sharing.stop()
    assert (keep / "server.log").read_text().strip() == "client 42 hit a fatal GPU error"
    assert not os.path.exists(os.path.dirname(sharing.pipe_dir))  # the session directory still goes
