"""MinerU2.5 model family: prompts, images, sampling, layout parsing, OTSL,
LaTeX clean-up and page assembly (see `family.py`)."""
