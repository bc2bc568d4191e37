"""Prefill/decode disaggregation: workers, control protocol, local cluster.

    from inference.disagg.llm import DisaggLLM          # LLM's API over a layout
    from inference.disagg.cluster import Cluster        # router + workers as processes
    python -m docpipe.cli serve --role prefill|decode|router --layout FILE

protocol.py (typed messages) and channel.py (authenticated framing) are the
wire; prefill_worker.py and decode_worker.py state the request lifecycles;
inference/router/ decides where each request goes.
"""
