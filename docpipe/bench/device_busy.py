"""How busy the device is during a run, from two CUDA events per engine step
(no synchronisation, so the run keeps its host/device overlap).

An event completes when the stream reaches it. `start` is recorded before a
step's launch queues its work and `end` after: if the device was still busy
with the previous step, `start` completes the moment that work ends, so
end - start is the device time of this step's work alone, and the time from
one step's `end` to the next step's `start` is device idle time (zero when
the host had the next step queued in time). Work queued outside steps (image
uploads, patches of requests being prepared) lands inside whichever interval
it was queued in, which is where it occupies the device.

The host side: `host_launch_s` is the step thread's time inside `launch`
per step kind, `host_collect_wait_s` its time inside `collect` (waiting for
the step before to finish: the only place the loop waits for the device), so
wall - launch - collect wait is the host's own work between steps
(scheduling, request intake, the docpipe side).

Lifecycle: `DeviceBusy.attach(runner)` wraps the model runner's `launch` and
`collect` (instance attributes: this process only); `reset()` before the timed pass;
`report(wall_s)` after it (synchronises once, reads every event).
"""
from __future__ import annotations

import time

from docpipe.bench.timing import step_kind


class DeviceBusy:
    def __init__(self):
        # (kind, start event, end event, host launch s, host clock at launch)
        self.steps: list[tuple[str, object, object, float, float]] = []
        self.collect_wait_s = 0.0  # host time inside collect (waiting for the previous step)

    @classmethod
    def attach(cls, runner) -> "DeviceBusy | None":
        import torch
        if not torch.cuda.is_available() or getattr(runner, "device", None) is None or runner.device.type != "cuda":
            return None
        busy = cls()
        launch = runner.launch

        def timed(sched):
            kind = step_kind(sched)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0 = time.perf_counter()
            start.record()
            out = launch(sched)
            end.record()
            if sched.scheduled:
                busy.steps.append((kind, start, end, time.perf_counter() - t0, t0))
            return out

        runner.launch = timed
        collect = runner.collect

        def waited(step):
            t0 = time.perf_counter()
            out = collect(step)
            busy.collect_wait_s += time.perf_counter() - t0
            return out

        runner.collect = waited
        return busy

    def reset(self) -> None:
        self.steps.clear()
        self.collect_wait_s = 0.0

    def report(self, wall_s: float) -> dict:
        import torch
        torch.cuda.synchronize()
        device_s = {"prefill": 0.0, "decode": 0.0}
        host_s = {"prefill": 0.0, "decode": 0.0}
        count = {"prefill": 0, "decode": 0}
        idle_s, prev_end = 0.0, None
        log = []  # per step: kind, host launch start (ms from the first), host launch ms, device ms, idle before ms
        for kind, start, end, host, t in self.steps:
            device_ms = start.elapsed_time(end)
            device_s[kind] += device_ms / 1000
            host_s[kind] += host
            count[kind] += 1
            idle_ms = max(prev_end.elapsed_time(start), 0.0) if prev_end is not None else 0.0
            idle_s += idle_ms / 1000
            prev_end = end
            log.append([kind[0], round((t - self.steps[0][4]) * 1e3, 2), round(host * 1e3, 2), round(device_ms, 2),
                        round(idle_ms, 2)])
        busy = device_s["prefill"] + device_s["decode"]
        return {"device_busy_fraction": busy / wall_s if wall_s else 0.0,
                "device_idle_between_steps_s": idle_s,
                "steps": count, "device_s": device_s, "host_launch_s": host_s,
                "host_collect_wait_s": self.collect_wait_s,
                "host_other_s": max(wall_s - host_s["prefill"] - host_s["decode"] - self.collect_wait_s, 0.0),
                "decode_step_device_ms": 1000 * device_s["decode"] / max(count["decode"], 1),
                "decode_step_host_launch_ms": 1000 * host_s["decode"] / max(count["decode"], 1),
                "step_log": log}
