"""The PD router: router.py (state machine: admission, stages, retries),
policy.py (worker choice, TTFT/TPOT admission), metrics.py (Prometheus text
and JSON), server.py (the router process around the state machine)."""
