"""A run's report: report.html (self-contained: images inlined, no script, no network reference) and its plots as
PNG in report/, made from what the run folder holds (losses.csv, scores.json, run.json, job.yaml, frames), and a
batch's batch.html ranking its runs. Torch-free; matplotlib (the `report` extra) is imported only to draw."""
