"""Quality evaluation: plain-text normalized edit distance (the project's
quality metric, identical to shared/bench/quality_eval.py) and TEDS for tables."""
